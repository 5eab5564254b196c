"""`anime`: illustration production layers from OpenMoji art: line art, flat colour, cel
shadow and highlight, over paper.

The line art and flat colour come from the emoji's own vectors (see assets/emoji.py). The
shadow is the part of the colour region that a copy of it shifted towards the light does not
cover; the highlight is the part a copy shifted away from the light does not cover, thinned.
Two recombination conventions:

- ``artist`` (default): shadow in multiply with a cool tone, highlight in screen;
- ``normal``: both as plain semi-transparent layers blended normally.

Both are clipped to the colour region and composited by the engine, so the composite equals
the layers exactly. DESIGN.md 3.6 gives the inverses the decomposition pipeline uses.
"""

from __future__ import annotations

import cv2
import numpy as np

from layerstudio.blend import BlendMode
from layerstudio.document import Layer, LayerStack

from ..art import with_article
from ..assets.emoji import emoji_for_split, render_emoji
from .common import box_of, place, to_u8

__all__ = ["CONVENTIONS", "build"]

CONVENTIONS = ("artist", "normal")


def _shifted(mask: np.ndarray, dx: int, dy: int) -> np.ndarray:
    return cv2.warpAffine(mask, np.float32([[1, 0, dx], [0, 1, dy]]),
                          (mask.shape[1], mask.shape[0]))


def build(rng: np.random.Generator, size: int, split: str, *,
          convention: str = "artist") -> dict:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    pool = emoji_for_split(split)
    art_size = int(size * rng.uniform(0.6, 0.9))
    for _ in range(20):  # skip emoji drawn with black fills: their "line art" is not lines
        emoji = pool[int(rng.integers(len(pool)))]
        line = render_emoji(emoji, art_size, "line")
        flat = render_emoji(emoji, art_size, "color")
        if line[..., 3].sum() < 0.6 * flat[..., 3].sum():
            break
    x, y = place(rng, flat.shape[:2], (size, size))

    region = flat[..., 3].astype(np.float32) / 255.0
    angle = rng.uniform(0, 2 * np.pi)
    step = max(1, art_size // 10)
    lx, ly = round(float(np.cos(angle)) * step), round(float(np.sin(angle)) * step)
    shade = np.clip(region - _shifted(region, lx, ly), 0, 1)        # side away from the light
    light = np.clip(region - _shifted(region, -lx, -ly), 0, 1)      # side facing the light
    light = cv2.erode(light, np.ones((2, 2), np.uint8)) * rng.uniform(0.6, 0.9)

    h, w = region.shape
    shadow = np.zeros((h, w, 4), np.float32)
    highlight = np.zeros((h, w, 4), np.float32)
    if convention == "artist":
        shadow[..., :3] = np.array([0.62, 0.58, 0.8], np.float32) * rng.uniform(0.9, 1.1)
        shadow[..., 3] = shade
        highlight[..., :3] = np.array([1.0, 0.95, 0.8], np.float32) * 0.7
        highlight[..., 3] = light
        modes = (BlendMode.MULTIPLY, BlendMode.SCREEN)
    else:
        shadow[..., :3] = np.array([0.2, 0.15, 0.35], np.float32)
        shadow[..., 3] = shade * 0.4
        highlight[..., :3] = 1.0
        highlight[..., 3] = light * 0.5
        modes = (BlendMode.NORMAL, BlendMode.NORMAL)

    paper = np.full((size, size, 4), 255, np.uint8)
    paper[..., :3] = np.clip(rng.normal(246, 4, 3), 225, 255).astype(np.uint8)
    stack = LayerStack(size, size)
    stack.add(Layer("paper", paper, kind="background"))
    for name, pixels, mode, kind in (
            ("flat colour", flat, BlendMode.NORMAL, "flat"),
            ("shadow", to_u8(np.clip(shadow, 0, 1)), modes[0], "shadow"),
            ("highlight", to_u8(np.clip(highlight, 0, 1)), modes[1], "highlight"),
            ("line art", line, BlendMode.NORMAL, "lineart")):
        stack.add(Layer(name, pixels, offset=(x, y), blend_mode=mode, kind=kind,
                        provenance={"caption": emoji.caption, "source": f"emoji:{emoji.id}"}))
    return {"stack": stack, "caption": f"an illustration of {with_article(emoji.caption)}",
            "boxes": [(0, 0, size, size)] + [box_of(layer) for layer in stack.layers[1:]],
            "meta": {"convention": convention, "source": f"emoji:{emoji.id}"}}
