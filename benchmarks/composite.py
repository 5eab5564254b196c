"""Compositing speed: LayerStudio's engine vs a Pillow alpha_composite loop vs psd-tools.

Two stacks of 20 normal-mode layers at 2048x2048 (default), built from a fixed seed:
- ``objects``: an opaque background plus 19 soft-edged objects of varied size, stored cropped
  to their content as LayerStudio stores them (the usual shape of generated layered images);
- ``full``: 20 full-canvas layers with partial alpha everywhere (the engine's worst case).

The Pillow baseline gets full-canvas RGBA images prepared outside the timed region, since
``Image.alpha_composite`` needs equal sizes. Each timing is the best of ``--repeat`` runs.
Prints one JSON object: seconds, ratios against the baselines, the max difference from
Pillow's output and each one's max error against the exact float64 result (on a band of rows),
in 1/255 units. Also times PSD export and import of the ``objects`` stack.

    python benchmarks/composite.py [--size 2048] [--layers 20] [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from psd_tools import PSDImage

from layerstudio import Layer, LayerStack


def soft_disc(size: int, rng: np.random.Generator) -> np.ndarray:
    """An RGBA object: a coloured disc with a soft edge and a gradient, transparent corners."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    r = np.hypot(xs - size / 2, ys - size / 2) / (size / 2)
    alpha = np.clip((1.0 - r) * 6.0, 0.0, 1.0)
    colour = rng.integers(0, 256, 3)
    shade = (0.6 + 0.4 * (xs / size))[..., None]
    rgb = np.clip(colour * shade, 0, 255)
    return np.dstack([rgb, alpha * 255]).astype(np.uint8)


def objects_stack(size: int, layers: int, rng: np.random.Generator) -> LayerStack:
    stack = LayerStack(size, size)
    ys, xs = np.mgrid[0:size, 0:size]
    background = np.dstack([xs * 255 // size, ys * 255 // size, np.full_like(xs, 128),
                            np.full_like(xs, 255)]).astype(np.uint8)
    stack.add(Layer("background", background, kind="background"))
    for i in range(layers - 1):
        side = int(rng.integers(size // 8, size // 2))
        x, y = (int(v) for v in rng.integers(-side // 4, size - side // 2, 2))
        stack.add(Layer(f"object {i}", soft_disc(side, rng), offset=(x, y),
                        opacity=float(rng.choice([1.0, 0.8, 0.5]))))
    return stack


def full_stack(size: int, layers: int, rng: np.random.Generator) -> LayerStack:
    stack = LayerStack(size, size)
    for i in range(layers):
        pixels = rng.integers(0, 256, (size, size, 4), dtype=np.uint8)
        stack.add(Layer(f"layer {i}", pixels))
    return stack


def full_canvas_images(stack: LayerStack) -> list[Image.Image]:
    """Each layer placed on a full transparent canvas, opacity baked in, for Pillow."""
    images = []
    for layer in stack.layers:
        canvas = Image.new("RGBA", stack.size)
        tile = layer.to_pil()
        if layer.opacity < 1.0:
            alpha = np.asarray(tile)[..., 3].astype(np.float32) * layer.opacity
            tile.putalpha(Image.fromarray(np.rint(alpha).astype(np.uint8)))
        canvas.paste(tile, layer.offset)
        images.append(canvas)
    return images


def exact_rows(stack: LayerStack, rows: int) -> np.ndarray:
    """The exact (float64) normal-mode composite of the top ``rows`` rows, scaled to 0..255."""
    out = np.zeros((rows, stack.width, 4))
    for layer in stack.layers:
        x, y = layer.offset
        y0, y1 = max(y, 0), min(y + layer.height, rows)
        x0, x1 = max(x, 0), min(x + layer.width, stack.width)
        if y0 >= y1 or x0 >= x1:
            continue
        src = layer.pixels[y0 - y:y1 - y, x0 - x:x1 - x].astype(np.float64) / 255
        a = src[..., 3:4] * layer.opacity
        dst = out[y0:y1, x0:x1]
        dst[..., :3] = src[..., :3] * a + dst[..., :3] * (1 - a)
        dst[..., 3:4] = a + dst[..., 3:4] * (1 - a)
    alpha = out[..., 3:4]
    out[..., :3] = np.divide(out[..., :3], alpha, out=np.zeros_like(out[..., :3]),
                             where=alpha > 0)
    return out * 255


def best_of(repeat: int, fn) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def pillow_loop(images: list[Image.Image]) -> Image.Image:
    out = Image.new("RGBA", images[0].size)
    for image in images:
        out = Image.alpha_composite(out, image)
    return out


def to_psd_bytes(stack: LayerStack) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = stack.save(Path(tmp) / "bench.psd")
        return path.read_bytes()


def run_case(name: str, stack: LayerStack, repeat: int, with_psd_tools: bool) -> dict:
    images = full_canvas_images(stack)
    t_first, _ = best_of(1, stack.composite)  # includes loading the compiled kernels once
    t_ours, ours = best_of(repeat, stack.composite)
    t_pil, pil = best_of(repeat, lambda: pillow_loop(images))
    a, b = np.asarray(ours, np.int16), np.asarray(pil, np.int16)
    visible = (a[..., 3] > 0) | (b[..., 3] > 0)
    band = min(256, stack.height)  # rows checked against the exact float64 result
    exact = exact_rows(stack, band)
    seen = exact[..., 3] >= 1.0
    result = {
        "case": name,
        "layers": len(stack),
        "seconds_layerstudio": round(t_ours, 4),
        "seconds_layerstudio_first_call": round(t_first, 4),
        "seconds_pillow_loop": round(t_pil, 4),
        "speedup_vs_pillow": round(t_pil / t_ours, 2),
        "max_diff_vs_pillow_255": int(np.abs(a - b)[visible].max()),
        "max_error_vs_exact_255": {
            "layerstudio": round(float(np.abs(a[:band] - exact)[seen].max()), 3),
            "pillow": round(float(np.abs(b[:band] - exact)[seen].max()), 3),
        },
    }
    if with_psd_tools:
        psd = PSDImage.open(io.BytesIO(to_psd_bytes(stack)))
        t_psd, _ = best_of(1, lambda: psd.composite(force=True))
        result["seconds_psd_tools"] = round(t_psd, 4)
        result["speedup_vs_psd_tools"] = round(t_psd / t_ours, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    objects = objects_stack(args.size, args.layers, rng)
    report = {
        "benchmark": "composite",
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "size": args.size,
        "cases": [run_case("objects", objects, args.repeat, with_psd_tools=True),
                  run_case("full", full_stack(args.size, args.layers, rng), args.repeat,
                           with_psd_tools=False)],
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.psd"
        t_save, _ = best_of(1, lambda: objects.save(path))
        t_load, _ = best_of(1, lambda: LayerStack.load(path))
        report["psd_export_seconds"] = round(t_save, 3)
        report["psd_import_seconds"] = round(t_load, 3)
        report["psd_megabytes"] = round(path.stat().st_size / 2**20, 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
