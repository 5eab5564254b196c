"""Exceptions with messages meant for people, not stack traces.

The CLI and the UI catch :class:`LayerStudioError` and show its message; anything else is a bug.
"""

from __future__ import annotations

__all__ = ["Cancelled", "ImageTooLargeError", "InvalidInputError", "LayerStudioError",
           "UnsupportedFormatError"]


class LayerStudioError(Exception):
    """Base class for every error LayerStudio reports to a user."""


class InvalidInputError(LayerStudioError, ValueError):
    """The input (file, array, argument) is malformed; the message says what and where."""


class UnsupportedFormatError(InvalidInputError):
    """The file extension or contents are not a format LayerStudio reads or writes."""


class ImageTooLargeError(InvalidInputError):
    """An image exceeds the pixel limit that guards against decompression bombs."""


class Cancelled(LayerStudioError):
    """The user stopped a running generation (raised from a progress callback)."""
