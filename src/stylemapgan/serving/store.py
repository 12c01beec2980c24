"""Per-session state with hard bounds: images (uploads, results) and the newest request per page and kind.

Memory stays bounded however many sessions or uploads arrive: sessions, each session's items and all items
together are least-recently-used caches. Images are referenced by opaque random ids that are only looked up
inside the requesting session (plus the read-only gallery), so a session never sees another one's uploads.

How sessions and uploads are kept (what a script, curl or a load test can and cannot do to a browser's images):

- A request without a session cookie (or with one this server did not sign) is served in the one shared
  *anonymous* session, and its answer offers a cookie: a signed random token. Nothing is stored for the offer.
- A session is made only when a request brings such a token back, i.e. by a client that keeps cookies (a
  browser, from its second request on). So cookie-less traffic, however much of it, makes no session and can
  never push a browser's session out.
- The anonymous session's images are bounded by the per-session caps (16 uploads, 12 results by default) and
  kept apart from the totals the cookie sessions share, so cookie-less uploads evict only older cookie-less
  uploads. They are never listed (`/api/info` shows the anonymous session no uploads): only whoever holds an
  upload's unguessable id can use it, as a script does with the id its upload returned.
- Beyond `max_sessions` cookie sessions, the least recently used session that owns no uploads is dropped
  first; only when every session owns uploads does the least recently used one go, with its images. A dropped
  session's cookie later gets a fresh, empty session. Uploads also expire beyond `max_uploads_per_session`
  per session and `max_uploads_total` over all cookie sessions (least recently used first).
- Everything is in memory: a restart forgets every session and upload (and invalidates every cookie).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from stylemapgan.serving.limits import ServerLimits

ID_PATTERN = r"^[gur]_[A-Za-z0-9_-]{1,40}$"  # gallery, upload, result
ANONYMOUS = "anonymous"  # the session of requests without a (valid) cookie; never a signed token


def new_id(prefix: str) -> str:
    """An unguessable id: knowing one id tells nothing about any other."""
    return f"{prefix}_{secrets.token_urlsafe(12)}"


@dataclass
class ImageRecord:
    """One image the page can use as source, reference or download, always at model size."""

    id: str
    name: str
    kind: str  # gallery | upload | result | sample
    pixels: np.ndarray  # uint8 [size, size, 3]
    code: torch.Tensor | None = None  # the family's code ([1, C, s, s] stylemap, [1, n, D] W+) when known exactly
    label_map: torch.Tensor | None = None  # int64 [H, W] part indices (gallery from a dataset with part masks)
    handle: str | None = None  # the editor's cache handle; re-created when the editor has evicted it
    meta: dict[str, Any] = field(default_factory=dict)
    segmentation: np.ndarray | None = None  # uint8 [size, size] the model's part per pixel (models that segment)
    photo: Any = None  # photos.PhotoSource: the whole photo an aligned upload (or a result of it) came from

    @property
    def nbytes(self) -> int:
        extra = self.code.numel() * 4 if self.code is not None else 0
        extra += int(self.segmentation.nbytes) if self.segmentation is not None else 0
        extra += len(self.photo.data) if self.photo is not None else 0
        return int(self.pixels.nbytes) + extra

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "kind": self.kind, "parts": self.label_map is not None,
                "photo": self.photo is not None, **self.meta}


class BoundedStore:
    """Items keyed by (owner, key), evicted least-recently-used first: per owner beyond `per_owner`, and
    over all owners beyond `total`. Owners in `apart` (the anonymous session) are bounded by `per_owner` only:
    their items neither count towards `total` nor are evicted to make room in it, so they can never push
    another owner's items out. Thread-safe (the inference threads read records)."""

    def __init__(self, per_owner: int, total: int, apart: tuple[str, ...] = ()) -> None:
        self.per_owner = max(1, per_owner)
        self.total = max(1, total)
        self.apart = frozenset(apart)
        self._items: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._by_owner: dict[str, OrderedDict[str, None]] = {}
        self._shared = 0  # items of owners not apart: what `total` bounds
        self._lock = threading.Lock()
        self.evicted = 0

    def put(self, owner: str, key: str, value: Any) -> list[str]:
        """Store (most recently used); returns the keys evicted to make room (of any owner)."""
        evicted: list[str] = []
        with self._lock:
            keys = self._by_owner.setdefault(owner, OrderedDict())
            if (owner, key) not in self._items and owner not in self.apart:
                self._shared += 1
            self._items[(owner, key)] = value
            self._items.move_to_end((owner, key))
            keys[key] = None
            keys.move_to_end(key)
            while len(keys) > self.per_owner:
                old, _ = keys.popitem(last=False)
                del self._items[(owner, old)]
                self._shared -= int(owner not in self.apart)
                evicted.append(old)
            while self._shared > self.total:
                old_owner, old = next(k for k in self._items if k[0] not in self.apart)
                del self._items[(old_owner, old)]
                self._shared -= 1
                self._forget_key(old_owner, old)
                evicted.append(old)
            self.evicted += len(evicted)
        return evicted

    def _forget_key(self, owner: str, key: str) -> None:
        keys = self._by_owner.get(owner)
        if keys is not None:
            keys.pop(key, None)
            if not keys:
                del self._by_owner[owner]

    def get(self, owner: str, key: str) -> Any | None:
        with self._lock:
            value = self._items.get((owner, key))
            if value is not None:
                self._items.move_to_end((owner, key))
                self._by_owner[owner].move_to_end(key)
            return value

    def remove(self, owner: str, key: str) -> bool:
        with self._lock:
            if self._items.pop((owner, key), None) is None:
                return False
            self._shared -= int(owner not in self.apart)
            self._forget_key(owner, key)
            return True

    def drop_owner(self, owner: str) -> int:
        with self._lock:
            keys = self._by_owner.pop(owner, OrderedDict())
            for key in keys:
                self._items.pop((owner, key), None)
            self._shared -= 0 if owner in self.apart else len(keys)
            return len(keys)

    def values(self, owner: str) -> list[Any]:
        """The owner's items, oldest first (no LRU touch)."""
        with self._lock:
            return [self._items[(owner, k)] for k in self._by_owner.get(owner, ())]

    def count(self, owner: str | None = None) -> int:
        with self._lock:
            return len(self._items) if owner is None else len(self._by_owner.get(owner, ()))

    def __iter__(self) -> Iterator[Any]:
        with self._lock:
            return iter(list(self._items.values()))


