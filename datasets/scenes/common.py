"""Helpers shared by the scene generators: placement, boxes, captions, float/uint8 maths."""

from __future__ import annotations

import cv2
import numpy as np

from layerstudio.document import Layer

from ..sample import Box

__all__ = ["blur", "box_of", "join_captions", "place", "to_u8"]


def place(rng: np.random.Generator, art_shape: tuple[int, int], canvas: tuple[int, int],
          margin: int = 0) -> tuple[int, int]:
    """A random top-left (x, y) that keeps an (h, w) array inside the canvas (w, h)."""
    h, w = art_shape
    width, height = canvas
    x = int(rng.integers(margin, max(margin + 1, width - w - margin + 1)))
    y = int(rng.integers(margin, max(margin + 1, height - h - margin + 1)))
    return x, y


def box_of(layer: Layer) -> Box:
    """Canvas box of a layer's visible pixels (its whole extent if it has none)."""
    inner = layer.content_bbox()
    x, y = layer.offset
    if inner is None:
        return x, y, x, y
    return x + inner[0], y + inner[1], x + inner[2], y + inner[3]


def blur(array: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a float32 image (2-D or channels last); sigma 0 returns a copy."""
    if sigma <= 0:
        return array.astype(np.float32, copy=True)
    return cv2.GaussianBlur(array.astype(np.float32), (0, 0), sigmaX=float(sigma),
                            borderType=cv2.BORDER_CONSTANT)


def to_u8(array: np.ndarray) -> np.ndarray:
    """Float in [0, 1] -> uint8, rounded."""
    return np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)


def join_captions(parts: list[str], limit: int = 4) -> str:
    """'a, b and c' for up to ``limit`` parts, then 'and N more'."""
    named = parts[:limit]
    rest = len(parts) - len(named)
    if rest > 0:
        return ", ".join(named) + f" and {rest} more"
    if len(named) <= 1:
        return "".join(named)
    return ", ".join(named[:-1]) + " and " + named[-1]
