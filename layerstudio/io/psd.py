"""Photoshop (.psd) reader and writer on top of psd-tools.

Writing: an RGB document with transparency, one pixel layer per layer cropped to its alpha
bounding box and placed with left/top, groups as folders, blend modes, opacity, visibility,
unicode names, 8 or 16 bits per channel, and our own composite stored as the merged image so
that viewers which only read that (ImageMagick frame 0, previews) show exactly what we render.

Reading: real Photoshop files. Pixel, shape, type and smart-object layers come in as pixels
(the latter three are rasterised, with a warning); raster layer masks are multiplied into
alpha; clipped layers are cut to the alpha of their base; adjustment and fill layers, layer
effects and dissolve are reported as warnings rather than silently lost.
"""

from __future__ import annotations

import json
import struct
import xml.etree.ElementTree as ET
from collections import defaultdict, deque
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image
from psd_tools import PSDImage
from psd_tools.api import numpy_io
from psd_tools.api.layers import Group
from psd_tools.constants import BlendMode as PsdBlend
from psd_tools.constants import ColorMode, Compression, Resource
from psd_tools.psd.image_resources import ImageResource

from ..blend import BlendMode
from ..compositing import to_float_rgba
from ..document import GroupInfo, Layer, LayerStack
from ..errors import InvalidInputError, UnsupportedFormatError
from ..imaging import to_uint8
from ..limits import MAX_LAYERS, check_size, max_pixels
from .manifest import decode_manifest, stack_manifest

__all__ = ["read_psd", "write_psd"]

_TO_PSD = {
    BlendMode.NORMAL: PsdBlend.NORMAL, BlendMode.MULTIPLY: PsdBlend.MULTIPLY,
    BlendMode.SCREEN: PsdBlend.SCREEN, BlendMode.OVERLAY: PsdBlend.OVERLAY,
    BlendMode.DARKEN: PsdBlend.DARKEN, BlendMode.LIGHTEN: PsdBlend.LIGHTEN,
    BlendMode.COLOR_DODGE: PsdBlend.COLOR_DODGE, BlendMode.COLOR_BURN: PsdBlend.COLOR_BURN,
    BlendMode.HARD_LIGHT: PsdBlend.HARD_LIGHT, BlendMode.SOFT_LIGHT: PsdBlend.SOFT_LIGHT,
    BlendMode.DIFFERENCE: PsdBlend.DIFFERENCE, BlendMode.EXCLUSION: PsdBlend.EXCLUSION,
    BlendMode.LINEAR_DODGE: PsdBlend.LINEAR_DODGE, BlendMode.LINEAR_BURN: PsdBlend.LINEAR_BURN,
    BlendMode.VIVID_LIGHT: PsdBlend.VIVID_LIGHT, BlendMode.LINEAR_LIGHT: PsdBlend.LINEAR_LIGHT,
    BlendMode.PIN_LIGHT: PsdBlend.PIN_LIGHT, BlendMode.HARD_MIX: PsdBlend.HARD_MIX,
    BlendMode.SUBTRACT: PsdBlend.SUBTRACT, BlendMode.DIVIDE: PsdBlend.DIVIDE,
    BlendMode.DARKER_COLOR: PsdBlend.DARKER_COLOR,
    BlendMode.LIGHTER_COLOR: PsdBlend.LIGHTER_COLOR,
    BlendMode.HUE: PsdBlend.HUE, BlendMode.SATURATION: PsdBlend.SATURATION,
    BlendMode.COLOR: PsdBlend.COLOR, BlendMode.LUMINOSITY: PsdBlend.LUMINOSITY,
    BlendMode.PASS_THROUGH: PsdBlend.PASS_THROUGH,
}
_FROM_PSD = {psd: ours for ours, psd in _TO_PSD.items()}

_PLACEHOLDER = "Layer"
"""psd-tools encodes the legacy name field in MacRoman and fails on other scripts; layers are
created under this ASCII name and renamed afterwards, which writes the unicode name block."""


