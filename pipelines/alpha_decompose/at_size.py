"""The DiffDecompose model on a picture of any size.

The model sees the whole picture at its own resolution (64 px for ``tiny-diffdecompose``: a
see-through layer spans the picture, so nothing is cropped); its layer is scaled back up
(premultiplied Lanczos), and the background is then solved from the full-size picture under it
by the exact inverse of the blend (:func:`.blends.split`): the background keeps the picture's
detail, and only where the layer hides it completely does the model's own background (scaled
up) stand in; the two re-composite to the picture.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch

from layerstudio.document import LayerStack
from layerstudio.imaging import resized_straight

from .blends import split
from .pipeline import see_through_stack

__all__ = ["decompose_see_through"]


def decompose_see_through(pipe: Any, rgb: np.ndarray, blend: str, *, resolution: int,
                          steps: int, seed: int, prompt: str | None = None,
                          callbacks: dict[str, Any] | None = None) -> LayerStack:
    """[background, see-through layer] of ``rgb`` (float RGB in [0, 1]) by an
    :class:`~.pipeline.AlphaDecomposePipeline` ``pipe`` at ``resolution`` px; ``blend`` a type
    or "auto"."""
    height, width = rgb.shape[:2]
    scene = (resolution, resolution)
    small = cv2.resize(rgb.astype(np.float32), scene, interpolation=cv2.INTER_AREA) \
        if (width, height) != scene else rgb.astype(np.float32)
    out = pipe(small, blend, prompt, num_inference_steps=steps, output_type="np",
               generator=torch.Generator().manual_seed(seed), **(callbacks or {}))
    info = dict(out.layers[0].metadata)
    chosen = info["blend"]
    layer = np.clip(resized_straight(np.asarray(out.images[0], np.float32), (width, height)),
                    0, 1)
    model = cv2.resize(out.backgrounds[0], (width, height), interpolation=cv2.INTER_LINEAR) \
        if (width, height) != scene else out.backgrounds[0]
    stack = see_through_stack(*split(rgb.astype(np.float32), layer, chosen, model), chosen)
    stack.metadata.update({key: info[key] for key in ("blend", "blend_errors", "blend_rule")
                           if key in info})
    return stack
