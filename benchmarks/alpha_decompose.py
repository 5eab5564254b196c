"""See-through layer decomposition (issue 20): the DiffDecompose model, its ablation without
Layer Position Encoding Cloning, the exact inverse with the true layer (an upper bound) and an
inpainting baseline, per ``alpha_blend`` subtask, in one run; then multi-image watermark
removal against the number of photos.

Per subtask (held-out scenes, the true blend type given): background RMSE, PSNR and SSIM;
layer RMSE (premultiplied colour, what the layer adds) and alpha soft IoU; recomposition
error (mean absolute, the result's composite against the picture); seconds. The inpainting
baseline masks where the true layer's alpha passes 0.05 (it is told where the layer is),
fills that with Telea inpainting as the background and keeps the picture there as an opaque
layer. ``blend="auto"`` is scored as the share of scenes whose blend type it names.

Watermarks: one held-out watermark on 64 photos of 256 px (``make_background`` pictures and
textures);
it is estimated from the first K and 8 of them cleaned: PSNR against the clean photos, for
K = 1 (the model on each photo alone), 4, 16 and 64, against the stamped photos' PSNR.

    python benchmarks/alpha_decompose.py [-n 6] [--size 64] [--ablation RUN] [--steps N]
        [--sheet PNG]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from layerstudio.datasets.assets.backgrounds import make_background
from layerstudio.datasets.generate import generate
from layerstudio.decompose import DECOMPOSITION
from layerstudio.document import Layer, LayerStack
from layerstudio.eval.metrics import psnr, ssim
from layerstudio.pipelines.alpha_decompose.blends import BLENDS, blend_mode, blend_of, blended
from layerstudio.pipelines.alpha_decompose.training import SUBTASKS_OF
from layerstudio.pipelines.alpha_decompose.watermark import (
    estimate_watermark,
    remove_watermark,
)
from layerstudio.presets import run_as_preset
from layerstudio.studio import Studio

ORACLE, INPAINTING = "exact inverse (true layer)", "inpainting (true mask)"
SUBTASKS = [task for tasks in SUBTASKS_OF.values() for task in tasks]


def _truth(sample) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(picture, background, layer as straight RGBA on the canvas, blend type)."""
    size = sample.stack.width
    layer = sample.stack.layers[1]
    alone = LayerStack(size, size, [layer.copy(blend_mode=blend_mode("normal"))])
    return (sample.stack.composite_array()[..., :3], sample.extras["background"] / 255,
            alone.composite_array(), blend_of(layer.blend_mode))


def _inpainted(picture: np.ndarray, layer: np.ndarray) -> LayerStack:
    mask = (layer[..., 3] > 0.05).astype(np.uint8)
    image = np.rint(picture * 255).astype(np.uint8)
    filled = cv2.inpaint(image, mask, 3, cv2.INPAINT_TELEA).astype(np.float32) / 255
    size = picture.shape[0]
    cut = np.concatenate([picture, mask[..., None].astype(np.float32)], -1)
    return LayerStack(size, size, [
        Layer("background", np.concatenate([filled, np.ones_like(filled[..., :1])], -1)),
        Layer("layer", cut)])


def _oracle(picture: np.ndarray, layer: np.ndarray, blend: str) -> LayerStack:
    from layerstudio.pipelines.alpha_decompose.blends import background_under

    background, _ = background_under(picture, layer, blend)
    size = picture.shape[0]
    return LayerStack(size, size, [
        Layer("background", np.concatenate([background, np.ones_like(background[..., :1])],
                                            -1)),
        Layer("layer", layer, blend_mode=blend_mode(blend))])


def _scores(stack: LayerStack, picture, background, layer) -> dict[str, float]:
    found_bg = stack.layers[0].pixels[..., :3].astype(np.float32)
    found_bg = found_bg / 255 if found_bg.max() > 1 else found_bg
    alone = LayerStack(stack.width, stack.height,
                       [stack.layers[1].copy(blend_mode=blend_mode("normal"))])
    found = alone.composite_array()
    premultiplied = lambda rgba: rgba[..., :3] * rgba[..., 3:]  # noqa: E731
    union = np.maximum(found[..., 3], layer[..., 3]).sum()
    return {"background_rmse": float(np.sqrt(np.mean((found_bg - background) ** 2))),
            "background_psnr": min(psnr(found_bg, background), 99.0),
            "background_ssim": ssim(found_bg, background),
            "layer_rmse": float(np.sqrt(np.mean((premultiplied(found) - premultiplied(layer))
                                                ** 2))),
            "alpha_iou": 1.0 if union == 0 else float(
                np.minimum(found[..., 3], layer[..., 3]).sum() / union),
            "recomposition_error": float(np.abs(stack.composite_array()[..., :3]
                                                - picture).mean())}


def _per_subtask(run, samples: dict[str, list], shown: dict[str, list] | None = None
                 ) -> dict[str, dict[str, float]]:
    """Scores per subtask and over all; the background and layer found for each subtask's
    first scene are appended to ``shown[subtask]``."""
    table = {}
    for task, group in samples.items():
        rows = []
        for index, sample in enumerate(group):
            picture, background, layer, blend = _truth(sample)
            started = time.perf_counter()
            stack = run(picture, layer, blend)
            seconds = time.perf_counter() - started
            if shown is not None and index == 0:
                shown[task] += [_layer_image(stack, 0), _layer_image(stack, 1)]
            rows.append(_scores(stack, picture, background, layer) | {"seconds": seconds})
        table[task] = {key: round(float(np.mean([r[key] for r in rows])), 4) for key in rows[0]}
    table["all"] = {key: round(float(np.mean([t[key] for t in table.values()])), 4)
                    for key in next(iter(table.values()))}
    return table


