"""`objects`: a background plus 1..N object layers in occlusion order, with boxes (ART-style
layouts, up to 50 layers), per-layer captions and a global caption."""

from __future__ import annotations

import numpy as np

from layerstudio.document import Layer, LayerStack

from ..art import random_art
from ..assets.backgrounds import make_background
from .common import box_of, join_captions, place

__all__ = ["MAX_LAYERS", "build"]

MAX_LAYERS = 50


def build(rng: np.random.Generator, size: int, split: str, *,
          min_objects: int = 1, max_objects: int = 6, pool: int | None = None) -> dict:
    """Build the scene; ``max_objects`` may go up to 50 (objects then get smaller); ``pool``
    limits emoji to a fixed subset of the split (see emoji_pool)."""
    if not 1 <= min_objects <= max_objects <= MAX_LAYERS:
        raise ValueError(f"need 1 <= min_objects <= max_objects <= {MAX_LAYERS}")
    count = int(rng.integers(min_objects, max_objects + 1))
    stack = LayerStack(size, size)
    background, bg_caption = make_background(rng, (size, size))
    stack.add(Layer("background", background, kind="background",
                    provenance={"caption": bg_caption}))
    captions = []
    shrink = max(1.0, np.sqrt(count / 3))
    for i in range(count):
        side = int(size * rng.uniform(0.2, 0.5) / shrink)
        art = random_art(rng, max(6, side), split, pool=pool)
        x, y = place(rng, art.pixels.shape[:2], (size, size))
        stack.add(Layer(f"object {i + 1}", art.pixels, offset=(x, y), kind="object",
                        provenance={"caption": art.caption, "source": art.source}))
        captions.append(art.caption)
    caption = f"{join_captions(captions)} on {bg_caption}"
    return {"stack": stack, "caption": caption,
            "boxes": [(0, 0, size, size)] + [box_of(layer) for layer in stack.layers[1:]],
            "meta": {"objects": count}}

