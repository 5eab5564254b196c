"""Peel a flat design into layers, top first, without a model (LayerD's loop, DESIGN.md 3.8,
with classical parts in place of its matting and inpainting networks).

1. **Regions.** The picture is cut into colour-connected regions
   (:func:`~.regions.flat_regions`); the region with most pixels on the border is the base
   everything is drawn on. A picture without such a base (a photo: no region holds 10% of it)
   is left whole.
2. **Objects.** What is not the base falls into connected pieces; pieces of one colour that lie
   close together (the letters of a line of text) form one object; specks smaller than
   ``min_area`` stay in the base.
3. **Plates.** An object whose largest region, with its holes filled, covers it (a label, a
   button, a card) is a plate with content on it: the content is peeled first, the same way,
   with the plate as its base, and the plate is then filled under it.
4. **Layers.** Under every object the base is estimated (:func:`~.fill.fill_under`); inside the
   object alpha is 1, on its one-pixel rim it comes from unblending: ``a = <I - B, F - B> /
   |F - B|^2`` against the base ``B`` and the object's colour ``F`` (its nearest inner pixel,
   or its ink colour for strokes too thin to have one), and the colour from ``fg = (I - (1 - a)
   B) / a``, so the layers re-composite to the input.

Layers come out bottom to top: the base, then objects on it, then what lies on their plates.
With a layer budget, objects at one depth merge first, then the top layers merge down.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.sparse.csgraph import connected_components

from .fill import fill_under, fitted_surface
from .regions import base_region, flat_regions

__all__ = ["ClassicalDecomposer", "Peeled", "Piece", "group_objects", "mask_box", "unblended"]

EIGHT = np.ones((3, 3), bool)
MAX_PIECES = 2000
"""Pieces considered for objects, largest first (the rest of a noisy picture stays put)."""


@dataclass
class Piece:
    """A peeled layer: straight RGBA float pixels of its box, where the box starts on the
    canvas, and how many plates lie under it (0 = directly on the base)."""

    rgba: np.ndarray
    offset: tuple[int, int]
    depth: int


@dataclass
class Peeled:
    """The decomposition: the base with everything peeled off, the pieces bottom to top, and
    how each hole was filled."""

    background: np.ndarray
    pieces: list[Piece]
    fills: list[str] = field(default_factory=list)


def mask_box(mask: np.ndarray, margin: int = 1) -> tuple[slice, slice]:
    ys, xs = np.nonzero(mask)
    return (slice(max(ys.min() - margin, 0), ys.max() + margin + 1),
            slice(max(xs.min() - margin, 0), xs.max() + margin + 1))


@dataclass
class ClassicalDecomposer:
    """``tolerance``: the largest step between neighbouring pixels of one region (per
    channel, in [0, 1]); ``min_area``: the smallest object, as a fraction of the picture;
    ``same_colour``: how close (per channel) the colours of nearby pieces must be for them to
    be one object."""

    tolerance: float = 10 / 255
    min_area: float = 2e-4
    same_colour: float = 0.12

    def __call__(self, rgb: np.ndarray, within: np.ndarray | None = None,
                 on_object: Callable[[], None] | None = None) -> Peeled:
        """Decompose an opaque picture (float RGB in [0, 1]). ``within``: peel only objects
        that touch this mask; ``on_object`` is called after each object (progress)."""
        labels = flat_regions(rgb, self.tolerance)
        base = base_region(labels)
        peeled = Peeled(rgb.copy(), [])
        if (labels == base).mean() < 0.1:
            return peeled
        self._min_pixels = max(4, round(self.min_area * labels.size))
        domain = np.ones(labels.shape, bool)
        peeled.background = self._peel(rgb, labels, domain, base, 0, (0, 0), peeled, within,
                                       on_object)
        peeled.pieces.sort(key=lambda piece: piece.depth)
        return peeled

    # --- objects ----------------------------------------------------------------------------

    def _objects(self, rgb: np.ndarray, rest: np.ndarray) -> list[np.ndarray]:
        return group_objects(rgb, rest, self.same_colour, self._min_pixels)

    def _plate(self, labels: np.ndarray, mask: np.ndarray) -> tuple[int, np.ndarray] | None:
        """(region, filled mask) when the object is a plate with content on it."""
        regions, counts = np.unique(labels[mask], return_counts=True)
        plate = int(regions[np.argmax(counts)])
        if counts.max() < 0.3 * mask.sum():
            return None
        filled = ndimage.binary_fill_holes((labels == plate) & mask)
        content = filled & mask & (labels != plate)
        if filled.sum() < 0.9 * mask.sum() or content.sum() < self._min_pixels:
            return None
        return plate, filled

    def _base_showing_through(self, rgb: np.ndarray, labels: np.ndarray, known: np.ndarray,
                              rest: np.ndarray) -> np.ndarray:
        """Regions cut off from the base that are the base (the inside of an o, a ring's
        hole): their colour is what the base's smooth surface predicts there."""
        if not rest.any():
            return rest
        predicted = fitted_surface(rgb, ndimage.binary_erosion(known), rest, 2.0 / 255)
        if predicted is None:
            return np.zeros_like(rest)
        miss = np.zeros(rest.shape, np.float32)
        miss[rest] = np.abs(rgb[rest] - predicted).max(-1)
        inside = np.where(rest, labels + 1, 0)
        regions = np.unique(inside[inside > 0])
        mean_miss = ndimage.mean(miss, inside, regions)
        alike = regions[mean_miss <= 1.5 * self.tolerance]
        return np.isin(inside, alike) & rest

    # --- peeling ----------------------------------------------------------------------------

    def _peel(self, rgb: np.ndarray, labels: np.ndarray, domain: np.ndarray, base: int,
              depth: int, origin: tuple[int, int], peeled: Peeled, within: np.ndarray | None,
              on_object: Callable[[], None] | None) -> np.ndarray:
        """Peel the objects lying on region ``base`` inside ``domain`` (arrays cropped to a
        box at ``origin`` on the canvas); returns ``rgb`` with them replaced by the base."""
        known = domain & (labels == base)
        known |= self._base_showing_through(rgb, labels, known, domain & ~known)
        objects = self._objects(rgb, domain & ~known)
        if within is not None:
            objects = [mask for mask in objects if (mask & within).any()]
        if not objects:
            return rgb
        hole = np.logical_or.reduce(objects)
        below, how = fill_under(rgb, known, hole)
        peeled.fills.append(how)
        for mask in objects:
            source = rgb
            found = self._plate(labels, mask)
            if found is not None:
                plate, filled = found
                box = mask_box(filled)
                inner = self._peel(rgb[box], labels[box], filled[box], plate, depth + 1,
                                   (origin[0] + box[1].start, origin[1] + box[0].start),
                                   peeled, None if within is None else within[box], on_object)
                source = rgb.copy()
                source[box] = np.where(filled[box][..., None], inner, rgb[box])
            box = mask_box(mask)
            rgba = unblended(source[box], below[box], mask[box])
            peeled.pieces.append(Piece(rgba, (origin[0] + box[1].start,
                                              origin[1] + box[0].start), depth))
            if on_object is not None:
                on_object()
        return np.where(hole[..., None], below, rgb)