# --- writing ---------------------------------------------------------------------------------

def _depth_for(stack: LayerStack, depth: int | None) -> int:
    if depth is None:
        return 8 if all(layer.pixels.dtype == np.uint8 for layer in stack.layers) else 16
    if depth not in (8, 16):
        raise InvalidInputError(f"PSD bit depth must be 8 or 16, got {depth}")
    return depth


def _layer_array(pixels: np.ndarray, depth: int) -> np.ndarray:
    if depth == 8:
        return to_uint8(pixels)
    if pixels.dtype == np.uint16:
        return pixels
    if pixels.dtype == np.uint8:
        return pixels.astype(np.uint16) * 257
    return np.clip(np.rint(pixels * 65535.0), 0, 65535).astype(np.uint16)


def write_psd(stack: LayerStack, path: Path, depth: int | None = None,
              compression: str = "rle") -> None:
    """Write ``stack`` to ``path`` as PSD (``depth`` 8 or 16; default: 16 if any layer is)."""
    if not stack.layers:
        raise InvalidInputError("cannot write a PSD with no layers")
    depth = _depth_for(stack, depth)
    codec = {"rle": Compression.RLE, "zip": Compression.ZIP, "raw": Compression.RAW}.get(
        compression)
    if codec is None:
        raise InvalidInputError(f"PSD compression must be rle, zip or raw, got {compression!r}")
    psd = PSDImage.new("RGBA", stack.size, depth=depth)
    cropped = stack.cropped_to_content()

    def emit(parent, nodes: list) -> None:
        for node in nodes:
            if hasattr(node, "children"):
                info = cropped.groups[node.path]
                group = Group.new(parent, name=_PLACEHOLDER)
                group.name = node.path[-1]
                group.opacity = round(info.opacity * 255)
                group.blend_mode = _TO_PSD[info.blend_mode]
                group.visible = info.visible
                emit(group, node.children)
                continue
            layer: Layer = node.source
            pixels = layer.pixels
            if pixels.size == 0:  # psd-tools needs at least one pixel; keep it transparent
                pixels = np.zeros((1, 1, 4), pixels.dtype)
            made = parent.create_pixel_layer_from_array(
                _layer_array(pixels, depth), name=_PLACEHOLDER, left=layer.offset[0],
                top=layer.offset[1], compression=codec, opacity=round(layer.opacity * 255),
                blend_mode=_TO_PSD[layer.blend_mode])
            made.name = layer.name
            made.visible = layer.visible

    emit(psd, cropped.render_tree())
    manifest = stack_manifest(cropped, [None] * len(cropped.layers))
    psd.image_resources[Resource.XMP_METADATA] = ImageResource(
        key=Resource.XMP_METADATA, data=_xmp_packet(manifest))
    composite = stack.composite_array()

    def store_our_composite() -> None:
        # psd-tools would re-render the merged image with its own engine; store ours instead.
        # A negative layer count tells readers (and psd-tools' encoder) that the merged image's
        # extra channel is its transparency, as Photoshop writes it; otherwise it shows opaque.
        info = psd._record.layer_and_mask_information.layer_info
        info.layer_count = -abs(info.layer_count)
        # (The encoder mattes the colour against white, as Photoshop stores it.)
        psd._record.image_data.set_data(
            numpy_io.encode_image_data(psd, composite[..., :3], composite[..., 3:4]),
            psd._record.header)

    psd._update_preview = store_our_composite
    psd.save(path)


# --- LayerStudio metadata in XMP ---------------------------------------------------------------
# PSD has no field for a layer's kind, its provenance or the document's prompt and seed. They
# travel as our JSON manifest inside the file's XMP packet, which Photoshop keeps on re-save.

XMP_NAMESPACE = "urn:layerstudio:ns:1.0"


def _xmp_packet(manifest: dict) -> bytes:
    body = escape(json.dumps(manifest, ensure_ascii=False))
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description rdf:about="" xmlns:layerstudio="{XMP_NAMESPACE}">'
        f"<layerstudio:manifest>{body}</layerstudio:manifest>"
        '</rdf:Description></rdf:RDF></x:xmpmeta>\n<?xpacket end="w"?>'
    ).encode()


