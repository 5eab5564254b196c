"""OpenRaster (.ora) reader and writer, written to the OpenRaster 0.0.5 specification.

Layout: ``mimetype`` first and stored uncompressed, ``stack.xml`` (first child = top of the
stack), ``data/*.png``, ``Thumbnails/thumbnail.png`` (at most 256 px) and ``mergedimage.png``.
Krita and MyPaint open these files. Kinds, provenance and document metadata, which the spec has
no place for, travel in a ``layerstudio.json`` sidecar that other programs ignore.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

from ..blend import BlendMode
from ..document import GroupInfo, Layer, LayerStack, unique_group_name
from ..errors import InvalidInputError
from ..imaging import fit_within
from ..limits import MAX_GROUP_DEPTH, MAX_LAYERS, PixelBudget
from .archive import open_archive, read_member
from .manifest import (
    MAX_MANIFEST_BYTES,
    adjustment_of,
    decode_manifest,
    layer_file_name,
    manifest_bytes,
    safe_member,
    stack_manifest,
)
from .raster import decode_png, encode_png, png_bytes

__all__ = ["read_ora", "write_ora"]

MIMETYPE = b"image/openraster"
SIDECAR = "layerstudio.json"

_SVG_OPS = {
    BlendMode.NORMAL: "svg:src-over", BlendMode.MULTIPLY: "svg:multiply",
    BlendMode.SCREEN: "svg:screen", BlendMode.OVERLAY: "svg:overlay",
    BlendMode.DARKEN: "svg:darken", BlendMode.LIGHTEN: "svg:lighten",
    BlendMode.COLOR_DODGE: "svg:color-dodge", BlendMode.COLOR_BURN: "svg:color-burn",
    BlendMode.HARD_LIGHT: "svg:hard-light", BlendMode.SOFT_LIGHT: "svg:soft-light",
    BlendMode.DIFFERENCE: "svg:difference", BlendMode.EXCLUSION: "svg:exclusion",
    BlendMode.LINEAR_DODGE: "svg:plus", BlendMode.HUE: "svg:hue",
    BlendMode.SATURATION: "svg:saturation", BlendMode.COLOR: "svg:color",
    BlendMode.LUMINOSITY: "svg:luminosity",
}
_OPS_BACK = {op: mode for mode, op in _SVG_OPS.items()}


def _composite_op(mode: BlendMode) -> str:
    # Modes the SVG set has no name for use Krita's namespaced ids, as Krita itself does.
    return _SVG_OPS.get(mode) or "krita:" + mode.value.replace("-", "_")


def _parse_op(op: str, where: str, warnings: list[str]) -> BlendMode:
    if op in _OPS_BACK:
        return _OPS_BACK[op]
    _, _, name = op.partition(":")
    try:
        mode = BlendMode.parse(name)
        if mode is not BlendMode.PASS_THROUGH:
            return mode
    except ValueError:
        pass
    warnings.append(f"{where}: composite-op {op!r} is not supported; using normal")
    return BlendMode.NORMAL


def _fmt(value: float) -> str:
    return repr(float(value))  # shortest text that reads back as the same float


def write_ora(stack: LayerStack, path: Path) -> None:
    """Write ``stack`` as OpenRaster (layers cropped to content, groups as nested stacks)."""
    cropped = stack.cropped_to_content()
    files = [layer_file_name(i, layer.name, folder="data")
             for i, layer in enumerate(cropped.layers)]
    file_of = {id(layer): name for layer, name in zip(cropped.layers, files, strict=True)}
    image = ET.Element("image", {"version": "0.0.5", "w": str(stack.width),
                                 "h": str(stack.height)})

    def emit(parent: ET.Element, nodes: list, name: str, info: GroupInfo | None) -> None:
        attrs = {"name": name}
        if info is not None:
            attrs.update({
                "opacity": _fmt(info.opacity),
                "visibility": "visible" if info.visible else "hidden",
                "isolation": "auto" if info.blend_mode is BlendMode.PASS_THROUGH else "isolate",
                "composite-op": _composite_op(
                    BlendMode.NORMAL if info.blend_mode is BlendMode.PASS_THROUGH
                    else info.blend_mode),
            })
        element = ET.SubElement(parent, "stack", attrs)
        for node in reversed(nodes):  # OpenRaster lists the top layer first
            if hasattr(node, "children"):
                emit(element, node.children, node.path[-1], cropped.groups[node.path])
                continue
            layer: Layer = node.source
            ET.SubElement(element, "layer", {
                "name": layer.name, "src": file_of[id(layer)],
                "x": str(layer.offset[0]), "y": str(layer.offset[1]),
                "opacity": _fmt(layer.opacity),
                # OpenRaster has no adjustment layers: other programs would paint the coverage
                # as a dark veil, so it is hidden there; the sidecar restores it for us.
                "visibility": "visible" if layer.visible and layer.adjustment is None
                else "hidden",
                "composite-op": _composite_op(layer.blend_mode),
            })

    emit(image, cropped.render_tree(), "root", None)
    sidecar = manifest_bytes(stack_manifest(cropped, files), f"{path.name}: {SIDECAR}")
    composite = stack.composite()
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), MIMETYPE, compress_type=zipfile.ZIP_STORED)
        archive.writestr("stack.xml", ET.tostring(image, encoding="utf-8", xml_declaration=True),
                         compress_type=zipfile.ZIP_DEFLATED)
        for layer, name in zip(cropped.layers, files, strict=True):
            archive.writestr(name, encode_png(layer.pixels))
        archive.writestr("mergedimage.png", png_bytes(composite))
        thumb = composite.resize(fit_within(composite.size, 256))
        archive.writestr("Thumbnails/thumbnail.png", png_bytes(thumb))
        archive.writestr(SIDECAR, sidecar, compress_type=zipfile.ZIP_DEFLATED)


def read_ora(path: Path) -> LayerStack:
    """Read an OpenRaster file (ours, Krita's, MyPaint's) into a stack.

    Bounded: stack.xml at most 16 MB, at most ``4 * MAX_LAYERS`` elements and
    ``MAX_GROUP_DEPTH`` nested stacks, the layers' summed pixels within the document budget
    (charged from each PNG's header before it is decoded)."""
    with open_archive(path) as archive:
        names = set(archive.namelist())
        if "stack.xml" not in names:
            raise InvalidInputError(f"{path} has no stack.xml; it is not an OpenRaster file")
        if "mimetype" in names and read_member(archive, "mimetype", 64).strip() != MIMETYPE:
            raise InvalidInputError(f"{path} has a mimetype other than image/openraster")
        image = _parse_stack_xml(read_member(archive, "stack.xml", MAX_MANIFEST_BYTES), path)
        root = image.find("stack")
        try:
            stack = LayerStack(int(image.get("w", "0")), int(image.get("h", "0")))
        except ValueError:
            raise InvalidInputError(f"{path}: stack.xml has a non-numeric size") from None
        extras: dict[str, dict] = {}
        if SIDECAR in names:
            sidecar = decode_manifest(read_member(archive, SIDECAR, MAX_MANIFEST_BYTES),
                                      f"{path}:{SIDECAR}")
            stack.metadata = sidecar.get("metadata") or {}
            extras = {entry["file"]: entry for entry in sidecar["layers"]
                      if isinstance(entry.get("file"), str)}
        warnings: list[str] = []
        budget = PixelBudget(str(path))
        taken: dict[tuple[str, ...], int] = {}

        def extra(src: str, key: str, kind: type, default):
            value = extras.get(src, {}).get(key)
            return value if isinstance(value, kind) and value else default

        def visit(element: ET.Element, group: tuple[str, ...]) -> None:
            for child in reversed(list(element)):  # first child is the top layer
                where = f"{path}: {child.tag} {child.get('name', '?')!r}"
                try:
                    opacity = float(child.get("opacity", "1"))
                    offset = (int(child.get("x", "0")), int(child.get("y", "0")))
                except ValueError:
                    raise InvalidInputError(f"{where} has a non-numeric attribute") from None
                visible = child.get("visibility", "visible") != "hidden"
                mode = _parse_op(child.get("composite-op", "svg:src-over"), where, warnings)
                if child.tag == "stack":
                    if len(group) >= MAX_GROUP_DEPTH:
                        raise InvalidInputError(f"{where}: groups are nested more than "
                                                f"{MAX_GROUP_DEPTH} deep")
                    path_ = (*group, unique_group_name(taken, group, child.get("name") or "Group"))
                    isolated = child.get("isolation") == "isolate" or mode is not BlendMode.NORMAL
                    stack.set_group(path_, GroupInfo(
                        opacity, mode if isolated else BlendMode.PASS_THROUGH, visible))
                    visit(child, path_)
                elif child.tag == "layer":
                    src = safe_member(child.get("src"), where)
                    pixels = decode_png(read_member(archive, src), f"{path}:{src}", budget)
                    adjustment = adjustment_of(extras.get(src, {}), where)
                    if adjustment is not None:  # written hidden for other programs' sake
                        visible = extras[src].get("visible") is not False
                    stack.add(Layer(name=child.get("name") or "Layer", pixels=pixels,
                                    offset=offset, opacity=opacity, blend_mode=mode,
                                    visible=visible, kind=extra(src, "kind", str, "object"),
                                    group=group,
                                    provenance=extra(src, "provenance", dict, {}),
                                    adjustment=adjustment))
                else:
                    warnings.append(f"{where}: <{child.tag}> elements are not supported; "
                                    "skipped")

        visit(root, ())
    used = {layer.group[:depth] for layer in stack.layers
            for depth in range(1, len(layer.group) + 1)}
    for group_path in [p for p in stack.groups if p not in used]:
        del stack.groups[group_path]  # empty stacks: nothing to keep in a path-keyed model
    if warnings:
        stack.metadata["import_warnings"] = warnings
    return stack


def _parse_stack_xml(xml: bytes, path: Path) -> ET.Element:
    """stack.xml as an element tree, refusing DTDs (entity bombs), trees deeper than groups
    may nest and more elements than a document may hold, while parsing (so a small
    compressed file cannot expand into millions of elements first)."""
    if b"<!DOCTYPE" in xml or b"<!ENTITY" in xml:
        raise InvalidInputError(f"{path}: stack.xml declares a DTD, which is not allowed")
    parser = ET.XMLPullParser(events=("start", "end"))
    root: ET.Element | None = None
    count = depth = 0
    try:
        for start in range(0, len(xml), 1 << 16):
            parser.feed(xml[start:start + (1 << 16)])
            for event, element in parser.read_events():
                if event == "end":
                    depth -= 1
                    continue
                root = element if root is None else root
                count, depth = count + 1, depth + 1
                if count > 4 * MAX_LAYERS + 2:
                    raise InvalidInputError(f"{path}: stack.xml has more than "
                                            f"{4 * MAX_LAYERS} elements")
                if depth > MAX_GROUP_DEPTH + 3:  # image > stack > groups... > layer
                    raise InvalidInputError(f"{path}: stack.xml nests groups more than "
                                            f"{MAX_GROUP_DEPTH} deep")
        parser.close()
    except ET.ParseError as exc:
        raise InvalidInputError(f"{path}: stack.xml is not valid XML: {exc}") from None
    if root is None or root.tag != "image" or root.find("stack") is None:
        raise InvalidInputError(f"{path}: stack.xml has no <image><stack> root")
    return root
