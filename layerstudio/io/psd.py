"""Photoshop (.psd, and .psb for large documents) reader and writer on top of psd-tools.

Writing: an RGB document with transparency, one pixel layer per layer cropped to its alpha
bounding box and placed with left/top, groups as folders, blend modes, opacity, visibility,
unicode names, 8 or 16 bits per channel, adjustment layers with their Photoshop settings, and
our own composite stored as the merged image so that viewers which only read that (ImageMagick
frame 0, previews) show exactly what we render.

Reading: real Photoshop files, layer by layer in :mod:`.psd_layers`; what cannot be represented
(effects, dissolve, baked masks) is reported as warnings rather than silently lost, and so is a
rendering that differs from the composite Photoshop stored.
"""

from __future__ import annotations

import contextlib
import logging
import struct
import xml.etree.ElementTree as ET
from collections import defaultdict, deque
from collections.abc import Iterator
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
from ..document import Layer, LayerStack
from ..errors import InvalidInputError, UnsupportedFormatError
from ..imaging import to_uint8
from ..limits import PixelBudget, check_size, max_pixels
from .manifest import decode_manifest, manifest_bytes, stack_manifest
from .psd_layers import read_layers

__all__ = ["PSD_MAX_SIDE", "read_psd", "write_psd"]

PSD_MAX_SIDE = 30_000
"""Widest/tallest canvas a .psd may have; larger ones are PSB (large document format)."""

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

logging.getLogger("psd_tools").addHandler(logging.NullHandler())  # no stray lines on stderr

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
              compression: str = "rle", large: bool = False) -> None:
    """Write ``stack`` to ``path`` as PSD, or as PSB when ``large`` (``depth`` 8 or 16;
    default: 16 if any layer is)."""
    if not stack.layers:
        raise InvalidInputError("cannot write a PSD with no layers")
    if not large and max(stack.size) > PSD_MAX_SIDE:
        raise InvalidInputError(
            f"a {stack.width}x{stack.height} canvas is larger than PSD allows "
            f"({PSD_MAX_SIDE:,} px a side); save it as .psb (large document format)")
    depth = _depth_for(stack, depth)
    codec = {"rle": Compression.RLE, "zip": Compression.ZIP, "raw": Compression.RAW}.get(
        compression)
    if codec is None:
        raise InvalidInputError(f"PSD compression must be rle, zip or raw, got {compression!r}")
    psd = PSDImage.new("RGBA", stack.size, depth=depth)
    psd._record.header.version = 2 if large else 1
    cropped = stack.cropped_to_content()

    scratch = _Scratch(psd)

    def emit(parent, nodes: list) -> None:
        made = []
        for node in nodes:
            if hasattr(node, "children"):
                info = cropped.groups[node.path]
                group = Group.new(scratch.group(), name=_PLACEHOLDER)
                group.name = node.path[-1]
                group.opacity = round(info.opacity * 255)
                group.blend_mode = _TO_PSD[info.blend_mode]
                group.visible = info.visible
                emit(group, node.children)
                made.append(group)
                continue
            layer: Layer = node.source
            pixels = layer.pixels
            if pixels.size == 0 or layer.adjustment is not None:
                # psd-tools needs at least one pixel; an adjustment's coverage goes in its mask
                pixels = np.zeros((1, 1, 4), pixels.dtype)
            item = scratch.group().create_pixel_layer_from_array(
                _layer_array(pixels, depth), name=_PLACEHOLDER, left=layer.offset[0],
                top=layer.offset[1], compression=codec, opacity=round(layer.opacity * 255),
                blend_mode=_TO_PSD[layer.blend_mode])
            item.name = layer.name
            item.visible = layer.visible
            if layer.adjustment is not None:
                _make_adjustment(item, layer, stack.size, codec)
            made.append(item)
        parent.extend(made)

    # psd-tools rebuilds its record of the whole document after every added layer; build the
    # tree first and the record once (the same record, without the quadratic cost).
    psd._update_record = lambda: None
    try:
        emit(psd, cropped.render_tree())
        scratch.remove()
    finally:
        del psd._update_record
    psd._update_record()
    manifest = manifest_bytes(stack_manifest(cropped, [None] * len(cropped.layers)),
                              f"{path.name}: LayerStudio metadata")
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


