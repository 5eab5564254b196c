"""Layouts for ART: where the anonymous regions go.

A layout is a list of boxes ``(x, y, w, h)`` in pixels on the canvas, one per layer to
generate, bottom to top. They come from a ``"x,y,w,h;..."`` string, a JSON file, a rough
sketch (one flat colour per region) or :func:`plan_boxes`; :func:`snap_boxes` checks them and
snaps them outward to the transformer's token grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from layerstudio import jsonsafe
from layerstudio.errors import InvalidInputError
from layerstudio.imaging import as_rgba_array, to_uint8
from layerstudio.io.raster import read_file_bytes
from layerstudio.limits import MAX_LAYERS

from .regions import TokenBox, token_count

__all__ = ["Box", "boxes_from_sketch", "load_layout", "parse_boxes", "plan_boxes",
           "snap_boxes", "token_box_pixels"]

Box = tuple[int, int, int, int]


def _box(values: Sequence[Any], where: str) -> Box:
    if len(values) != 4:
        raise InvalidInputError(f"{where}: a box is 4 numbers x,y,w,h, got {len(values)}")
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        raise InvalidInputError(f"{where}: box values must be numbers, got {values!r}") from None
    if not all(math.isfinite(v) for v in numbers):
        raise InvalidInputError(f"{where}: box values must be finite, got {values!r}")
    return tuple(round(v) for v in numbers)  # type: ignore[return-value]


def parse_boxes(spec: str) -> list[Box]:
    """``"x,y,w,h;x,y,w,h"`` -> boxes."""
    parts = [part.strip() for part in spec.split(";") if part.strip()]
    if not parts:
        raise InvalidInputError("--boxes is empty; give x,y,w,h per region, separated by ';'")
    return [_box(part.split(","), f"box {i + 1} ({part!r})") for i, part in enumerate(parts)]


def load_layout(path: str | Path) -> tuple[list[Box], dict[str, Any]]:
    """A JSON layout: ``[[x, y, w, h], ...]``, or ``{"boxes": [...], "width": W,
    "height": H, "prompt": ...}`` whose boxes may also be ``{"x":, "y":, "w":, "h":}``.
    Returns the boxes and the other fields."""
    path = Path(path)
    limit = 1_000_000  # a layout file over 1 MB is not a layout
    data = jsonsafe.loads(read_file_bytes(path, path.name, limit), path.name, limit)
    extra: dict[str, Any] = {}
    if isinstance(data, dict):
        extra = {k: v for k, v in data.items() if k != "boxes"}
        data = data.get("boxes")
    if not isinstance(data, list) or not data:
        raise InvalidInputError(f"{path.name}: expected a non-empty list of boxes")
    boxes = []
    for i, item in enumerate(data):
        where = f"{path.name}, box {i + 1}"
        if isinstance(item, dict):
            missing = [k for k in "xywh" if k not in item]
            if missing:
                raise InvalidInputError(f"{where}: missing {', '.join(missing)}")
            item = [item[k] for k in "xywh"]
        if not isinstance(item, list):
            raise InvalidInputError(f"{where}: expected [x, y, w, h] or an object")
        boxes.append(_box(item, where))
    return boxes, extra


def boxes_from_sketch(sketch: Any, size: int | None = None, min_fraction: float = 0.002
                      ) -> list[Box]:
    """Boxes from a rough drawing: every flat colour other than the background (the colour of
    the most border pixels; transparent pixels also count as background) is one region,
    ordered by area, largest first (bottom). Colours covering less than ``min_fraction`` of the
    canvas (anti-aliasing) are ignored. With ``size``, the boxes are scaled from the drawing to
    a ``size`` x ``size`` canvas (outward, so a box never shrinks), so a sketch may be drawn at
    any size."""
    rgba = to_uint8(as_rgba_array(sketch, what="layout sketch"))
    opaque = rgba[..., 3] >= 128
    colours = rgba[..., :3].astype(np.int32) @ np.array([1 << 16, 1 << 8, 1])
    colours = np.where(opaque, colours, -1)
    border = np.concatenate([colours[0], colours[-1], colours[:, 0], colours[:, -1]])
    values, counts = np.unique(border, return_counts=True)
    background = values[np.argmax(counts)]
    found = []
    for value, count in zip(*np.unique(colours, return_counts=True), strict=True):
        if value in (background, -1) or count < min_fraction * colours.size:
            continue
        ys, xs = np.nonzero(colours == value)
        found.append((int(count), (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
                                   int(ys.max() - ys.min() + 1))))
    if not found:
        raise InvalidInputError("the sketch has no regions: draw each region in its own flat "
                                "colour on a plain background")
    boxes = [box for _, box in sorted(found, key=lambda item: -item[0])]
    if size is None:
        return boxes
    height, width = rgba.shape[:2]
    scaled = []
    for x, y, w, h in boxes:
        x0, y0 = x * size // width, y * size // height
        x1, y1 = -(-(x + w) * size // width), -(-(y + h) * size // height)
        scaled.append((x0, y0, max(1, x1 - x0), max(1, y1 - y0)))
    return scaled


def plan_boxes(count: int, width: int, height: int, seed: int = 0) -> list[Box]:
    """``count`` boxes spread over the canvas: a near-square grid of cells in the canvas's
    aspect, each box filling 55-85% of its cell at a random spot, cells shuffled so the order
    (stacking) does not follow reading order."""
    if count < 1:
        raise InvalidInputError(f"need at least one region, got {count}")
    if count > MAX_LAYERS:  # checked before any allocation sized by the count
        raise InvalidInputError(f"{count} regions: a document holds at most {MAX_LAYERS} layers")
    rng = np.random.default_rng(seed)
    columns = max(1, round(math.sqrt(count * width / height)))
    rows = math.ceil(count / columns)
    cell_w, cell_h = width / columns, height / rows
    cells = rng.permutation(rows * columns)[:count]
    boxes = []
    for cell in cells:
        row, column = divmod(int(cell), columns)
        w = max(1, int(cell_w * rng.uniform(0.55, 0.85)))
        h = max(1, int(cell_h * rng.uniform(0.55, 0.85)))
        x = int(column * cell_w + rng.uniform(0, cell_w - w))
        y = int(row * cell_h + rng.uniform(0, cell_h - h))
        boxes.append((x, y, w, h))
    return boxes


def snap_boxes(boxes: Sequence[Box], width: int, height: int, grid: int,
               max_layers: int, max_tokens: int | None = None) -> list[TokenBox]:
    """Checked boxes -> token boxes ``(x0, y0, x1, y1)`` on a ``grid``-pixel token grid,
    snapped outward (a box never shrinks). ``max_layers`` counts the regions plus the merged
    image and the background; ``max_tokens`` bounds the total sequence (memory)."""
    if not boxes:
        raise InvalidInputError("the layout has no boxes")
    if len(boxes) + 2 > max_layers:
        raise InvalidInputError(f"{len(boxes)} regions: this model generates at most "
                                f"{max_layers - 2} (plus the merged image and the background)")
    snapped = []
    for i, (x, y, w, h) in enumerate(boxes):
        where = f"box {i + 1} ({x},{y},{w},{h})"
        if w <= 0 or h <= 0:
            raise InvalidInputError(f"{where} has zero area; width and height must be > 0")
        if x < 0 or y < 0 or x + w > width or y + h > height:
            raise InvalidInputError(f"{where} reaches outside the {width}x{height} canvas")
        snapped.append((x // grid, y // grid, -(-(x + w) // grid), -(-(y + h) // grid)))
    if max_tokens is not None:
        full = (width // grid) * (height // grid)
        total = token_count(snapped) + 2 * full
        if total > max_tokens:
            raise InvalidInputError(f"the layout needs {total} tokens, more than the "
                                    f"{max_tokens} allowed (memory); use fewer or smaller "
                                    "boxes, or a smaller canvas")
    return snapped


def token_box_pixels(box: TokenBox, grid: int) -> Box:
    """A token box back in pixels as ``(x, y, w, h)``."""
    x0, y0, x1, y1 = box
    return x0 * grid, y0 * grid, (x1 - x0) * grid, (y1 - y0) * grid
