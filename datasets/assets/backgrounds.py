"""Backgrounds: gradients, noise, stripes, checkers/tiles and real photos, all seeded.

The photos are sample images scikit-image ships inside its wheel, each CC0 or public domain
according to scikit-image's own notes (see docs/datasets.md), read from the package folder
directly so no download is ever attempted. They are cropped at random and recoloured.
"""

from __future__ import annotations

import functools
from importlib import resources

import numpy as np
from PIL import Image, ImageFilter

from .shapes import COLOURS

__all__ = ["BACKGROUND_KINDS", "PHOTOS", "make_background"]

BACKGROUND_KINDS = ("gradient", "noise", "stripes", "checker", "photo", "plain")
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "brick", "grass",
          "gravel", "coins", "camera", "moon")
_PHOTO_FILES = {"hubble_deep_field": "hubble_deep_field.jpg", "rocket": "rocket.jpg"}
_CAPTIONS = {"astronaut": "a photo of an astronaut", "chelsea": "a photo of a cat",
             "coffee": "a photo of a coffee cup", "rocket": "a photo of a rocket launch",
             "hubble_deep_field": "a photo of deep space", "brick": "a brick wall",
             "grass": "grass", "gravel": "gravel",
             "coins": "a photo of coins", "camera": "a photo of a cameraman",
             "moon": "a photo of the moon surface"}


@functools.cache
def _photo(name: str) -> np.ndarray:
    path = resources.files("skimage") / "data" / _PHOTO_FILES.get(name, f"{name}.png")
    with path.open("rb") as handle:
        return np.asarray(Image.open(handle).convert("RGB")).copy()


def _colour(rng: np.random.Generator) -> tuple[str, np.ndarray]:
    name = str(rng.choice(list(COLOURS)))
    jitter = rng.integers(-25, 26, 3)
    return name, np.clip(np.array(COLOURS[name]) + jitter, 0, 255)


def make_background(rng: np.random.Generator, size: tuple[int, int],
                    kind: str | None = None) -> tuple[np.ndarray, str]:
    """An opaque RGBA uint8 background of ``size`` (w, h) and a short caption for it."""
    width, height = size
    kind = kind or str(rng.choice(BACKGROUND_KINDS))
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == "gradient":
        (n1, c1), (n2, c2) = _colour(rng), _colour(rng)
        angle = rng.uniform(0, 2 * np.pi)
        t = (xs * np.cos(angle) + ys * np.sin(angle))
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
        rgb = c1 * (1 - t[..., None]) + c2 * t[..., None]
        caption = f"a {n1} to {n2} gradient"
    elif kind == "noise":
        name, c = _colour(rng)
        coarse = rng.random((max(2, height // 8), max(2, width // 8), 1)).astype(np.float32)
        up = np.asarray(Image.fromarray((coarse[..., 0] * 255).astype(np.uint8)).resize(
            (width, height), Image.Resampling.BICUBIC), np.float32)[..., None] / 255
        rgb = c * (0.6 + 0.5 * up) + rng.normal(0, 8, (height, width, 3))
        caption = f"a {name} noise texture"
    elif kind == "stripes":
        (n1, c1), (n2, c2) = _colour(rng), _colour(rng)
        period = rng.uniform(6, 24)
        angle = rng.uniform(0, np.pi)
        band = ((xs * np.cos(angle) + ys * np.sin(angle)) // period) % 2
        rgb = np.where(band[..., None] == 0, c1, c2)
        caption = f"{n1} and {n2} stripes"
    elif kind == "checker":
        (n1, c1), (n2, c2) = _colour(rng), _colour(rng)
        cell = int(rng.integers(6, 24))
        board = ((xs // cell) + (ys // cell)) % 2
        rgb = np.where(board[..., None] == 0, c1, c2)
        caption = f"a {n1} and {n2} checkerboard"
    elif kind == "photo":
        name = str(rng.choice(PHOTOS))
        photo = _photo(name)
        scale = rng.uniform(0.4, 1.0)
        ch, cw = int(photo.shape[0] * scale), int(photo.shape[1] * scale)
        side = min(ch, cw)
        y0 = int(rng.integers(0, photo.shape[0] - side + 1))
        x0 = int(rng.integers(0, photo.shape[1] - side + 1))
        crop = Image.fromarray(photo[y0:y0 + side, x0:x0 + side]).resize(
            (width, height), Image.Resampling.LANCZOS)
        tint = rng.uniform(0.75, 1.25, 3)
        rgb = np.asarray(crop, np.float32) * tint
        caption = _CAPTIONS[name]
    elif kind == "plain":
        name, c = _colour(rng)
        rgb = np.broadcast_to(c, (height, width, 3)).astype(np.float32)
        caption = f"a plain {name} background"
    else:
        raise ValueError(f"unknown background kind {kind!r}; choose from {BACKGROUND_KINDS}")
    rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    if kind in ("stripes", "checker"):  # soften aliasing a little
        rgb = np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(0.6)))
    alpha = np.full((height, width, 1), 255, np.uint8)
    return np.concatenate([rgb, alpha], axis=2), caption
