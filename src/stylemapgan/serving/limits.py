"""Every bound the server enforces, in one place, so tests can shrink them and operators can read them."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ServerLimits:
    """Upload, memory, queue and connection bounds (every number the server enforces or sizes itself by).

    Memory: the stores keep at most `cached_images` uint8 images at model size (plus, for samples, refined
    uploads and results rendered from a known code, that code; the anonymous session's share included, see
    store.py): a few MB at 64 px, ~100 MB at 256 px. The editor's two caches are bounded apart: encodings by
    `encoding_cache_mb` (but never fewer than two edits' worth of entries) and the per-image modulations a fast
    edit reuses by `modulation_cache_mb`. So the defaults bound a server at roughly 2 GB plus the model, whatever
    its traffic; lower the two cache budgets for a small machine. Computed part sliders (models with parts) add
    at most `max_part_direction_sets` x `part_direction_components` codes.
    """

    max_upload_bytes: int = 10 * 1024 * 1024  # a large phone JPEG; checked while the body streams in
    max_json_bytes: int = 64 * 1024  # a JSON request body; an edit's may add max_references painted masks on top
    max_upload_pixels: int = 25_000_000  # checked from the header, before any pixel is decoded
    concurrent_uploads: int = 2  # bodies read and decoded at once (each may hold ~3 bytes per pixel)
    upload_read_seconds: float = 30.0  # a body still arriving after this gets 408 (a trickle cannot hold a slot)
    image_threads: int = 4  # PNG encodes and mask/upload decodes running at once off the event loop
    max_sessions: int = 64  # cookie sessions; one is dropped beyond this (one without uploads first)
    max_uploads_per_session: int = 16
    max_uploads_total: int = 128
    max_results_per_session: int = 12  # edit results, samples, reconstructions (downloadable, re-usable)
    max_results_total: int = 256
    max_channels_per_session: int = 32  # (page, request kind) pairs whose newest sequence number is kept
    max_references: int = 8
    max_pending_jobs: int = 32  # queued inference jobs over all sessions; beyond this: 503, try again
    max_samples: int = 8
    max_interpolation_frames: int = 16
    part_direction_components: int = 4  # PCA sliders computed for one part (models with parts, no directions file)
    part_direction_samples: int = 2000  # random w the part PCA is fitted on (~50 ms for a tiny model on 1 core)
    max_part_direction_sets: int = 64  # (part, subspace) slider sets kept; least recently used dropped beyond
    max_refine_steps: int = 500  # optimisation steps of one refine request (~20 ms each at 64 px on 2 cores)
    max_refine_seconds: float = 20.0  # a refine holds a refine worker: it stops (keeping its best) after this
    concurrent_refines: int = 1  # refine workers, beside the model worker; another refine meanwhile gets 503
    refine_niceness: int = 10  # added to the refine workers' nice value (Linux), so edits win the CPU from them
    max_shift_fraction: float = 1.0  # |shift| <= this * model size
    encoding_cache_mb: float = 1024.0  # the editor's encodings (a w+ entry: ~3.5 MB at cpu-64, ~120 MB at 256 px)
    modulation_cache_mb: float = 1024.0  # the editor's per-image modulations (fast edits); least recent dropped
    warmup_batch: int = 8  # gallery images encoded per worker job at start-up (users' jobs run in between)
    max_connections: int = 256  # open HTTP connections (uvicorn's limit_concurrency); beyond this: 503
    listen_backlog: int = 2048  # connections waiting to be accepted (made as soon as the URL is printed)

    @property
    def cached_images(self) -> int:
        """Upper bound on images the server keeps (and so on encodings it needs cached)."""
        anonymous = self.max_uploads_per_session + self.max_results_per_session  # apart from the totals
        return self.max_uploads_total + self.max_results_total + anonymous

    @property
    def modulation_cache_bytes(self) -> int:
        """The editor's `modulation_cache_bytes` for `modulation_cache_mb`."""
        return int(self.modulation_cache_mb * 1024 * 1024)

    def encoding_capacity(self, entry_bytes: int, gallery: int) -> int:
        """Entries the editor may cache: what the memory budget allows (worst case: every entry holding its w+
        style tensors), never fewer than two edits' worth of images (so one edit cannot evict its own inputs),
        never more than there are images to cache."""
        floor = 2 * (self.max_references + 1)
        budget = int(self.encoding_cache_mb * 1024 * 1024 // max(1, entry_bytes))
        return max(floor, min(budget, self.cached_images + gallery + floor))

    def public(self) -> dict[str, Any]:
        """What the page needs to know (shown in messages, used to pre-check uploads)."""
        return asdict(self)
