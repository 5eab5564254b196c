"""The classical anime layer decomposition (``--method anime-classical``): no model, any size.

1. **Line art**: dark strokes, where the picture is darker than its grey closing (the
   black top-hat, which keeps what is thinner than the closing), gated by XDoG (Winnemöller
   et al. 2012), whose thresholded difference of Gaussians marks the dark side of edges;
   plus solid ink (near-black areas such as filled pupils), which illustrators keep on the
   line layer.
2. **Flat colour**: the picture cut into uniform pieces (not line, not a colour edge);
   touching pieces merge where one is the other shaded, by the shading the whole picture
   agrees on (artists use one shadow tint); each group takes its largest piece's median
   colour, the pixels under strokes that of the nearest piece.
3. **Shadow and highlight**: the exact inverses of the convention against the flat colour
   (:func:`.structure.shading_layers`).
4. The line art is then solved as a normal layer over what lies under it, towards the ink
   colour (:func:`.structure.normal_layer`), so the four layers re-compose to the picture.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
from scipy import ndimage

from layerstudio.document import LayerStack

from .structure import anime_stack, normal_layer, shading_layers

__all__ = ["assemble", "classical_anime_layers", "flat_regions", "line_strength",
           "median_colours", "pieces", "xdog"]


def xdog(grey: np.ndarray, sigma: float = 1.0, k: float = 1.6, p: float = 20.0,
         epsilon: float = 0.0, phi: float = 10.0) -> np.ndarray:
    """eXtended difference of Gaussians of a grey picture in [0, 1]: 1 on flat areas and the
    light side of edges, falling towards 0 on their dark side (thin dark strokes)."""
    fine = cv2.GaussianBlur(grey, (0, 0), sigma)
    coarse = cv2.GaussianBlur(grey, (0, 0), sigma * k)
    difference = (1 + p) * fine - p * coarse
    return np.where(difference >= epsilon, 1.0, 1 + np.tanh(phi * (difference - epsilon)))


def line_strength(rgb: np.ndarray, width: int | None = None) -> np.ndarray:
    """Rough line alpha in [0, 1]: strokes up to ``width`` px wide (default: 1/40 of the
    shorter side) that are darker than their surroundings, where XDoG sees a dark edge,
    or near-black ink of any width."""
    grey = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    width = width or max(3, round(min(grey.shape) / 40))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
    closed = cv2.morphologyEx(grey, cv2.MORPH_CLOSE, kernel)
    depth = (closed - grey) / np.maximum(closed - min(float(grey.min()), 0.1), 0.05)
    edges = 1 - xdog(grey, sigma=max(0.7, width / 4))
    near_edge = cv2.dilate(edges.astype(np.float32), kernel) > 0.5
    strokes = np.clip((depth - 0.25) / 0.5, 0, 1) * near_edge
    ink = np.clip((0.22 - grey) / 0.12, 0, 1)
    return np.maximum(strokes, ink).astype(np.float32)


def pieces(rgb: np.ndarray, lines: np.ndarray, min_area: int | None = None
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The picture cut into uniform pieces: connected pixels that are neither line (rough
    alpha >= 0.5) nor a colour edge, pieces under ``min_area`` px dropped. Returns (labels
    (h, w) with every pixel given its nearest piece, each label's area, each label's median
    colour; label 0 unused), or None when there is no piece."""
    height, width = lines.shape
    min_area = min_area or max(6, height * width // 8000)
    gradient = cv2.morphologyEx(rgb, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)).max(-1)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        ((lines < 0.5) & (gradient < 0.08)).astype(np.uint8), connectivity=4)
    small = stats[:, cv2.CC_STAT_AREA] < min_area
    small[0] = True  # label 0: lines and colour edges
    labels[small[labels]] = 0
    if (labels == 0).all():
        return None
    colours = median_colours(rgb, labels, count)
    rows, cols = ndimage.distance_transform_edt(labels == 0, return_distances=False,
                                                return_indices=True)
    return labels[rows, cols], stats[:, cv2.CC_STAT_AREA] * ~small, colours


