"""One object pulled out of a picture together with its shadow or glow, without a model.

LayerDecomp's classical fallback (DESIGN.md 3.3), in four steps on a crop around the object:

1. **Object mask**: GrabCut, started from the user's box (a rectangle) or brushed mask.
2. **Object alpha**: closed-form matting (Levin et al., pymatting) on a trimap grown from
   the mask, so hair-thin and soft edges keep their partial coverage.
3. **Effect alpha**: around the object, where effects fall, each pixel's luminance is
   compared with what the background would be there without effects, estimated from a ring
   beyond their reach (:func:`band_luma`: a fitted surface, the same hue's brightness, or
   local means on grey texture). A shadow darkens what is under it, ``I = (1 - a) B``, so
   ``a = 1 - L_I / L_B``; a glow lightens it towards white, ``I = a + (1 - a) B``. Only
   changes connected to the object count, and GrabCut's mask is first cleared of shadow
   (background hues made darker, reaching in from outside).
4. **Clean background**: the effect divided out of what it covered, ``B = (I - a C) / (1 - a)``
   (texture kept), then the object's hole filled (``classical_decompose.fill``); the object's
   colour is then solved from ``I = alpha F + (1 - alpha) B``. The layers re-composite to
   the input exactly: where an estimate would need a colour outside [0, 1], the effect's
   alpha is capped and the object's raised instead.

Masks and mattes are computed at <= 512 px on the crop and scaled up; the colours are solved
at full size, so the result works on 512-2048 px photos in seconds.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
from scipy import ndimage

from layerstudio.errors import InvalidInputError
from layerstudio.pipelines.classical_decompose.fill import fill_under, fitted_surface

from .layers import Extraction
from .solve import effect_limit, on_canvas, solved_parts

__all__ = ["extract_with_effects"]

WORK_SIDE = 512
"""Longest side of the crop on which masks and mattes are computed."""
REACH = 0.6
"""How far effects are looked for, as a fraction of the object's longest side."""
MIN_EFFECT = 0.06
"""Effect alpha below this is texture or noise, not a shadow or glow."""
HUE_MATCH = 0.02
"""Chromaticity distance within which a pixel counts as a background colour."""
TEXTURE = 0.04
"""RMS luminance error (on the ring) above which the background is treated as texture."""
HOLE_ALPHA = 0.5
"""The object's hole (what the background fill replaces) is where its matte passes this: a
shadow right at its feet gets a little matte alpha too, and must stay with the effect."""
LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb @ LUMA


def _crop_box(region: np.ndarray, grow: float) -> tuple[slice, slice]:
    """The region's bounding box grown by ``grow`` times its longest side, inside the canvas."""
    ys, xs = np.nonzero(region)
    pad = int(np.ceil(grow * max(np.ptp(ys) + 1, np.ptp(xs) + 1)))
    height, width = region.shape
    return (slice(max(0, ys.min() - pad), min(height, ys.max() + 1 + pad)),
            slice(max(0, xs.min() - pad), min(width, xs.max() + 1 + pad)))


def _is_box(region: np.ndarray) -> bool:
    ys, xs = np.nonzero(region)
    return int(region.sum()) == (np.ptp(ys) + 1) * (np.ptp(xs) + 1)


def object_mask(rgb: np.ndarray, region: np.ndarray) -> np.ndarray:
    """GrabCut's object inside a box ``region``, or around a brushed one (uint8 work image)."""
    image = np.rint(rgb * 255).astype(np.uint8)
    grown = ndimage.binary_dilation(region, iterations=max(2, int(0.1 * np.sqrt(region.sum()))))
    if _is_box(region):
        if grown.all():
            raise InvalidInputError("the box covers the whole picture; draw it around one "
                                    "object")
        state = np.where(region, cv2.GC_PR_FGD, cv2.GC_BGD).astype(np.uint8)
    else:
        state = np.full(region.shape, cv2.GC_BGD, np.uint8)
        state[grown] = cv2.GC_PR_BGD
        state[region] = cv2.GC_PR_FGD
    models = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(image, state, None, *models, 5, cv2.GC_INIT_WITH_MASK)
    mask = (state == cv2.GC_FGD) | (state == cv2.GC_PR_FGD)
    outside = state == cv2.GC_BGD
    if outside.sum() >= 16:  # a box also holds part of the shadow: that is no object
        mask &= ~_shaded_background(rgb, mask, outside)
    if mask.sum() < 0.05 * region.sum():  # GrabCut gave up: trust the user's region
        mask = region.copy()
    labels, count = ndimage.label(mask)
    if count > 1:  # the object's pieces; specks are GrabCut noise
        sizes = np.asarray(ndimage.sum(mask, labels, range(1, count + 1)))
        mask = np.isin(labels, 1 + np.nonzero(sizes >= 0.1 * sizes.max())[0])
    return ndimage.binary_fill_holes(mask)


