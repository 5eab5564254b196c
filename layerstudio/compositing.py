"""The compositing engine: a tree of layers and groups in, one flattened RGBA image out.

Maths (W3C Compositing and Blending Level 1, section 5.8), with straight-alpha source colour Cs,
source alpha as = layer alpha x opacity, backdrop colour Cb and backdrop alpha ab:

    Cs' = (1 - ab) * Cs + ab * B(Cb, Cs)        # the blended source colour
    co  = as * Cs' + (1 - as) * ab * Cb          # premultiplied result colour
    ao  = as + ab * (1 - as)

For normal mode this collapses to premultiplied source-over, ``dst = src + dst * (1 - as)``,
which is what the fast path computes. The canvas stays premultiplied float32 throughout, so
stacking many layers costs no divisions; straight alpha appears only at the edges.

Layers are touched only inside the rectangle where they overlap the canvas. The canvas is
rendered in horizontal strips small enough to stay in the CPU cache, each strip running the
whole layer tree (every operation is per-pixel, so this is exact), strips in parallel threads,
with the normal-mode and output loops compiled by Numba (``layerstudio.kernels``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .blend import BlendMode, blend_function
from .kernels import Kernels, for_canvas

__all__ = ["GroupNode", "PixelNode", "blend_premultiplied", "render", "to_float_rgba",
           "unpremultiply"]

STRIP_PIXELS = 1 << 16
"""Pixels per strip: 64k RGBA float32 pixels is 1 MiB, a comfortable fit in L2/L3 cache."""


def to_float_rgba(pixels: np.ndarray) -> np.ndarray:
    """Convert uint8 / uint16 / float RGBA to float32 in [0, 1] (float input is not copied)."""
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) * np.float32(1.0 / 255.0)
    if pixels.dtype == np.uint16:
        return pixels.astype(np.float32) * np.float32(1.0 / 65535.0)
    return pixels.astype(np.float32, copy=False)


def unpremultiply(canvas: np.ndarray) -> np.ndarray:
    """Premultiplied float RGBA -> straight float RGBA (colour 0 where alpha is 0)."""
    out = np.empty_like(canvas)
    alpha = canvas[..., 3:4]
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(canvas[..., :3], alpha, out=out[..., :3], where=alpha > 0)
    out[..., :3][np.broadcast_to(alpha <= 0, out[..., :3].shape)] = 0.0
    np.clip(out[..., :3], 0.0, 1.0, out=out[..., :3])
    out[..., 3:4] = alpha
    return out


def blend_premultiplied(
    dst: np.ndarray, src_rgb_p: np.ndarray, src_a: np.ndarray, mode: BlendMode
) -> None:
    """Blend a premultiplied source onto the premultiplied ``dst`` in place.

    ``src_rgb_p`` is (..., 3) colour already multiplied by ``src_a`` (..., 1), and ``src_a``
    already includes the layer opacity.
    """
    if mode is BlendMode.NORMAL:
        keep = 1.0 - src_a
        dst[..., :3] *= keep
        dst[..., :3] += src_rgb_p
        dst[..., 3:4] *= keep
        dst[..., 3:4] += src_a
        return
    ab = dst[..., 3:4]
    with np.errstate(divide="ignore", invalid="ignore"):
        cb = np.where(ab > 0, dst[..., :3] / ab, 0.0).astype(np.float32)
        cs = np.where(src_a > 0, src_rgb_p / src_a, 0.0).astype(np.float32)
    mixed = np.clip(blend_function(mode)(cb, cs), 0.0, 1.0)
    # co = as*(1-ab)*Cs + as*ab*B + (1-as)*ab*Cb, written with premultiplied terms.
    co = src_rgb_p * (1.0 - ab) + src_a * ab * mixed + (1.0 - src_a) * dst[..., :3]
    dst[..., :3] = co
    dst[..., 3:4] = src_a + ab * (1.0 - src_a)


@dataclass
class GroupNode:
    """A group in the render tree: its settings and its children, bottom to top."""

    opacity: float = 1.0
    blend_mode: BlendMode = BlendMode.PASS_THROUGH
    visible: bool = True
    children: list = field(default_factory=list)
    path: tuple[str, ...] = ()


@dataclass
class PixelNode:
    """A pixel layer in the render tree (a thin view the document model builds)."""

    pixels: np.ndarray
    offset: tuple[int, int]
    opacity: float
    blend_mode: BlendMode
    visible: bool
    source: Any = None
    """The document layer this node shows, for exporters that walk the tree."""
    adjust: Callable[[np.ndarray], np.ndarray] | None = None
    """For an adjustment layer: straight backdrop RGB -> adjusted RGB; the pixels' alpha is
    then its coverage (see :mod:`layerstudio.adjustments`)."""


def render(nodes: Sequence[PixelNode | GroupNode], size: tuple[int, int],
           dtype: type = np.float32) -> np.ndarray:
    """Render a tree of pixel and group nodes onto a transparent canvas of ``size`` (w, h).

    Returns straight-alpha RGBA of shape (h, w, 4), float32 in [0, 1] or uint8. The canvas is
    processed strip by strip, each strip running the whole tree while it sits in cache, and
    strips run in parallel threads (the kernels release the GIL).
    """
    width, height = size
    out = np.empty((height, width, 4), dtype=dtype)
    rows = max(1, STRIP_PIXELS // max(width, 1))
    loops = for_canvas(width * height)
    starts = range(0, height, rows)

    def work(row0: int) -> None:
        row1 = min(height, row0 + rows)
        buf = np.zeros((row1 - row0, width, 4), dtype=np.float32)
        _render_into(buf, nodes, row0, loops)
        if out.dtype == np.uint8:
            loops.finish_uint8(buf, out[row0:row1])
        else:
            out[row0:row1] = unpremultiply(buf)

    workers = min(os.cpu_count() or 1, len(starts))
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(work, starts))
    else:
        for row0 in starts:
            work(row0)
    return out


def _place(buf: np.ndarray, row0: int, pixels: np.ndarray, offset: tuple[int, int]):
    """Views of the strip ``buf`` (canvas rows from ``row0``) and of ``pixels`` placed at
    ``offset`` where the two overlap, or None."""
    rows, width = buf.shape[:2]
    h, w = pixels.shape[:2]
    x, y = offset
    x0, x1 = max(x, 0), min(x + w, width)
    y0, y1 = max(y, row0), min(y + h, row0 + rows)
    if x0 >= x1 or y0 >= y1:
        return None
    return buf[y0 - row0:y1 - row0, x0:x1], pixels[y0 - y:y1 - y, x0 - x:x1 - x]


_UNIT = {np.dtype(np.uint8): 1.0 / 255.0, np.dtype(np.uint16): 1.0 / 65535.0,
         np.dtype(np.float32): 1.0}


def _blend_layer(buf: np.ndarray, row0: int, node: PixelNode, loops: Kernels) -> None:
    placed = _place(buf, row0, node.pixels, node.offset)
    if placed is None:
        return
    dst, src = placed
    if node.blend_mode is BlendMode.NORMAL:
        loops.over_straight(dst, src, float(node.opacity), _UNIT[src.dtype])
        return
    straight = to_float_rgba(src)
    src_a = straight[..., 3:4] * np.float32(node.opacity)
    blend_premultiplied(dst, straight[..., :3] * src_a, src_a, node.blend_mode)


def _adjust_backdrop(buf: np.ndarray, row0: int, node: PixelNode) -> None:
    """An adjustment layer: recolour the backdrop where it covers, keep the backdrop's alpha:
    C' = Cb + c * (B(Cb, adjust(Cb)) - Cb), premultiplied by ab."""
    placed = _place(buf, row0, node.pixels, node.offset)
    if placed is None:
        return
    dst, src = placed
    cover = to_float_rgba(src)[..., 3:4] * np.float32(node.opacity)
    ab = dst[..., 3:4]
    with np.errstate(divide="ignore", invalid="ignore"):
        cb = np.where(ab > 0, dst[..., :3] / ab, 0.0).astype(np.float32)
    cs = np.clip(node.adjust(cb), 0.0, 1.0).astype(np.float32)
    if node.blend_mode is not BlendMode.NORMAL:
        cs = np.clip(blend_function(node.blend_mode)(cb, cs), 0.0, 1.0)
    dst[..., :3] += cover * (ab * cs - dst[..., :3])