def flat_regions(rgb: np.ndarray, lines: np.ndarray, convention: str = "artist"
                 ) -> np.ndarray:
    """Flat colour (h, w, 3) under shading: the picture's :func:`pieces`, neighbouring
    pieces merged where the smaller one is the larger one shaded (:func:`_shading_pairs`),
    each group filled with its largest base piece's median colour."""
    cut = pieces(rgb, lines)
    if cut is None:
        return np.broadcast_to(np.median(rgb.reshape(-1, 3), 0), rgb.shape).copy()
    nearest, areas, colours = cut
    count = len(colours)
    group = np.arange(count)
    as_shade = np.zeros(count)  # contact along which a piece is the shaded side, or the base
    as_base = np.zeros(count)
    for base, shade, contact in _shading_pairs(nearest, lines < 0.5, colours, convention):
        as_shade[shade] += contact
        as_base[base] += contact
        root_base, root_shade = _root(group, base), _root(group, shade)
        if root_base != root_shade:
            group[root_shade] = root_base
    roots = np.array([_root(group, label) for label in range(count)])
    # each group is painted in the colour of its largest piece that is mostly a base
    rank = areas * np.where(as_shade > as_base, 1e-6, 1.0)
    paint = np.zeros(count, int)
    for root in np.unique(roots):
        members = np.flatnonzero(roots == root)
        paint[root] = members[np.argmax(rank[members])]
    return colours[paint[roots[nearest]]]


def _root(group: np.ndarray, label: int) -> int:
    while group[label] != label:
        label = group[label]
    return int(label)


