"""The one exception air-gap operations raise for a bundle or store they cannot use."""

from __future__ import annotations


class BundleError(Exception):
    """A bundle (or Distribution store) is unreadable, corrupted, truncated or incomplete."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