def group_objects(rgb: np.ndarray, rest: np.ndarray, same_colour: float,
                  min_pixels: int) -> list[np.ndarray]:
    """Masks of the objects in ``rest``: connected pieces, those whose colours differ by at
    most ``same_colour`` per channel and lie close together joined (closer than half the
    taller one's height: the letters of a line of text, the dot of an i), objects smaller
    than ``min_pixels`` dropped."""
    pieces, count = ndimage.label(rest, EIGHT)
    if count == 0:
        return []
    index = np.arange(1, count + 1)
    sizes = ndimage.sum_labels(rest, pieces, index)
    kept = np.argsort(-sizes, kind="stable")[:MAX_PIECES]
    kept = kept[sizes[kept] >= 3]
    if kept.size == 0:
        return []
    colours = _ink(rgb, pieces, rest, index[kept])
    boxes = np.array([(b[0].start, b[0].stop, b[1].start, b[1].stop)
                      for b in ndimage.find_objects(pieces)], np.int64)[kept]
    y0, y1, x0, x1 = (boxes[:, k] for k in range(4))
    reach = 0.5 * np.maximum.outer(y1 - y0, y1 - y0) + 1
    gap_x = np.maximum(np.maximum.outer(x0, x0) - np.minimum.outer(x1, x1), 0)
    gap_y = np.maximum(np.maximum.outer(y0, y0) - np.minimum.outer(y1, y1), 0)
    alike = np.abs(colours[:, None] - colours[None]).max(-1) <= same_colour
    joined = alike & (gap_x <= reach) & (gap_y <= reach)
    _, group = connected_components(joined, directed=False)
    lookup = np.zeros(count + 1, np.int64)
    lookup[index[kept]] = group + 1
    grouped = lookup[pieces]
    masks = [grouped == g for g in range(1, group.max() + 2)]
    return [mask for mask in masks if mask.sum() >= min_pixels]


