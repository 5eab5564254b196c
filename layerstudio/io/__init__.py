"""Reading and writing layered files: PSD, OpenRaster, ZIP bundles and flat images.

:func:`save_stack` picks the writer from the extension and writes atomically;
:func:`load_stack` checks the file's signature, so a PNG renamed to .psd gets a clear message.
Importers report what they could not represent in ``stack.metadata['import_warnings']`` and as
:class:`LayerStudioWarning` warnings.

Both ends are closed against surprises: whatever goes wrong inside a reader or a writer (a
damaged file tripping a library, a full disk) comes out as one :class:`LayerStudioError` that
names the file, never as a bare exception, and a failed write leaves no file behind.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Any

from ..document import Layer, LayerStack
from ..errors import InvalidInputError, LayerStudioError, UnsupportedFormatError
from .atomic import atomic_path
from .ora import read_ora, write_ora
from .psd import read_psd, write_psd
from .raster import RASTER_SUFFIXES, read_file_bytes, read_image_file, write_flat_image
from .zip_bundle import read_zip, write_zip

__all__ = ["LAYERED_SUFFIXES", "LayerStudioWarning", "load_stack", "save_stack"]

LAYERED_SUFFIXES = (".psd", ".psb", ".ora", ".zip")
_PHOTOSHOP = (".psd", ".psb")


class LayerStudioWarning(UserWarning):
    """Something in an imported file was rasterised, approximated or skipped."""


def save_stack(stack: LayerStack, path: str | Path, **options: Any) -> Path:
    """Write ``stack`` to ``path`` in the format its extension names; returns the path.

    Options: ``depth`` (8 or 16) and ``compression`` ('rle', 'zip', 'raw') for PSD/PSB.
    A canvas wider or taller than 30,000 px needs ``.psb`` (Photoshop's large-document format).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not stack.layers:
        raise InvalidInputError("the stack has no layers; there is nothing to save")
    if path.is_dir():
        raise InvalidInputError(f"{path} is a folder; give a file name")
    writers = {".psd": write_psd, ".psb": functools.partial(write_psd, large=True),
               ".ora": write_ora, ".zip": write_zip}
    if suffix not in writers and suffix not in RASTER_SUFFIXES:
        raise UnsupportedFormatError(
            f"cannot save {path.name!r}: use .psd, .psb, .ora, .zip, or .png for a flattened "
            "image")
    if options and suffix not in _PHOTOSHOP:
        raise InvalidInputError(f"options {sorted(options)} apply only to PSD files")
    try:
        with atomic_path(path) as tmp:
            if suffix in writers:
                writers[suffix](stack, tmp, **options)
            else:
                write_flat_image(stack.composite_array(), tmp, suffix)
    except LayerStudioError:
        raise
    except OSError as exc:
        raise InvalidInputError(f"cannot write {path}: {exc.strerror or exc}") from None
    except Exception as exc:
        raise LayerStudioError(f"could not write {path.name} ({type(exc).__name__}: {exc})"
                               ) from None
    return path


def _sniff(path: Path) -> str:
    head = read_file_bytes(path, head=64)
    if not head:
        raise InvalidInputError(f"{path} is empty")
    if head.startswith(b"8BPS"):
        return ".psb" if head[4:6] == b"\x00\x02" else ".psd"
    if head.startswith(b"PK"):
        return ".ora" if b"mimetypeimage/openraster" in head else ".zip"
    return ".image"


def load_stack(path: str | Path) -> LayerStack:
    """Read a layered file (.psd, .psb, .ora, .zip bundle) or a plain image (one layer)."""
    path = Path(path)
    suffix = path.suffix.lower()
    kind = _sniff(path)
    if kind == ".zip" and suffix == ".ora":
        kind = ".ora"  # ORA files by other programs may not store mimetype first
    same = kind == suffix or (kind in _PHOTOSHOP and suffix in _PHOTOSHOP)
    if suffix in LAYERED_SUFFIXES and not same:
        found = {".psd": "a Photoshop file", ".psb": "a Photoshop file", ".zip": "a ZIP "
                 "archive", ".ora": "an OpenRaster file", ".image": "not a layered file"}[kind]
        raise UnsupportedFormatError(f"{path.name} is named {suffix} but its contents are "
                                     f"{found}")
    readers = {".psd": read_psd, ".psb": read_psd, ".ora": read_ora, ".zip": read_zip}
    if kind not in readers and suffix not in RASTER_SUFFIXES:
        raise UnsupportedFormatError(f"cannot open {path.name!r}: LayerStudio reads .psd, "
                                     f".psb, .ora, .zip and {', '.join(RASTER_SUFFIXES)}")
    try:
        stack = readers[kind](path) if kind in readers else _read_flat(path)
    except LayerStudioError:
        raise
    except RecursionError:
        raise InvalidInputError(f"{path} is nested too deeply to read") from None
    except MemoryError:
        raise InvalidInputError(f"{path} needs more memory than this machine has") from None
    except Exception as exc:  # a damaged file tripping a library: still the file's fault
        raise InvalidInputError(f"{path} is damaged or not what it claims to be "
                                f"({type(exc).__name__}: {exc})") from None
    for message in stack.metadata.get("import_warnings", []):
        warnings.warn(message, LayerStudioWarning, stacklevel=2)
    return stack


def _read_flat(path: Path) -> LayerStack:
    pixels = read_image_file(path)
    stack = LayerStack(pixels.shape[1], pixels.shape[0])
    stack.add(Layer(path.stem or "Image", pixels, kind="background"))
    return stack
