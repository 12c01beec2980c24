"""The one error type of the metrics package."""

from __future__ import annotations


class MetricsError(ValueError):
    """An evaluation cannot run as asked; the message says what to change (printed as one line by the CLI)."""
