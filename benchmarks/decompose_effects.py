"""Pulling an object out with its shadow or glow (issue 19): every effects method against
mask-only matting (GrabCut + closed-form matting, the effects left in the background), in one
run, on held-out ``effects`` samples (drop, cast and contact shadows, reflections, glows).

The box is the true object's bounding box grown by 2 px, as a user would draw it. Per method
and per effect kind: background PSNR and SSIM against the true clean background; soft IoU of
the foreground alpha (object and effect) over the whole canvas, and over the effect's pixels
alone (outside the object); alpha-weighted RGB L1 of the foreground; recomposition PSNR;
seconds. Ratios against the baseline. For the model rows also the raw model output (64 px
scenes, true masks, nothing solved): how well its foreground over its background gives the
picture, which is what the consistency loss trains. Prints JSON.

``--ablation RUN`` also scores a trained run folder in place of the shipped
``tiny-layerdecomp`` (the same recipe without the consistency loss, say:
``layerstudio train tiny-layerdecomp-noconsistency -o RUN``), as the row "effects (RUN's
name)"; ``--model RUN`` does the same for the shipped model's own row (a run not shipped yet).

    python benchmarks/decompose_effects.py [-n 40] [--size 128] [--ablation RUN] [--steps N]
        [--sheet PNG]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from layerstudio.datasets.generate import generate
from layerstudio.decompose import DECOMPOSITION
from layerstudio.document import LayerStack
from layerstudio.eval.metrics import psnr, ssim
from layerstudio.pipelines.decompose_effects.classical import extract_with_effects
from layerstudio.pipelines.decompose_effects.layers import effects_stack
from layerstudio.presets import run_as_preset
from layerstudio.studio import Studio

BASELINE = "mask-only matting"
METHODS = DECOMPOSITION.taking("separate_effects")


def _box(mask: np.ndarray, pad: int = 2) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    x0, y0 = max(0, xs.min() - pad), max(0, ys.min() - pad)
    x1, y1 = min(mask.shape[1], xs.max() + 1 + pad), min(mask.shape[0], ys.max() + 1 + pad)
    return int(x0), int(y0), int(x1 - x0), int(y1 - y0)


def _parts(stack: LayerStack) -> tuple[np.ndarray, np.ndarray]:
    """The background layer's RGB and everything above it as one straight RGBA layer."""
    background = stack.layers[0].pixels[..., :3].astype(np.float32)
    if background.max() > 1:
        background = background / 255
    above = stack.copy()
    above.remove(0)
    return background, above.composite_array()


def _soft_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.maximum(a, b).sum()
    return 1.0 if union == 0 else float(np.minimum(a, b).sum() / union)


def _run(method: str, picture: np.ndarray, box: tuple[int, int, int, int],
         studio: Studio, steps: int | None) -> LayerStack:
    if method == BASELINE:
        region = np.zeros(picture.shape[:2], bool)
        x, y, w, h = box
        region[y:y + h, x:x + w] = True
        return effects_stack(extract_with_effects(picture, region, effects=False))
    takes_steps = "steps" in DECOMPOSITION.get(method).takes
    return studio.decompose(picture, method=method, box=box,
                            **({"steps": steps} if takes_steps else {}))


def _score(method: str, samples: list, studio: Studio, steps: int | None = None,
           shown: dict[int, list[np.ndarray]] | None = None) -> dict[str, dict[str, float]]:
    """Scores per effect kind and over all; the background and foreground of the samples
    whose index is a key of ``shown`` are appended to its list."""
    rows: dict[str, list[dict[str, float]]] = {}
    for index, sample in enumerate(samples):
        picture = sample.stack.composite_array()[..., :3]
        truth_bg = sample.extras["background"].astype(np.float32) / 255
        truth_fg = sample.stack.layers[1]
        canvas = LayerStack(*sample.stack.size, [truth_fg])
        truth = canvas.composite_array()
        obj = sample.extras["mask"].astype(np.float32) / 255
        started = time.perf_counter()
        stack = _run(method, picture, _box(obj > 0.5), studio, steps)
        seconds = time.perf_counter() - started
        background, foreground = _parts(stack)
        if shown is not None and index in shown:
            shown[index] += [background, foreground]
        outside = obj < 0.05
        weight = truth[..., 3:]
        recomposed = foreground[..., :3] * foreground[..., 3:] + \
            (1 - foreground[..., 3:]) * background
        row = {"background_psnr": min(psnr(background, truth_bg), 99.0),
               "background_ssim": ssim(background, truth_bg),
               "alpha_iou": _soft_iou(foreground[..., 3], truth[..., 3]),
               "effect_iou": _soft_iou(foreground[..., 3] * outside, truth[..., 3] * outside),
               "rgb_l1": float((np.abs(foreground[..., :3] - truth[..., :3]) * weight).sum()
                               / max(weight.sum(), 1e-6)),
               "recomposition_psnr": min(psnr(recomposed, picture), 99.0),
               "seconds": seconds}
        for key in ("all", sample.meta["effect"]):
            rows.setdefault(key, []).append(row)
    return {key: {name: round(float(np.mean([r[name] for r in group])), 4)
                  for name in group[0]} | {"n": len(group)}
            for key, group in rows.items()}


