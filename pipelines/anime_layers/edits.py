"""Edits that use the production structure (issue 21): what illustrators split a picture
for. Each takes a stack with the layer kinds of :data:`.structure.KINDS` (any anime method's
output, or such a document reopened from PSD) and returns a new stack; the other layers are
untouched, so the composite updates as in an editor: recolour a flat region and its shadow
and highlight follow it (multiply and screen are relative to what lies below).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import cv2
import numpy as np
from scipy import ndimage

from layerstudio.blend import BlendMode
from layerstudio.document import LayerStack
from layerstudio.errors import InvalidInputError

__all__ = ["flat_region", "recolour_region", "restyle_line_art", "restyle_shadow"]

Colour = Sequence[float] | str


def recolour_region(stack: LayerStack, x: int, y: int, colour: Colour,
                    tolerance: float = 0.02) -> LayerStack:
    """Paint the flat-colour region under pixel (x, y) in ``colour`` (RGB floats in [0, 1],
    or "#rrggbb"): the connected pixels of the flat layer within ``tolerance`` of the clicked
    colour."""
    index, pixels = _layer_of(stack, "flat")
    pixels[_region_at(pixels, x, y, tolerance), :3] = _rgb(colour)
    return _replaced(stack, index, pixels)


def flat_region(stack: LayerStack, x: int, y: int, tolerance: float = 0.02) -> np.ndarray:
    """Canvas-sized boolean mask of the flat-colour region holding pixel (x, y)."""
    return _region_at(_layer_of(stack, "flat")[1], x, y, tolerance)


def _region_at(pixels: np.ndarray, x: int, y: int, tolerance: float) -> np.ndarray:
    """The connected pixels of the canvas-sized flat layer ``pixels`` within ``tolerance``
    of pixel (x, y)'s colour."""
    height, width = pixels.shape[:2]
    if not (0 <= x < width and 0 <= y < height):
        raise InvalidInputError(f"({x}, {y}) is outside the {width} x {height} canvas")
    if pixels[y, x, 3] <= 0:
        raise InvalidInputError(f"the flat colour layer is empty at ({x}, {y})")
    same = np.abs(pixels[..., :3] - pixels[y, x, :3]).max(-1) <= tolerance
    labels, _ = ndimage.label(same & (pixels[..., 3] > 0))
    return labels == labels[y, x]


def restyle_shadow(stack: LayerStack, colour: Colour | None = None,
                   strength: float | None = None) -> LayerStack:
    """The shadow layer in one new ``colour`` (its shape and softness kept) and/or at
    ``strength`` (the layer's opacity, 0 to 1)."""
    index, pixels = _layer_of(stack, "shadow")
    if colour is not None:
        pixels[pixels[..., 3] > 0, :3] = _rgb(colour)
    edited = _replaced(stack, index, pixels)
    if strength is not None:
        if not 0 <= float(strength) <= 1:
            raise InvalidInputError(f"shadow strength must lie in [0, 1], got {strength!r}")
        edited.layers[index].opacity = float(strength)
    return edited


def restyle_line_art(stack: LayerStack, colour: Colour | None = None, thicken: int = 0
                     ) -> LayerStack:
    """The line art recoloured (``colour``) and/or ``thicken`` px bolder on every side (its
    alpha dilated by a disc; new pixels take the colour of the nearest stroke). Up to 32 px."""
    if not 0 <= int(thicken) <= 32:
        raise InvalidInputError(f"thicken takes 0 to 32 px, got {thicken!r}")
    index, pixels = _layer_of(stack, "lineart")
    if thicken:
        radius = int(thicken)
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        inked = pixels[..., 3] > 0.5
        if inked.any():
            rows, cols = ndimage.distance_transform_edt(~inked, return_distances=False,
                                                        return_indices=True)
            grown = cv2.dilate(pixels[..., 3], disc)
            new = grown > pixels[..., 3]
            pixels[new, :3] = pixels[rows[new], cols[new], :3]
            pixels[..., 3] = grown
    if colour is not None:
        pixels[pixels[..., 3] > 0, :3] = _rgb(colour)
    return _replaced(stack, index, pixels)


def _layer_of(stack: LayerStack, kind: str) -> tuple[int, np.ndarray]:
    """(index, canvas-sized straight float RGBA copy) of the top layer of ``kind``."""
    for index in range(len(stack.layers) - 1, -1, -1):
        layer = stack.layers[index]
        if layer.kind == kind and layer.adjustment is None:
            alone = LayerStack(stack.width, stack.height,
                               [layer.copy(blend_mode=BlendMode.NORMAL, opacity=1.0,
                                           visible=True, group=())])
            return index, alone.composite_array().copy()
    raise InvalidInputError(f"this document has no {kind} layer (decompose the picture "
                            "with an anime method first)")


def _replaced(stack: LayerStack, index: int, pixels: np.ndarray) -> LayerStack:
    edited = stack.copy()
    old = edited.layers[index]
    edited.layers[index] = old.copy(pixels=np.clip(pixels, 0, 1).astype(np.float32),
                                    offset=(0, 0))
    return edited


def _rgb(colour: Colour) -> np.ndarray:
    """RGB floats from (r, g, b) in [0, 1], "#rrggbb" or CSS "rgb(r, g, b)" / "rgba(...)"
    (what colour pickers send)."""
    if isinstance(colour, str):
        text = colour.strip().lower()
        css = re.fullmatch(r"rgba?\(\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)\s*"
                           r"(?:,\s*[\d.]+\s*)?\)", text)
        if css:
            values = np.array([float(v) for v in css.groups()], np.float32) / 255
            if (values <= 1).all():
                return values
        elif re.fullmatch(r"#?[0-9a-f]{6}", text):
            text = text.lstrip("#")
            return np.array([int(text[i:i + 2], 16) / 255 for i in (0, 2, 4)], np.float32)
        raise InvalidInputError(f"a colour is #rrggbb or rgb(r, g, b), got {colour!r}")
    values = np.asarray(colour, np.float32)
    if values.shape != (3,) or not np.isfinite(values).all() or \
            (values < 0).any() or (values > 1).any():
        raise InvalidInputError(f"a colour is three numbers in [0, 1], got {colour!r}")
    return values
