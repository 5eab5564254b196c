"""Native latent transparency vs "generate RGB, then matte", in one run (the paper's claim).

Two comparisons, both on the shipped ``tiny-layerdiffuse`` and its base ``tiny-sd``:

1. ``reconstruction`` (ground truth exists): held-out ``transparent`` samples (emoji the models
   never saw; all four alpha styles). Native: RGBA -> transparent encoder -> latent ->
   transparent decoder. Baseline: the same RGBA flattened on white -> the same VAE ->
   classical matting (``layerstudio.eval.matting.difference_key``). Alpha soft IoU and
   alpha-weighted RGB L1 against the truth.
2. ``generation`` (no ground truth): captions of unseen samples of the models' vocabulary.
   Native: ``tiny-layerdiffuse`` RGBA. Baseline: ``tiny-sd`` RGB of the same prompt and seed,
   then matting. Scored by recomposition: each layer over a random photo/pattern background,
   judged by tiny-judge (top-1/top-5: a clean cut-out survives a new background), by white
   fringe (mean whiteness of edge pixels, 0 < alpha < 1, which betrays leftover background),
   and seconds per image.

    python benchmarks/transparency.py [-n 64]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from layerstudio.datasets import generate
from layerstudio.datasets.assets.backgrounds import make_background
from layerstudio.eval.matting import difference_key
from layerstudio.eval.transparency import SIZE, alpha_reconstruction, mean4, over
from layerstudio.eval.vae import EVAL_SEED
from layerstudio.presets import load_preset, training_pool
from layerstudio.train.tasks import _to_tensor


def _fringe(rgba: np.ndarray) -> float:
    """Mean min(R, G, B) of edge pixels (0 < alpha < 1): near 1 = a white halo."""
    a = rgba[..., 3]
    edge = (a > 12) & (a < 243)
    if not edge.any():
        return 0.0
    return float(rgba[..., :3][edge].min(axis=-1).mean() / 255)


def _recomposed_scores(judge, layers: list[np.ndarray], captions: list[str]) -> dict:
    rng = np.random.default_rng(7)
    images = torch.stack([_to_tensor(over(layer, make_background(rng, (SIZE, SIZE))[0]))
                          for layer in layers])
    return {"judge_top1_recomposed": round(judge.accuracy(images, captions, 1), 4),
            "judge_top5_recomposed": round(judge.accuracy(images, captions, 5), 4),
            "white_fringe": mean4([_fringe(layer) for layer in layers])}


@torch.no_grad()
def generation(native_pipe, rgb_pipe, judge, n: int) -> dict:
    pool = training_pool("tiny-layerdiffuse")
    captions = [generate("transparent", i, seed=EVAL_SEED, size=SIZE, split="train",
                         style="solid", pool=pool).caption for i in range(n)]
    report = {}
    for name, pipe in (("native", native_pipe), ("matting", rgb_pipe)):
        pipe.set_progress_bar_config(disable=True)
        start = time.perf_counter()
        images = pipe(captions, num_inference_steps=20, guidance_scale=4.0, height=SIZE,
                      width=SIZE, generator=torch.Generator().manual_seed(0)).images
        if name == "matting":
            layers = [difference_key(np.asarray(image.convert("RGB"))) for image in images]
        else:
            layers = [np.asarray(image) for image in images]
        seconds = (time.perf_counter() - start) / n
        report[name] = {**_recomposed_scores(judge, layers, captions),
                        "seconds_per_image": round(seconds, 4)}
    native, matting = report["native"], report["matting"]
    report["ratio_top1"] = round(native["judge_top1_recomposed"] /
                                 max(matting["judge_top1_recomposed"], 1e-9), 3)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=64)
    args = parser.parse_args()
    native = load_preset("tiny-layerdiffuse")
    report = {"benchmark": "transparency", "n": args.n,
              "reconstruction_heldout": alpha_reconstruction(native, args.n, with_matting=True),
              "generation": generation(native, load_preset("tiny-sd"),
                                       load_preset("tiny-judge").eval(), args.n)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