def _manifest_from_xmp(psd: PSDImage, path: Path) -> dict | None:
    data = psd.image_resources.get_data(Resource.XMP_METADATA)
    if not isinstance(data, bytes) or XMP_NAMESPACE.encode() not in data:
        return None
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise InvalidInputError(f"{path}: XMP metadata declares a DTD, which is not allowed")
    start, end = data.find(b"<x:xmpmeta"), data.rfind(b"</x:xmpmeta>")
    try:
        root = ET.fromstring(data[start:end + len(b"</x:xmpmeta>")])
    except ET.ParseError:
        return None  # damaged or foreign XMP: the pixels are still good
    element = root.find(f".//{{{XMP_NAMESPACE}}}manifest")
    if element is None or not element.text:
        return None
    return decode_manifest(element.text.encode("utf-8"), f"{path}: LayerStudio metadata")


def _apply_manifest(stack: LayerStack, manifest: dict) -> None:
    """Restore kinds, provenance and document metadata, matching layers by name in order, so
    a file edited in another program keeps what still matches."""
    entries: dict[str, deque] = defaultdict(deque)
    for entry in manifest.get("layers", []):
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            entries[entry["name"]].append(entry)
    for layer in stack.layers:
        if entries[layer.name]:
            entry = entries[layer.name].popleft()
            kind, provenance = entry.get("kind"), entry.get("provenance")
            if isinstance(kind, str) and kind.strip():
                layer.kind = kind
            if isinstance(provenance, dict):
                layer.provenance = provenance
    if isinstance(manifest.get("metadata"), dict):
        stack.metadata.update(manifest["metadata"])


# --- reading ---------------------------------------------------------------------------------

def _check_header(path: Path) -> None:
    """Validate the 26-byte PSD header before psd-tools allocates anything."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(26)
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(header) < 26 or header[:4] != b"8BPS":
        raise UnsupportedFormatError(f"{path} is not a Photoshop file (no 8BPS signature)")
    version, _channels, height, width, depth, mode = struct.unpack(">H6xHIIHH", header[4:26])
    if version == 2:
        raise UnsupportedFormatError(f"{path} is a large-document PSB file, which is not "
                                     "supported; save it as PSD")
    if version != 1:
        raise InvalidInputError(f"{path} has unknown PSD version {version}")
    check_size(width, height, what=f"{path} canvas")
    if mode not in (ColorMode.RGB, ColorMode.GRAYSCALE):
        known = {m.value: m.name for m in ColorMode}
        raise UnsupportedFormatError(
            f"{path} uses colour mode {known.get(mode, mode)}; only RGB and Grayscale are "
            "supported (convert it in your editor)")
    if depth not in (8, 16, 32):
        raise UnsupportedFormatError(f"{path} has {depth}-bit channels; use 8, 16 or 32 bits")
    _check_sections(path)


def _check_sections(path: Path) -> None:
    """Walk the section lengths so a truncated file is caught before psd-tools reads it
    (psd-tools pads short reads silently in places)."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        position = 26
        for section in ("colour mode data", "image resources", "layer and mask information"):
            handle.seek(position)
            raw = handle.read(4)
            if len(raw) < 4:
                raise InvalidInputError(f"{path} is truncated in its {section} section")
            position += 4 + struct.unpack(">I", raw)[0]
            if position > size:
                raise InvalidInputError(f"{path} is truncated: its {section} section runs "
                                        "past the end of the file")
        if position + 2 > size:
            raise InvalidInputError(f"{path} is truncated: the merged image data is missing")