def _ink(rgb: np.ndarray, pieces: np.ndarray, rest: np.ndarray, index: np.ndarray
         ) -> np.ndarray:
    """Each piece's own colour: its pixel furthest from the colour just around it (a
    small letter's mean is mostly anti-aliased edge; its ink is not)."""
    ring = np.where(rest, 0, ndimage.grey_dilation(pieces, footprint=EIGHT))
    with np.errstate(invalid="ignore", divide="ignore"):  # a piece with nothing around it
        around = np.stack([ndimage.mean(rgb[..., c], ring, index) for c in range(3)], 1)
    around = np.nan_to_num(around)
    lookup = np.zeros((pieces.max() + 1, 3), np.float32)
    lookup[index] = around
    distance = np.abs(rgb - lookup[pieces]).sum(-1)
    where = ndimage.maximum_position(distance, pieces, index)
    return np.array([rgb[position] for position in where], np.float32)


def unblended(rgb: np.ndarray, below: np.ndarray, mask: np.ndarray,
              inner: np.ndarray | None = None) -> np.ndarray:
    """Straight RGBA of an object covering ``mask`` over ``below``: alpha 1 on ``inner``
    (default: the mask less its outline), unblended against the nearest inner colour on the
    rest of the mask."""
    inner = ndimage.binary_erosion(mask, EIGHT) if inner is None else inner & mask
    rim = mask & ~inner
    alpha = inner.astype(np.float32)
    colour = np.where(mask[..., None], rgb, 0).astype(np.float32)
    if rim.any():
        if inner.any():
            _, nearest = ndimage.distance_transform_edt(~inner, return_indices=True)
            ink = rgb[nearest[0], nearest[1]][rim]
        else:  # a stroke too thin for an inside: its colour is the one furthest from below
            distance = np.abs(rgb - below).sum(-1)
            ink = np.broadcast_to(rgb[mask][np.argmax(distance[mask])], (int(rim.sum()), 3))
        seen, under = rgb[rim], below[rim]
        span = ink - under
        length = (span * span).sum(-1)
        a = np.where(length > 1e-6, ((seen - under) * span).sum(-1) / np.maximum(length, 1e-6),
                     1.0)
        a = np.clip(a, 0.0, 1.0)
        alpha[rim] = a
        safe = np.maximum(a, 1e-6)[:, None]
        colour[rim] = np.where(a[:, None] > 0, np.clip((seen - (1 - a[:, None]) * under) / safe,
                                                       0, 1), 0)
    return np.concatenate([colour, alpha[..., None]], axis=-1)
