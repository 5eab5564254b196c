"""Reading and writing layered files: PSD, OpenRaster, ZIP bundles and flat images.

:func:`save_stack` picks the writer from the extension and writes atomically;
:func:`load_stack` checks the file's signature, so a PNG renamed to .psd gets a clear message.
Importers report what they could not represent in ``stack.metadata['import_warnings']`` and as
:class:`LayerStudioWarning` warnings.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from ..document import Layer, LayerStack
from ..errors import InvalidInputError, UnsupportedFormatError
from .atomic import atomic_path
from .ora import read_ora, write_ora
from .psd import read_psd, write_psd
from .raster import RASTER_SUFFIXES, read_image_file, write_flat_image
from .zip_bundle import read_zip, write_zip

__all__ = ["LAYERED_SUFFIXES", "LayerStudioWarning", "load_stack", "save_stack"]

LAYERED_SUFFIXES = (".psd", ".ora", ".zip")


class LayerStudioWarning(UserWarning):
    """Something in an imported file was rasterised, approximated or skipped."""


def save_stack(stack: LayerStack, path: str | Path, **options: Any) -> Path:
    """Write ``stack`` to ``path`` in the format its extension names; returns the path.

    Options: ``depth`` (8 or 16) and ``compression`` ('rle', 'zip', 'raw') for PSD.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not stack.layers:
        raise InvalidInputError("the stack has no layers; there is nothing to save")
    if path.is_dir():
        raise InvalidInputError(f"{path} is a folder; give a file name")
    writers = {".psd": write_psd, ".ora": write_ora, ".zip": write_zip}
    if suffix not in writers and suffix not in RASTER_SUFFIXES:
        raise UnsupportedFormatError(
            f"cannot save {path.name!r}: use .psd, .ora, .zip, or .png for a flattened image")
    if options and suffix != ".psd":
        raise InvalidInputError(f"options {sorted(options)} apply only to PSD files")
    with atomic_path(path) as tmp:
        if suffix in writers:
            writers[suffix](stack, tmp, **options)
        else:
            write_flat_image(stack.composite_array(), tmp, suffix)
    return path


def _sniff(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
    except FileNotFoundError:
        raise InvalidInputError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise InvalidInputError(f"{path} is a folder, not a file") from None
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not head:
        raise InvalidInputError(f"{path} is empty")
    if head.startswith(b"8BPS"):
        return ".psd"
    if head.startswith(b"PK"):
        return ".ora" if b"mimetypeimage/openraster" in head else ".zip"
    return ".image"


def load_stack(path: str | Path) -> LayerStack:
    """Read a layered file (.psd, .ora, .zip bundle) or a plain image (one layer)."""
    path = Path(path)
    suffix = path.suffix.lower()
    kind = _sniff(path)
    if kind == ".zip" and suffix == ".ora":
        kind = ".ora"  # ORA files by other programs may not store mimetype first
    if suffix in LAYERED_SUFFIXES and kind != suffix:
        found = {".psd": "a Photoshop file", ".zip": "a ZIP archive", ".ora": "an OpenRaster "
                 "file", ".image": "not a layered file"}[kind]
        raise UnsupportedFormatError(f"{path.name} is named {suffix} but its contents are "
                                     f"{found}")
    if kind == ".psd":
        stack = read_psd(path)
    elif kind == ".ora":
        stack = read_ora(path)
    elif kind == ".zip":
        stack = read_zip(path)
    elif suffix in RASTER_SUFFIXES:
        stack_pixels = read_image_file(path)
        stack = LayerStack(stack_pixels.shape[1], stack_pixels.shape[0])
        stack.add(Layer(path.stem or "Image", stack_pixels, kind="background"))
    else:
        raise UnsupportedFormatError(f"cannot open {path.name!r}: LayerStudio reads .psd, "
                                     f".ora, .zip and {', '.join(RASTER_SUFFIXES)}")
    for message in stack.metadata.get("import_warnings", []):
        warnings.warn(message, LayerStudioWarning, stacklevel=2)
    return stack
