"""`design`: flat graphic designs (a poster, a slide, a sticker sheet) with exact layers.

A plain or gradient background, then 1..N elements: shapes, words, emoji and labels (a rounded
plate with a word on it, as two layers: the plate, then the text). This is the kind of picture
LayerD-style decomposition is for; its ground truth scores the decompose methods.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from layerstudio.document import Layer, LayerStack

from ..art import WORDS, random_emoji_art
from ..assets.backgrounds import make_background
from ..assets.shapes import COLOURS, SHAPES, render_glyph, render_shape
from .common import box_of, join_captions, place

__all__ = ["ELEMENTS", "build"]

ELEMENTS = ("shape", "text", "emoji", "label")


def _plate(size: tuple[int, int], colour: tuple[int, int, int]) -> np.ndarray:
    """A rounded rectangle of ``size`` (w, h), anti-aliased, straight RGBA uint8."""
    width, height = size
    scale = 4
    mask = Image.new("L", (width * scale, height * scale))
    ImageDraw.Draw(mask).rounded_rectangle((0, 0, width * scale - 1, height * scale - 1),
                                           radius=min(width, height) * scale // 4, fill=255)
    alpha = np.asarray(mask.resize((width, height), Image.Resampling.BOX))
    rgb = np.broadcast_to(np.array(colour, np.uint8), (height, width, 3))
    return np.dstack([rgb, alpha]).astype(np.uint8)


def _colours(rng: np.random.Generator, count: int) -> list[tuple[str, tuple[int, int, int]]]:
    names = rng.choice(list(COLOURS), size=count, replace=False)
    return [(str(name), COLOURS[str(name)]) for name in names]


def _element(kind: str, rng: np.random.Generator, size: int, split: str,
             scale: float) -> list[tuple[Layer, str]]:
    """The layer(s) of one element, bottom first, with a caption each, not yet placed."""
    side = max(8, int(size * rng.uniform(0.18, 0.4) * scale))
    if kind == "shape":
        (name, colour), = _colours(rng, 1)
        shape = str(rng.choice(SHAPES))
        return [(Layer("shape", render_shape(shape, colour, side), kind="object"),
                 f"a {name} {shape}")]
    if kind == "emoji":
        art = random_emoji_art(rng, side, split, None)
        return [(Layer("emoji", art.pixels, kind="object"), art.caption)]
    word = str(rng.choice(WORDS))
    (name, colour), (plate_name, plate_colour) = _colours(rng, 2)
    glyph = render_glyph(word, colour, max(8, int(size * rng.uniform(0.07, 0.13) * scale)))
    text = (Layer("text", glyph, kind="text"), f"the word {word} in {name}")
    if kind == "text":
        return [text]
    height, width = glyph.shape[:2]
    pad = max(3, height // 2)
    plate = _plate((width + 2 * pad, height + 2 * pad), plate_colour)
    return [(Layer("label", plate, kind="object"), f"a {plate_name} label"),
            (text[0].moved_to(pad, pad), text[1])]


def build(rng: np.random.Generator, size: int, split: str, *, min_elements: int = 1,
          max_elements: int = 5) -> dict:
    """Build the scene: a plain or gradient background and ``min_elements``..``max_elements``
    elements placed at random (they may overlap)."""
    if not 1 <= min_elements <= max_elements <= 20:
        raise ValueError("need 1 <= min_elements <= max_elements <= 20")
    count = int(rng.integers(min_elements, max_elements + 1))
    background, bg_caption = make_background(rng, (size, size),
                                             str(rng.choice(["gradient", "plain"])))
    stack = LayerStack(size, size, [Layer("background", background, kind="background",
                                          provenance={"caption": bg_caption})])
    captions = []
    scale = 1 / max(1.0, np.sqrt(count / 3))
    for _ in range(count):
        parts = _element(str(rng.choice(ELEMENTS)), rng, size, split, scale)
        extent = parts[0][0]
        x, y = place(rng, (extent.height, extent.width), (size, size))
        for layer, caption in parts:
            lx, ly = layer.offset
            stack.add(layer.copy(name=f"{layer.name} {len(stack)}", offset=(x + lx, y + ly),
                                 provenance={"caption": caption}))
        captions.append(parts[-1][1] if len(parts) == 1 else
                        f"{parts[1][1]} on {parts[0][1]}")
    return {"stack": stack, "caption": f"{join_captions(captions)} on {bg_caption}",
            "boxes": [(0, 0, size, size)] + [box_of(layer) for layer in stack.layers[1:]],
            "meta": {"elements": count}}
