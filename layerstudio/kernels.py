"""The two hot loops of compositing, compiled with Numba when it is available.

``over_straight`` blends a straight-alpha layer onto a premultiplied float32 canvas strip in
normal mode (the most common operation by far); ``finish_uint8`` turns a premultiplied strip
into straight 8-bit RGBA. Fused per-pixel loops touch each byte once, where NumPy would make
one pass over memory per arithmetic operation. Both have NumPy twins with identical maths, used
when Numba is missing and by the tests as the reference.
"""

from __future__ import annotations

import numpy as np

__all__ = ["HAVE_NUMBA", "finish_uint8", "over_straight"]


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


try:
    import numba
except ImportError:  # pragma: no cover - exercised only where numba is not installed
    numba = None

HAVE_NUMBA = numba is not None

if numba is not None:

    @numba.njit(cache=True, nogil=True)
    def _over_straight_jit(dst, src, opacity, unit):  # pragma: no cover - compiled
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
    def _finish_uint8_jit(buf, out):  # pragma: no cover - compiled
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

    over_straight = _over_straight_jit
    finish_uint8 = _finish_uint8_jit
else:  # pragma: no cover
    over_straight = over_straight_numpy
    finish_uint8 = finish_uint8_numpy
