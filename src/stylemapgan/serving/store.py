"""Per-session state with hard bounds: images (uploads, results) and the newest request per page and kind.

Memory stays bounded however many sessions or uploads arrive: sessions, each session's items and all items
together are least-recently-used caches. Images are referenced by opaque random ids that are only looked up
inside the requesting session (plus the read-only gallery), so a session never sees another one's uploads.
"""

from __future__ import annotations

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
    stylemap: torch.Tensor | None = None  # [1, C, s, s] when known exactly (samples)
    label_map: torch.Tensor | None = None  # int64 [H, W] part indices (gallery from a dataset with part masks)
    handle: str | None = None  # the editor's cache handle; re-created when the editor has evicted it
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        extra = self.stylemap.numel() * 4 if self.stylemap is not None else 0
        return int(self.pixels.nbytes) + extra

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "kind": self.kind, "parts": self.label_map is not None,
                **self.meta}


class BoundedStore:
    """Items keyed by (owner, key), evicted least-recently-used first: per owner beyond `per_owner`, and
    over all owners beyond `total`. Thread-safe (the inference thread reads records)."""

    def __init__(self, per_owner: int, total: int) -> None:
        self.per_owner = max(1, per_owner)
        self.total = max(1, total)
        self._items: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._by_owner: dict[str, OrderedDict[str, None]] = {}
        self._lock = threading.Lock()
        self.evicted = 0

    def put(self, owner: str, key: str, value: Any) -> list[str]:
        """Store (most recently used); returns the keys evicted to make room (of any owner)."""
        evicted: list[str] = []
        with self._lock:
            keys = self._by_owner.setdefault(owner, OrderedDict())
            self._items[(owner, key)] = value
            self._items.move_to_end((owner, key))
            keys[key] = None
            keys.move_to_end(key)
            while len(keys) > self.per_owner:
                old, _ = keys.popitem(last=False)
                del self._items[(owner, old)]
                evicted.append(old)
            while len(self._items) > self.total:
                (old_owner, old), _ = self._items.popitem(last=False)
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
            self._forget_key(owner, key)
            return True

    def drop_owner(self, owner: str) -> int:
        with self._lock:
            keys = self._by_owner.pop(owner, OrderedDict())
            for key in keys:
                self._items.pop((owner, key), None)
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
    """Sessions by cookie token (LRU-bounded) and the image stores they own."""

    def __init__(self, limits: ServerLimits, on_drop: Callable[[str], None] | None = None) -> None:
        self.limits = limits
        self.uploads = BoundedStore(limits.max_uploads_per_session, limits.max_uploads_total)
        self.results = BoundedStore(limits.max_results_per_session, limits.max_results_total)
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()
        self._on_drop = on_drop

    def get_or_create(self, token: str | None) -> tuple[Session, bool]:
        """The session for a cookie token; a new one (fresh random token) when absent or unknown, so a
        client can never pick its own session id."""
        dropped: list[str] = []
        with self._lock:
            if token is not None and token in self._sessions:
                self._sessions.move_to_end(token)
                return self._sessions[token], False
            session = Session(secrets.token_urlsafe(24), self.limits.max_channels_per_session)
            self._sessions[session.id] = session
            while len(self._sessions) > self.limits.max_sessions:
                old, _ = self._sessions.popitem(last=False)
                dropped.append(old)
        for old in dropped:
            self.uploads.drop_owner(old)
            self.results.drop_owner(old)
            if self._on_drop is not None:
                self._on_drop(old)
        return session, True

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def counts(self) -> dict[str, int]:
        return {"sessions": len(self), "uploads": self.uploads.count(), "results": self.results.count(),
                "evicted_uploads": self.uploads.evicted, "evicted_results": self.results.evicted}
