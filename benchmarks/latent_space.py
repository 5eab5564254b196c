"""Which latent space: VAEs of several shapes trained alike, scored by what the judge still
recognises after a round trip, against the shipped VAE in the same run.

Each candidate is tiny-sd's first recipe stage (the VAE with an edge loss) with one
`architecture` override, trained for ``--steps`` into ``--work/NAME`` (a finished candidate is
reused: `--resume`). Reported per candidate: the judge's top-1 on clean renders and after the
round trip (train-pool prompts, n = 128, and held-out emoji, n = 64), the share of clean
(issue 18's target: >= 0.75), PSNR, the latent shape, the tokens a DiT would see (2 x 2
packing) and the ratio to the shipped VAE. About 20 minutes per candidate on 2 CPU cores.

    python benchmarks/latent_space.py [--steps 1200] [--work runs/latent-space] [--only c8]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch

from layerstudio.eval.vae import round_trip_report
from layerstudio.presets import component_folder, load_preset
from layerstudio.train import load_recipe
from layerstudio.train.loop import train

CANDIDATES = {
    "c4": {"latent_channels": 4},
    "c8": {"latent_channels": 8},
    "c16": {"latent_channels": 16},
    "c4-f2": {"latent_channels": 4, "block_out_channels": [32, 64]},
}


def score(vae, judge) -> dict:
    train_split = round_trip_report(vae, judge, "train", 128)
    heldout = round_trip_report(vae, judge, "heldout", 64)
    _, rows, cols = train_split["latent_shape"]
    return {"train": train_split, "heldout": heldout, "dit_tokens": rows * cols // 4,
            "parameters": sum(p.numel() for p in vae.parameters())}


def main() -> None:
    from diffusers import AutoencoderKL

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--work", type=Path, default=Path("runs/latent-space"))
    parser.add_argument("--only", nargs="+", choices=list(CANDIDATES),
                        help="train and score only these candidates")
    args = parser.parse_args()
    judge = load_preset("tiny-judge").eval()
    shipped = AutoencoderKL.from_pretrained(component_folder("tiny-sd", "vae"),
                                            dtype=torch.float32).eval()
    report = {"benchmark": "latent_space", "steps": args.steps,
              "shipped": score(shipped, judge), "candidates": {}}
    base = load_recipe("tiny-sd")
    first = base.stages[0]
    for name in args.only or CANDIDATES:
        options = {**first.options, "architecture": CANDIDATES[name]}
        stage = replace(first, steps=args.steps, options=options)
        out = train(replace(base, name=f"latent-space-{name}", stages=[stage]),
                    args.work / name, resume=True)
        vae = AutoencoderKL.from_pretrained(out / "vae", dtype=torch.float32).eval()
        row = score(vae, judge)
        row["ratio_train_top1_vs_shipped"] = round(
            row["train"]["round_trip_top1"] / report["shipped"]["train"]["round_trip_top1"], 3)
        report["candidates"][name] = row
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
