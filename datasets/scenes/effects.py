"""`effects`: an object whose visual effects (drop, cast and contact shadows, floor
reflection, glow) belong to its foreground layer, as LayerDecomp expects.

The stack is [background, foreground]; the foreground is the effect with the object over it,
so compositing it on the clean background gives the input image exactly. ``extras`` holds the
clean background, the object's own mask (without effects), the object alone and the effect
alone, all canvas-sized.
"""

from __future__ import annotations

import cv2
import numpy as np

from layerstudio.document import Layer, LayerStack

from ..art import random_art
from ..assets.backgrounds import make_background
from .common import blur, box_of, place, to_u8

__all__ = ["EFFECTS", "build"]

EFFECTS = ("drop_shadow", "cast_shadow", "contact_shadow", "reflection", "glow")


def _on_canvas(pixels: np.ndarray, offset: tuple[int, int], size: int) -> np.ndarray:
    """Straight RGBA uint8 art -> float32 canvas-sized straight RGBA."""
    canvas = np.zeros((size, size, 4), np.float32)
    x, y = offset
    h, w = pixels.shape[:2]
    canvas[y:y + h, x:x + w] = pixels.astype(np.float32) / 255.0
    return canvas


def _effect(kind: str, obj: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """The effect alone as straight float RGBA, drawn from the object's canvas RGBA."""
    alpha = obj[..., 3]
    ys, xs = np.nonzero(alpha > 0.05)
    bottom, left, right = int(ys.max()), int(xs.min()), int(xs.max())
    colour = np.zeros(3, np.float32)
    if kind == "drop_shadow":
        dx, dy = (int(v) for v in rng.integers(2, max(3, size // 16), 2))
        moved = cv2.warpAffine(alpha, np.float32([[1, 0, dx], [0, 1, dy]]), (size, size))
        shade = blur(moved, rng.uniform(1.0, 3.0)) * rng.uniform(0.4, 0.7)
    elif kind == "cast_shadow":
        shear = rng.uniform(-1.2, 1.2)
        squash = rng.uniform(0.3, 0.6)
        # Pin the object's base line and lay its silhouette on the floor behind it.
        matrix = np.float32([[1, -shear * squash, shear * squash * bottom],
                             [0, squash, (1 - squash) * bottom]])
        laid = cv2.warpAffine(alpha, matrix, (size, size))
        distance = np.clip((bottom - np.arange(size, dtype=np.float32)) / max(1, bottom), 0, 1)
        fade = (1.0 - distance)[:, None] ** 0.7
        shade = np.minimum(blur(laid, 1.5) * fade * rng.uniform(0.45, 0.7), 1.0)
    elif kind == "contact_shadow":
        ellipse = np.zeros((size, size), np.float32)
        centre = ((left + right) // 2, min(size - 1, bottom))
        axes = (max(2, (right - left) // 2), max(1, size // 32))
        cv2.ellipse(ellipse, centre, axes, 0, 0, 360, 1.0, -1)
        shade = blur(ellipse, max(1.0, size / 64)) * rng.uniform(0.5, 0.8)
    elif kind == "reflection":
        flipped = np.zeros_like(obj)
        top = int(ys.min())
        height = bottom - top + 1
        span = min(height, size - bottom - 1)
        if span > 0:
            flipped[bottom + 1:bottom + 1 + span] = obj[bottom - span + 1:bottom + 1][::-1]
        fade = np.clip(1.0 - (np.arange(size) - bottom) / max(1, height * 0.8), 0, 1)[:, None]
        reflection = flipped.copy()
        reflection[..., 3] = blur(flipped[..., 3], 0.8) * fade * rng.uniform(0.25, 0.45)
        return reflection
    elif kind == "glow":
        grown = cv2.dilate(alpha, np.ones((3, 3), np.uint8), iterations=max(1, size // 48))
        shade = np.minimum(blur(grown, max(1.5, size / 40)) * 1.2, 1.0) * rng.uniform(0.6, 0.9)
        colour = np.array([1.0, rng.uniform(0.8, 1.0), rng.uniform(0.3, 0.8)], np.float32)
    else:
        raise ValueError(f"unknown effect {kind!r}; choose from {EFFECTS}")
    effect = np.zeros((size, size, 4), np.float32)
    effect[..., :3] = colour
    effect[..., 3] = np.clip(shade, 0.0, 1.0)
    return effect


def _over(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """Straight float RGBA ``top`` over ``bottom`` (normal mode), straight result."""
    at, ab = top[..., 3:4], bottom[..., 3:4]
    out_a = at + ab * (1 - at)
    colour = top[..., :3] * at + bottom[..., :3] * ab * (1 - at)
    out = np.zeros_like(top)
    np.divide(colour, out_a, out=out[..., :3], where=out_a > 0)
    out[..., 3:4] = out_a
    return out


def build(rng: np.random.Generator, size: int, split: str, *,
          effect: str | None = None) -> dict:
    """One object with one effect (random unless ``effect`` names it)."""
    kind = effect or str(rng.choice(EFFECTS))
    background, bg_caption = make_background(rng, (size, size))
    art = random_art(rng, int(size * rng.uniform(0.3, 0.5)), split, weights=(0.8, 0.2, 0.0))
    margin = size // 8
    x, y = place(rng, art.pixels.shape[:2], (size, size), margin=margin)
    obj = _on_canvas(art.pixels, (x, y), size)
    eff = _effect(kind, obj, rng, size)
    # Quantise first, so the stored foreground is exactly what the composite is built from.
    foreground = to_u8(_over(obj, eff))
    stack = LayerStack(size, size)
    stack.add(Layer("background", background, kind="background",
                    provenance={"caption": bg_caption}))
    stack.add(Layer("foreground", foreground, kind="object",
                    provenance={"caption": art.caption, "source": art.source,
                                "effect": kind}).cropped_to_content())
    words = kind.replace("_", " ")
    return {"stack": stack, "caption": f"{art.caption} with a {words} on {bg_caption}",
            "boxes": [(0, 0, size, size), box_of(stack.layers[1])],
            "extras": {"background": background[..., :3].copy(),
                       "mask": to_u8(obj[..., 3]), "object": to_u8(obj),
                       "effect": to_u8(eff)},
            "meta": {"effect": kind, "source": art.source}}
