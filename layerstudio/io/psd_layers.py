"""Turning the layers of a real Photoshop file into LayerStudio layers.

- Plain pixel layers keep their exact channel data at the document's precision (8/16-bit
  integers; 32-bit linear light becomes sRGB floats); an enabled raster mask is multiplied into
  alpha.
- Layers without stored pixels (fill layers, empty shapes) and layers whose vector mask
  psd-tools would draw are rendered by psd-tools alone (masks, vector mask and fill opacity
  applied, nothing else composited) and come in as pixels; shape, fill, type and smart-object
  layers are reported as rasterised.
- Adjustment layers stay adjustment layers (:class:`~layerstudio.adjustments.Adjustment`): the
  Photoshop block that defines them is kept for export and rendered on the backdrop.
- Clipped layers are cut to their base's alpha; groups keep their blend mode and opacity.

Each layer's size is charged to the document's :class:`~layerstudio.limits.PixelBudget` before
its pixels are decoded. What cannot be represented is appended to ``warnings``.
"""

from __future__ import annotations

import numpy as np
from psd_tools import PSDImage
from psd_tools.api.layers import AdjustmentLayer
from psd_tools.constants import Clipping, Tag

from ..adjustments import Adjustment
from ..blend import BlendMode
from ..compositing import to_float_rgba
from ..document import GroupInfo, Layer, LayerStack, unique_group_name
from ..errors import InvalidInputError
from ..limits import MAX_GROUP_DEPTH, MAX_LAYERS, PixelBudget

__all__ = ["read_layers"]

_RASTERISED = ("shape", "type", "smartobject", "solidcolorfill", "patternfill", "gradientfill")
_FILL_TAGS = (Tag.SOLID_COLOR_SHEET_SETTING, Tag.PATTERN_FILL_SETTING,
              Tag.GRADIENT_FILL_SETTING, Tag.VECTOR_STROKE_CONTENT_DATA)
"""Blocks that make a layer paint its own fill (whose stored pixels then follow its path)."""
_EFFECT_TAGS = (Tag.OBJECT_BASED_EFFECTS_LAYER_INFO, Tag.OBJECT_BASED_EFFECTS_LAYER_INFO_V0,
                Tag.OBJECT_BASED_EFFECTS_LAYER_INFO_V1, Tag.EFFECTS_LAYER)


def read_layers(psd: PSDImage, stack: LayerStack, modes: dict, warnings: list[str],
                budget: PixelBudget) -> None:
    """Add every layer of ``psd`` to ``stack`` (bottom to top); ``modes`` maps psd-tools blend
    modes to ours."""
    _Reader(psd, stack, modes, warnings, budget).children(psd, ())


