"""Upscaling documents: every layer of a stack through Real-ESRGAN's compact network
(alpha-aware, tiled; see :mod:`layerstudio.pipelines.realesrgan.upscale`), offsets and canvas
scaled with it, so the document looks the same, only sharper and larger.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .compositing import to_float_rgba
from .document import LayerStack
from .errors import InvalidInputError
from .imaging import like_dtype
from .limits import check_size

__all__ = ["UPSCALER", "upscale_stack"]

UPSCALER = "realesr-animevideov3"
"""The shipped upscaler preset."""


def upscale_stack(stack: LayerStack, scale: int = 4, model: Any = None,
                  layer: int | None = None,
                  on_layer: Callable[[int, int], None] | None = None) -> LayerStack:
    """A copy of ``stack`` ``scale`` (2 or 4) times larger: every pixel layer upscaled (only
    layer ``layer`` when given, the others Lanczos-scaled so the document stays aligned),
    offsets and canvas multiplied, adjustment layers and groups kept. ``model``: a loaded
    :class:`~layerstudio.pipelines.realesrgan.CompactUpscaler` (default: the shipped one).
    ``on_layer(done, total)`` reports progress."""
    from layerstudio.pipelines.realesrgan.upscale import SCALES, upscale_rgba

    if scale not in SCALES:
        raise InvalidInputError(f"scale must be 2 or 4, got {scale!r}")
    check_size(stack.width * scale, stack.height * scale, what=f"the picture upscaled {scale}x")
    if model is None:
        from .presets import load_preset

        model = load_preset(UPSCALER)
    result = stack.copy()
    result.width, result.height = stack.width * scale, stack.height * scale
    for index, original in enumerate(stack.layers):
        x, y = original.offset
        if original.adjustment is not None or original.pixels.size == 0:
            pixels = original.pixels
        elif layer is None or index == layer:
            pixels = like_dtype(upscale_rgba(model, to_float_rgba(original.pixels), scale),
                                original.pixels)
        else:
            pixels = original.scaled(scale).pixels
        result.layers[index] = original.copy(pixels=pixels, offset=(x * scale, y * scale))
        if on_layer is not None:
            on_layer(index + 1, len(stack.layers))
    result.metadata["upscaled"] = {"scale": scale, "model": UPSCALER}
    return result