def _layer_image(stack: LayerStack, index: int):
    """Layer ``index`` of ``stack`` alone on its canvas, as its own RGBA picture."""
    alone = LayerStack(stack.width, stack.height,
                       [stack.layers[index].copy(blend_mode=blend_mode("normal"))])
    return alone.composite()


def _sheet(samples: dict[str, list], shown: dict[str, list], methods: list[str],
           path: Path) -> None:
    """One row per subtask: the picture, the true background and layer, then each method's."""
    from PIL import Image

    from layerstudio.preview import labelled_grid

    labels = ["picture", "truth\nbackground", "truth\nlayer"] + [
        f"{m}\n{part}" for m in methods for part in ("background", "layer")]
    rows = []
    for task, images in shown.items():
        picture, background, layer, _ = _truth(samples[task][0])
        as_image = lambda a: Image.fromarray(  # noqa: E731
            np.rint(np.clip(a, 0, 1) * 255).astype(np.uint8))
        rows.append([as_image(picture), as_image(background), as_image(layer), *images])
    path.parent.mkdir(parents=True, exist_ok=True)
    labelled_grid(rows, labels, tile=128).save(path)


def _model(studio: Studio, steps: int | None):
    return lambda picture, layer, blend: studio.decompose(
        picture, method="alpha", blend=blend, **({"steps": steps} if steps else {}))


def _auto_accuracy(studio: Studio, samples: dict[str, list], steps: int | None) -> float:
    hits = []
    for group in samples.values():
        for sample in group:
            picture, _, _, blend = _truth(sample)
            found = studio.decompose(picture, method="alpha", blend="auto",
                                     **({"steps": steps} if steps else {}))
            hits.append(found.metadata["blend"] == blend)
    return round(float(np.mean(hits)), 3)


def _watermarks(studio: Studio | None, size: int, steps: int | None) -> dict[str, float]:
    sample = generate("alpha_blend", 0, size=size, split="heldout", seed=5, subtask="watermark")
    _, _, mark, _ = _truth(sample)
    rng = np.random.default_rng(3)
    clean = [make_background(rng, (size, size))[0][..., :3].astype(np.float32) / 255
             for _ in range(64)]
    stamped = [blended(photo, mark, "normal") for photo in clean]
    shown = range(8)
    result = {"stamped": round(float(np.mean([psnr(stamped[i], clean[i]) for i in shown])), 2)}
    if studio is not None:
        alone = [studio.decompose(stamped[i], method="alpha", blend="normal",
                                  **({"steps": steps} if steps else {})) for i in shown]
        result["1 (model, each photo alone)"] = round(float(np.mean(
            [psnr(stack.layers[0].pixels[..., :3].astype(np.float32), clean[i])
             for i, stack in zip(shown, alone, strict=True)])), 2)
    for count in (4, 16, 64):
        estimate = estimate_watermark(stamped[:count])
        result[str(count)] = round(float(np.mean(
            [psnr(remove_watermark(stamped[i], estimate.rgba), clean[i]) for i in shown])), 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=6, help="held-out scenes per subtask")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--model", type=Path, help="a run folder to score as the alpha model")
    parser.add_argument("--ablation", type=Path, help="a run folder to score beside it")
    parser.add_argument("--steps", type=int, help="denoising steps (default: the preset's)")
    parser.add_argument("--sheet", type=Path, help="write a PNG of one scene per subtask")
    parser.add_argument("--watermark-size", type=int, default=256,
                        help="side of the stamped photos")
    args = parser.parse_args()
    samples = {task: [generate("alpha_blend", i, size=args.size, split="heldout", seed=13,
                               subtask=task) for i in range(args.n)] for task in SUBTASKS}
    report: dict = {"samples": f"{args.n} held-out scenes per subtask at {args.size} px",
                    "blends": list(BLENDS)}
    shown: dict[str, list] = {task: [] for task in SUBTASKS}
    methods = {INPAINTING: _per_subtask(lambda p, layer, b: _inpainted(p, layer), samples,
                                        shown),
               ORACLE: _per_subtask(lambda p, layer, b: _oracle(p, layer, b), samples)}
    studio = None
    with run_as_preset(DECOMPOSITION.get("alpha").preset, args.model):
        if DECOMPOSITION.installed("alpha"):
            studio = Studio(device="cpu")
            methods["alpha"] = _per_subtask(_model(studio, args.steps), samples, shown)
            report["auto blend accuracy"] = _auto_accuracy(studio, samples, args.steps)
        report[f"watermark removal PSNR by photos ({args.watermark_size} px)"] = _watermarks(
            studio, args.watermark_size, args.steps)
    if args.ablation is not None:
        with run_as_preset(DECOMPOSITION.get("alpha").preset, args.ablation):
            methods[f"alpha ({args.ablation.name})"] = _per_subtask(
                _model(Studio(device="cpu"), args.steps), samples, shown)
    if args.sheet is not None:
        _sheet(samples, shown, [m for m in methods if m != ORACLE], args.sheet)
    base = methods[INPAINTING]
    for name, table in methods.items():
        if name.startswith("alpha"):
            table["beats inpainting on background RMSE in"] = [
                task for task in SUBTASKS
                if table[task]["background_rmse"] < base[task]["background_rmse"]]
            table["background_rmse_vs_inpainting"] = round(
                table["all"]["background_rmse"] / base["all"]["background_rmse"], 3)
    report["methods"] = methods
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