class _Reader:
    def __init__(self, psd: PSDImage, stack: LayerStack, modes: dict, warnings: list[str],
                 budget: PixelBudget) -> None:
        self.psd, self.stack, self.modes = psd, stack, modes
        self.warnings, self.budget = warnings, budget
        self.taken: dict[tuple[str, ...], int] = {}

    def children(self, parent, group: tuple[str, ...]) -> None:
        # The clipping base: the most recent non-clipped layer, or group (clipped to its
        # merged alpha, computed only when a clipped layer needs it).
        base: Layer | tuple[str, ...] | None = None
        for item in parent:
            if len(self.stack.layers) >= MAX_LAYERS:
                raise InvalidInputError(f"the file has more than {MAX_LAYERS} layers")
            if item.is_group():
                base = self.group(item, group)
                continue
            layer = self.leaf(item, group)
            if item.clipping and base is not None and layer.pixels.size:
                if isinstance(base, tuple):
                    base = self.merged_group(base)
                _clip_to_base(layer.pixels, layer.offset, base)
                self.warnings.append(f"layer {item.name!r}: clipping mask baked into its alpha")
            self.stack.add(layer)
            if not item.clipping:
                base = layer

    def mode(self, item) -> BlendMode:
        mode = self.modes.get(item.blend_mode)
        if mode is None:  # dissolve
            self.warnings.append(f"layer {item.name!r}: blend mode "
                                 f"{item.blend_mode.name.lower()} is not supported; using normal")
            return BlendMode.NORMAL
        return mode

    def group(self, item, group: tuple[str, ...]) -> tuple[str, ...] | None:
        """Read a group; returns its path, or None when it was empty (and dropped)."""
        if len(group) >= MAX_GROUP_DEPTH:
            raise InvalidInputError(f"groups are nested more than {MAX_GROUP_DEPTH} deep")
        path = (*group, unique_group_name(self.taken, group, item.name or "Group"))
        self.stack.set_group(path, GroupInfo(item.opacity / 255.0, self.mode(item),
                                             item.visible))
        before = len(self.stack.layers)
        self.children(item, path)
        if len(self.stack.layers) == before:
            self.warnings.append(f"group {item.name!r} is empty; empty groups are not kept")
            del self.stack.groups[path]
            return None
        return path

    def merged_group(self, path: tuple[str, ...]) -> Layer:
        """The group at ``path`` flattened on its own, as a clipping base."""
        members = LayerStack(*self.stack.size, groups=self.stack.groups)
        members.layers = [layer for layer in self.stack.layers
                          if layer.group[:len(path)] == path]
        return Layer(name=path[-1], pixels=members.composite_array())

    def leaf(self, item, group: tuple[str, ...]) -> Layer:
        label = f"layer {item.name!r}"
        common = {"name": item.name or "Layer", "blend_mode": self.mode(item),
                  "visible": item.visible, "group": group}
        if isinstance(item, AdjustmentLayer):
            return self.adjustment(item, common)
        depth = self.psd.depth
        if item.has_pixels():
            pixels = self.own_pixels(item, depth)
            fill = (item.fill_opacity if item.fill_opacity is not None else 255) / 255.0
            if fill < 1.0:
                self.warnings.append(f"{label}: fill opacity folded into layer opacity")
            opacity = item.opacity / 255.0 * fill
        else:
            pixels = self.rendered_pixels(item, depth)
            opacity = item.opacity / 255.0
        if item.kind in _RASTERISED:
            self.warnings.append(f"{label}: {item.kind} layer imported as pixels (rasterised)")
        if item.has_effects():
            self.warnings.append(f"{label}: layer effects (shadows, strokes, ...) are not "
                                 "imported")
        elif any(tag in item.tagged_blocks for tag in _EFFECT_TAGS) and item.effects.enabled:
            self.warnings.append(f"{label}: has layer-effect settings LayerStudio cannot read "
                                 "(not imported)")
        if pixels is None:
            pixels = np.zeros((0, 0, 4), np.uint8 if depth == 8 else np.uint16)
        return Layer(pixels=pixels, offset=(item.left, item.top), opacity=opacity,
                     kind="background" if item.name == "Background" and not self.stack.layers
                     else "object", **common)

    def own_pixels(self, item, depth: int) -> np.ndarray | None:
        """A pixel layer's own channels at the document's precision, raster mask applied."""
        self.budget.charge(item.width, item.height, f"layer {item.name!r}")
        if depth == 8:
            image = item.topil()
            pixels = None if image is None else np.asarray(image.convert("RGBA")).copy()
        else:
            pixels = _high_depth(item.numpy(), depth)
        if pixels is None or not pixels.size:
            return pixels
        if item.has_mask() and _apply_mask(pixels, item):
            self.warnings.append(f"layer {item.name!r}: layer mask applied to its alpha")
        if _draws_vector_mask(item):
            from psd_tools.composite.vector import draw_vector_mask

            coverage = draw_vector_mask(item, viewport=item.bbox)
            _scale_alpha(pixels, coverage.reshape(coverage.shape[:2]), (0, 0), outside=0.0)
            self.warnings.append(f"layer {item.name!r}: vector mask applied to its alpha")
        return pixels

    def rendered_pixels(self, item, depth: int) -> np.ndarray | None:
        """The layer alone as psd-tools renders it (masks, vector mask, fill opacity; not its
        opacity, blend mode, clipped layers or effects outside its box)."""
        from psd_tools.composite import composite

        left, top, right, bottom = item.bbox
        if right <= left or bottom <= top:
            return None
        self.budget.charge(right - left, bottom - top, f"layer {item.name!r}")
        record, clipping = item._record, item._record.clipping
        record.clipping = Clipping.BASE  # psd-tools draws a clipped layer only with its base
        try:
            color, shape, _alpha = composite(item, color=0.0, alpha=0.0, viewport=item.bbox,
                                             layer_filter=lambda layer: layer is item)
        finally:
            record.clipping = clipping
        if color.shape[2] == 1:
            color = np.repeat(color, 3, axis=2)
        return _high_depth(np.concatenate([color[..., :3], shape[..., :1]], axis=2), depth,
                           eight_bit=depth == 8)

    def adjustment(self, item, common: dict) -> Layer:
        """An adjustment layer: its Photoshop block, and its mask as canvas coverage."""
        key = type(item)._KEY
        block = item.tagged_blocks.get(key) if key is not None else None
        if block is None:
            raise InvalidInputError(f"adjustment layer {item.name!r} has no settings block")
        adjustment = Adjustment(item.kind, block.tobytes(), self.psd.depth)
        if not adjustment.rendered:
            self.warnings.append(f"layer {item.name!r}: {item.kind} adjustments are kept for "
                                 "export but not shown in LayerStudio's rendering")
        width, height = self.stack.size
        self.budget.charge(width, height, f"layer {item.name!r}")
        pixels = np.zeros((height, width, 4), np.uint8)
        pixels[..., 3] = 255
        if item.has_mask():
            _apply_mask(pixels, item, origin=(0, 0))
        return Layer(pixels=pixels, offset=(0, 0), opacity=item.opacity / 255.0,
                     kind="adjustment", adjustment=adjustment, **common)