def _render_into(buf: np.ndarray, nodes: Sequence[PixelNode | GroupNode], row0: int,
                 loops: Kernels) -> None:
    """Composite ``nodes`` onto the premultiplied strip ``buf`` (canvas rows from ``row0``)."""
    for node in nodes:
        if not node.visible or node.opacity <= 0.0:
            continue
        if isinstance(node, PixelNode) and node.adjust is not None:
            _adjust_backdrop(buf, row0, node)
        elif isinstance(node, PixelNode):
            _blend_layer(buf, row0, node, loops)
        elif node.blend_mode is BlendMode.PASS_THROUGH:
            # Children blend straight into the backdrop; group opacity fades the whole result
            # back towards the backdrop, as Photoshop does for pass-through groups.
            if node.opacity >= 1.0:
                _render_into(buf, node.children, row0, loops)
            else:
                before = buf.copy()
                _render_into(buf, node.children, row0, loops)
                buf -= before
                buf *= np.float32(node.opacity)
                buf += before
        else:
            isolated = np.zeros_like(buf)
            _render_into(isolated, node.children, row0, loops)
            opacity = np.float32(node.opacity)
            blend_premultiplied(buf, isolated[..., :3] * opacity, isolated[..., 3:4] * opacity,
                                node.blend_mode)
