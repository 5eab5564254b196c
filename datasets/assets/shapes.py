"""Geometric shapes and text glyphs: simple foreground art with exact captions.

Shapes are drawn supersampled and downscaled, so their edges carry real partial alpha.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["COLOURS", "SHAPES", "render_glyph", "render_shape"]

COLOURS = {
    "red": (220, 40, 40), "orange": (245, 140, 30), "yellow": (245, 210, 40),
    "green": (50, 170, 70), "blue": (40, 90, 220), "purple": (140, 60, 190),
    "pink": (240, 120, 170), "brown": (130, 80, 40), "black": (20, 20, 20),
    "white": (245, 245, 245), "grey": (128, 128, 128), "teal": (30, 150, 150),
}
SHAPES = ("circle", "square", "triangle", "star", "ring", "hexagon", "heart", "diamond")
_SUPERSAMPLE = 4


def _polygon(kind: str, n: int) -> list[tuple[float, float]]:
    c = n / 2
    r = n * 0.48
    if kind == "triangle":
        return [(c + r * math.cos(a), c + r * math.sin(a) + n * 0.08)
                for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    if kind == "star":
        return [(c + (r if i % 2 == 0 else r * 0.45) * math.cos(-math.pi / 2 + i * math.pi / 5),
                 c + (r if i % 2 == 0 else r * 0.45) * math.sin(-math.pi / 2 + i * math.pi / 5))
                for i in range(10)]
    if kind == "hexagon":
        return [(c + r * math.cos(i * math.pi / 3), c + r * math.sin(i * math.pi / 3))
                for i in range(6)]
    if kind == "diamond":
        return [(c, c - r), (c + r * 0.7, c), (c, c + r), (c - r * 0.7, c)]
    if kind == "heart":
        points = []
        for i in range(64):
            t = 2 * math.pi * i / 64
            x = 16 * math.sin(t) ** 3
            y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
            points.append((c + x * r / 17, c - y * r / 17))
        return points
    raise ValueError(kind)


def render_shape(kind: str, colour: tuple[int, int, int], size: int) -> np.ndarray:
    """A filled shape of ``size`` x ``size`` px as straight RGBA uint8 (anti-aliased edges)."""
    n = size * _SUPERSAMPLE
    mask = Image.new("L", (n, n))
    draw = ImageDraw.Draw(mask)
    margin = n * 0.02
    if kind == "circle":
        draw.ellipse((margin, margin, n - margin, n - margin), fill=255)
    elif kind == "square":
        draw.rectangle((n * 0.1, n * 0.1, n * 0.9, n * 0.9), fill=255)
    elif kind == "ring":
        draw.ellipse((margin, margin, n - margin, n - margin), fill=255)
        draw.ellipse((n * 0.3, n * 0.3, n * 0.7, n * 0.7), fill=0)
    else:
        draw.polygon(_polygon(kind, n), fill=255)
    alpha = np.asarray(mask.resize((size, size), Image.Resampling.BOX))
    rgb = np.broadcast_to(np.array(colour, np.uint8), (size, size, 3))
    return np.dstack([rgb, alpha]).astype(np.uint8)


def render_glyph(text: str, colour: tuple[int, int, int], size: int) -> np.ndarray:
    """Text in Pillow's built-in scalable font, cropped to content, ``size`` px tall."""
    font = ImageFont.load_default(size=size)
    left, top, right, bottom = font.getbbox(text)
    image = Image.new("RGBA", (right - left + 4, bottom - top + 4))
    ImageDraw.Draw(image).text((2 - left, 2 - top), text, font=font, fill=(*colour, 255))
    box = image.getchannel("A").getbbox() or (0, 0, 1, 1)
    return np.asarray(image.crop(box)).copy()
