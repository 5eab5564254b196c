"""Painting where Regenerate may change a layer.

The editor shows the selected layer on its canvas, enlarged like the preview so a 64 px layer
can be painted on; whatever the brush covers becomes the white part of the mask that
``Studio.edit_layer`` takes (outside it, the layer's pixels and alpha stay exactly as they
were). An empty painting means no mask: the whole layer may change.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from layerstudio.document import LayerStack
from layerstudio.errors import InvalidInputError
from layerstudio.preview import placed

from .views import on_checkerboard

__all__ = ["mask_canvas", "painted_mask"]


def mask_canvas(stack: LayerStack, index: int) -> Image.Image:
    """The background to paint on: layer ``index`` alone at its place, as the preview shows
    images (enlarged, over a checkerboard)."""
    return on_checkerboard(placed(stack, stack.layers[index]))


def painted_mask(value: Any, size: tuple[int, int]) -> np.ndarray | None:
    """The canvas-sized greyscale mask (255 = may change) from the editor's value (its paint
    layers' coverage, scaled from the painting to ``size``), or None if nothing is painted."""
    if not isinstance(value, dict):
        return None
    strokes = [np.asarray(layer) for layer in value.get("layers") or [] if layer is not None]
    strokes = [layer for layer in strokes if layer.ndim == 3 and layer.shape[2] == 4]
    if not strokes:
        return None
    shapes = {layer.shape[:2] for layer in strokes}
    if len(shapes) > 1:
        raise InvalidInputError("the painted mask's layers differ in size; clear and repaint")
    coverage = np.max([layer[..., 3] for layer in strokes], axis=0)
    if not coverage.any():
        return None
    grey = Image.fromarray(coverage).resize(size, Image.Resampling.BOX)
    return np.asarray(grey)
