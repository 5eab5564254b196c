"""Pruned models against the full ones and against each other, after equal retraining.

Two studies, each in one run, every variant pruned by ``layerstudio.compress.prune`` with the
same calibration set and the same number of retraining steps on the preset's own training task:

1. U-Net layer pruning of ``tiny-layerdiffuse``: LAPTOP-Diff against hand-picked (BK-SDM's
   order), random and task-loss selection at ``--unet-ratio`` of the parameters, plus LAPTOP-Diff
   at 50% (on this U-Net every removable unit then goes, so all methods coincide there).
   Quality: tiny-judge top-1 of each generated RGBA layer recomposed over random backgrounds
   (the prompt-adherence score of ``benchmarks/transparency.py``), alpha soft IoU and PSNR
   against the full model's output from the same seeds.
2. DiT depth pruning of ``tiny-art`` (2 double + 4 single blocks -> half as deep): TinyFusion
   against ShortGPT block influence, evenly spaced and random blocks. Quality: the held-out
   layout scores of ``benchmarks/region_attention.py`` (box adherence, alpha soft IoU against
   the scene's object, the primary score; the judge's reading of each layer, which is 0 for
   tiny-art's blob-like objects) and PSNR against the full model from the same seeds.
   The random baseline is the mean of ``--random-draws`` seeds.

Speed: seconds per denoiser step (the calls one generation makes, replayed; best of
``--repeats``) and per image (the whole pipeline), with ratios full / pruned; the full and the
pruned pipeline are timed in alternation, so a busy machine slows both alike. Every variant's
scores are also written into its ``compression.json`` (what ``layerstudio models`` shows once
a variant is shipped).

    python benchmarks/compress.py [--only unet|dit] [--finetune-steps 600] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from region_attention import quality as region_quality
from transparency import _recomposed_scores

from layerstudio.compress.calibration import recording, replay
from layerstudio.compress.prune import COMPRESSION_FILE, prune
from layerstudio.datasets import generate
from layerstudio.eval.metrics import alpha_soft_iou
from layerstudio.eval.transparency import SIZE
from layerstudio.eval.vae import EVAL_SEED
from layerstudio.pipelines.anonymous_region import token_box_pixels
from layerstudio.presets import _loader, get_preset, load_preset, training_pool
from layerstudio.train.art import GRID, art_scene

UNET_BASE, DIT_BASE = "tiny-layerdiffuse", "tiny-art"


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    error = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return round(10 * np.log10(1.0 / max(error, 1e-12)), 2)


def _variant(base: str, kind: str, method: str, ratio: float, seed: int, args,
             work: Path) -> Path:
    """The pruned pipeline folder (made once per settings; reused when they match)."""
    folder = work / (f"{kind}-{method}-{ratio:g}" + (f"-s{seed}" if seed else ""))
    report = folder / COMPRESSION_FILE
    if report.is_file():
        old = json.loads(report.read_text())
        made = (old["base"], old["method"], old["ratio"], old.get("seed", 0),
                old["calibration_samples"], old["retraining"]["steps"],
                old.get("learning", {}).get("steps"))
        if made == (base, method, ratio, seed, args.calib, args.finetune_steps,
                    args.learn_steps if method == "tinyfusion" else None):
            return folder
    prune(base, kind, method, folder, ratio=ratio, calib=args.calib,
          finetune_steps=args.finetune_steps, learn_steps=args.learn_steps, seed=seed,
          progress=False)
    return folder


@torch.no_grad()
def _paired_seconds(full, pruned, key: str, run, repeats: int) -> dict[str, float]:
    """Seconds per denoiser step and per image of the full and the pruned pipeline, timed
    in alternation (best of ``repeats`` each), so a busy machine slows both alike. A step is
    one of the denoiser calls a generation makes (recorded from the full model, replayed on
    both)."""
    with recording(getattr(full, key)) as calls:
        run(full)
    best = {"full_step": float("inf"), "step": float("inf"), "full_image": float("inf"),
            "image": float("inf")}
    for _ in range(repeats):
        for prefix, pipe in (("full_", full), ("", pruned)):
            model = getattr(pipe, key)
            started = time.perf_counter()
            for call in calls:
                replay(model, call)
            best[prefix + "step"] = min(best[prefix + "step"],
                                        (time.perf_counter() - started) / len(calls))
            started = time.perf_counter()
            run(pipe)
            best[prefix + "image"] = min(best[prefix + "image"], time.perf_counter() - started)
    return best


# --- U-Net: tiny-layerdiffuse --------------------------------------------------------------

def _captions(n: int) -> list[str]:
    pool = training_pool(UNET_BASE)
    return [generate("transparent", i, seed=EVAL_SEED, size=SIZE, split="train",
                     style="solid", pool=pool).caption for i in range(n)]


@torch.no_grad()
def _unet_outputs(pipe, captions: list[str]) -> list[np.ndarray]:
    images = pipe(captions, num_inference_steps=20, guidance_scale=4.0, height=SIZE,
                  width=SIZE, generator=torch.Generator().manual_seed(0)).images
    return [np.asarray(image) for image in images]


def _unet_scores(pipe, judge, captions, reference) -> dict:
    layers = _unet_outputs(pipe, captions)
    scores = _recomposed_scores(judge, layers, captions)
    if reference is not None:
        scores["alpha_iou_vs_full"] = round(float(np.mean([
            alpha_soft_iou(a[..., 3] / 255, b[..., 3] / 255)
            for a, b in zip(layers, reference, strict=True)])), 4)
        scores["psnr_vs_full"] = round(float(np.mean([
            _psnr(a / 255, b / 255) for a, b in zip(layers, reference, strict=True)])), 2)
    return scores, layers


def _unet_run(pipe) -> None:
    pipe("a red apple", num_inference_steps=20, guidance_scale=4.0, height=SIZE, width=SIZE,
         generator=torch.Generator().manual_seed(0))


# --- DiT: tiny-art -------------------------------------------------------------------------

@torch.no_grad()
def _art_outputs(pipe, count: int) -> list[np.ndarray]:
    outputs = []
    for index in range(count):
        _, boxes, caption = art_scene(2024, index, 4, pool=128, split="heldout")
        pixel_boxes = [token_box_pixels(box, GRID) for box in boxes[2:]]
        out = pipe(caption, pixel_boxes, num_inference_steps=20, guidance_scale=4.0,
                   generator=torch.Generator().manual_seed(index))
        outputs.append(out.rgba[0])
    return outputs


def _dit_scores(pipe, judge, count: int, reference) -> tuple[dict, list]:
    scores = region_quality(pipe, judge, count, modes=(("region", False),))["region"]
    scores.pop("seconds_per_image", None)
    layers = _art_outputs(pipe, count)
    if reference is not None:
        scores["psnr_vs_full"] = round(float(np.mean([
            _psnr(a, b) for a, b in zip(layers, reference, strict=True)])), 2)
    return scores, layers


def _art_run(pipe) -> None:
    pipe("a cat and a dog and a ball on a blue background",
         [(4, 8, 24, 24), (34, 30, 24, 24), (20, 40, 16, 16)], num_inference_steps=20,
         generator=torch.Generator().manual_seed(0))


# --- one study -----------------------------------------------------------------------------

def _study(base: str, kind: str, variants: list[tuple[str, float]], quality_key: str,
           scores_of, run, args, work: Path) -> dict:
    loader = _loader(get_preset(base))
    judge = load_preset("tiny-judge").eval()
    full = load_preset(base)
    full.set_progress_bar_config(disable=True)
    key = "unet" if kind == "unet" else "transformer"
    full_scores, reference = scores_of(full, judge, None)
    params = sum(p.numel() for p in getattr(full, key).parameters())
    rows = {"full": {"params": params, **full_scores}}
    for method, ratio, seed in variants:
        folder = _variant(base, kind, method, ratio, seed, args, work)
        pipe = loader.from_pretrained(folder, dtype=torch.float32)
        pipe.set_progress_bar_config(disable=True)
        scores, _ = scores_of(pipe, judge, reference)
        timed = _paired_seconds(full, pipe, key, run, args.repeats)
        report = json.loads((folder / COMPRESSION_FILE).read_text())
        row = {"ratio": ratio, "params": report["params"]["after"],
               "params_removed": report["params"]["removed"],
               "removed" if kind == "unet" else "keep": report.get("removed",
                                                                   report.get("keep")),
               "seconds_per_step": round(timed["step"], 5),
               "seconds_per_image": round(timed["image"], 4),
               "full_seconds_per_step": round(timed["full_step"], 5),
               "full_seconds_per_image": round(timed["full_image"], 4),
               "speedup_per_step": round(timed["full_step"] / timed["step"], 3),
               "speedup_per_image": round(timed["full_image"] / timed["image"], 3), **scores,
               "quality_drop": round(1 - scores[quality_key] /
                                     max(full_scores[quality_key], 1e-9), 4)}
        if "additivity" in report:
            row["additivity_correlation"] = round(report["additivity"]["correlation"], 4)
        rows[f"{method}@{ratio:g}" + (f"#s{seed}" if seed else "")] = row
        report["quality"] = {"metric": quality_key, "full": full_scores[quality_key],
                             "pruned": scores[quality_key],
                             "speedup_per_step": row["speedup_per_step"],
                             "speedup_per_image": row["speedup_per_image"],
                             "measured_by": "benchmarks/compress.py"}
        (folder / COMPRESSION_FILE).write_text(json.dumps(report, indent=2) + "\n")
    draws = [row for name, row in rows.items() if name.startswith("random@")]
    if len(draws) > 1:  # the random baseline is the mean over its draws
        rows[f"random-mean@{draws[0]['ratio']:g}"] = {
            key: round(float(np.mean([row[key] for row in draws])), 4)
            for key, value in draws[0].items() if isinstance(value, float)}
    return rows


def _variants(methods: list[str], ratio: float, random_draws: int) -> list[tuple]:
    """(method, ratio, seed) to make: each method once, random ``random_draws`` times."""
    return [(method, ratio, seed) for method in methods
            for seed in (range(random_draws) if method == "random" else (0,))]


def _beats(rows: dict, main: str, ratio: float, metric: str, methods: list[str]) -> dict:
    """Whether the main method's quality is above each baseline's (random: its mean)."""
    def score(method: str) -> float:
        row = rows.get(f"random-mean@{ratio:g}") if method == "random" else None
        return (row or rows[f"{method}@{ratio:g}"])[metric]
    return {m: rows[f"{main}@{ratio:g}"][metric] > score(m) for m in methods}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("unet", "dit"))
    parser.add_argument("--unet-ratio", type=float, default=0.45)
    parser.add_argument("--unet-methods", default="laptop,handpicked,random,task-loss",
                        help="U-Net variants to make and score (comma-separated)")
    parser.add_argument("--dit-ratio", type=float, default=0.5)
    parser.add_argument("--dit-methods", default="tinyfusion,bi,evenly,random",
                        help="DiT variants to make and score (comma-separated)")
    parser.add_argument("--random-draws", type=int, default=3,
                        help="random baselines drawn (seeds 0..N-1); compared by their mean")
    parser.add_argument("--calib", type=int, default=64)
    parser.add_argument("--finetune-steps", type=int, default=600)
    parser.add_argument("--learn-steps", type=int, default=400)
    parser.add_argument("-n", type=int, default=64, help="captions (U-Net study)")
    parser.add_argument("--layouts", type=int, default=16, help="layouts (DiT study)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("benchmarks/out/compress"),
                        help="where the pruned variants are kept (reused when the "
                             "settings match)")
    args = parser.parse_args()
    torch.manual_seed(0)
    args.work.mkdir(parents=True, exist_ok=True)
    report: dict = {"benchmark": "compress", "threads": torch.get_num_threads(),
                    "device": "cpu", "calibration_samples": args.calib,
                    "finetune_steps": args.finetune_steps, "learn_steps": args.learn_steps}
    if args.only in (None, "unet"):
        captions = _captions(args.n)
        methods = args.unet_methods.split(",")
        variants = _variants(methods, args.unet_ratio, args.random_draws)
        if args.unet_ratio != 0.5 and len(methods) > 1:
            variants.append(("laptop", 0.5, 0))
        rows = _study(UNET_BASE, "unet", variants, "judge_top1_recomposed",
                      lambda pipe, judge, ref: _unet_scores(pipe, judge, captions, ref),
                      _unet_run, args, args.work)
        main_row = rows[f"laptop@{args.unet_ratio:g}"]
        report["unet"] = {"base": UNET_BASE, "n": args.n, "variants": rows, "target": {
            "ratio": args.unet_ratio, "speedup_per_step": main_row["speedup_per_step"],
            "speedup_goal": 1.6, "quality_drop": main_row["quality_drop"],
            "quality_drop_goal": 0.04,
            "beats": _beats(rows, "laptop", args.unet_ratio, "judge_top1_recomposed",
                            [m for m in ("handpicked", "random") if m in methods])}}
    if args.only in (None, "dit"):
        methods = args.dit_methods.split(",")
        variants = _variants(methods, args.dit_ratio, args.random_draws)
        rows = _study(DIT_BASE, "dit", variants, "alpha_soft_iou",
                      lambda pipe, judge, ref: _dit_scores(pipe, judge, args.layouts, ref),
                      _art_run, args, args.work)
        main_row = rows[f"tinyfusion@{args.dit_ratio:g}"]
        report["dit"] = {"base": DIT_BASE, "layouts": args.layouts, "variants": rows,
                         "target": {"speedup_per_step": main_row["speedup_per_step"],
                                    "speedup_goal": 1.8,
                                    "beats": _beats(rows, "tinyfusion", args.dit_ratio,
                                                    "alpha_soft_iou",
                                                    [m for m in ("bi", "random")
                                                     if m in methods])}}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
