"""The layered document model: :class:`Layer` and :class:`LayerStack`.

Every pipeline returns a ``LayerStack``, the UI edits one, and the exporters write one. Pixels are
straight-alpha RGBA (uint8, uint16 or float32 in [0, 1]); layers carry an offset so that a small
object need not pay for a full canvas; groups are identified by their path of names
(``("Characters", "Hero")``), and a group's own settings live in ``LayerStack.groups``.
Layers are ordered bottom to top, as they are painted.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .adjustments import Adjustment
from .blend import BlendMode
from .compositing import GroupNode, PixelNode, render, to_float_rgba
from .errors import ImageTooLargeError, InvalidInputError
from .imaging import as_rgba_array, fit_within, like_dtype, resized_straight, to_uint8
from .jsonsafe import check_value
from .limits import (
    MAX_GROUP_DEPTH,
    MAX_LAYERS,
    check_offset,
    check_size,
    max_document_pixels,
)

__all__ = ["KNOWN_KINDS", "GroupInfo", "Layer", "LayerStack", "layer_key", "unique_group_name"]

KNOWN_KINDS = ("background", "object", "effect", "text", "lineart", "flat", "shadow",
               "highlight", "composite", "other")
"""Layer kinds the pipelines produce; any other non-empty word is accepted too."""

GroupPath = tuple[str, ...]


def _check_name(name: object, what: str) -> str:
    if not isinstance(name, str):
        raise InvalidInputError(f"{what} must be text, got {type(name).__name__}")
    if not name.strip():
        raise InvalidInputError(f"{what} must not be empty")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise InvalidInputError(f"{what} {name!r} contains control characters")
    if len(name) > 255:
        raise InvalidInputError(f"{what} is longer than 255 characters")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(f"{what} {name!r} is not valid Unicode (a lone surrogate)"
                                ) from None
    return name


def _check_group_path(path: object, what: str) -> GroupPath:
    try:
        parts = tuple(path)  # type: ignore[arg-type]
    except TypeError:
        raise InvalidInputError(f"{what} must be a list of group names") from None
    if len(parts) > MAX_GROUP_DEPTH:
        raise InvalidInputError(f"{what} is nested {len(parts)} groups deep; at most "
                                f"{MAX_GROUP_DEPTH} are allowed")
    return tuple(_check_name(part, "group name") for part in parts)


def _check_opacity(value: object, what: str) -> float:
    try:
        opacity = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidInputError(f"{what} opacity must be a number, got {value!r}") from None
    if not 0.0 <= opacity <= 1.0:  # also rejects NaN
        raise InvalidInputError(f"{what} opacity must lie in [0, 1], got {value!r}")
    return opacity


def _check_json(value: dict, what: str) -> dict:
    if not isinstance(value, dict):
        raise InvalidInputError(f"{what} must be a dict")
    check_value(value, what)
    return value


@dataclass
class Layer:
    """One raster layer.

    Attributes:
        name: shown in editors; any text without control characters (non-Latin is fine).
        pixels: (h, w, 4) straight-alpha RGBA, uint8, uint16 or float32 in [0, 1].
        offset: (x, y) of the top-left pixel on the canvas; may be negative or beyond it.
        opacity: 0..1, multiplied into alpha at compositing time.
        blend_mode: how the colour mixes with the backdrop (see :class:`BlendMode`).
        visible: hidden layers are kept and exported but not composited.
        kind: the layer's role (see :data:`KNOWN_KINDS`).
        group: path of group names from the outermost group in; ``()`` for top level.
        provenance: JSON-able facts about where the layer came from (pipeline, prompt, seed,
            mask box, ...).
        adjustment: set for an adjustment layer (levels, curves, ...): it recolours what lies
            below it, and its pixels' alpha is only its coverage (the layer mask).
    """

    name: str
    pixels: np.ndarray
    offset: tuple[int, int] = (0, 0)
    opacity: float = 1.0
    blend_mode: BlendMode = BlendMode.NORMAL
    visible: bool = True
    kind: str = "object"
    group: GroupPath = ()
    provenance: dict[str, Any] = field(default_factory=dict)
    adjustment: Adjustment | None = None

    def __post_init__(self) -> None:
        self.name = _check_name(self.name, "layer name")
        self.pixels = as_rgba_array(self.pixels, what=f"layer {self.name!r}")
        try:
            self.offset = (int(self.offset[0]), int(self.offset[1]))
        except (TypeError, ValueError, IndexError, OverflowError):
            raise InvalidInputError(f"layer {self.name!r}: offset must be (x, y) integers, "
                                    f"got {self.offset!r}") from None
        check_offset(*self.offset, what=f"layer {self.name!r}")
        self.opacity = _check_opacity(self.opacity, f"layer {self.name!r}")
        try:
            self.blend_mode = BlendMode.parse(self.blend_mode)
        except ValueError as exc:
            raise InvalidInputError(f"layer {self.name!r}: {exc}") from None
        if self.blend_mode is BlendMode.PASS_THROUGH:
            raise InvalidInputError(f"layer {self.name!r}: pass-through is only for groups")
        self.visible = bool(self.visible)
        if not isinstance(self.kind, str) or not self.kind.strip():
            raise InvalidInputError(f"layer {self.name!r}: kind must be a non-empty word")
        self.group = _check_group_path(self.group, f"layer {self.name!r} group")
        self.provenance = _check_json(self.provenance, f"layer {self.name!r} provenance")
        if self.adjustment is not None and not isinstance(self.adjustment, Adjustment):
            raise InvalidInputError(f"layer {self.name!r}: adjustment must be an Adjustment")

    # --- construction ------------------------------------------------------------------------
    @classmethod
    def from_image(cls, image: Image.Image | np.ndarray | str | Path, name: str = "Layer",
                   **kwargs: Any) -> Layer:
        """Make a layer from a PIL image, an array or an image file path (size-checked)."""
        if isinstance(image, (str, Path)):
            from .io.raster import read_image_file  # io imports this module

            image = read_image_file(image)
        return cls(name=name, pixels=image, **kwargs)

    def copy(self, **changes: Any) -> Layer:
        """A deep copy, optionally with some fields replaced (and validated)."""
        fields: dict[str, Any] = {"pixels": self.pixels.copy(),
                                  "provenance": copy.deepcopy(self.provenance)}
        fields.update(changes)
        return dataclasses.replace(self, **fields)

    # --- geometry ----------------------------------------------------------------------------
    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) on the canvas, right/bottom exclusive."""
        x, y = self.offset
        return x, y, x + self.width, y + self.height

    @property
    def is_empty(self) -> bool:
        """True when the layer has no pixels or is fully transparent."""
        return self.pixels.size == 0 or not self.pixels[..., 3].any()

    def content_bbox(self) -> tuple[int, int, int, int] | None:
        """Bounding box (in layer coordinates) of pixels with alpha > 0, or None if empty."""
        if self.pixels.size == 0:
            return None
        alpha = self.pixels[..., 3] > 0
        rows = np.flatnonzero(alpha.any(axis=1))
        if rows.size == 0:
            return None
        cols = np.flatnonzero(alpha.any(axis=0))
        return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1

    def cropped_to_content(self) -> Layer:
        """A copy cropped to its alpha bounding box, offset moved so nothing shifts on canvas.

        A fully transparent layer becomes 0x0 pixels at its old offset.
        """
        box = self.content_bbox()
        if box is None:
            return dataclasses.replace(self, pixels=self.pixels[:0, :0],
                                       provenance=dict(self.provenance))
        x0, y0, x1, y1 = box
        return dataclasses.replace(self, pixels=self.pixels[y0:y1, x0:x1],
                                   offset=(self.offset[0] + x0, self.offset[1] + y0),
                                   provenance=dict(self.provenance))

    # --- transforms (each returns a new layer; the original is untouched) -------------------
    def moved_to(self, x: int, y: int) -> Layer:
        """The layer with its top-left corner at canvas position (``x``, ``y``)."""
        return self.copy(pixels=self.pixels, offset=(x, y))

    def flipped(self, horizontal: bool = True) -> Layer:
        """Mirrored left-right (or top-bottom) in place: the same box on the canvas."""
        pixels = self.pixels[:, ::-1] if horizontal else self.pixels[::-1]
        return self.copy(pixels=np.ascontiguousarray(pixels))

    def rotated(self, quarter_turns: int) -> Layer:
        """Turned by ``quarter_turns`` x 90 degrees clockwise about its centre (exact: pixels
        are only rearranged; an odd difference of width and height puts the new corner half a
        pixel up-left, rounded down)."""
        turns = int(quarter_turns) % 4
        if turns == 0:
            return self.copy(pixels=self.pixels)
        pixels = np.ascontiguousarray(np.rot90(self.pixels, -turns))
        x, y = self.offset
        return self.copy(pixels=pixels, offset=(x + (self.width - pixels.shape[1]) // 2,
                                                y + (self.height - pixels.shape[0]) // 2))

    def scaled(self, factor: float) -> Layer:
        """Resized by ``factor`` about its centre (Lanczos on premultiplied colour, so edges
        do not darken); the new size is checked against the pixel limit first."""
        try:
            factor = float(factor)
        except (TypeError, ValueError):
            raise InvalidInputError(f"scale must be a number, got {factor!r}") from None
        if not 0.0 < factor <= 64.0:  # also refuses NaN
            raise InvalidInputError(f"scale must be in (0, 64], got {factor}")
        width = max(1, round(self.width * factor))
        height = max(1, round(self.height * factor))
        check_size(width, height, what=f"layer {self.name!r} scaled")
        if self.pixels.size == 0 or (width, height) == (self.width, self.height):
            return self.copy(pixels=self.pixels)
        pixels = like_dtype(resized_straight(to_float_rgba(self.pixels), (width, height)),
                             self.pixels)
        x, y = self.offset
        return self.copy(pixels=pixels, offset=(x + (self.width - width) // 2,
                                                y + (self.height - height) // 2))

    # --- views -------------------------------------------------------------------------------
    def to_pil(self) -> Image.Image:
        """The layer's own pixels (not placed on the canvas) as an 8-bit RGBA PIL image."""
        return Image.fromarray(to_uint8(self.pixels), "RGBA")

    def thumbnail(self, max_size: int = 64) -> Image.Image:
        """A small RGBA preview of the layer's own pixels (1x1 transparent if empty)."""
        if self.pixels.size == 0:
            return Image.new("RGBA", (1, 1))
        image = self.to_pil()
        return image.resize(fit_within(image.size, max_size), Image.Resampling.LANCZOS)

    def _node(self) -> PixelNode:
        return PixelNode(self.pixels, self.offset, self.opacity, self.blend_mode, self.visible,
                         source=self,
                         adjust=None if self.adjustment is None else self.adjustment.apply)


@dataclass
class GroupInfo:
    """Settings of one group. Pass-through groups blend their children into the backdrop;
    any other mode isolates them first (composites the group alone, then blends the result)."""

    opacity: float = 1.0
    blend_mode: BlendMode = BlendMode.PASS_THROUGH
    visible: bool = True

    def __post_init__(self) -> None:
        self.opacity = _check_opacity(self.opacity, "group")
        try:
            self.blend_mode = BlendMode.parse(self.blend_mode)
        except ValueError as exc:
            raise InvalidInputError(f"group: {exc}") from None
        self.visible = bool(self.visible)


class LayerStack:
    """A canvas and its layers, bottom to top, plus document metadata.

    ``metadata`` is JSON-able: prompt, seed, method, model, timings and the like.
    """

    def __init__(self, width: int, height: int, layers: list[Layer] | None = None,
                 groups: dict[GroupPath, GroupInfo] | None = None,
                 metadata: dict[str, Any] | None = None) -> None:
        try:
            self.width, self.height = int(width), int(height)
        except (TypeError, ValueError, OverflowError):
            raise InvalidInputError(f"canvas size must be integers, got {width!r}x{height!r}"
                                    ) from None
        check_size(self.width, self.height, what="canvas")
        self.layers: list[Layer] = []
        self.groups: dict[GroupPath, GroupInfo] = {}
        for path, info in (groups or {}).items():
            self.set_group(path, info)
        self.metadata: dict[str, Any] = _check_json(dict(metadata or {}), "stack metadata")
        for layer in layers or []:
            self.add(layer)

    def __repr__(self) -> str:
        return f"LayerStack({self.width}x{self.height}, {len(self.layers)} layers)"

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __getitem__(self, key: int | str) -> Layer:
        return self.layers[self.index(key)]

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    # --- editing -----------------------------------------------------------------------------
    def index(self, key: int | str) -> int:
        """Position of a layer given its index (negative allowed) or its unique name."""
        if isinstance(key, (int, np.integer)):
            if not -len(self.layers) <= key < len(self.layers):
                raise InvalidInputError(f"no layer at index {key}; the stack has "
                                        f"{len(self.layers)} layers")
            return int(key) % len(self.layers)
        hits = [i for i, layer in enumerate(self.layers) if layer.name == key]
        if not hits:
            raise InvalidInputError(f"no layer named {key!r}")
        if len(hits) > 1:
            raise InvalidInputError(f"{len(hits)} layers are named {key!r}; use an index")
        return hits[0]

    def top_visible(self) -> int:
        """Index of the layer an edit means when none is named: the top one that is visible
        and has pixels (not a hidden reference layer, not an adjustment)."""
        for index in range(len(self.layers) - 1, -1, -1):
            if self.layers[index].visible and self.layers[index].adjustment is None:
                return index
        raise InvalidInputError("the document has no visible pixel layer; name one")

    def add(self, layer: Layer, index: int | None = None) -> Layer:
        """Insert ``layer`` at ``index`` (default: on top) and return it."""
        if not isinstance(layer, Layer):
            raise InvalidInputError(f"can only add Layer objects, got {type(layer).__name__}")
        self._check_room_for(layer)
        for depth in range(1, len(layer.group) + 1):
            self.groups.setdefault(layer.group[:depth], GroupInfo())
        self.layers.insert(len(self.layers) if index is None else index, layer)
        return layer

    def _check_room_for(self, layer: Layer) -> None:
        """The per-document caps, checked on every path that adds a layer."""
        if len(self.layers) >= MAX_LAYERS:
            raise InvalidInputError(f"a stack holds at most {MAX_LAYERS} layers")
        used = sum(other.pixels.size for other in self.layers) // 4  # C attribute: fast
        limit = max_document_pixels()
        if used + layer.width * layer.height > limit:
            raise ImageTooLargeError(
                f"adding layer {layer.name!r} ({layer.width}x{layer.height}) would take the "
                f"document's layers over {limit:,} pixels; raise "
                "LAYERSTUDIO_MAX_DOCUMENT_PIXELS to allow more")

    def remove(self, key: int | str) -> Layer:
        """Remove and return a layer."""
        return self.layers.pop(self.index(key))

    def move(self, key: int | str, to_index: int) -> None:
        """Move a layer to position ``to_index`` (0 = bottom) among the remaining layers."""
        i = self.index(key)
        if not 0 <= to_index < len(self.layers):
            raise InvalidInputError(f"target index {to_index} is outside "
                                    f"0..{len(self.layers) - 1}")
        self.layers.insert(to_index, self.layers.pop(i))

    def rename(self, key: int | str, name: str) -> None:
        """Give a layer a new name."""
        self.layers[self.index(key)].name = _check_name(name, "layer name")

    def duplicate(self, key: int | str, name: str | None = None) -> Layer:
        """Copy a layer and place the copy directly above it."""
        i = self.index(key)
        clone = self.layers[i].copy(name=name or f"{self.layers[i].name} copy")
        return self.add(clone, i + 1)

    def merge_down(self, key: int | str) -> Layer:
        """Merge a layer into the one below, as Photoshop's Merge Down does.

        The result keeps the lower layer's name, opacity, blend mode, kind and group; its pixels
        are the lower layer (at full opacity, normal) with the upper one blended on top.
        """
        i = self.index(key)
        if i == 0:
            raise InvalidInputError("the bottom layer has nothing below it to merge into")
        upper, lower = self.layers[i], self.layers[i - 1]
        if lower.adjustment is not None:
            raise InvalidInputError(f"cannot merge {upper.name!r} down into {lower.name!r}: "
                                    "it is an adjustment layer, which has no pixels")
        if upper.group != lower.group:
            raise InvalidInputError(f"cannot merge {upper.name!r} down: the layer below is in "
                                    "another group")
        lx0, ly0, lx1, ly1 = lower.bbox
        ux0, uy0, ux1, uy1 = upper.bbox
        x0, y0 = min(lx0, ux0), min(ly0, uy0)
        x1, y1 = max(lx1, ux1), max(ly1, uy1)
        check_size(max(x1 - x0, 1), max(y1 - y0, 1),
                   what=f"merging {upper.name!r} into {lower.name!r}")
        nodes = [PixelNode(lower.pixels, (lx0 - x0, ly0 - y0), 1.0, BlendMode.NORMAL, True),
                 dataclasses.replace(upper._node(), offset=(ux0 - x0, uy0 - y0))]
        merged = render(nodes, (max(x1 - x0, 1), max(y1 - y0, 1)))
        result = lower.copy(pixels=like_dtype(merged, lower.pixels), offset=(x0, y0))
        self.layers[i - 1] = result
        del self.layers[i]
        return result

    def transform(self, key: int | str, *, move: tuple[int, int] | None = None,
                  to: tuple[int, int] | None = None, scale: float = 1.0,
                  rotate: int = 0, flip: str | None = None) -> Layer:
        """Move (by ``move`` = (dx, dy) or ``to`` a corner position), scale (about the
        centre), rotate (``rotate`` degrees clockwise, a multiple of 90) and flip
        (``"horizontal"`` or ``"vertical"``) one layer, in that order of scale, rotate, flip,
        move; returns the new layer, which replaces the old one in place."""
        i = self.index(key)
        layer = self.layers[i]
        if layer.adjustment is not None:
            raise InvalidInputError(f"{layer.name!r} is an adjustment layer; it covers the "
                                    "canvas and cannot be moved or scaled")
        if move is not None and to is not None:
            raise InvalidInputError("give move or to, not both")
        if int(rotate) % 90:
            raise InvalidInputError(f"rotation must be a multiple of 90 degrees, got {rotate}")
        if flip not in (None, "horizontal", "vertical"):
            raise InvalidInputError(f"flip must be horizontal or vertical, got {flip!r}")
        if scale != 1.0:
            layer = layer.scaled(scale)
        if int(rotate) % 360:
            layer = layer.rotated(int(rotate) // 90)
        if flip is not None:
            layer = layer.flipped(horizontal=flip == "horizontal")
        if to is not None:
            layer = layer.moved_to(*to)
        elif move is not None:
            layer = layer.moved_to(layer.offset[0] + int(move[0]), layer.offset[1] + int(move[1]))
        self.layers[i] = layer
        return layer

    def set_group(self, path: GroupPath | list[str], info: GroupInfo | None = None) -> GroupInfo:
        """Create or update the settings of the group at ``path``."""
        path = _check_group_path(path, "group path")
        if not path:
            raise InvalidInputError("a group path needs at least one name")
        info = info if info is not None else GroupInfo()
        if not isinstance(info, GroupInfo):
            raise InvalidInputError("group settings must be a GroupInfo")
        self.groups[path] = info
        return info

    def cropped_to_content(self) -> LayerStack:
        """A new stack whose layers are cropped to their alpha bounding boxes (what the
        exporters store); groups and metadata are shared, the original is untouched."""
        cropped = LayerStack(self.width, self.height, groups=self.groups,
                             metadata=self.metadata)
        cropped.layers = [layer.cropped_to_content() for layer in self.layers]
        return cropped

    def copy(self) -> LayerStack:
        """A deep copy of the whole document."""
        return copy.deepcopy(self)

    # --- rendering ---------------------------------------------------------------------------
    def render_tree(self) -> list[PixelNode | GroupNode]:
        """The layers as a tree of pixel and group nodes, built from consecutive group paths."""
        root: list[PixelNode | GroupNode] = []
        open_paths: list[tuple[GroupPath, list]] = [((), root)]
        for layer in self.layers:
            while layer.group[:len(open_paths[-1][0])] != open_paths[-1][0]:
                open_paths.pop()
            for depth in range(len(open_paths[-1][0]) + 1, len(layer.group) + 1):
                path = layer.group[:depth]
                info = self.groups.setdefault(path, GroupInfo())
                node = GroupNode(info.opacity, info.blend_mode, info.visible, path=path)
                open_paths[-1][1].append(node)
                open_paths.append((path, node.children))
            open_paths[-1][1].append(layer._node())
        return root

    def composite_array(self) -> np.ndarray:
        """The flattened document as straight-alpha float32 RGBA, shape (h, w, 4)."""
        return render(self.render_tree(), self.size)

    def composite(self) -> Image.Image:
        """The flattened document as an 8-bit RGBA PIL image."""
        return Image.fromarray(render(self.render_tree(), self.size, np.uint8), "RGBA")

    def thumbnail(self, max_size: int = 256) -> Image.Image:
        """A small RGBA preview of the composite."""
        image = self.composite()
        return image.resize(fit_within(image.size, max_size), Image.Resampling.LANCZOS)

    # --- files -------------------------------------------------------------------------------
    def save(self, path: str | Path, **options: Any) -> Path:
        """Write to ``path``; the extension picks the format (.psd, .ora, .zip, .png).

        PNG stores only the flattened composite. Writes are atomic: a failure leaves no file.
        """
        from .io import save_stack

        return save_stack(self, path, **options)

    @classmethod
    def load(cls, path: str | Path, **options: Any) -> LayerStack:
        """Read a .psd, .ora, .zip (ours) or plain image file into a stack."""
        from .io import load_stack

        return load_stack(path, **options)


def layer_key(given: int | str) -> int | str:
    """How users name a layer on a command line or in a job: a whole number ("0", "-1") is an
    index, anything else a name."""
    if isinstance(given, str) and given.lstrip("-").isdigit():
        return int(given)
    return given


def unique_group_name(taken: dict[tuple[str, ...], int], parent: tuple[str, ...], name: str) -> str:
    """Sibling groups with the same name would merge in a path-keyed model: number them
    ("Group", "Group (2)", ...) in constant time per group; ``taken`` counts the names used
    under each parent path."""
    candidate, n = name, taken.get((*parent, name), 0) + 1
    if n > 1:
        candidate = f"{name} ({n})"
        while (*parent, candidate) in taken:  # the file itself named a sibling "Group (2)"
            n += 1
            candidate = f"{name} ({n})"
    taken[(*parent, name)] = n
    taken.setdefault((*parent, candidate), 1)
    return candidate
