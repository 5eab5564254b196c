"""Upscaling quality and speed: Real-ESRGAN's compact model (shipped, converted from the
released ncnn files) against Lanczos and bicubic, in one run.

Emoji renders (every ``--step``-th of the OpenMoji catalogue, ``--size`` px, on white) are
downscaled 4x (area average) and brought back 4x by each method. Reported per method: PSNR
against the original render, tiny-judge top-1 accuracy on the result seen at the judge's 64 px
(and on the originals, the ceiling), an edge sharpness proxy (mean gradient magnitude relative
to the original's), and seconds per output megapixel on a 512 -> 2048 px picture; ratios
against Lanczos.

    python benchmarks/upscale.py [--step 7] [--size 128]
"""

from __future__ import annotations

import argparse
import json
import time

import cv2
import numpy as np
import torch

from layerstudio.datasets.assets.emoji import catalog, render_emoji
from layerstudio.pipelines.realesrgan.upscale import upscale_rgba
from layerstudio.presets import load_preset
from layerstudio.upscale import UPSCALER

JUDGE_SIZE = 64


def _render(name: str, size: int) -> np.ndarray:
    art = render_emoji(name, size).astype(np.float32) / 255
    canvas = np.ones((size, size, 3), np.float32)
    y, x = (size - art.shape[0]) // 2, (size - art.shape[1]) // 2
    region = canvas[y:y + art.shape[0], x:x + art.shape[1]]
    region[...] = art[..., :3] * art[..., 3:] + region * (1 - art[..., 3:])
    return canvas


def _methods(model) -> dict:
    def esrgan(small: np.ndarray) -> np.ndarray:
        opaque = np.concatenate([small, np.ones((*small.shape[:2], 1), np.float32)], -1)
        return upscale_rgba(model, opaque, 4)[..., :3]

    def resize(flag: int):
        return lambda small: np.clip(cv2.resize(small, (small.shape[1] * 4, small.shape[0] * 4),
                                                interpolation=flag), 0, 1)

    return {"real-esrgan": esrgan, "lanczos": resize(cv2.INTER_LANCZOS4),
            "bicubic": resize(cv2.INTER_CUBIC)}


def _sharpness(image: np.ndarray) -> float:
    grey = image.mean(-1)
    return float(np.hypot(*np.gradient(grey)).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step", type=int, default=7, help="every step-th emoji")
    parser.add_argument("--size", type=int, default=128, help="render size (a multiple of 4)")
    args = parser.parse_args()
    model = load_preset(UPSCALER)
    judge = load_preset("tiny-judge")
    names = catalog()
    labels = list(range(0, len(names), args.step))
    truths = [_render(names[i], args.size) for i in labels]
    smalls = [cv2.resize(t, (args.size // 4, args.size // 4), interpolation=cv2.INTER_AREA)
              for t in truths]

    def judged(images: list[np.ndarray]) -> float:
        seen = [cv2.resize(image, (JUDGE_SIZE, JUDGE_SIZE), interpolation=cv2.INTER_AREA)
                for image in images]
        batch = torch.from_numpy(np.stack(seen).transpose(0, 3, 1, 2)).float() * 2 - 1
        return round(judge.label_accuracy(batch, torch.tensor(labels)), 4)

    report: dict = {"benchmark": "upscale", "renders": len(labels), "size": args.size,
                    "judge_top1_originals": judged(truths), "methods": {}}
    big = cv2.resize(np.concatenate([np.concatenate(truths[i:i + 8], 1)
                                     for i in range(0, 64, 8)], 0), (512, 512))
    for name, method in _methods(model).items():
        made = [method(small) for small in smalls]
        mse = np.mean([np.mean((m - t) ** 2) for m, t in zip(made, truths, strict=True)])
        started = time.perf_counter()
        method(big)
        seconds = time.perf_counter() - started
        report["methods"][name] = {
            "psnr": round(float(10 * np.log10(1 / mse)), 2),
            "judge_top1": judged(made),
            "sharpness_vs_original": round(np.mean([_sharpness(m) for m in made])
                                           / np.mean([_sharpness(t) for t in truths]), 3),
            "seconds_per_output_megapixel": round(seconds / (2048 * 2048 / 1e6), 4)}
    base = report["methods"]["lanczos"]
    for entry in report["methods"].values():
        entry["psnr_gain_vs_lanczos_db"] = round(entry["psnr"] - base["psnr"], 2)
        entry["judge_top1_vs_lanczos"] = (round(entry["judge_top1"] / base["judge_top1"], 3)
                                          if base["judge_top1"] else None)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
