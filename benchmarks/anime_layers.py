"""Anime production layers (issue 21): the tiny model, its ablation without per-layer
semantic embeddings and the classical method on held-out ``anime`` illustrations, one run.

Per layer (flat colour, shadow, highlight, line art) against the truth: alpha-weighted colour
L1 (the colour error where either layer has alpha, weighted by the larger alpha) and soft IoU
of alpha; the recomposition PSNR of the four layers against the picture; seconds per
picture. Half the illustrations are in the artist convention (multiply / screen), half in
the normal one; each method is told the convention. The baseline is the classical method;
the model rows report their ratio to it.

    python benchmarks/anime_layers.py [-n 12] [--size 128] [--model RUN] [--ablation RUN]
        [--steps N] [--sheet PNG]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from layerstudio.blend import BlendMode
from layerstudio.datasets.generate import generate
from layerstudio.decompose import DECOMPOSITION
from layerstudio.document import LayerStack
from layerstudio.eval.metrics import psnr
from layerstudio.pipelines.anime_layers.structure import KINDS
from layerstudio.presets import run_as_preset
from layerstudio.studio import Studio

BASELINE = "anime-classical"


def _alone(stack: LayerStack, *indices: int) -> np.ndarray:
    layers = [stack.layers[i].copy(blend_mode=BlendMode.NORMAL, opacity=1.0) for i in indices]
    return LayerStack(stack.width, stack.height, layers).composite_array()


def _truth(sample) -> dict[str, np.ndarray]:
    """The true layers on the canvas: the flat colour over the paper, then the others."""
    stack = sample.stack
    return {"flat": _alone(stack, 0, 1), "shadow": _alone(stack, 2),
            "highlight": _alone(stack, 3), "lineart": _alone(stack, 4)}


def _scores(found: LayerStack, truth: dict[str, np.ndarray], picture: np.ndarray
            ) -> dict[str, float]:
    row = {"recomposition_psnr": min(psnr(found.composite_array()[..., :3], picture), 99.0)}
    for index, kind in enumerate(KINDS):
        ours, theirs = _alone(found, index), truth[kind]
        weight = np.maximum(ours[..., 3], theirs[..., 3])
        error = np.abs(ours[..., :3] - theirs[..., :3]).mean(-1)
        row[f"{kind}_l1"] = float((weight * error).sum() / max(weight.sum(), 1e-6))
        row[f"{kind}_iou"] = float(np.minimum(ours[..., 3], theirs[..., 3]).sum()
                                   / max(weight.sum(), 1e-6))
    return row


def _run(studio: Studio, method: str, samples: list, shown: list | None,
         options: dict | None = None) -> dict[str, float]:
    rows = []
    for index, sample in enumerate(samples):
        picture = sample.stack.composite_array()[..., :3]
        convention = sample.meta["convention"]
        started = time.perf_counter()
        found = studio.decompose(picture, method=method, convention=convention,
                                 **(options or {}))
        seconds = time.perf_counter() - started
        if shown is not None and index < 4:
            shown[index] += [_alone(found, i) for i in range(len(KINDS))]
        rows.append(_scores(found, _truth(sample), picture) | {"seconds": seconds})
    return {key: round(float(np.mean([row[key] for row in rows])), 4) for key in rows[0]}


def _sheet(samples: list, shown: list, methods: list[str], path: Path) -> None:
    """One row per illustration: the picture, the true layers, then each method's."""
    from PIL import Image

    from layerstudio.imaging import over_checkerboard
    from layerstudio.preview import labelled_grid

    def tile(rgba: np.ndarray) -> Image.Image:
        image = Image.fromarray(np.rint(np.clip(rgba, 0, 1) * 255).astype(np.uint8), "RGBA")
        return over_checkerboard(image, 8).convert("RGB")

    labels = ["picture", *(f"truth\n{kind}" for kind in KINDS),
              *(f"{method}\n{kind}" for method in methods for kind in KINDS)]
    rows = []
    for sample, found in zip(samples, shown, strict=False):
        truth = _truth(sample)
        picture = sample.stack.composite_array()
        rows.append([tile(picture), *(tile(truth[kind]) for kind in KINDS),
                     *(tile(layer) for layer in found)])
    path.parent.mkdir(parents=True, exist_ok=True)
    labelled_grid(rows, labels, tile=128).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=12, help="held-out illustrations (half in "
                                                         "each convention)")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--model", type=Path, help="a run folder to score as the anime model")
    parser.add_argument("--ablation", type=Path, help="a run folder to score beside it")
    parser.add_argument("--steps", type=int, help="denoising steps (default: the preset's)")
    parser.add_argument("--sheet", type=Path, help="write a PNG of four illustrations")
    args = parser.parse_args()
    samples = [generate("anime", i, size=args.size, split="heldout", seed=17,
                        convention=("artist", "normal")[i % 2]) for i in range(args.n)]
    shown: list[list] = [[] for _ in samples[:4]]
    studio = Studio(device="cpu")
    methods = {BASELINE: _run(studio, BASELINE, samples, shown)}
    steps = {"steps": args.steps} if args.steps else {}
    with run_as_preset(DECOMPOSITION.get("anime").preset, args.model):
        if DECOMPOSITION.installed("anime"):
            methods["anime"] = _run(Studio(device="cpu"), "anime", samples, shown, steps)
    if args.ablation is not None:
        with run_as_preset(DECOMPOSITION.get("anime").preset, args.ablation):
            methods[f"anime ({args.ablation.name})"] = _run(Studio(device="cpu"), "anime",
                                                             samples, shown, steps)
    if args.sheet is not None:
        _sheet(samples, shown, list(methods), args.sheet)
    base = methods[BASELINE]
    for name, table in methods.items():
        if name != BASELINE:
            table["line_iou_vs_classical"] = round(table["lineart_iou"]
                                                   / max(base["lineart_iou"], 1e-6), 3)
            table["shadow_iou_vs_classical"] = round(table["shadow_iou"]
                                                     / max(base["shadow_iou"], 1e-6), 3)
    print(json.dumps({"samples": f"{args.n} held-out illustrations at {args.size} px "
                                 "(half artist, half normal convention)",
                      "methods": methods}, indent=2))


if __name__ == "__main__":
    main()
