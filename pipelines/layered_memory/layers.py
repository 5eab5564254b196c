"""An editing memory as a layered document: the background, then one RGBA layer per live edit.

Within the region an edit repainted (grown by a few pixels for the soft edge the late steps
blend) its layer is opaque where the edited picture visibly differs both from the model's
picture before the edit (so what the VAE alone changes, e.g. a light background it gives back
whiter, is not taken for the edit) and from the document below, faint where it barely does,
and without specks, and its colour is solved so
that it takes the document below it exactly to the edited picture
(:func:`layerstudio.unblend.over_layer`); outside that region it is empty, so the document
keeps every earlier pixel, the given background included, exactly.

One exception: when the edit painted one flat colour all along the inside edge of its region
that the picture before it did not have there (the shipped tiny backbones learned objects on
white and paint a white card around them), that colour is the edit's backdrop, not part of
the object: pixels close to it stay out of the layer and the document below shows through.
Removing an edit drops its layer; what it covered is whatever lay below it.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from layerstudio.document import Layer, LayerStack
from layerstudio.unblend import over_layer

from .memory import EditMemory, MemoryStep

__all__ = ["memory_stack", "solved_layer"]

VISIBLE_CHANGE = (0.03, 0.10)
"""A largest-channel change below the first value adds no opacity of its own, above the second
it makes the layer opaque (the least alpha that explains it applies either way)."""
ALPHA_FLOOR = 0.02
"""Less opacity than this (from the change alone) leaves a pixel out of the layer."""
SPECK = 0.002
"""Pieces of a layer smaller than this share of the canvas are noise, not the object."""
BACKDROP_SPREAD = 0.06
"""The most a region's inside edge may vary (median absolute deviation, per channel) for its
median colour to count as the edit's flat backdrop."""


def _grown(region: torch.Tensor, size: tuple[int, int], reach: int | None = None
           ) -> np.ndarray:
    """The region (H, W) as a boolean mask of the picture's size, grown by ``reach`` pixels
    (default 1/32 of the side, at least 2)."""
    mask = region.float().numpy()
    if mask.shape != size:
        resized = torch.nn.functional.interpolate(torch.from_numpy(mask)[None, None],
                                                  size=size, mode="bilinear")
        mask = resized[0, 0].numpy()
    reach = max(2, round(max(size) / 32)) if reach is None else reach
    inside = mask > 0.05
    return ndimage.binary_dilation(inside, iterations=reach) if reach else inside


def _backdrop(picture: np.ndarray, below: np.ndarray, inside: np.ndarray
              ) -> np.ndarray | None:
    """The flat colour the edit painted all along the inside edge of its region when the
    document below does not have it there (a backbone trained on objects on white paints a
    white card around the object), or None."""
    ring = inside & ~ndimage.binary_erosion(inside, iterations=2)
    if ring.sum() < 8:
        return None
    colours = picture[ring]
    backdrop = np.median(colours, axis=0)
    spread = np.median(np.abs(colours - backdrop), axis=0).max()
    if spread > BACKDROP_SPREAD or np.abs(np.median(below[ring], axis=0) - backdrop).max() \
            < VISIBLE_CHANGE[1]:
        return None
    return backdrop


def _visible(change: np.ndarray) -> np.ndarray:
    low, high = VISIBLE_CHANGE
    return np.clip((change - low) / (high - low), 0, 1)


def solved_layer(picture: np.ndarray, previous: np.ndarray, below: np.ndarray,
               region: torch.Tensor) -> np.ndarray:
    """Straight float RGBA (H, W, 4) of the layer for an edit that turned ``previous`` into
    ``picture`` (both as the model decoded them) within ``region``, solved over ``below``
    (the document under the layer): see the module docstring. Float RGB arrays."""
    inside = _grown(region, picture.shape[:2])
    alpha = np.minimum(_visible(np.abs(picture - previous).max(-1)),
                       _visible(np.abs(picture - below).max(-1)))
    backdrop = _backdrop(picture, below, _grown(region, picture.shape[:2], reach=0))
    if backdrop is not None:
        alpha = np.minimum(alpha, _visible(np.abs(picture - backdrop).max(-1)))
    kept = _without_specks(inside & (alpha > ALPHA_FLOOR))
    return over_layer(picture, below, np.where(kept, alpha, 0))


def _without_specks(mask: np.ndarray) -> np.ndarray:
    """``mask`` without connected pieces smaller than :data:`SPECK` of the picture's area."""
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return (sizes >= SPECK * mask.size)[labels]


def _float(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) / 255


def _as_layer(rgba: np.ndarray, name: str, kind: str, provenance: dict) -> Layer:
    pixels = np.rint(rgba * 255).clip(0, 255).astype(np.uint8)
    layer = Layer(name, pixels, kind=kind, provenance=provenance)
    return layer if layer.is_empty else layer.cropped_to_content()


def _provenance(step: MemoryStep, number: int) -> dict:
    return {"pipeline": "LayeredMemoryEditPipeline", "edit": number,
            "operation": step.operation, "prompt": step.prompt}


def memory_stack(memory: EditMemory, metadata: dict | None = None) -> LayerStack:
    """The document of ``memory``'s applied steps (module docstring); layers are named after
    their prompts and record their edit number in ``provenance["edit"]``."""
    background = memory.steps[0]
    shown = background.image if background.source is None else background.source
    height, width = shown.shape[:2]
    stack = LayerStack(width, height, [_as_layer(
        np.concatenate([_float(shown), np.ones((height, width, 1), np.float32)], -1),
        "background", "background", _provenance(background, 0))],
        metadata=dict(metadata or {}))
    numbers: list[int] = []  # the edit number of each layer above the background
    for number, step in enumerate(memory.applied[1:], start=1):
        if step.operation == "remove":
            index = numbers.index(step.layer)
            stack.remove(index + 1)
            numbers.pop(index)
            continue
        if step.operation == "add":
            position = len(numbers)
            numbers.append(number)
        else:
            position = numbers.index(step.layer)
        below = LayerStack(width, height, stack.layers[:position + 1]).composite_array()[..., :3]
        previous = memory.steps[number - 1].image
        rgba = solved_layer(_float(step.image), _float(previous), below, step.region)
        layer = _as_layer(rgba, step.prompt or f"edit {number}", "object",
                          _provenance(step, numbers[position]))
        if step.operation == "add":
            stack.add(layer)
        else:
            stack.layers[position + 1] = layer
    stack.metadata["edits"] = memory.history()[:memory.cursor]
    return stack
