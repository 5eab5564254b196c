"""`transparent`: single RGBA assets with soft edges and semi-transparency, the training pairs
for latent transparency (LayerDiffuse). The colour under fully transparent pixels is left as
rendered; the pipeline pads it (pad_rgb) before encoding."""

from __future__ import annotations

import numpy as np

from layerstudio.document import Layer, LayerStack

from ..art import random_art, restyle
from .common import blur, box_of, place, to_u8

__all__ = ["STYLES", "build"]

STYLES = ("solid", "soft-edged", "semi-transparent", "faded")


def build(rng: np.random.Generator, size: int, split: str, *, style: str | None = None,
          pool: int | None = None) -> dict:
    """One asset; ``pool`` limits emoji to a fixed subset of the split (see emoji_pool)."""
    style = style or str(rng.choice(STYLES))
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    art = random_art(rng, int(size * rng.uniform(0.55, 0.9)), split, weights=(0.75, 0.2, 0.05),
                     pool=pool)
    pixels = art.pixels.astype(np.float32) / 255.0
    pad = max(2, size // 16)  # room for a soft edge to spread
    padded = np.zeros((pixels.shape[0] + 2 * pad, pixels.shape[1] + 2 * pad, 4), np.float32)
    padded[pad:-pad, pad:-pad] = pixels
    if style == "soft-edged":
        padded[..., 3] = blur(padded[..., 3], rng.uniform(1.0, size / 40 + 1.0))
    elif style == "semi-transparent":
        padded[..., 3] *= rng.uniform(0.35, 0.75)
    elif style == "faded":
        ramp = np.linspace(1.0, rng.uniform(0.0, 0.3), padded.shape[0], dtype=np.float32)
        padded[..., 3] *= ramp[:, None] if rng.random() < 0.5 else ramp[::-1, None]
    pixels = to_u8(np.clip(padded, 0, 1))
    pixels = pixels[: size, : size]
    x, y = place(rng, pixels.shape[:2], (size, size))
    stack = LayerStack(size, size)
    stack.add(Layer("object", pixels, offset=(x, y), kind="object",
                    provenance={"caption": art.caption, "source": art.source, "style": style}
                    ).cropped_to_content())
    caption = art.caption if style == "solid" else restyle(art.caption, style)
    return {"stack": stack, "caption": caption,
            "boxes": [box_of(stack.layers[0])],
            "meta": {"style": style, "source": art.source}}
