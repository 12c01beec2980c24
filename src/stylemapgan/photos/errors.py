"""The exception types of the photo tools (alignment, landmarks, paste-back).

Messages are one line naming the file or option, so the CLI and the web editor can show them as they are.
"""

from __future__ import annotations


class PhotoError(ValueError):
    """A photo the tools cannot handle (unreadable, no landmark model installed, a bad transform file)."""


class NoFaceError(PhotoError):
    """The landmark detector found no face in the photo."""
