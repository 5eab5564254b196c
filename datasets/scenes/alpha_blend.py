"""`alpha_blend`: one semi-transparent layer blended over a background, labelled with its
blend type (DiffDecompose-style subtasks).

| subtask    | layer                                   | blend mode   |
|------------|-----------------------------------------|--------------|
| watermark  | a logo (emoji) or word at 25-60% alpha  | normal       |
| glass      | a pane showing the background refracted | normal       |
| flare      | lens flare: glow, rings and streak      | screen       |
| light_leak | a warm soft blob of light               | linear-dodge |
| smoke      | soft grey turbulence                    | screen       |
| rain       | thin bright slanted streaks             | screen       |
| xray       | a dark, inverted silhouette             | multiply     |

The stack is [background, layer]; its composite is the input, the two layers the targets.
"""

from __future__ import annotations

import cv2
import numpy as np

from layerstudio.blend import BlendMode
from layerstudio.document import Layer, LayerStack

from ..art import random_art
from ..assets.backgrounds import make_background
from .common import blur, box_of, place, to_u8

__all__ = ["SUBTASKS", "build"]

SUBTASKS = {"watermark": BlendMode.NORMAL, "glass": BlendMode.NORMAL,
            "flare": BlendMode.SCREEN, "light_leak": BlendMode.LINEAR_DODGE,
            "smoke": BlendMode.SCREEN, "rain": BlendMode.SCREEN, "xray": BlendMode.MULTIPLY}


def _radial(size: int, centre: tuple[float, float], radius: float) -> np.ndarray:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    return np.hypot(xs - centre[0], ys - centre[1]) / max(radius, 1e-3)


def _layer(task: str, rng: np.random.Generator, size: int, split: str,
           background: np.ndarray) -> tuple[np.ndarray, str]:
    """The layer as straight float RGBA (canvas-sized) and a caption for it."""
    out = np.zeros((size, size, 4), np.float32)
    if task == "watermark":
        art = random_art(rng, int(size * rng.uniform(0.3, 0.6)), split, weights=(0.6, 0, 0.4))
        x, y = place(rng, art.pixels.shape[:2], (size, size))
        h, w = art.pixels.shape[:2]
        out[y:y + h, x:x + w] = art.pixels / 255.0
        out[..., 3] *= rng.uniform(0.25, 0.6)
        if rng.random() < 0.5:  # white logo, as many watermarks are
            out[..., :3] = 1.0
        return out, f"a watermark of {art.caption}"
    if task == "glass":
        x0, y0 = (int(v) for v in rng.integers(0, size // 2, 2))
        x1, y1 = (int(v) for v in rng.integers(size // 2, size, 2))
        shift = rng.integers(-size // 20 - 1, size // 20 + 2, 2)
        seen = np.roll(background[..., :3].astype(np.float32) / 255.0, tuple(shift), (0, 1))
        seen = blur(seen, rng.uniform(0.8, 2.0))
        tint = rng.uniform(0.8, 1.0, 3).astype(np.float32)
        out[y0:y1, x0:x1, :3] = np.clip(seen[y0:y1, x0:x1] * tint + 0.08, 0, 1)
        out[y0:y1, x0:x1, 3] = rng.uniform(0.55, 0.85)
        return out, "a pane of glass"
    if task == "flare":
        cx, cy = (float(v) for v in rng.uniform(0.15, 0.85, 2) * size)
        r = _radial(size, (cx, cy), size * rng.uniform(0.08, 0.2))
        glow = np.exp(-r ** 2)
        ring = np.exp(-((r - 2.5) * 3) ** 2) * 0.4
        angle = rng.uniform(0, np.pi)
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
        across = np.abs((xs - cx) * np.sin(angle) - (ys - cy) * np.cos(angle))
        streak = np.exp(-(across / 1.5) ** 2) * np.exp(-r / 6) * 0.7
        light = np.clip(glow + ring + streak, 0, 1)
        colour = np.array([1.0, rng.uniform(0.75, 0.95), rng.uniform(0.4, 0.8)], np.float32)
        out[..., :3] = colour
        out[..., 3] = light
        return out, "a lens flare"
    if task == "light_leak":
        centre = (float(rng.choice([0, size])), float(rng.uniform(0, size)))
        light = np.exp(-_radial(size, centre, size * rng.uniform(0.4, 0.8)) ** 2)
        out[..., :3] = np.array([1.0, rng.uniform(0.3, 0.6), rng.uniform(0.1, 0.3)], np.float32)
        out[..., 3] = light * rng.uniform(0.5, 0.9)
        return out, "a warm light leak"
    if task == "smoke":
        coarse = rng.random((size // 8 + 2, size // 8 + 2)).astype(np.float32)
        cloud = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
        cloud = np.clip(blur(cloud, size / 24) * 1.6 - 0.4, 0, 1)
        out[..., :3] = rng.uniform(0.75, 0.95)
        out[..., 3] = cloud * rng.uniform(0.5, 0.9)
        return out, "drifting smoke"
    if task == "rain":
        streaks = np.zeros((size, size), np.float32)
        slant = rng.uniform(-0.4, 0.4)
        for _ in range(int(size * rng.uniform(0.3, 0.8))):
            x, y = (int(v) for v in rng.integers(0, size, 2))
            length = int(rng.integers(size // 16 + 2, size // 6 + 3))
            end = (int(x + slant * length), y + length)
            cv2.line(streaks, (x, y), end, float(rng.uniform(0.4, 1.0)), 1, cv2.LINE_AA)
        out[..., :3] = 0.9
        out[..., 3] = np.clip(streaks, 0, 1) * rng.uniform(0.5, 0.9)
        return out, "falling rain"
    if task == "xray":
        art = random_art(rng, int(size * rng.uniform(0.5, 0.8)), split, weights=(1, 0, 0))
        x, y = place(rng, art.pixels.shape[:2], (size, size))
        h, w = art.pixels.shape[:2]
        patch = art.pixels / 255.0
        structure = 1.0 - patch[..., :3].mean(axis=2, keepdims=True)  # dark where drawn dark
        film = np.clip(0.35 + 0.6 * structure, 0, 1) * np.array([0.8, 0.9, 1.0], np.float32)
        out[y:y + h, x:x + w, :3] = film
        out[y:y + h, x:x + w, 3] = patch[..., 3] * rng.uniform(0.6, 0.95)
        return out, f"an x-ray of {art.caption}"
    raise ValueError(f"unknown subtask {task!r}; choose from {sorted(SUBTASKS)}")


def build(rng: np.random.Generator, size: int, split: str, *,
          subtask: str | None = None) -> dict:
    """One background and one blended layer (random subtask unless ``subtask`` names it)."""
    task = subtask or str(rng.choice(sorted(SUBTASKS)))
    if task not in SUBTASKS:
        raise ValueError(f"unknown subtask {task!r}; choose from {sorted(SUBTASKS)}")
    background, bg_caption = make_background(rng, (size, size))
    layer_rgba, caption = _layer(task, rng, size, split, background)
    stack = LayerStack(size, size)
    stack.add(Layer("background", background, kind="background",
                    provenance={"caption": bg_caption}))
    stack.add(Layer(task.replace("_", " "), to_u8(layer_rgba), blend_mode=SUBTASKS[task],
                    kind="effect", provenance={"caption": caption}).cropped_to_content())
    return {"stack": stack, "caption": f"{caption} over {bg_caption}",
            "boxes": [(0, 0, size, size), box_of(stack.layers[1])],
            "extras": {"background": background[..., :3].copy()},
            "meta": {"subtask": task, "blend": SUBTASKS[task].value}}
