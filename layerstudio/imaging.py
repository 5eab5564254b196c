"""Small image helpers shared by the document model, the exporters and the UI.

They convert between PIL images and RGBA arrays, validate arrays coming from users or models,
and draw the checkerboard that every transparent preview sits on.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .errors import InvalidInputError
from .limits import check_size

__all__ = ["FITS", "as_rgba_array", "checkerboard", "enlarged", "fit_square", "fit_within",
           "like_dtype", "over_checkerboard", "resized_straight", "to_uint8"]

_ALLOWED_DTYPES = (np.uint8, np.uint16, np.float32)


def as_rgba_array(data: object, what: str = "image") -> np.ndarray:
    """Validate and normalise pixel data to an (h, w, 4) straight-alpha array.

    Accepts PIL images (any mode is converted to RGBA, 16-bit greyscale kept as uint16) and
    arrays of shape (h, w), (h, w, 3) or (h, w, 4) with dtype uint8, uint16 or float in [0, 1].
    Float input that is NaN, infinite or outside [0, 1] is rejected rather than silently
    clipped, because it almost always means a model produced [-1, 1] or garbage.
    """
    if isinstance(data, Image.Image):
        check_size(*data.size, what=what)
        if data.mode in ("I;16", "I;16B", "I;16L"):
            grey = np.asarray(data, dtype=np.uint16)
            data = np.dstack([grey, grey, grey, np.full_like(grey, 65535)])
        else:
            return np.asarray(data.convert("RGBA")).copy()
    if not isinstance(data, np.ndarray):
        raise InvalidInputError(f"{what}: expected a PIL image or numpy array, got "
                                f"{type(data).__name__}")
    arr = data
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise InvalidInputError(f"{what}: expected shape (h, w, 4), (h, w, 3) or (h, w); "
                                f"got {data.shape}")
    if arr.shape[0] or arr.shape[1]:
        check_size(max(arr.shape[1], 1), max(arr.shape[0], 1), what=what)
    if arr.dtype == np.float64 or arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype not in _ALLOWED_DTYPES:
        raise InvalidInputError(f"{what}: unsupported dtype {arr.dtype}; use uint8, uint16 "
                                "or float32 in [0, 1]")
    if arr.dtype == np.float32 and arr.size:
        if not np.isfinite(arr).all():
            raise InvalidInputError(f"{what}: contains NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise InvalidInputError(f"{what}: float values must lie in [0, 1], found "
                                    f"[{lo:.4g}, {hi:.4g}] (map [-1, 1] model output with "
                                    "(x + 1) / 2 first)")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    if arr.shape[2] == 3:
        opaque = {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535}.get(arr.dtype, 1.0)
        arr = np.concatenate([arr, np.full((*arr.shape[:2], 1), opaque, arr.dtype)], axis=2)
    return np.ascontiguousarray(arr)


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Any supported RGBA dtype -> uint8, rounding to nearest."""
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype == np.uint16:
        return ((pixels.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    return np.clip(np.rint(pixels * 255.0), 0, 255).astype(np.uint8)


def like_dtype(straight: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Convert float32 straight RGBA back to the dtype of ``reference``."""
    if reference.dtype == np.uint8:
        return to_uint8(straight)
    if reference.dtype == np.uint16:
        return np.clip(np.rint(straight * 65535.0), 0, 65535).astype(np.uint16)
    return straight


def resized_straight(rgba: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Straight RGBA float (h, w, 4) in [0, 1] resized to ``size`` (w, h): Lanczos on
    premultiplied colour, so transparent colour does not bleed into the edges."""
    premultiplied = np.concatenate([rgba[..., :3] * rgba[..., 3:], rgba[..., 3:]], axis=2)
    channels = [np.asarray(Image.fromarray(np.ascontiguousarray(premultiplied[..., c],
                                                                dtype=np.float32), "F")
                           .resize(size, Image.Resampling.LANCZOS)) for c in range(4)]
    resized = np.clip(np.stack(channels, axis=2), 0.0, 1.0)
    alpha = resized[..., 3:]
    with np.errstate(divide="ignore", invalid="ignore"):
        colour = np.where(alpha > 0, resized[..., :3] / alpha, 0.0)
    return np.concatenate([np.clip(colour, 0, 1), alpha], axis=2).astype(np.float32)


def checkerboard(size: tuple[int, int], cell: int = 8,
                 light: int = 255, dark: int = 204) -> Image.Image:
    """An RGB checkerboard of ``size`` (w, h), the usual backdrop for transparency."""
    width, height = size
    ys, xs = np.indices((height, width))
    board = np.where(((xs // cell) + (ys // cell)) % 2 == 0, light, dark).astype(np.uint8)
    return Image.fromarray(np.dstack([board] * 3), "RGB")


def over_checkerboard(image: Image.Image, cell: int = 8, light: int = 255,
                      dark: int = 204) -> Image.Image:
    """Flatten an RGBA image onto a checkerboard so transparency is visible in previews."""
    board = checkerboard(image.size, cell, light, dark).convert("RGBA")
    return Image.alpha_composite(board, image.convert("RGBA")).convert("RGB")


def enlarged(image: Image.Image, minimum: int) -> Image.Image:
    """``image`` scaled up by the whole factor that brings its long side nearest ``minimum``
    from below (nearest-neighbour: pixels stay sharp squares); unchanged if already as big."""
    factor = max(1, minimum // max(image.size))
    if factor == 1:
        return image
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)


def fit_within(size: tuple[int, int], max_size: int) -> tuple[int, int]:
    """Scale (w, h) down, keeping aspect, so neither side exceeds ``max_size``."""
    width, height = size
    scale = min(1.0, max_size / max(width, height, 1))
    return max(1, round(width * scale)), max(1, round(height * scale))


FITS = ("crop", "pad", "stretch")
"""How a non-square image becomes a square canvas: ``crop`` the centre (fills the canvas),
``pad`` with transparency (keeps everything), ``stretch`` (distorts)."""


def fit_square(rgba: np.ndarray, size: int, fit: str) -> np.ndarray:
    """Straight RGBA ``rgba`` as a ``size`` x ``size`` uint8 image, keeping its aspect as
    ``fit`` says (see :data:`FITS`)."""
    if fit not in FITS:
        raise InvalidInputError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
    image = Image.fromarray(to_uint8(rgba), "RGBA")
    if fit == "stretch" or image.width == image.height:
        return np.asarray(image.resize((size, size), Image.Resampling.LANCZOS))
    if fit == "crop":
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        return np.asarray(image.crop((left, top, left + side, top + side))
                          .resize((size, size), Image.Resampling.LANCZOS))
    scale = size / max(image.size)
    inner = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    canvas = Image.new("RGBA", (size, size))
    canvas.paste(image.resize(inner, Image.Resampling.LANCZOS),
                 ((size - inner[0]) // 2, (size - inner[1]) // 2))
    return np.asarray(canvas)