def _sheet(samples: list, shown: dict[int, list[np.ndarray]], methods: list[str],
           path: Path) -> None:
    """One row per shown sample: the picture, the true object with effects, then each
    method's background and object layer."""
    from layerstudio.preview import labelled_grid

    labels = ["picture", "truth\nobject + effects"] + [
        f"{m}\n{part}" for m in methods for part in ("background", "object layer")]
    rows = []
    for index, images in shown.items():
        sample = samples[index]
        truth = LayerStack(*sample.stack.size, [sample.stack.layers[1]]).composite_array()
        rows.append([_image(a) for a in (sample.stack.composite_array()[..., :3], truth,
                                         *images)])
    path.parent.mkdir(parents=True, exist_ok=True)
    labelled_grid(rows, labels).save(path)


def _image(array: np.ndarray):
    from PIL import Image

    return Image.fromarray(np.rint(np.clip(array, 0, 1) * 255).astype(np.uint8))


def _raw(studio: Studio, samples: list, steps: int | None) -> dict[str, float]:
    """The model's own output, before any solving: 64 px scenes with their true object mask
    (as in training), the predicted foreground over the predicted background against the
    picture (what the consistency loss trains), the effect's IoU and the background's PSNR."""
    import torch

    pipe = studio.pipeline(DECOMPOSITION.get("effects").preset)
    rows = []
    for index, sample in enumerate(samples):
        picture = sample.stack.composite_array()[..., :3]
        obj = sample.extras["mask"].astype(np.float32) / 255
        out = pipe(picture, obj, num_inference_steps=steps or 20, output_type="np",
                   generator=torch.Generator().manual_seed(index)).extractions[0]
        foreground = out.foreground()
        truth = LayerStack(*sample.stack.size, [sample.stack.layers[1]]).composite_array()
        outside = obj < 0.05
        recomposed = foreground[..., :3] * foreground[..., 3:] + \
            (1 - foreground[..., 3:]) * out.background
        rows.append({"recomposition_psnr": psnr(recomposed, picture),
                     "effect_iou": _soft_iou(foreground[..., 3] * outside,
                                             truth[..., 3] * outside),
                     "background_psnr": psnr(out.background,
                                             sample.extras["background"] / 255)})
    return {key: round(float(np.mean([row[key] for row in rows])), 4) for key in rows[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=40, help="held-out effects samples")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--model", type=Path, help="a run folder to score as the effects model")
    parser.add_argument("--ablation", type=Path, help="a run folder to score beside it")
    parser.add_argument("--steps", type=int, help="denoising steps of the model methods "
                        "(default: the preset's)")
    parser.add_argument("--sheet", type=Path, help="write a PNG of one sample per effect kind")
    args = parser.parse_args()
    samples = [generate("effects", i, size=args.size, split="heldout", seed=11)
               for i in range(args.n)]
    kinds = {sample.meta["effect"]: index for index, sample in enumerate(samples)}
    shown: dict[int, list[np.ndarray]] = {index: [] for index in sorted(kinds.values())}
    small = [generate("effects", i, size=64, split="heldout", seed=11) for i in range(args.n)]
    scores, raw = {}, {}
    with run_as_preset(DECOMPOSITION.get("effects").preset, args.model):
        methods = [BASELINE, *(m for m in METHODS if DECOMPOSITION.installed(m))]
        studio = Studio(device="cpu")
        for method in methods:
            scores[method] = _score(method, samples, studio, args.steps, shown)
        if "effects" in methods:
            raw["effects"] = _raw(studio, small, args.steps)
    if args.ablation is not None:
        with run_as_preset(DECOMPOSITION.get("effects").preset, args.ablation):
            row = f"effects ({args.ablation.name})"
            studio = Studio(device="cpu")
            scores[row] = _score("effects", samples, studio, args.steps, shown)
            raw[row] = _raw(studio, small, args.steps)
            methods.append(row)
    if args.sheet is not None:
        _sheet(samples, shown, methods, args.sheet)
    base = scores[BASELINE]["all"]
    for method in methods[1:]:
        mine = scores[method]["all"]
        mine["effect_iou_over_baseline"] = round(
            mine["effect_iou"] / max(base["effect_iou"], 1e-6), 2)
        mine["alpha_iou_over_baseline"] = round(mine["alpha_iou"] / base["alpha_iou"], 3)
        mine["background_psnr_minus_baseline_db"] = round(
            mine["background_psnr"] - base["background_psnr"], 2)
    report = {"samples": f"{args.n} held-out effects at {args.size} px", "baseline": BASELINE,
              "methods": scores,
              f"raw model output, {args.n} held-out effects at 64 px, true masks": raw,
              "skipped (weights not here)": [m for m in METHODS if m not in methods]}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