class _Scratch:
    """Small holding groups for new layers before they move to their parent in one step.

    psd-tools re-checks every sibling each time a layer is added to a group, so adding 1,000
    layers one by one to one parent costs 1,000^2 checks (27 s); created in groups of at most
    ``SIZE`` and moved with one ``extend`` per parent, the export is linear in layer count."""

    SIZE = 16

    def __init__(self, psd: PSDImage) -> None:
        self.psd, self.groups, self.used = psd, [], self.SIZE

    def group(self) -> Group:
        if self.used == self.SIZE:
            self.groups.append(Group.new(self.psd, name=_PLACEHOLDER))
            self.used = 0
        self.used += 1
        return self.groups[-1]

    def remove(self) -> None:
        kept = [item for item in self.psd if all(item is not g for g in self.groups)]
        self.psd.clear()
        self.psd.extend(kept)


def _make_adjustment(made, layer: Layer, canvas: tuple[int, int], codec: Compression) -> None:
    """Turn the placeholder layer ``made`` into ``layer``'s adjustment layer: its Photoshop
    settings block as read, and its coverage as the layer mask (none when it covers the whole
    canvas)."""
    from psd_tools.psd.tagged_blocks import TaggedBlock

    block = TaggedBlock.frombytes(layer.adjustment.block)
    made._record.tagged_blocks[block.key] = block
    coverage = to_uint8(layer.pixels)[..., 3]
    whole = layer.bbox == (0, 0, *canvas) and coverage.min() == 255
    if coverage.size and not whole:
        made.create_mask(Image.fromarray(coverage, "L"), top=layer.offset[1],
                         left=layer.offset[0], compression=codec)


# --- LayerStudio metadata in XMP ---------------------------------------------------------------
# PSD has no field for a layer's kind, its provenance or the document's prompt and seed. They
# travel as our JSON manifest inside the file's XMP packet, which Photoshop keeps on re-save.

XMP_NAMESPACE = "urn:layerstudio:ns:1.0"


def _xmp_packet(manifest: bytes) -> bytes:
    body = escape(manifest.decode("utf-8"))
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
    if version not in (1, 2):
        raise InvalidInputError(f"{path} has unknown PSD version {version}")
    check_size(width, height, what=f"{path} canvas")
    if mode not in (ColorMode.RGB, ColorMode.GRAYSCALE):
        known = {m.value: m.name for m in ColorMode}
        raise UnsupportedFormatError(
            f"{path} uses colour mode {known.get(mode, mode)}; only RGB and Grayscale are "
            "supported (convert it in your editor)")
    if depth not in (8, 16, 32):
        raise UnsupportedFormatError(f"{path} has {depth}-bit channels; use 8, 16 or 32 bits")
    _check_sections(path, version)