@dataclass
class Session:
    """One browser (cookie): the newest sequence number seen per (page, request kind)."""

    id: str
    max_channels: int
    created: float = field(default_factory=time.monotonic)
    _latest: OrderedDict[str, int] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def claim(self, channel: str, seq: int) -> bool:
        """Register request `seq` of a channel; False when a newer one was already seen (stale on arrival)."""
        with self._lock:
            latest = self._latest.get(channel, -1)
            if seq < latest:
                return False
            self._latest[channel] = seq
            self._latest.move_to_end(channel)
            while len(self._latest) > self.max_channels:
                self._latest.popitem(last=False)
            return True

    def is_latest(self, channel: str, seq: int) -> bool:
        """Still the newest of its channel? Checked again right before inference: stale edits never run."""
        with self._lock:
            return self._latest.get(channel, seq) <= seq


class SessionStore:
    """Cookie sessions (made when a signed token comes back, LRU-bounded, those without uploads dropped first),
    the one anonymous session, and the image stores they own; see the module docstring."""

    def __init__(self, limits: ServerLimits, on_drop: Callable[[str], None] | None = None) -> None:
        self.limits = limits
        self.uploads = BoundedStore(limits.max_uploads_per_session, limits.max_uploads_total, apart=(ANONYMOUS,))
        self.results = BoundedStore(limits.max_results_per_session, limits.max_results_total, apart=(ANONYMOUS,))
        self.anonymous = Session(ANONYMOUS, limits.max_channels_per_session)
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._secret = secrets.token_bytes(32)  # per server run: a restart invalidates every cookie
        self._lock = threading.Lock()
        self._on_drop = on_drop
        self.dropped = 0

    def _signature(self, nonce: str) -> str:
        digest = hmac.new(self._secret, nonce.encode(), hashlib.sha256).digest()[:18]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def offer(self) -> str:
        """A new cookie token: random, signed by this server, remembered nowhere (a session is made only when
        it comes back)."""
        nonce = secrets.token_urlsafe(18)
        return f"{nonce}.{self._signature(nonce)}"

    def signed(self, token: str | None) -> bool:
        """Was this token offered by this server (run)? A client cannot pick its own session id."""
        if not token or token.count(".") != 1 or len(token) > 96:
            return False
        nonce, signature = token.split(".")
        return hmac.compare_digest(signature, self._signature(nonce))

    def session_for(self, token: str | None) -> tuple[Session, bool]:
        """The session of a cookie token, and whether to offer a new cookie: a signed token's session (made now
        if it is new or was dropped); the anonymous session, with an offer, for a missing or unsigned token."""
        if not self.signed(token):
            return self.anonymous, True
        assert token is not None
        dropped: list[str] = []
        with self._lock:
            session = self._sessions.get(token)
            if session is not None:
                self._sessions.move_to_end(token)
                return session, False
            session = Session(token, self.limits.max_channels_per_session)
            self._sessions[token] = session
            while len(self._sessions) > self.limits.max_sessions:
                victim = next((sid for sid in self._sessions if sid != token and self.uploads.count(sid) == 0),
                              next(iter(self._sessions)))
                del self._sessions[victim]
                dropped.append(victim)
            self.dropped += len(dropped)
        for old in dropped:
            self.uploads.drop_owner(old)
            self.results.drop_owner(old)
            if self._on_drop is not None:
                self._on_drop(old)
        return session, False

    def __len__(self) -> int:
        """Cookie sessions (the anonymous one is not counted)."""
        with self._lock:
            return len(self._sessions)

    def counts(self) -> dict[str, int]:
        return {"sessions": len(self), "sessions_dropped": self.dropped, "uploads": self.uploads.count(),
                "results": self.results.count(), "anonymous_uploads": self.uploads.count(ANONYMOUS),
                "evicted_uploads": self.uploads.evicted, "evicted_results": self.results.evicted}