def _pixels_of(layer, depth: int) -> np.ndarray | None:
    """A psd-tools layer's own pixels as RGBA at the document's precision."""
    if depth == 8:
        image = layer.topil()
        return None if image is None else np.asarray(image.convert("RGBA")).copy()
    array = layer.numpy()
    if array is None:
        return None
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    if array.shape[2] == 3:
        array = np.concatenate([array, np.ones((*array.shape[:2], 1), array.dtype)], axis=2)
    array = np.clip(array[..., :4], 0.0, 1.0)
    if depth == 16:
        return np.rint(array * 65535.0).astype(np.uint16)
    array[..., :3] = _linear_to_srgb(array[..., :3])  # 32-bit documents hold linear light
    return array.astype(np.float32)


def _linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """The sRGB transfer function (IEC 61966-2-1), for Photoshop's linear 32-bit data."""
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055)


def _scale_alpha(pixels: np.ndarray, factor: np.ndarray, at: tuple[int, int],
                 outside: float) -> None:
    """Multiply alpha by ``factor`` (floats in [0, 1]) placed at ``at`` (x, y) relative to the
    layer, and by ``outside`` where the factor does not reach; in place, dtype kept."""
    h, w = pixels.shape[:2]
    cover = np.full((h, w), outside, np.float32)
    fx, fy = at
    y0, x0 = max(fy, 0), max(fx, 0)
    y1, x1 = min(fy + factor.shape[0], h), min(fx + factor.shape[1], w)
    if y0 < y1 and x0 < x1:
        cover[y0:y1, x0:x1] = factor[y0 - fy:y1 - fy, x0 - fx:x1 - fx]
    alpha = pixels[..., 3].astype(np.float32) * cover
    pixels[..., 3] = alpha if pixels.dtype == np.float32 else np.rint(alpha).astype(pixels.dtype)


def _apply_mask(pixels: np.ndarray, layer) -> bool:
    """Multiply an enabled raster layer mask into alpha; True when one was applied."""
    mask = layer.mask
    if mask is None or mask.disabled:
        return False
    image = mask.topil()
    if image is None:
        return False
    values = np.asarray(image.convert("L"), np.float32) / 255.0
    _scale_alpha(pixels, values, (mask.left - layer.left, mask.top - layer.top),
                 outside=mask.background_color / 255.0)
    return True


def _clip_to_base(pixels: np.ndarray, offset: tuple[int, int], base: Layer) -> None:
    """Cut a clipped layer to its base layer's alpha (Photoshop clipping masks)."""
    base_alpha = to_float_rgba(base.pixels)[..., 3]
    _scale_alpha(pixels, base_alpha, (base.offset[0] - offset[0], base.offset[1] - offset[1]),
                 outside=0.0)


def read_psd(path: Path) -> LayerStack:
    """Read a PSD file; what cannot be represented is listed in metadata['import_warnings']."""
    _check_header(path)
    try:
        psd = PSDImage.open(path, max_alloc_bytes=max_pixels() * 16)
    except (OSError, ValueError, EOFError, struct.error, IndexError, KeyError,
            AssertionError) as exc:
        raise InvalidInputError(f"{path} is corrupt or truncated ({type(exc).__name__}: "
                                f"{exc})") from None
    except Exception as exc:  # psd-tools raises assorted exceptions on malformed files
        raise InvalidInputError(f"{path} could not be parsed as PSD: {exc}") from None
    try:
        psd._record.image_data.get_data(psd._record.header)  # decodes, so verifies, the RLE
    except Exception as exc:
        raise InvalidInputError(f"{path}: the merged image data is corrupt ({exc})") from None
    stack = LayerStack(psd.width, psd.height, metadata={"source": path.name})
    warnings: list[str] = []
    if psd.depth == 32:
        warnings.append("32-bit linear-light channels converted to sRGB floats; values "
                        "above 1.0 (HDR) are clipped")
    try:
        _read_children(psd, psd, (), stack, warnings)
        if not stack.layers:
            merged = psd.composite(force=False) if psd.has_preview() else None
            if merged is None:
                raise InvalidInputError(f"{path} has no layers and no merged image")
            stack.add(Layer("Background", merged, kind="background"))
            warnings.append("the file has no layers; imported its flattened image as one "
                            "background layer")
    except InvalidInputError:
        raise
    except Exception as exc:  # malformed layer records surface lazily, while reading pixels
        raise InvalidInputError(f"{path}: could not read layer data ({type(exc).__name__}: "
                                f"{exc})") from None
    manifest = _manifest_from_xmp(psd, path)
    if manifest is not None:
        _apply_manifest(stack, manifest)
    if warnings:
        stack.metadata["import_warnings"] = warnings
    return stack


