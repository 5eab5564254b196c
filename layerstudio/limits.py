"""Size limits that protect against decompression bombs and runaway memory use.

A 2-core, 24 GiB machine must survive a hostile upload: a 50 kB PSD can declare a
300,000 x 300,000 canvas. Every reader checks declared sizes against :func:`max_pixels` *before*
decoding pixels. The limit is configurable per process with the ``LAYERSTUDIO_MAX_PIXELS``
environment variable or :func:`set_max_pixels`.
"""

from __future__ import annotations

import os

from .errors import ImageTooLargeError, InvalidInputError

__all__ = ["DEFAULT_MAX_PIXELS", "MAX_LAYERS", "check_size", "max_pixels", "set_max_pixels"]

DEFAULT_MAX_PIXELS = 64 * 1024 * 1024
"""64 megapixels (8192 x 8192): one such float32 RGBA canvas is 1 GiB."""

MAX_LAYERS = 1000
"""More layers than any editor handles comfortably; a file declaring more is rejected."""

_override: int | None = None


def max_pixels() -> int:
    """The current per-image pixel limit (width x height)."""
    if _override is not None:
        return _override
    raw = os.environ.get("LAYERSTUDIO_MAX_PIXELS")
    if raw:
        try:
            value = int(raw)
        except ValueError:
            raise InvalidInputError(
                f"LAYERSTUDIO_MAX_PIXELS must be a whole number, got {raw!r}") from None
        if value > 0:
            return value
    return DEFAULT_MAX_PIXELS


def set_max_pixels(limit: int | None) -> None:
    """Set the pixel limit for this process; ``None`` restores the default/environment value."""
    global _override
    if limit is not None and limit <= 0:
        raise ValueError("the pixel limit must be positive")
    _override = limit


def check_size(width: int, height: int, what: str = "image") -> None:
    """Raise a clear error if a ``width`` x ``height`` image is empty or above the limit."""
    if width <= 0 or height <= 0:
        raise InvalidInputError(f"{what} has an empty size {width}x{height}")
    limit = max_pixels()
    if width * height > limit:
        raise ImageTooLargeError(
            f"{what} is {width}x{height} = {width * height:,} pixels, above the limit of "
            f"{limit:,}; raise it with LAYERSTUDIO_MAX_PIXELS if you trust this file")