def _check_sections(path: Path, version: int) -> None:
    """Walk the section lengths so a truncated file is caught before psd-tools reads it
    (psd-tools pads short reads silently in places). PSB stores the third length in 8 bytes."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        position = 26
        for section, width in (("colour mode data", 4), ("image resources", 4),
                               ("layer and mask information", 4 * version)):
            handle.seek(position)
            raw = handle.read(width)
            if len(raw) < width:
                raise InvalidInputError(f"{path} is truncated in its {section} section")
            position += width + int.from_bytes(raw, "big")
            if position > size:
                raise InvalidInputError(f"{path} is truncated: its {section} section runs "
                                        "past the end of the file")
        if position + 2 > size:
            raise InvalidInputError(f"{path} is truncated: the merged image data is missing")


def read_psd(path: Path) -> LayerStack:
    """Read a PSD or PSB file; what cannot be represented is listed in
    metadata['import_warnings'] (psd-tools' own log lines about the file go there too)."""
    _check_header(path)
    warnings: list[str] = []
    with _psd_tools_log(warnings):
        psd = _open(path)
        stack = LayerStack(psd.width, psd.height, metadata={"source": path.name})
        if psd.depth == 32:
            warnings.append("32-bit linear-light channels converted to sRGB floats; values "
                            "above 1.0 (HDR) are clipped")
        if psd.color_mode == ColorMode.GRAYSCALE and Resource.ICC_PROFILE in \
                psd.image_resources:
            warnings.append("the grayscale colour profile is not applied: grey values are "
                            "read as sRGB, so mid-tones may look darker than in Photoshop")
        budget = PixelBudget(str(path))
        try:
            read_layers(psd, stack, _FROM_PSD, warnings, budget)
            if not stack.layers:
                merged = psd.composite(force=False) if psd.has_preview() else None
                if merged is None:
                    raise InvalidInputError(f"{path} has no layers and no merged image")
                stack.add(Layer("Background", merged, kind="background"))
                warnings.append("the file has no layers; imported its flattened image as one "
                                "background layer")
            else:
                _compare_with_stored(psd, stack, warnings)
        except InvalidInputError:
            raise
        except Exception as exc:  # malformed layer records surface lazily, while reading
            raise InvalidInputError(f"{path}: could not read layer data ({type(exc).__name__}"
                                    f": {exc})") from None
    manifest = _manifest_from_xmp(psd, path)
    if manifest is not None:
        _apply_manifest(stack, manifest)
    if warnings:
        stack.metadata["import_warnings"] = list(dict.fromkeys(warnings))
    return stack


def _open(path: Path) -> PSDImage:
    try:
        psd = PSDImage.open(path, max_alloc_bytes=max_pixels() * 16)
    except Exception as exc:  # psd-tools raises assorted exceptions on malformed files
        raise InvalidInputError(f"{path} is corrupt or truncated ({type(exc).__name__}: "
                                f"{exc})") from None
    try:
        psd._record.image_data.get_data(psd._record.header)  # decodes, so verifies, the RLE
    except Exception as exc:
        raise InvalidInputError(f"{path}: the merged image data is corrupt ({exc})") from None
    return psd


MISMATCH_WARN = 2.0
"""Mean difference (in 1/255) from Photoshop's stored composite above which import warns."""


def _compare_with_stored(psd: PSDImage, stack: LayerStack, warnings: list[str]) -> None:
    """Warn when our rendering of the layers differs from the composite Photoshop stored, so no
    document looks different here without a word (the other warnings say what is missing)."""
    try:
        stored = psd.topil() if psd.has_preview() else None  # the stored image, no renderer
    except Exception:  # an undecodable preview is only a missing reference
        stored = None
    if stored is None or stored.size != stack.size:
        return
    ours = stack.composite_array()
    theirs = np.asarray(stored.convert("RGBA"), np.float32) / 255.0
    on_white = [image[..., :3] * image[..., 3:] + (1.0 - image[..., 3:])
                for image in (ours, theirs)]
    difference = float(np.abs(on_white[0] - on_white[1]).mean() * 255.0)
    if difference > MISMATCH_WARN:
        known = "see the warnings above" if warnings else "a Photoshop feature LayerStudio " \
            "does not read"
        warnings.append(f"the layers render {difference:.1f}/255 (mean) away from the "
                        f"composite Photoshop stored ({known}); check the result before "
                        "exporting")


@contextlib.contextmanager
def _psd_tools_log(warnings: list[str]) -> Iterator[None]:
    """Collect psd-tools' log lines about this file as import warnings instead of letting them
    reach the terminal next to our own messages."""
    logger = logging.getLogger("psd_tools")

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            warnings.append(f"psd-tools: {record.getMessage()}")

    handler = Collect(logging.WARNING)
    saved = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = saved


def merged_image(path: str | Path) -> Image.Image | None:
    """The composite Photoshop stored in the file (None if it stored none)."""
    path = Path(path)
    _check_header(path)
    psd = PSDImage.open(path)
    return psd.composite(force=False) if psd.has_preview() else None
