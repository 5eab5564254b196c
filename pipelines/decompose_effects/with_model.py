"""The LayerDecomp model on a picture of any size.

The model works on a small square scene (64 px for ``tiny-layerdecomp``) in which the object
fills about :data:`OBJECT_SHARE` of the side, as in its training data. So the object's
surroundings are cropped to that proportion and scaled down; the object's mask comes from the
user's box or brush by GrabCut (the model was taught with tight masks); the model predicts the
clean background and the object with its effects there. Back at full size, only its
estimates are kept (the foreground's alpha and colour, the background under the object) and
the layers' colours are solved from the picture itself (:func:`.solve.solved_parts`), so the
texture under a shadow and the object's own detail keep the picture's resolution and the
layers re-composite to it exactly. The effect's colour is first read as what it does
(:func:`snapped_effect`): a black shadow, a white glow, or (a reflection) its own colour.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import torch
from scipy import ndimage

from layerstudio.errors import InvalidInputError

from .classical import MIN_EFFECT, WORK_SIDE, object_mask
from .layers import Extraction
from .solve import on_canvas, solved_parts

__all__ = ["OBJECT_SHARE", "extract_with_model", "scene_crop", "snapped_effect"]

OBJECT_SHARE = 0.4
"""The object's longest side as a share of the scene's side in the ``effects`` data."""


def scene_crop(region: np.ndarray, share: float = OBJECT_SHARE) -> tuple[slice, slice]:
    """A square around ``region`` whose side is its longest side / ``share``, centred on it and
    moved (then clipped) to lie inside the canvas."""
    ys, xs = np.nonzero(region)
    height, width = region.shape
    side = int(np.ceil(max(np.ptp(ys) + 1, np.ptp(xs) + 1) / share))

    def span(low: int, high: int, length: int) -> slice:
        size = min(side, length)
        start = int(np.clip((low + high + 1) // 2 - size // 2, 0, length - size))
        return slice(start, start + size)

    return span(ys.min(), ys.max(), height), span(xs.min(), xs.max(), width)


def _resized(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``array`` at ``size`` (w, h): area-averaged down, bilinear up."""
    if array.shape[1::-1] == size:
        return array.astype(np.float32)
    shrink = size[0] < array.shape[1]
    return cv2.resize(array.astype(np.float32), size,
                      interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _tight_mask(picture: np.ndarray, region: np.ndarray) -> np.ndarray:
    """GrabCut's object mask in the crop, computed at <= ``WORK_SIDE`` px."""
    height, width = region.shape
    scale = min(1.0, WORK_SIDE / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small_region = _resized(region, size) > 0.5
    if not small_region.any():
        raise InvalidInputError("the box or mask is too small to hold an object")
    mask = object_mask(_resized(picture, size), small_region)
    return _resized(mask, (width, height)) > 0.5


def snapped_effect(colour: np.ndarray, alpha: np.ndarray, under: np.ndarray, slack: float = 0.1
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The model's effect (colour, alpha over its background estimate ``under``) as black
    (a shadow) or white (a glow) where that is what it does, with the alpha that gives the
    same result: normal-mode colour C at alpha a over B equals black at ``a (1 - C / B)`` (a
    multiply) and white at ``a (C - B) / (1 - B)`` (a screen), averaged over the channels.
    A pixel counts as a shadow when its colour is darker than ``under`` and no channel is more
    than ``slack`` lighter (a glow likewise); the rest (a reflection: the object's colours)
    keeps its colour. Black and white effects go to multiply and screen layers exactly."""
    luma = lambda rgb: rgb @ np.array([0.2126, 0.7152, 0.0722], np.float32)  # noqa: E731
    step = colour - under
    darker = (luma(colour) < luma(under)) & (step.max(-1) <= slack)
    lighter = (luma(colour) > luma(under)) & (step.min(-1) >= -slack) & ~darker
    shade = 1 - np.clip(colour / np.maximum(under, 1e-3), 0, 1).mean(-1)
    light = np.clip(step / np.maximum(1 - under, 1e-3), 0, 1).mean(-1)
    colour = colour.copy()
    colour[darker], colour[lighter] = 0.0, 1.0
    alpha = np.where(darker, alpha * shade, np.where(lighter, alpha * light, alpha))
    return colour, alpha.astype(np.float32)


def extract_with_model(pipe: Any, rgb: np.ndarray, region: np.ndarray, *, resolution: int,
                       steps: int, seed: int, callbacks: dict[str, Any] | None = None,
                       ) -> Extraction:
    """Pull the object in ``region`` out of ``rgb`` (float RGB in [0, 1]) with its effects,
    using a :class:`~.pipeline.LayerDecompPipeline` ``pipe`` at ``resolution`` px with
    ``steps`` denoising steps from ``seed``; ``callbacks`` are passed to the pipeline (its
    step callback)."""
    if region is None or not region.any():
        raise InvalidInputError("extracting an object needs a mask or a box around it")
    crop = scene_crop(region)
    picture = rgb[crop].astype(np.float32)
    height, width = picture.shape[:2]
    mask = _tight_mask(picture, region[crop])
    scene = (resolution, resolution)
    output = pipe(_resized(picture, scene), _resized(mask, scene), num_inference_steps=steps,
                  output_type="np", generator=torch.Generator().manual_seed(seed),
                  **(callbacks or {}))
    estimate = output.extractions[0]
    foreground = estimate.foreground()
    alpha = np.clip(_resized(foreground[..., 3], (width, height)), 0, 1)
    colour = _resized(foreground[..., :3] * foreground[..., 3:], (width, height))
    colour = np.clip(colour / np.maximum(alpha, 1e-3)[..., None], 0, 1)
    hole = ndimage.binary_dilation(mask, iterations=max(1, round(max(height, width) / 128)))
    under = _resized(estimate.background, (width, height))
    colour, effect = snapped_effect(colour, alpha, under)
    effect = np.where(effect >= MIN_EFFECT, effect, 0)
    fill: Callable[[np.ndarray, np.ndarray], np.ndarray] = \
        lambda unshaded, hole: np.where(hole[..., None], under, unshaded)  # noqa: E731
    parts = solved_parts(picture, np.where(hole, alpha, 0), effect, colour, hole, fill)
    return on_canvas(rgb, crop, *parts)
