"""The app's routes, one module per concern, each an `APIRouter` that reaches the server through dependencies:
`pages` (the page, its files, info and stats), `images` (uploads, downloads, stylemaps, part masks) and `edits`
(every route that runs the model)."""

from stylemapgan.serving.routes import edits, images, pages

ROUTERS = (pages.router, images.router, edits.router)

__all__ = ["ROUTERS"]
