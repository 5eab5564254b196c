"""Size limits that protect against decompression bombs and runaway memory use.

A 2-core, 24 GiB machine must survive a hostile upload: a 50 kB PSD can declare a
300,000 x 300,000 canvas, and a 3 kB ZIP can name one 64-megapixel PNG forty times. So there are
two budgets, both checked *before* pixels are decoded or a canvas is allocated:

- per image (:func:`max_pixels`, ``LAYERSTUDIO_MAX_PIXELS``): any one canvas, layer, merge or
  render;
- per document (:func:`max_document_pixels`, ``LAYERSTUDIO_MAX_DOCUMENT_PIXELS``): the sum of
  the pixels of all layers of one document, charged by readers through a :class:`PixelBudget`
  as they go and enforced by :meth:`LayerStack.add` on every path that adds layers.

CLI, UI and batch share these functions, so one setting governs all three.
"""

from __future__ import annotations

import os

from .errors import ImageTooLargeError, InvalidInputError

__all__ = ["DEFAULT_MAX_DOCUMENT_PIXELS", "DEFAULT_MAX_PIXELS", "MAX_GROUP_DEPTH", "MAX_LAYERS",
           "MAX_OFFSET", "PixelBudget", "check_offset", "check_size", "max_document_pixels",
           "max_pixels", "set_max_pixels"]

DEFAULT_MAX_PIXELS = 64 * 1024 * 1024
"""64 megapixels (8192 x 8192): one such float32 RGBA canvas is 1 GiB."""

DEFAULT_MAX_DOCUMENT_PIXELS = 4 * DEFAULT_MAX_PIXELS
"""256 megapixels over all layers of one document: 1 GiB as 8-bit RGBA (a 4K document with 30
full-canvas layers fits; layers are cropped to their content, so most documents use far less)."""

MAX_LAYERS = 1000
"""More layers than any editor handles comfortably; a file declaring more is rejected."""

MAX_GROUP_DEPTH = 32
"""Deepest group nesting; Photoshop itself stops at 10."""

MAX_OFFSET = 1 << 30
"""Largest |x| or |y| of a layer's corner: every format we write stores it in 32 bits."""

_override: int | None = None


def _from_environment(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw:
        try:
            value = int(raw)
        except ValueError:
            raise InvalidInputError(f"{name} must be a whole number, got {raw!r}") from None
        if value > 0:
            return value
    return default


def max_pixels() -> int:
    """The current per-image pixel limit (width x height)."""
    if _override is not None:
        return _override
    return _from_environment("LAYERSTUDIO_MAX_PIXELS", DEFAULT_MAX_PIXELS)


def max_document_pixels() -> int:
    """The current limit on the summed pixels of one document's layers (at least one image's
    worth, so a per-image limit raised by the user is never undercut)."""
    default = max(DEFAULT_MAX_DOCUMENT_PIXELS, 4 * max_pixels())
    return max(_from_environment("LAYERSTUDIO_MAX_DOCUMENT_PIXELS", default), max_pixels())


def set_max_pixels(limit: int | None) -> None:
    """Set the pixel limit for this process; ``None`` restores the default/environment value."""
    global _override
    if limit is not None and limit <= 0:
        raise ValueError("the pixel limit must be positive")
    _override = limit


def number(value: int) -> str:
    """An integer for a message: with thousands separators, or in short scientific notation
    when a hostile file made it absurdly long."""
    return f"{value:,}" if abs(value) < 10**15 else f"{float(value):.3g}"


def check_size(width: int, height: int, what: str = "image") -> None:
    """Raise a clear error if a ``width`` x ``height`` image is empty or above the limit."""
    if width <= 0 or height <= 0:
        raise InvalidInputError(f"{what} has an empty size {number(width)}x{number(height)}")
    limit = max_pixels()
    if width * height > limit:
        raise ImageTooLargeError(
            f"{what} is {number(width)}x{number(height)} = {number(width * height)} pixels, "
            f"above the limit of "
            f"{limit:,}; raise it with LAYERSTUDIO_MAX_PIXELS if you trust this file")


def check_offset(x: int, y: int, what: str) -> None:
    """Raise a clear error if a layer corner lies further out than any format can store."""
    if not (-MAX_OFFSET <= x <= MAX_OFFSET and -MAX_OFFSET <= y <= MAX_OFFSET):
        raise InvalidInputError(f"{what}: offset ({number(x)}, {number(y)}) is beyond "
                                f"+/-{MAX_OFFSET:,} pixels")


class PixelBudget:
    """The pixels one document may still decode; readers charge each layer before decoding.

    Sizes are the declared ones (header fields), so a bomb is refused before it costs memory.
    """

    def __init__(self, what: str, limit: int | None = None) -> None:
        self.what = what
        self.limit = max_document_pixels() if limit is None else limit
        self.used = 0

    def charge(self, width: int, height: int, what: str = "layer") -> None:
        """Count a ``width`` x ``height`` image, or raise before it is decoded (an empty
        layer, 0 pixels wide or high, costs nothing)."""
        if width == 0 or height == 0:
            return
        check_size(width, height, what=what)
        self.used += width * height
        if self.used > self.limit:
            raise ImageTooLargeError(
                f"{self.what}: its layers add up to more than {self.limit:,} pixels (at "
                f"{what}); raise LAYERSTUDIO_MAX_DOCUMENT_PIXELS if you trust this file")