def median_colours(rgb: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """(count, 3) median colour of each label's pixels (zeros for labels with none; label 0
    skipped)."""
    flat_labels = labels.ravel()
    order = np.argsort(flat_labels, kind="stable")
    sorted_rgb = rgb.reshape(-1, 3)[order]
    bounds = np.searchsorted(flat_labels[order], np.arange(count + 1))
    colours = np.zeros((count, 3), np.float32)
    for label in range(1, count):
        if bounds[label + 1] > bounds[label]:
            colours[label] = np.median(sorted_rgb[bounds[label]:bounds[label + 1]], axis=0)
    return colours


def _shading_pairs(nearest: np.ndarray, open_: np.ndarray, colours: np.ndarray,
                   convention: str) -> list[tuple[int, int, int]]:
    """(base, shaded, contact px) of pieces that touch without a line between them (4 px
    of contact at least) and whose colours one shading explains: the darker piece as the
    brighter one's shadow, or the brighter as the darker one's highlight. Under ``artist``
    a shadow is the base times the picture's shadow tint and a highlight the base screened
    with its highlight tint, each tint the consensus over all touching pairs
    (:func:`_consensus`); under ``normal`` each is an alpha-over of one colour at one
    opacity (:func:`_towards_one_colour`)."""
    pairs: dict[tuple[int, int], int] = {}
    for a, b, ok in ((nearest[:, :-1], nearest[:, 1:], open_[:, :-1] & open_[:, 1:]),
                     (nearest[:-1], nearest[1:], open_[:-1] & open_[1:])):
        touching = ok & (a != b) & (a > 0) & (b > 0)
        codes, counts = np.unique(np.minimum(a, b)[touching] * len(colours)
                                  + np.maximum(a, b)[touching], return_counts=True)
        for code, contact in zip(codes, counts, strict=True):
            key = (int(code // len(colours)), int(code % len(colours)))
            pairs[key] = pairs.get(key, 0) + int(contact)
    touching = [(pair, contact) for pair, contact in pairs.items() if contact >= 4]
    if not touching:
        return []
    weight = np.array([contact for _, contact in touching], np.float64)
    first = colours[[a for (a, _), _ in touching]].astype(np.float64)
    second = colours[[b for (_, b), _ in touching]].astype(np.float64)
    swap = _luminance(first) < _luminance(second)
    bright = np.where(swap[:, None], second, first)
    dark = np.where(swap[:, None], first, second)
    if convention == "normal":
        shadow = _towards_one_colour(bright, dark, weight)
        light = _towards_one_colour(dark, bright, weight)
    else:
        ratio = dark / np.maximum(bright, 1e-3)  # shadow: dark = bright x tint
        lift = (bright - dark) / np.maximum(1 - dark, 1e-3)  # highlight: screen on dark
        shadow = _consensus(ratio, (ratio <= 1.02).all(-1), weight)
        light = _consensus(lift, (lift >= -0.02).all(-1), weight)
    # a pair both readings fit goes to the reading more of the picture agrees with
    shadow_first = shadow[1] >= light[1]
    found = []
    for ((a, b), contact), flip, is_shadow, is_light in zip(touching, swap, shadow[0],
                                                           light[0], strict=True):
        brighter, darker = (b, a) if flip else (a, b)
        if is_shadow and (shadow_first or not is_light):
            found.append((brighter, darker, contact))
        elif is_light:
            found.append((darker, brighter, contact))
    return found


CANDIDATES = 256
"""Touching pairs tried as the consensus shading (the heaviest by contact)."""


def _consensus(values: np.ndarray, plausible: np.ndarray, weight: np.ndarray,
               tolerance: float = 0.08) -> tuple[np.ndarray, float]:
    """(which rows of ``values`` lie within ``tolerance`` of the consensus, its support):
    the consensus is the plausible row with the most (``weight``-ed) plausible rows near it
    (the picture's one shading tint; pairs of different flat colours scatter and do not
    outvote it)."""
    if not plausible.any():
        return np.zeros(len(values), bool), 0.0
    # candidates: the CANDIDATES heaviest plausible rows (all of them in an illustration),
    # so memory stays (CANDIDATES, N) however many pieces a busy picture has
    candidates = np.sort(np.argsort(-(weight * plausible), kind="stable")[:CANDIDATES])
    near = np.abs(values[candidates, None] - values[None]).max(-1) < tolerance
    support = (near * (weight * plausible)[None]).sum(-1) * plausible[candidates]
    best = int(np.argmax(support))
    return plausible & near[best], float(support[best])


def _towards_one_colour(base: np.ndarray, shade: np.ndarray, weight: np.ndarray
                        ) -> tuple[np.ndarray, float]:
    """Which ``shade`` colours are one alpha-over of one colour on their ``base``
    (``shade = base + a (C - base)``, as an artist paints a shadow layer at one opacity):
    for each opacity a on a grid, every pair implies a colour C, and the (a, C) most pairs
    (``weight``-ed) agree on wins; returns the pairs that fit it and their support."""
    best, best_support = np.zeros(len(base), bool), 0.0
    for alpha in np.linspace(0.15, 0.95, 17):
        implied = base + (shade - base) / alpha
        plausible = ((implied > -0.03) & (implied < 1.03)).all(-1)
        fits, support = _consensus(implied, plausible, weight, 0.03 / alpha)
        if support > best_support:
            best, best_support = fits, support
    return best, best_support


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.2126, 0.7152, 0.0722])


def classical_anime_layers(rgb: np.ndarray, convention: str = "artist",
                           highlight: str = "screen",
                           on_step: Callable[[], None] | None = None) -> LayerStack:
    """[flat colour, shadow, highlight, line art] of ``rgb`` (float RGB in [0, 1], any size),
    re-composing to it; ``on_step`` is called after each of the four stages."""
    rgb = rgb.astype(np.float32)
    tick = on_step or (lambda: None)
    lines = line_strength(rgb)
    tick()
    flat = flat_regions(rgb, lines, convention)
    tick()
    return assemble(rgb, lines, flat, convention, highlight, tick)


def assemble(rgb: np.ndarray, lines: np.ndarray, flat: np.ndarray, convention: str,
             highlight: str = "screen", on_step: Callable[[], None] | None = None
             ) -> LayerStack:
    """The four layers that re-compose to ``rgb`` exactly, from a rough line alpha
    ``lines`` and a flat colour ``flat`` (both (h, w[, 3]) at the picture's size): shadow
    and highlight solved against the flat colour from what lies under the strokes, the line
    art solved over that towards the ink colour."""
    tick = on_step or (lambda: None)
    # under a stroke lies what lies beside it: the nearest uncovered pixel, shading and all
    covered = cv2.dilate((lines > 0.05).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    under = _nearest_uncovered(rgb, covered) if (~covered).any() else flat
    shadow, light = shading_layers(flat, under, convention, highlight)
    tick()
    ink = _ink_colour(rgb, lines)
    line_art = normal_layer(under.astype(np.float64), rgb.astype(np.float64), ink,
                            covered).astype(np.float32)
    tick()
    stack = anime_stack({"flat": flat, "shadow": shadow, "highlight": light,
                         "lineart": line_art}, convention, highlight)
    stack.metadata.update(ink_colour=[round(float(c), 4) for c in ink])
    return stack


def _nearest_uncovered(rgb: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """``rgb`` with every ``covered`` pixel replaced by its nearest uncovered one."""
    rows, cols = ndimage.distance_transform_edt(covered, return_distances=False,
                                                return_indices=True)
    return rgb[rows, cols]


def _ink_colour(rgb: np.ndarray, lines: np.ndarray) -> np.ndarray:
    """The median colour of the strongest stroke pixels (black when there are none)."""
    strong = lines > 0.9
    if strong.sum() < 4:
        return np.zeros(3, np.float32)
    return np.median(rgb[strong], axis=0).astype(np.float32)
