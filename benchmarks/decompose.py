"""Decomposition quality and speed: every method of the decompose table against the baseline
"the whole picture as one layer", in one run.

Two sets: the ``design`` samples of the committed held-out split (64 px), and freshly generated
held-out designs at ``--size`` px (default 512). For each method and set: LayersEditDist RGB L1
and alpha soft IoU at 0 and 3 edits (means), recomposition PSNR (mean, capped at 99 dB), seconds
per image and peak traced memory; ratios against the baseline. Then the seconds for one design
at ``--large`` px (default 1024), and how well the ``layers="auto"`` rule of the model methods
guesses the true layer count (exact share and mean absolute error, against always asking for
the median count). Methods that need a download (Qwen-Image-Layered) are skipped when their
weights are not here. Prints JSON.

    python benchmarks/decompose.py [-n 16] [--size 512] [--large 1024]
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc

import numpy as np

from layerstudio.datasets.generate import generate
from layerstudio.datasets.splits import load_split
from layerstudio.decompose import DECOMPOSITION, auto_layer_count, recomposition
from layerstudio.document import Layer, LayerStack
from layerstudio.eval.layers_edit_dist import layers_edit_distance, scores_at
from layerstudio.studio import Studio

BASELINE = "one layer"


def _one_layer(picture: np.ndarray) -> LayerStack:
    height, width = picture.shape[:2]
    return LayerStack(width, height, [Layer("picture", picture, kind="background")])


def _score(method: str, samples: list[LayerStack], studio: Studio) -> dict[str, float]:
    rows, seconds, peaks = [], [], []
    for truth in samples:
        picture = np.asarray(truth.composite())
        tracemalloc.start()
        started = time.perf_counter()
        stack = _one_layer(picture) if method == BASELINE else \
            studio.decompose(picture, method=method)
        seconds.append(time.perf_counter() - started)
        peaks.append(tracemalloc.get_traced_memory()[1] / 2**20)
        tracemalloc.stop()
        scores = layers_edit_distance(stack, truth)
        rgb = picture[..., :3].astype(np.float32) / 255
        rows.append({"rgb_l1_0": scores_at(scores, 0).rgb_l1,
                     "iou_0": scores_at(scores, 0).alpha_iou,
                     "rgb_l1_3": scores_at(scores, 3).rgb_l1,
                     "iou_3": scores_at(scores, 3).alpha_iou,
                     "psnr": recomposition(stack, rgb)["recomposition_psnr"],
                     "layers": len(stack)})
    report = {key: round(float(np.mean([row[key] for row in rows])), 4) for key in rows[0]}
    report.update(seconds_per_image=round(float(np.mean(seconds)), 4),
                  peak_mib=round(float(max(peaks)), 1))
    return report


def _with_ratios(results: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    base = results[BASELINE]
    for method, report in results.items():
        if method != BASELINE:
            report["iou_0_vs_one_layer"] = round(report["iou_0"] / max(base["iou_0"], 1e-9), 3)
            report["rgb_l1_0_vs_one_layer"] = round(
                report["rgb_l1_0"] / max(base["rgb_l1_0"], 1e-9), 3)
    return results


def _auto_rule(samples: list[LayerStack]) -> dict[str, float]:
    """The auto layer count against the true count, and against a constant guess."""
    truth = np.array([len(stack) for stack in samples])
    guess = np.array([auto_layer_count(stack.composite_array()[..., :3]) for stack in samples])
    constant = int(np.median(truth))
    return {"exact": round(float(np.mean(guess == truth)), 3),
            "mean_abs_error": round(float(np.mean(np.abs(guess - truth))), 3),
            "constant_guess": constant,
            "constant_exact": round(float(np.mean(truth == constant)), 3),
            "constant_mean_abs_error": round(float(np.mean(np.abs(truth - constant))), 3)}


def _runnable(method: str) -> bool:
    """Whether ``method`` splits a whole design here: its weights are present, and it is not
    an effects method (those pull one object out; benchmarks/decompose_effects.py)."""
    return (method not in DECOMPOSITION.taking("separate_effects")
            and DECOMPOSITION.installed(method))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=16, help="generated designs at --size")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--large", type=int, default=1024)
    parser.add_argument("--heldout", type=int, help="score only the first N scenes of the "
                        "heldout design split (default: all)")
    args = parser.parse_args()
    studio = Studio(device="cpu")
    methods = [BASELINE, *(method for method in DECOMPOSITION if _runnable(method))]
    sets = {"heldout split (64 px)": [s.stack for s in load_split(kind="design")
                                      ][:args.heldout],
            f"designs ({args.size} px)": [
                generate("design", i, size=args.size, split="heldout", seed=7).stack
                for i in range(args.n)]}
    report: dict[str, object] = {}
    for name, samples in sets.items():
        report[name] = _with_ratios({method: _score(method, samples, studio)
                                     for method in methods})
    large = generate("design", 0, size=args.large, split="heldout", seed=7,
                     min_elements=4, max_elements=8).stack.composite()
    timings = {}
    for method in methods[1:]:
        started = time.perf_counter()
        stack = studio.decompose(large, method=method)
        timings[method] = {"seconds": round(time.perf_counter() - started, 3),
                           "layers": len(stack),
                           "recomposition_psnr": stack.metadata["recomposition_psnr"]}
    report[f"one design at {args.large} px"] = timings
    report["auto layer count (heldout split)"] = _auto_rule(sets["heldout split (64 px)"])
    report["skipped (weights not here, or an effects method)"] = [
        m for m in DECOMPOSITION if not _runnable(m)]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
