"""Built-in datasets, each made by one call (or ``stylemapgan datasets build NAME OUT``)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stylemapgan.data.lmdb_format import DatasetError


@dataclass(frozen=True)
class Builder:
    """A named dataset recipe: what it is, where it comes from, and the function that writes it."""

    name: str
    description: str
    source: str
    licence: str
    default_size: int
    build: Callable[..., Path]

    def options(self) -> set[str]:
        return set(inspect.signature(self.build).parameters) - {"out"}


def _builders() -> dict[str, Builder]:
    from stylemapgan.data.builders.cartoon_faces import build_cartoon_faces
    from stylemapgan.data.builders.emoji import build_emoji
    from stylemapgan.data.builders.fashion_mnist import build_fashion_mnist

    return {
        "cartoon-faces": Builder(
            "cartoon-faces",
            "facesjs cartoon faces with face records, labels and part masks (30,000 + 1,000)",
            "npm facesjs 5.0.3",
            "Apache-2.0",
            64,
            build_cartoon_faces,
        ),
        "emoji": Builder(
            "emoji",
            "face and people emoji, all skin tones, Google and Twitter artwork, on white",
            "npm emoji-datasource-google / -twitter 16.0.0",
            "Apache-2.0 (Noto) / CC-BY 4.0 (Twemoji)",
            64,
            build_emoji,
        ),
        "fashion-mnist": Builder(
            "fashion-mnist",
            "Fashion-MNIST 60,000 + 10,000, padded to 32 px, RGB, class labels",
            "Debian dataset-fashion-mnist (or --source DIR)",
            "MIT",
            32,
            build_fashion_mnist,
        ),
    }


BUILDER_NAMES = ("cartoon-faces", "emoji", "fashion-mnist")


def get_builder(name: str) -> Builder:
    builders = _builders()
    if name not in builders:
        raise DatasetError(f"unknown dataset {name!r} (built-in: {', '.join(BUILDER_NAMES)})")
    return builders[name]


def build_dataset(name: str, out: str | Path, **options: Any) -> Path:
    """Build dataset ``name`` into ``out``; options not taken by that builder are an error naming them."""
    builder = get_builder(name)
    given = {k: v for k, v in options.items() if v is not None}
    unknown = set(given) - builder.options()
    if unknown:
        raise DatasetError(f"{name} takes no option {', '.join(sorted(unknown))}")
    if "sizes" not in given:
        given["sizes"] = (builder.default_size,)
    return builder.build(out, **given)
