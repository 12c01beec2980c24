"""Per-part attribute sliders of a model with parts: the directions file's for a part when it has any (their
metadata names the part, as `stylemapgan directions --part` writes them), else unsupervised PCA directions inside
the part's latent subspace, computed through the editor on first use and kept (a few ms for a tiny model, well
under a second at full size: a mapping pass over `ServerLimits.part_direction_samples` z and a PCA of w).

Directions are model-derived, not user data: every session sees the same sets. The computed sets are bounded
(`ServerLimits.max_part_direction_sets`, least recently used dropped first); the page asks for a part's set
before it moves its sliders, so a dropped set is simply computed again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from stylemapgan.editing import Direction


def part_of(direction: Direction) -> str | None:
    """The part a direction moves (its metadata's `part`), None for a direction of the whole code."""
    part = (direction.meta or {}).get("part")
    return str(part) if part else None


def computed_name(part: str, what: str, index: int) -> str:
    """A computed direction's name, unique over parts and subspaces: hair.pca_0, hair.shape.pca_0."""
    return f"{part}.pca_{index}" if what == "both" else f"{part}.{what}.pca_{index}"


class PartSliders:
    """The file's part directions by part, and the computed (part, subspace) PCA sets (bounded LRU)."""

    def __init__(self, file_directions: dict[str, Direction], capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._file: dict[str, list[Direction]] = {}
        for direction in file_directions.values():
            part = part_of(direction)
            if part is not None:
                self._file.setdefault(part, []).append(direction)
        self._sets: OrderedDict[tuple[str, str], list[Direction]] = OrderedDict()
        self._by_name: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()

    def from_file(self, part: str) -> list[Direction]:
        return list(self._file.get(part, ()))

    def computed(self, part: str, what: str) -> list[Direction] | None:
        with self._lock:
            found = self._sets.get((part, what))
            if found is not None:
                self._sets.move_to_end((part, what))
            return found

    def keep(self, part: str, what: str, directions: list[Direction]) -> list[Direction]:
        """Store a computed set under unique names (see `computed_name`); returns it as stored."""
        named = [Direction(computed_name(part, what, i), d.vector, dict(d.meta or {})) for i, d in
                 enumerate(directions)]
        with self._lock:
            self._sets[(part, what)] = named
            self._sets.move_to_end((part, what))
            for d in named:
                self._by_name[d.name] = (part, what)
            while len(self._sets) > self.capacity:
                _, dropped = self._sets.popitem(last=False)
                for d in dropped:
                    self._by_name.pop(d.name, None)
        return named

    def find(self, name: str) -> Direction | None:
        """A computed direction by name (None when unknown or dropped)."""
        with self._lock:
            key = self._by_name.get(name)
            if key is None:
                return None
            return next((d for d in self._sets.get(key, ()) if d.name == name), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sets)
