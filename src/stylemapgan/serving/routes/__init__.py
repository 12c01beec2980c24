"""The app's routes, one module per concern, each an `APIRouter` that reaches the server through dependencies:
`pages` (the page, its files, info and stats), `images` (uploads, downloads, codes, part masks, segmentations),
`edits` (the model routes every family serves) and `parts` (the part edits of a model with parts)."""

from stylemapgan.serving.routes import edits, images, pages, parts

ROUTERS = (pages.router, images.router, edits.router, parts.router)

__all__ = ["ROUTERS"]
