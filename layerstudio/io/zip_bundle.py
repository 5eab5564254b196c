"""ZIP bundles: one PNG per layer, ``manifest.json`` and a flattened ``composite.png``.

The simplest interchange format: any language can read it, and the manifest keeps everything
the PNGs cannot (see :mod:`layerstudio.io.manifest`).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..document import LayerStack
from ..errors import InvalidInputError
from ..limits import PixelBudget
from .archive import open_archive, read_member
from .manifest import (
    decode_manifest,
    layer_file_name,
    manifest_bytes,
    parse_manifest,
    safe_member,
    stack_manifest,
)
from .raster import decode_png, encode_png, png_bytes

__all__ = ["read_zip", "write_zip"]


def write_zip(stack: LayerStack, path: Path) -> None:
    """Write ``stack`` as a ZIP bundle at ``path`` (layers cropped to their content)."""
    cropped = stack.cropped_to_content()
    files = [layer_file_name(i, layer.name) for i, layer in enumerate(cropped)]
    manifest = manifest_bytes(stack_manifest(cropped, files), f"{path.name}: manifest")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("manifest.json", manifest)
        for layer, name in zip(cropped, files, strict=True):
            # PNG is already deflated: storing avoids compressing twice.
            bundle.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)),
                            encode_png(layer.pixels), compress_type=zipfile.ZIP_STORED)
        bundle.writestr("composite.png", png_bytes(stack.composite()),
                        compress_type=zipfile.ZIP_STORED)


def read_zip(path: Path) -> LayerStack:
    """Read a ZIP bundle written by :func:`write_zip` (or by hand to the same layout)."""
    with open_archive(path) as bundle:
        if "manifest.json" not in bundle.namelist():
            raise InvalidInputError(f"{path} has no manifest.json; it is not a LayerStudio "
                                    "ZIP bundle")
        manifest = decode_manifest(read_member(bundle, "manifest.json"), f"{path}: manifest")

        def read_pixels(entry: dict, budget: PixelBudget) -> np.ndarray:
            name = safe_member(entry.get("file"), f"{path}: layer {entry.get('name')!r}")
            return decode_png(read_member(bundle, name), f"{path}:{name}", budget)

        return parse_manifest(manifest, read_pixels, str(path))