def _read_children(psd: PSDImage, parent, group: tuple[str, ...], stack: LayerStack,
                   warnings: list[str]) -> None:
    base: Layer | None = None  # the most recent non-clipped layer, for clipping masks
    for item in parent:
        if len(stack.layers) >= MAX_LAYERS:
            raise InvalidInputError(f"the file has more than {MAX_LAYERS} layers")
        label = f"layer {item.name!r}"
        mode = _FROM_PSD.get(item.blend_mode)
        if mode is None:  # dissolve
            warnings.append(f"{label}: blend mode {item.blend_mode.name.lower()} is not "
                            "supported; using normal")
            mode = BlendMode.NORMAL
        if item.is_group():
            name, n = item.name or "Group", 2
            while (*group, name) in stack.groups:
                name, n = f"{item.name} ({n})", n + 1
            path = (*group, name)
            stack.set_group(path, GroupInfo(item.opacity / 255.0, mode, item.visible))
            before = len(stack.layers)
            _read_children(psd, item, path, stack, warnings)
            if len(stack.layers) == before:
                warnings.append(f"group {item.name!r} is empty; empty groups are not kept")
                del stack.groups[path]
            base = None
            continue
        if item.kind in ("adjustment", "brightnesscontrast", "levels", "curves", "exposure",
                         "vibrance", "huesaturation", "colorbalance", "blackandwhite",
                         "photofilter", "channelmixer", "colorlookup", "invert", "posterize",
                         "threshold", "selectivecolor", "gradientmap"):
            warnings.append(f"{label}: adjustment layers ({item.kind}) are not supported; "
                            "skipped")
            continue
        pixels = _pixels_of(item, psd.depth)
        if pixels is None and item.kind in ("solidcolorfill", "patternfill", "gradientfill",
                                            "shape", "type", "smartobject"):
            image = item.composite()
            pixels = None if image is None else np.asarray(image.convert("RGBA")).copy()
        if item.kind in ("shape", "type", "smartobject", "solidcolorfill", "patternfill",
                         "gradientfill"):
            warnings.append(f"{label}: {item.kind} layer imported as pixels (rasterised)")
        offset = (item.left, item.top)
        if pixels is None:
            pixels = np.zeros((0, 0, 4), np.uint8 if psd.depth == 8 else np.uint16)
        elif pixels.size and item.has_mask() and _apply_mask(pixels, item):
            warnings.append(f"{label}: layer mask applied to its alpha")
        if item.has_effects():
            warnings.append(f"{label}: layer effects (shadows, strokes, ...) are not imported")
        if item.fill_opacity != 255 and item.fill_opacity is not None:
            warnings.append(f"{label}: fill opacity folded into layer opacity")
        opacity = item.opacity / 255.0 * ((item.fill_opacity or 255) / 255.0)
        if item.clipping and base is not None and pixels.size:
            _clip_to_base(pixels, offset, base)
            warnings.append(f"{label}: clipping mask baked into its alpha")
        layer = Layer(name=item.name or "Layer", pixels=pixels, offset=offset,
                      opacity=opacity, blend_mode=mode, visible=item.visible,
                      kind="background" if item.name == "Background" and not stack.layers
                      else "object", group=group)
        stack.add(layer)
        if not item.clipping:
            base = layer


def merged_image(path: str | Path) -> Image.Image | None:
    """The composite Photoshop stored in the file (None if it stored none)."""
    path = Path(path)
    _check_header(path)
    psd = PSDImage.open(path)
    return psd.composite(force=False) if psd.has_preview() else None