def _draws_vector_mask(item) -> bool:
    """Whether the layer's vector mask must still be applied to its stored pixels: always
    for pixel layers (Photoshop stores their pixels unmasked); shape layers store pixels that
    already follow their path, unless they also carry an empty raster mask."""
    vector = item.vector_mask if item.has_vector_mask() else None
    if vector is None or vector.disabled:
        return False
    if item.kind == "pixel":
        return True
    mask = item.mask
    has_fill = any(tag in item.tagged_blocks for tag in _FILL_TAGS)
    return not has_fill and mask is not None and not mask.has_real()


def _high_depth(array: np.ndarray | None, depth: int, eight_bit: bool = False
                ) -> np.ndarray | None:
    """psd-tools float channels (gray, RGB or RGBA in [0, 1]) -> RGBA at our precision."""
    if array is None:
        return None
    if array.shape[2] == 2:  # grayscale + alpha
        array = np.concatenate([np.repeat(array[..., :1], 3, axis=2), array[..., 1:]], axis=2)
    elif array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    if array.shape[2] == 3:
        array = np.concatenate([array, np.ones((*array.shape[:2], 1), array.dtype)], axis=2)
    array = np.clip(array[..., :4], 0.0, 1.0)
    if eight_bit:
        return np.rint(array * 255.0).astype(np.uint8)
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


def _apply_mask(pixels: np.ndarray, layer, origin: tuple[int, int] | None = None) -> bool:
    """Multiply an enabled raster layer mask into alpha; True when one was applied.
    ``origin`` is where ``pixels`` sit on the canvas (default: the layer's corner)."""
    mask = layer.mask
    if mask is None or mask.disabled:
        return False
    image = mask.topil()
    if image is None:
        return False
    left, top = origin if origin is not None else (layer.left, layer.top)
    values = np.asarray(image.convert("L"), np.float32) / 255.0
    _scale_alpha(pixels, values, (mask.left - left, mask.top - top),
                 outside=mask.background_color / 255.0)
    return True


def _clip_to_base(pixels: np.ndarray, offset: tuple[int, int], base: Layer) -> None:
    """Cut a clipped layer to its base layer's alpha (Photoshop clipping masks)."""
    base_alpha = to_float_rgba(base.pixels)[..., 3]
    _scale_alpha(pixels, base_alpha, (base.offset[0] - offset[0], base.offset[1] - offset[1]),
                 outside=0.0)

