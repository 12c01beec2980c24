"""The one exception type of the editing engine.

Every user-facing problem (a missing file, a non-image, a mask of the wrong kind, an unknown attribute) is an
`EditingError` whose message is one line naming the file or field, so the CLI and a web server can show it
as is.
"""

from __future__ import annotations


class EditingError(ValueError):
    """A request the editing engine cannot carry out; the message names the input and what is wrong."""
