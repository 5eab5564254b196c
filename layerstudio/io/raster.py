"""Plain raster files and PNG codecs, with size checks before any pixel is decoded.

8-bit RGBA goes through Pillow; 16-bit RGBA (which Pillow cannot write) through OpenCV.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ..errors import InvalidInputError, UnsupportedFormatError
from ..imaging import as_rgba_array, to_uint8
from ..limits import PixelBudget, check_size, max_pixels

__all__ = ["decode_png", "encode_png", "max_file_bytes", "open_image", "png_bytes",
           "read_file_bytes", "read_image_file"]

RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif")
NO_ALPHA_SUFFIXES = (".jpg", ".jpeg", ".bmp")
"""Flat formats without an alpha channel: transparent areas are flattened over white."""


def max_file_bytes() -> int:
    """The largest file read whole: a raw 16-bit RGBA image of the largest allowed size,
    plus room for metadata (compressed files are smaller)."""
    return max_pixels() * 8 + (16 << 20)


def read_file_bytes(path: str | Path, what: str | None = None, limit: int | None = None,
                    head: int | None = None) -> bytes:
    """A regular file's bytes, at most ``limit`` of them (default :func:`max_file_bytes`), or
    only its first ``head`` bytes.

    Devices, FIFOs and folders are refused before reading (a symlink named ``x.png`` that
    points at an endless device would otherwise be read until memory runs out)."""
    what = what or str(path)
    limit = max_file_bytes() if limit is None else limit
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer (regular files ignore it).
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with open(descriptor, "rb") as handle:  # buffered: read(n) loops until n or EOF
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise InvalidInputError(f"{what} is not a regular file")
            if head is not None:
                return handle.read(head)
            if info.st_size > limit:
                raise InvalidInputError(f"{what} is {info.st_size:,} bytes, above the limit "
                                        f"of {limit:,}")
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise InvalidInputError(f"{what} does not exist") from None
    except IsADirectoryError:
        raise InvalidInputError(f"{what} is a folder, not a file") from None
    except OSError as exc:
        raise InvalidInputError(f"cannot read {what}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise InvalidInputError(f"{what} grew past {limit:,} bytes while being read")
    return data


def open_image(source: str | Path | bytes, what: str | None = None,
               budget: PixelBudget | None = None) -> Image.Image:
    """Open and fully decode an image, refusing oversized or corrupt data with a clear error.

    With a ``budget``, the image's declared size is charged to it before decoding."""
    what = what or (str(source) if not isinstance(source, bytes) else "image")
    data = source if isinstance(source, bytes) else read_file_bytes(source, what)
    with io.BytesIO(data) as handle:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(handle)
                check_size(*image.size, what=what)  # before decoding any pixel
                if budget is not None:
                    budget.charge(*image.size, what=what)
                image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise InvalidInputError(f"{what} is too large to decode safely") from None
        except Image.UnidentifiedImageError:
            raise UnsupportedFormatError(f"{what} is not an image file Pillow can read"
                                         ) from None
        except InvalidInputError:
            raise
        except Exception as exc:  # Pillow's plugins raise assorted errors on damaged files
            raise InvalidInputError(f"{what} is corrupt or truncated: {exc}") from None
    return image


def read_image_file(path: str | Path) -> np.ndarray:
    """An image file as an (h, w, 4) RGBA array; a 16-bit PNG keeps its 16 bits."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        return decode_png(read_file_bytes(path), str(path))
    return as_rgba_array(open_image(path), what=str(path))


def _png_bit_depth(data: bytes) -> int:
    return data[24] if len(data) > 25 and data[:8] == b"\x89PNG\r\n\x1a\n" else 8


def encode_png(pixels: np.ndarray, compress_level: int = 4) -> bytes:
    """RGBA array -> PNG bytes: 8-bit for uint8, 16-bit for uint16 and float32.

    PNG cannot hold an empty image, so a 0-pixel (fully transparent, cropped) layer is stored
    as one transparent pixel; readers of our manifests turn it back into an empty layer."""
    if pixels.size == 0:
        pixels = np.zeros((1, 1, 4), pixels.dtype)
    if pixels.dtype == np.uint8:
        buffer = io.BytesIO()
        Image.fromarray(pixels, "RGBA").save(buffer, "PNG", compress_level=compress_level)
        return buffer.getvalue()
    if pixels.dtype == np.float32:
        pixels = np.clip(np.rint(pixels * 65535.0), 0, 65535).astype(np.uint16)
    bgra = np.ascontiguousarray(pixels[..., [2, 1, 0, 3]])
    ok, data = cv2.imencode(".png", bgra, [cv2.IMWRITE_PNG_COMPRESSION, compress_level])
    if not ok:
        raise InvalidInputError("OpenCV could not encode a 16-bit PNG")
    return data.tobytes()


def png_bytes(image: Image.Image) -> bytes:
    """A PIL image as PNG bytes (for thumbnails and merged previews)."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=4)
    return buffer.getvalue()


def decode_png(data: bytes, what: str, budget: PixelBudget | None = None) -> np.ndarray:
    """PNG bytes -> (h, w, 4) RGBA array, uint8 or uint16 as stored; size-checked (and
    charged to ``budget``) first."""
    image = open_image(data, what, budget)
    if _png_bit_depth(data) != 16:
        return as_rgba_array(image, what=what)
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise InvalidInputError(f"{what} is a corrupt 16-bit PNG")
    if array.ndim == 2:
        array = array[..., None]
    if array.shape[2] == 3:
        array = array[..., [2, 1, 0]]
    elif array.shape[2] == 4:
        array = array[..., [2, 1, 0, 3]]
    return as_rgba_array(np.ascontiguousarray(array), what=what)


def write_flat_image(pixels: np.ndarray, path: Path, suffix: str) -> None:
    """Write a flattened composite to ``path`` in the format ``suffix`` (e.g. '.png') names."""
    if suffix == ".png":
        path.write_bytes(encode_png(pixels if pixels.dtype == np.uint8 else to_uint8(pixels)))
        return
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF",
           ".bmp": "BMP"}.get(suffix)
    if fmt is None:
        raise UnsupportedFormatError(f"cannot write a flattened image as {suffix!r}")
    image = Image.fromarray(to_uint8(pixels), "RGBA")
    if suffix in NO_ALPHA_SUFFIXES:
        if image.getchannel("A").getextrema()[0] < 255:
            warnings.warn(f"{fmt} has no transparency: transparent areas are flattened over "
                          "white (save as .png, .webp or .tif to keep them)", UserWarning,
                          stacklevel=3)
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image).convert("RGB")
    image.save(path, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
