"""The JSON description of a stack without its pixels: ZIP's manifest.json and ORA's sidecar.

It carries everything PNG files cannot: order, offsets, opacity, blend modes, visibility,
groups, kinds, provenance and document metadata. Readers treat it as untrusted input.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import jsonsafe
from ..adjustments import Adjustment
from ..document import GroupInfo, Layer, LayerStack
from ..errors import InvalidInputError
from ..limits import PixelBudget

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "layer_file_name",
    "manifest_bytes",
    "parse_manifest",
    "safe_member",
    "stack_manifest",
]

FORMAT_NAME = "layerstudio"
FORMAT_VERSION = 1
MAX_MANIFEST_BYTES = jsonsafe.MAX_JSON_BYTES


def layer_file_name(index: int, name: str, folder: str = "layers") -> str:
    """A safe archive member name for a layer: never contains a path from the layer's name."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:40] or "layer"
    return f"{folder}/{index:03d}_{slug}.png"


def safe_member(name: object, what: str) -> str:
    """Reject archive member names that could escape the archive (zip-slip) or are odd."""
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"{what}: missing file name")
    parts = name.split("/")
    if name.startswith("/") or "\\" in name or ":" in name or any(p in ("", ".", "..")
                                                                  for p in parts):
        raise InvalidInputError(f"{what}: unsafe path {name!r} in archive")
    return name


def stack_manifest(stack: LayerStack, files: list[str]) -> dict[str, Any]:
    """Describe ``stack`` (layers bottom to top); ``files[i]`` is layer i's member name."""
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "width": stack.width,
        "height": stack.height,
        "metadata": stack.metadata,
        "groups": [{"path": list(path), "opacity": info.opacity,
                    "blend_mode": info.blend_mode.value, "visible": info.visible}
                   for path, info in stack.groups.items()],
        "layers": [{"name": layer.name, "file": file, "offset": list(layer.offset),
                    "size": [layer.width, layer.height], "dtype": str(layer.pixels.dtype),
                    "opacity": layer.opacity, "blend_mode": layer.blend_mode.value,
                    "visible": layer.visible, "kind": layer.kind, "group": list(layer.group),
                    "provenance": layer.provenance,
                    **({} if layer.adjustment is None
                       else {"adjustment": layer.adjustment.to_json()})}
                   for layer, file in zip(stack.layers, files, strict=True)],
    }


def manifest_bytes(manifest: dict[str, Any], what: str) -> bytes:
    """The manifest as strict JSON, refused (before anything is written) when the reader
    would refuse it: too large, too deep, or holding NaN."""
    data = jsonsafe.dumps(manifest, what, indent=2)
    if len(data) > MAX_MANIFEST_BYTES:
        raise InvalidInputError(f"{what} would be {len(data):,} bytes, above the limit of "
                                f"{MAX_MANIFEST_BYTES:,}: the metadata and provenance are too "
                                "large")
    return data


def decode_manifest(data: bytes, what: str) -> dict[str, Any]:
    """Parse manifest bytes with size, depth and shape checks."""
    manifest = jsonsafe.loads(data, what, MAX_MANIFEST_BYTES)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise InvalidInputError(f"{what} is not a LayerStudio manifest")
    if not isinstance(manifest.get("version"), int) or manifest["version"] > FORMAT_VERSION:
        raise InvalidInputError(f"{what} has version {manifest.get('version')!r}; this "
                                f"LayerStudio reads up to version {FORMAT_VERSION}")
    if not isinstance(manifest.get("layers"), list):
        raise InvalidInputError(f"{what} has no layer list")
    for key, kind in (("metadata", dict), ("groups", list)):
        if manifest.get(key) is not None and not isinstance(manifest[key], kind):
            raise InvalidInputError(f"{what}: {key!r} must be a JSON "
                                    f"{'object' if kind is dict else 'list'}")
    if not all(isinstance(entry, dict) for entry in manifest["layers"]):
        raise InvalidInputError(f"{what}: every layer entry must be a JSON object")
    return manifest


def adjustment_of(entry: dict[str, Any], what: str) -> Adjustment | None:
    """The adjustment an entry describes (adjustment layers only), or None."""
    value = entry.get("adjustment")
    return None if value is None else Adjustment.from_json(value, what)


def parse_manifest(manifest: dict[str, Any],
                   read_pixels: Callable[[dict[str, Any], PixelBudget], np.ndarray],
                   what: str) -> LayerStack:
    """Build a stack from a decoded manifest; ``read_pixels(entry, budget)`` returns a layer's
    array, charging its size to the document's pixel budget before decoding it."""
    budget = PixelBudget(what)
    try:
        stack = LayerStack(manifest["width"], manifest["height"],
                           metadata=manifest.get("metadata") or {})
        for group in manifest.get("groups") or []:
            stack.set_group(group["path"], GroupInfo(group.get("opacity", 1.0),
                                                     group.get("blend_mode", "pass-through"),
                                                     group.get("visible", True)))
        for i, entry in enumerate(manifest["layers"]):
            pixels = read_pixels(entry, budget)
            size = entry.get("size")
            if size == [0, 0] and pixels.shape[:2] == (1, 1) and not pixels[..., 3].any():
                pixels = pixels[:0, :0]  # an empty layer, stored as one transparent pixel
            if size is not None and list(size) != [pixels.shape[1], pixels.shape[0]]:
                raise InvalidInputError(f"{what}: layer {i} is {pixels.shape[1]}x"
                                        f"{pixels.shape[0]} but the manifest says {size}")
            if entry.get("dtype") == "float32" and pixels.dtype != "float32":
                pixels = pixels.astype("float32") / 65535.0
            stack.add(Layer(name=entry["name"], pixels=pixels,
                            offset=tuple(entry.get("offset", (0, 0))),
                            opacity=entry.get("opacity", 1.0),
                            blend_mode=entry.get("blend_mode", "normal"),
                            visible=entry.get("visible", True),
                            kind=entry.get("kind", "object"),
                            group=tuple(entry.get("group", ())),
                            provenance=entry.get("provenance") or {},
                            adjustment=adjustment_of(entry, f"{what}: layer {i}")))
    except (KeyError, TypeError, AttributeError) as exc:
        raise InvalidInputError(f"{what}: malformed manifest ({type(exc).__name__}: {exc})"
                                ) from None
    return stack