def _shaded_background(rgb: np.ndarray, mask: np.ndarray, outside: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` that are a background colour (same chromaticity as a colour of
    ``outside``) made darker: a shadow, not the object."""
    hues = Hues(rgb, outside)
    group, distance = hues.nearest(mask)
    darker = _luma(rgb)[mask] < (1 - MIN_EFFECT) * hues.level[group]
    shaded = np.zeros(mask.shape, bool)
    shaded[mask] = (distance < HUE_MATCH) & darker
    # a shadow reaches the mask's edge from outside; darker background hues inside the
    # object (its own dark green, say) do not
    labels, _ = ndimage.label(shaded | ~mask)
    reached = np.unique(labels[~mask])
    return shaded & np.isin(labels, reached[reached > 0])


def object_alpha(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Closed-form matting on a trimap: sure object inside the eroded mask, sure background
    outside the dilated one."""
    from pymatting import estimate_alpha_cf

    ys, xs = np.nonzero(mask)
    band = max(2, round(0.03 * max(np.ptp(ys) + 1, np.ptp(xs) + 1)))
    trimap = np.full(mask.shape, 0.5)
    trimap[ndimage.binary_erosion(mask, iterations=band)] = 1.0
    trimap[~ndimage.binary_dilation(mask, iterations=band)] = 0.0
    if not (trimap == 1.0).any():  # too thin to have a sure inside
        return mask.astype(np.float32)
    alpha = estimate_alpha_cf(rgb.astype(np.float64), trimap)
    return np.clip(alpha, 0, 1).astype(np.float32)


def _by_surface(plane: np.ndarray, ring: np.ndarray, where: np.ndarray) -> np.ndarray | None:
    """``plane`` at ``where`` from a quadratic surface fitted to its ring values."""
    surface = fitted_surface(plane[..., None].repeat(3, -1), ring, where, max_residual=1.0)
    return None if surface is None else surface[:, 0]


class Hues:
    """The background's colours by chromaticity (k-means over a sample of ``known`` pixels),
    each with its median luminance: a shadow keeps a colour's chromaticity and lowers its
    luminance, so a pixel's hue says which background colour lies under it."""

    def __init__(self, rgb: np.ndarray, known: np.ndarray, groups: int = 6) -> None:
        self.chroma = _chroma(rgb)
        samples = self.chroma[known]
        if len(samples) > 4000:
            samples = samples[np.random.default_rng(0).choice(len(samples), 4000,
                                                              replace=False)]
        groups = min(groups, len(samples))
        criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1e-4)
        cv2.setRNGSeed(0)
        _, _, self.centres = cv2.kmeans(samples.astype(np.float32), groups, None, criteria, 3,
                                        cv2.KMEANS_PP_CENTERS)
        luma, group = _luma(rgb)[known], self.nearest(known)[0]
        self.level = np.array([np.median(luma[group == g]) if (group == g).any()
                               else np.median(luma) for g in range(groups)])

    def nearest(self, where: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each ``where`` pixel's nearest background colour and its chromaticity distance."""
        distance = ((self.chroma[where][:, None] - self.centres[None]) ** 2).sum(-1)
        group = np.argmin(distance, axis=1)
        return group, np.sqrt(distance[np.arange(len(group)), group])

    def luma(self, where: np.ndarray) -> np.ndarray:
        """Luminance at ``where`` if it were the background colour of the same hue, unshaded."""
        return self.level[self.nearest(where)[0]]


def _chroma(rgb: np.ndarray) -> np.ndarray:
    """Chromaticity r, g, b / (r + g + b); near black (no hue to speak of) is 0."""
    total = rgb.sum(-1, keepdims=True)
    return np.where(total > 0.15, rgb / np.maximum(total, 1e-3), 0).astype(np.float32)


def band_luma(rgb: np.ndarray, hole: np.ndarray, ring: np.ndarray, band: np.ndarray,
              texture: float) -> tuple[np.ndarray, np.ndarray]:
    """(seen, expected): each ``band`` pixel's luminance and its estimate without effects.

    Per pixel, by whichever of two models explains the ``ring`` (beyond the effects' reach)
    better: a quadratic surface (flat colours, gradients) or the brightness of ring colours of
    the same chromaticity (coloured patterns: a shadow darkens a colour but keeps its hue).
    When neither does (a grey texture, where hue cannot tell a dark brick from shaded mortar),
    by local means instead: luminance averaged over ``texture`` pixels (the object left out)
    against a surface fitted to the ring's averages, since a shadow still lowers the mean."""
    luma = _luma(rgb)
    hues = Hues(rgb, ring)
    models = [(hues.luma(ring), lambda: hues.luma(band))]
    surface = _by_surface(luma, ring, ring)
    if surface is not None:
        models.append((surface, lambda: _by_surface(luma, ring, band)))
    errors = [float(np.sqrt(np.mean((fit - luma[ring]) ** 2))) for fit, _ in models]
    best = int(np.argmin(errors))
    if errors[best] <= TEXTURE or surface is None:
        return luma[band], models[best][1]()
    outside = (~hole).astype(np.float32)
    local = ndimage.gaussian_filter(luma * outside, texture) / np.maximum(
        ndimage.gaussian_filter(outside, texture), 1e-3)
    return local[band], _by_surface(local, ring, band)


def effect_alpha(rgb: np.ndarray, hole: np.ndarray, reach: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Effect alpha and colour (black: darkening, white: lightening) around ``hole``."""
    near = ndimage.binary_dilation(hole, iterations=reach)
    ring = ndimage.binary_dilation(near, iterations=max(3, reach // 4)) & ~near
    alpha = np.zeros(hole.shape, np.float32)
    colour = np.zeros(hole.shape, np.float32)
    band = near & ~hole
    if ring.sum() < 6 or not band.any():
        return alpha, colour
    seen, expected = band_luma(rgb, hole, ring, band, max(1.0, reach / 6))
    expected = np.maximum(expected, 1e-3)
    dark = np.clip(1 - seen / expected, 0, 1)
    light = np.clip((seen - expected) / np.maximum(1 - expected, 1e-3), 0, 1)
    lighter = light > dark
    alpha[band] = np.where(lighter, light, dark)
    colour[band] = lighter.astype(np.float32)
    # per pixel (a blur would mix a pattern's colours), then a median against speckle
    alpha = ndimage.median_filter(alpha, size=3)
    alpha = np.where(band, np.minimum(alpha, effect_limit(rgb, colour)), 0)
    alpha[alpha < MIN_EFFECT] = 0
    labels, count = ndimage.label(alpha > 0)
    if count:  # keep what touches the object: an effect is cast by it
        touching = np.unique(labels[ndimage.binary_dilation(hole, iterations=2) & (labels > 0)])
        alpha[~np.isin(labels, touching)] = 0
    return alpha, colour


def _resize(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if plane.shape[::-1] == size:
        return plane
    return cv2.resize(plane.astype(np.float32), size, interpolation=cv2.INTER_LINEAR)


def extract_with_effects(rgb: np.ndarray, region: np.ndarray,
                         on_step: Callable[[int, int], None] | None = None,
                         effects: bool = True) -> Extraction:
    """Pull the object in ``region`` (a box or brushed boolean mask) out of ``rgb`` (float
    RGB in [0, 1]) with its shadow or glow. ``on_step(done, 4)`` reports the four steps.
    ``effects=False`` is plain mask-and-matte cutting (the effects stay in the background):
    the baseline the benchmark measures the effect step against."""
    if region is None or not region.any():
        raise InvalidInputError("extracting an object needs a mask or a box around it")
    report = on_step or (lambda done, total: None)
    crop = _crop_box(region, REACH + 0.3)
    picture = rgb[crop].astype(np.float32)
    height, width = picture.shape[:2]
    scale = min(1.0, WORK_SIDE / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(picture, size, interpolation=cv2.INTER_AREA) if scale < 1 else picture
    small_region = _resize(region[crop].astype(np.float32), size) > 0.5
    if not small_region.any():
        raise InvalidInputError("the box or mask is too small to hold an object")

    mask = object_mask(small, small_region)
    report(1, 4)
    alpha_small = object_alpha(small, mask)
    report(2, 4)
    hole_small = ndimage.binary_dilation(alpha_small > HOLE_ALPHA, iterations=1)
    ys, xs = np.nonzero(hole_small)
    reach = max(2, round(REACH * max(np.ptp(ys) + 1, np.ptp(xs) + 1)))
    effect_small, colour_small = effect_alpha(small, hole_small, reach) if effects else \
        (np.zeros(size[::-1], np.float32), np.zeros(size[::-1], np.float32))
    report(3, 4)

    alpha = np.clip(_resize(alpha_small, (width, height)), 0, 1)
    effect = np.clip(_resize(effect_small, (width, height)), 0, 1)
    colour = (_resize(colour_small, (width, height)) > 0.5).astype(np.float32)
    hole = _resize(hole_small.astype(np.float32), (width, height)) > 0.01
    background, objects, effect_layer = solved_parts(
        picture, alpha, effect, colour, hole,
        lambda unshaded, hole: fill_under(unshaded, ~hole, hole)[0])
    report(4, 4)
    return on_canvas(rgb, crop, background, objects, effect_layer)

