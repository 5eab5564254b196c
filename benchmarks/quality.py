"""Quality of the shipped presets, each against an untrained model of the same shape and,
with ``--against REV``, against the checkpoint that commit shipped.

For every shipped preset whose weights are present: the `layerstudio eval` report, and the same
evaluation of a randomly initialised copy (same config, same data, same run), with the ratio
trained / random (and the gain in points, since a random model often scores 0) so the gain
from training is visible. ``--against REV`` also evaluates the weights of git revision REV
(extracted to a temporary folder) and reports new / old. A ``vae_round_trip`` row per distinct
VAE: the judge's top-1 on clean renders and after an encode/decode round trip (the ceiling of
every model on that latent space; issue 18's target is a share of at least 0.75).

    python benchmarks/quality.py [-n 64] [--split heldout] [--against REV] [--presets NAME ...]
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path

import torch

from layerstudio.errors import InvalidInputError
from layerstudio.eval.runner import evaluate, evaluate_text_to_image, judge_report
from layerstudio.eval.vae import round_trip_report
from layerstudio.presets import (
    PRESETS,
    component_folder,
    is_available,
    load_preset,
    weights_from,
)

REPO = Path(__file__).resolve().parents[1]


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


def _shipped() -> list[str]:
    return [name for name, preset in PRESETS.items()
            if preset.shipped and is_available(preset)]


def vae_rows(judge, n: int) -> list[dict]:
    """One round-trip row per distinct AutoencoderKL among the shipped presets (they share)."""
    from diffusers import AutoencoderKL

    users: dict[Path, list[str]] = {}
    for name in _shipped():
        config = component_folder(name, "vae") / "config.json"
        if config.is_file() and json.loads(config.read_text())["_class_name"] == \
                "AutoencoderKL":
            users.setdefault(config.parent.resolve(), []).append(name)
    rows = []
    for folder, names in users.items():
        vae = AutoencoderKL.from_pretrained(folder, dtype=torch.float32).eval()
        rows.append({"used_by": names, "parameters": sum(p.numel() for p in vae.parameters()),
                     "train": round_trip_report(vae, judge, "train", 2 * n),
                     "heldout": round_trip_report(vae, judge, "heldout", n)})
    return rows


def old_weights(revision: str, into: Path) -> Path:
    """The package's weights/ folder as commit ``revision`` had it, extracted under ``into``."""
    archive = into / "weights.tar"
    with archive.open("wb") as out:
        subprocess.run(["git", "-C", str(REPO), "archive", revision, "layerstudio/weights"],
                       stdout=out, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "layerstudio" / "weights"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=64)
    parser.add_argument("--split", default="heldout", choices=("train", "heldout"))
    parser.add_argument("--against", metavar="REV",
                        help="also score the checkpoints git revision REV shipped")
    parser.add_argument("--presets", nargs="+", metavar="NAME",
                        help="score only these presets (default: every shipped one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        old = old_weights(args.against, Path(scratch)) if args.against else None
        print(json.dumps(run(args, old), indent=2))


def run(args: argparse.Namespace, old: Path | None) -> dict:
    report = {"benchmark": "quality", "presets": [], "not_evaluated_here": []}
    if is_available(PRESETS["tiny-judge"]):
        judge = load_preset("tiny-judge").eval()
        report["vae_round_trip"] = {"new": vae_rows(judge, args.n)}
        if old is not None:
            with weights_from(old):
                report["vae_round_trip"]["old"] = vae_rows(judge, args.n)
    for name in args.presets or _shipped():
        try:
            trained = evaluate(name, split=args.split, n=args.n)
        except InvalidInputError as exc:  # measured by its own benchmark (see docs)
            report["not_evaluated_here"].append({"preset": name, "why": str(exc)})
            continue
        entry = {"preset": name, "trained": trained}
        if old is not None:
            with weights_from(old):
                if is_available(PRESETS[name]):
                    entry["old"] = evaluate(name, split=args.split, n=args.n)
                    entry["new_over_old_top1"] = _ratio(trained.get("judge_top1", 0),
                                                        entry["old"].get("judge_top1", 0))
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
    return report


if __name__ == "__main__":
    main()
