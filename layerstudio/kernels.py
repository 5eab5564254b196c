"""The two hot loops of compositing, compiled with Numba when it is available.

``over_straight`` blends a straight-alpha layer onto a premultiplied float32 canvas strip in
normal mode (the most common operation by far); ``finish_uint8`` turns a premultiplied strip
into straight 8-bit RGBA. Fused per-pixel loops touch each byte once, where NumPy would make
one pass over memory per arithmetic operation. Both have NumPy twins with identical maths, used
when Numba is missing and by the tests as the reference.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

__all__ = ["HAVE_NUMBA", "NUMPY", "Kernels", "finish_uint8", "for_canvas", "over_straight"]


def over_straight_numpy(dst: np.ndarray, src: np.ndarray, opacity: float, unit: float) -> None:
    """dst = src_premultiplied + dst * (1 - a), with a = src.alpha * unit * opacity."""
    alpha = src[..., 3:4].astype(np.float32) * np.float32(unit * opacity)
    keep = np.float32(1.0) - alpha
    dst *= keep
    dst[..., :3] += src[..., :3].astype(np.float32) * (alpha * np.float32(unit))
    dst[..., 3:4] += alpha


def finish_uint8_numpy(buf: np.ndarray, out: np.ndarray) -> None:
    """Premultiplied float RGBA -> straight uint8 RGBA, rounding to nearest."""
    alpha = buf[..., 3:4]
    with np.errstate(divide="ignore", invalid="ignore"):
        rgb = np.where(alpha > 0, buf[..., :3] / alpha, 0.0)
    out[..., :3] = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
    out[..., 3:4] = np.clip(alpha * 255.0 + 0.5, 0, 255).astype(np.uint8)


HAVE_NUMBA = importlib.util.find_spec("numba") is not None


@functools.cache
def _compiled() -> tuple[Callable, Callable]:
    """The Numba versions, compiled (or loaded from Numba's cache) on first use: importing
    Numba costs a fifth of a second, which commands that never composite should not pay."""
    if not HAVE_NUMBA:  # pragma: no cover - exercised only where numba is not installed
        return over_straight_numpy, finish_uint8_numpy
    import numba

    @numba.njit(cache=True, nogil=True)
    def over_straight_jit(dst, src, opacity, unit):  # pragma: no cover - compiled
        scale = np.float32(unit * opacity)
        unit32 = np.float32(unit)
        for i in range(dst.shape[0]):
            for j in range(dst.shape[1]):
                a = np.float32(src[i, j, 3]) * scale
                if a <= 0.0:
                    continue
                keep = np.float32(1.0) - a
                colour = a * unit32
                dst[i, j, 0] = np.float32(src[i, j, 0]) * colour + dst[i, j, 0] * keep
                dst[i, j, 1] = np.float32(src[i, j, 1]) * colour + dst[i, j, 1] * keep
                dst[i, j, 2] = np.float32(src[i, j, 2]) * colour + dst[i, j, 2] * keep
                dst[i, j, 3] = a + dst[i, j, 3] * keep

    @numba.njit(cache=True, nogil=True)
    def finish_uint8_jit(buf, out):  # pragma: no cover - compiled
        for i in range(buf.shape[0]):
            for j in range(buf.shape[1]):
                a = buf[i, j, 3]
                if a <= 0.0:
                    out[i, j, 0] = 0
                    out[i, j, 1] = 0
                    out[i, j, 2] = 0
                    out[i, j, 3] = 0
                    continue
                inv = np.float32(255.0) / a
                for c in range(3):
                    v = buf[i, j, c] * inv + np.float32(0.5)
                    out[i, j, c] = 255 if v >= 255.0 else (0 if v <= 0.0 else np.uint8(v))
                v = a * np.float32(255.0) + np.float32(0.5)
                out[i, j, 3] = 255 if v >= 255.0 else np.uint8(v)

    return over_straight_jit, finish_uint8_jit


class Kernels(NamedTuple):
    """The two loops a render uses."""

    over_straight: Callable[[np.ndarray, np.ndarray, float, float], None]
    finish_uint8: Callable[[np.ndarray, np.ndarray], None]


NUMPY = Kernels(over_straight_numpy, finish_uint8_numpy)

SMALL_CANVAS = 512 * 512
"""Canvases up to this many pixels render with the NumPy loops: loading Numba and its cached
machine code takes about a second in a fresh process, more than NumPy needs for such a canvas
(what `layerstudio inspect` of a typical file and every 64 px generation composite)."""


def for_canvas(pixels: int) -> Kernels:
    """The loops for a render of ``pixels`` canvas pixels (the choice depends on the size
    only, so a document always renders the same way)."""
    return NUMPY if pixels <= SMALL_CANVAS else Kernels(*_compiled())


def over_straight(dst: np.ndarray, src: np.ndarray, opacity: float, unit: float) -> None:
    """As :func:`over_straight_numpy`, compiled."""
    _compiled()[0](dst, src, opacity, unit)


def finish_uint8(buf: np.ndarray, out: np.ndarray) -> None:
    """As :func:`finish_uint8_numpy`, compiled."""
    _compiled()[1](buf, out)
