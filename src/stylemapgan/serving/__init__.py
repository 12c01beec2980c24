"""The real-time web editor (`stylemapgan serve`): a FastAPI app over an editor of any model family
(`stylemapgan.editing.Editor.from_checkpoint` opens StyleMapGAN and SemanticStyleGAN checkpoints alike); the page
shows the controls the editor's `capabilities` offer.

    from stylemapgan.serving import create_app, load_gallery
    app = create_app(Editor.from_checkpoint(path), gallery=load_gallery("data/faces", 64, None))

The page (static/index.html, app.js, style.css; plain JavaScript and canvas, no build step) is package data.
"""

from stylemapgan.serving.app import create_app
from stylemapgan.serving.domain import DomainReference, card_reference
from stylemapgan.serving.gallery import Gallery, load_gallery
from stylemapgan.serving.limits import ServerLimits
from stylemapgan.serving.middleware import LOOPBACK_HOSTS, SESSION_COOKIE

__all__ = ["LOOPBACK_HOSTS", "SESSION_COOKIE", "DomainReference", "Gallery", "ServerLimits", "card_reference",
           "create_app", "load_gallery"]
