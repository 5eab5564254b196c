"""One watermark stamped on many photos: estimate it once, then clean every photo (after Dekel
et al., CVPR 2017, "On the Effectiveness of Visible Watermarks").

A stamped photo is ``J_k = a W + (1 - a) I_k`` with the same watermark colour W and alpha a on
every photo k. Seen over many photos the watermark is what stays put:

1. **Where**: the gradient of the mean photo. The photos' own edges average out, the
   watermark's add up (Dekel's median of gradients, here the mean, which a stream of photos
   can accumulate without holding them all in memory).
2. **How much**: per pixel, over the photos, ``mean J = a W + (1 - a) mean I`` and
   ``std J = (1 - a) std I``. Around the watermark a = 0, so the photos' own mean and spread
   are measured there and carried under it as smooth surfaces; then ``1 - a`` is the ratio
   of spreads and ``a W`` what is left of the mean. (Dekel refine this with a joint matting
   optimisation; this closed form is its first-order estimate, and the benchmark says how
   good it is for 4, 16 and 64 photos.)
3. **Clean**: every photo by the exact inverse of normal blending, ``I = (J - a W) / (1 - a)``
   (:func:`.blends.background_under`), at full resolution.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from layerstudio.errors import InvalidInputError
from layerstudio.pipelines.classical_decompose.fill import fitted_surface

from .blends import background_under

__all__ = ["Watermark", "clean_photos", "estimate_watermark", "photo_paths", "remove_watermark"]

EDGE = 4.0
"""A pixel is the watermark's edge where the mean photo's gradient passes this many times its
typical (median) size."""


@dataclass
class Watermark:
    """The estimate: ``rgba`` (h, w, 4) straight colour and alpha; ``region`` where it lies;
    ``photos`` how many photos it was estimated from."""

    rgba: np.ndarray
    region: np.ndarray
    photos: int


class _Moments:
    """Running per-pixel mean and variance (Welford) of a stream of same-size photos."""

    def __init__(self) -> None:
        self.count, self.mean, self.squares = 0, None, None

    def add(self, picture: np.ndarray) -> None:
        picture = picture.astype(np.float64)
        if self.mean is None:
            self.mean, self.squares = np.zeros_like(picture), np.zeros_like(picture)
        elif picture.shape != self.mean.shape:
            raise InvalidInputError(f"all photos must be the same size: "
                                    f"{self.mean.shape[1]}x{self.mean.shape[0]} and "
                                    f"{picture.shape[1]}x{picture.shape[0]}")
        self.count += 1
        delta = picture - self.mean
        self.mean += delta / self.count
        self.squares += delta * (picture - self.mean)

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.squares / max(self.count - 1, 1))


def _region(mean: np.ndarray) -> np.ndarray:
    """Where the watermark is: strong edges of the mean photo, closed and filled."""
    grey = mean.mean(-1)
    magnitude = np.hypot(ndimage.sobel(grey, 0), ndimage.sobel(grey, 1))
    edges = magnitude > EDGE * max(float(np.median(magnitude)), 1e-4)
    reach = max(2, round(0.01 * max(grey.shape)))
    region = ndimage.binary_closing(edges, iterations=reach)
    return ndimage.binary_dilation(ndimage.binary_fill_holes(region), iterations=reach)


def _carried_under(values: np.ndarray, region: np.ndarray) -> np.ndarray:
    """``values`` (h, w, 3) inside ``region`` replaced by a smooth surface fitted to a ring
    around it (or the ring's median when no surface fits)."""
    ring = ndimage.binary_dilation(region, iterations=max(3, round(0.02 * max(region.shape))))
    ring &= ~region
    out = values.astype(np.float32).copy()
    surface = fitted_surface(values, ring, region, max_residual=0.1)
    out[region] = surface if surface is not None else np.median(values[ring], axis=0)
    return out


def estimate_watermark(photos: Iterable[np.ndarray],
                       on_photo: Callable[[int], None] | None = None) -> Watermark:
    """The watermark common to ``photos`` (float RGB in [0, 1], all one size), read one at a
    time; ``on_photo(k)`` after each."""
    moments = _Moments()
    for photo in photos:
        moments.add(photo)
        if on_photo is not None:
            on_photo(moments.count)
    if moments.count < 2:
        raise InvalidInputError("estimating a watermark needs at least 2 photos stamped with "
                                "it (one photo: use decompose --method alpha)")
    mean, std = moments.mean.astype(np.float32), moments.std.astype(np.float32)
    region = _region(mean)
    if not region.any() or region.all():
        raise InvalidInputError("no watermark common to these photos was found")
    photo_mean, photo_std = _carried_under(mean, region), _carried_under(std, region)
    keep = np.clip((std.sum(-1) / np.maximum(photo_std.sum(-1), 1e-4)), 0, 1)
    alpha = np.where(region, 1 - keep, 0).astype(np.float32)
    alpha[alpha < 0.02] = 0
    stamped = np.clip(mean - keep[..., None] * photo_mean, 0, 1)  # a W
    colour = np.clip(stamped / np.maximum(alpha, 1e-3)[..., None], 0, 1)
    rgba = np.concatenate([np.where(alpha[..., None] > 0, colour, 0), alpha[..., None]], -1)
    return Watermark(rgba.astype(np.float32), region, moments.count)


def remove_watermark(photo: np.ndarray, watermark: np.ndarray) -> np.ndarray:
    """``photo`` without ``watermark`` (straight RGBA of the photo's size), exactly where the
    photo still shows through; where the watermark was opaque, filled from around."""
    if photo.shape[:2] != watermark.shape[:2]:
        raise InvalidInputError(f"the watermark is {watermark.shape[1]}x{watermark.shape[0]}, "
                                f"the photo {photo.shape[1]}x{photo.shape[0]}")
    clean, known = background_under(photo.astype(np.float32), watermark, "normal")
    if not known.all():
        from layerstudio.pipelines.classical_decompose.fill import fill_under

        clean, _ = fill_under(clean, known, ~known)
    return clean


PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")


def photo_paths(inputs: Iterable[str | Path]) -> list[Path]:
    """The photos named by ``inputs`` (files, or folders whose images are taken, sorted)."""
    paths: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            paths += sorted(p for p in item.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
        elif item.is_file():
            paths.append(item)
        else:
            raise InvalidInputError(f"{item} is neither a photo nor a folder")
    if not paths:
        raise InvalidInputError("no photos found (png, jpg, webp, tif or bmp)")
    return paths


def _photo(path: Path) -> np.ndarray:
    from layerstudio.document import LayerStack

    return LayerStack.load(path).composite_array()[..., :3].astype(np.float32)


def clean_photos(paths: list[Path], out_dir: str | Path, watermark: str | Path | None = None,
                 layered: bool = False,
                 report: Callable[[str], None] | None = None) -> Watermark:
    """Estimate the watermark common to ``paths`` (or load the known one, a straight RGBA
    image of the photos' size) and write every photo without it into ``out_dir`` as PNG
    (``layered``: a PSD of [clean photo, watermark layer] instead), plus ``watermark.png``.
    Photos are read one at a time, twice, so a folder of any length fits in memory."""
    from layerstudio.document import Layer, LayerStack

    say = report or (lambda message: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if watermark is not None:
        known = LayerStack.load(watermark).composite_array().astype(np.float32)
        estimate = Watermark(known, known[..., 3] > 0, 0)
    else:
        estimate = estimate_watermark((_photo(p) for p in paths),
                                      lambda k: say(f"read {k}/{len(paths)} photos"))
    height, width = estimate.rgba.shape[:2]
    LayerStack(width, height, [Layer("watermark", estimate.rgba)]).save(out / "watermark.png")
    for index, path in enumerate(paths, 1):
        photo = _photo(path)
        clean = remove_watermark(photo, estimate.rgba)
        stack = LayerStack(width, height, [Layer("photo", np.concatenate(
            [clean, np.ones((height, width, 1), np.float32)], -1), kind="background")])
        if layered:
            stack.add(Layer("watermark", estimate.rgba, kind="effect"))
        stack.save(out / f"{path.stem}.{'psd' if layered else 'png'}")
        say(f"cleaned {index}/{len(paths)}: {path.name}")
    return estimate
