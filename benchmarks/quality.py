"""Quality of the shipped presets, each against an untrained model of the same shape.

For every shipped preset whose weights are present: the `layerstudio eval` report, and the same
evaluation of a randomly initialised copy (same config, same data, same run), with the ratio
trained / random (and the gain in points, since a random model often scores 0) so the gain
from training is visible.

    python benchmarks/quality.py [-n 64] [--split heldout]
"""

from __future__ import annotations

import argparse
import copy
import json

import torch

from layerstudio.errors import InvalidInputError
from layerstudio.eval.runner import evaluate, evaluate_text_to_image, judge_report
from layerstudio.presets import PRESETS, is_available, load_preset


def _randomised(module: torch.nn.Module) -> torch.nn.Module:
    """A copy with freshly initialised weights (same architecture and config)."""
    torch.manual_seed(0)
    fresh = copy.deepcopy(module)
    for layer in fresh.modules():
        if hasattr(layer, "reset_parameters") and layer is not fresh:
            layer.reset_parameters()
    return fresh


def _ratio(trained: float, baseline: float) -> float | None:
    return None if baseline == 0 else round(trained / baseline, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=64)
    parser.add_argument("--split", default="heldout", choices=("train", "heldout"))
    args = parser.parse_args()
    report = {"benchmark": "quality", "presets": [], "not_evaluated_here": []}
    for name, preset in PRESETS.items():
        if not preset.shipped or not is_available(preset):
            continue
        try:
            trained = evaluate(name, split=args.split, n=args.n)
        except InvalidInputError as exc:  # measured by its own benchmark (see docs)
            report["not_evaluated_here"].append({"preset": name, "why": str(exc)})
            continue
        entry = {"preset": name, "trained": trained}
        if name == "tiny-judge":
            entry["random"] = judge_report(_randomised(load_preset(name)).eval(), args.n)
        elif name in ("tiny-sd", "tiny-dit", "tiny-layerdiffuse") and is_available(
                PRESETS["tiny-judge"]):
            # the denoiser and text encoder re-initialised; the VAE (and the transparent
            # codec) kept, so the ratio measures what diffusion training added
            pipe = load_preset(name)
            denoiser = "transformer" if name == "tiny-dit" else "unet"
            setattr(pipe, denoiser, _randomised(getattr(pipe, denoiser)))
            pipe.text_encoder = _randomised(pipe.text_encoder)
            entry["random"] = evaluate_text_to_image(name, args.split, args.n, 0, pipeline=pipe)
        if "random" in entry:
            entry["ratio_top1"] = _ratio(trained["judge_top1"], entry["random"]["judge_top1"])
            entry["ratio_top5"] = _ratio(trained["judge_top5"], entry["random"]["judge_top5"])
            # a random model often scores exactly 0, where a ratio says nothing: also report
            # the gain in percentage points
            entry["gain_top1_points"] = round(100 * (trained["judge_top1"] -
                                                     entry["random"]["judge_top1"]), 1)
            entry["gain_top5_points"] = round(100 * (trained["judge_top5"] -
                                                     entry["random"]["judge_top5"]), 1)
        report["presets"].append(entry)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
