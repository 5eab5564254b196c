"""Plain raster files and PNG codecs, with size checks before any pixel is decoded.

8-bit RGBA goes through Pillow; 16-bit RGBA (which Pillow cannot write) through OpenCV.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ..errors import InvalidInputError, UnsupportedFormatError
from ..imaging import as_rgba_array, to_uint8
from ..limits import check_size

__all__ = ["decode_png", "encode_png", "open_image", "png_bytes", "read_image_file"]

RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif")


def open_image(source: str | Path | bytes, what: str | None = None) -> Image.Image:
    """Open and fully decode an image, refusing oversized or corrupt data with a clear error."""
    what = what or (str(source) if not isinstance(source, bytes) else "image")
    try:
        handle = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115
    except OSError as exc:
        raise InvalidInputError(f"cannot read {what}: {exc.strerror or exc}") from None
    with handle:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(handle)
                check_size(*image.size, what=what)  # before decoding any pixel
                image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise InvalidInputError(f"{what} is too large to decode safely") from None
        except Image.UnidentifiedImageError:
            raise UnsupportedFormatError(f"{what} is not an image file Pillow can read"
                                         ) from None
        except (OSError, SyntaxError, ValueError) as exc:
            if isinstance(exc, InvalidInputError):
                raise
            raise InvalidInputError(f"{what} is corrupt or truncated: {exc}") from None
    return image


def read_image_file(path: str | Path) -> np.ndarray:
    """An image file as an (h, w, 4) RGBA array; a 16-bit PNG keeps its 16 bits."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        try:
            return decode_png(path.read_bytes(), str(path))
        except OSError as exc:
            raise InvalidInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    return as_rgba_array(open_image(path), what=str(path))


def _png_bit_depth(data: bytes) -> int:
    return data[24] if len(data) > 25 and data[:8] == b"\x89PNG\r\n\x1a\n" else 8


def encode_png(pixels: np.ndarray, compress_level: int = 4) -> bytes:
    """RGBA array -> PNG bytes: 8-bit for uint8, 16-bit for uint16 and float32."""
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


def decode_png(data: bytes, what: str) -> np.ndarray:
    """PNG bytes -> (h, w, 4) RGBA array, uint8 or uint16 as stored; size-checked first."""
    image = open_image(data, what)
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
    image = Image.fromarray(to_uint8(pixels), "RGBA")
    if suffix in (".jpg", ".jpeg", ".bmp"):
        image = image.convert("RGB")
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF",
           ".bmp": "BMP"}.get(suffix)
    if fmt is None:
        raise UnsupportedFormatError(f"cannot write a flattened image as {suffix!r}")
    image.save(path, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
