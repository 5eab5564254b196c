"""One pruning run, start to finish: load, calibrate, select, rebuild, retrain, save.

``prune`` is what ``layerstudio prune`` runs. The output is an ordinary diffusers pipeline
folder (fp16 safetensors) with the smaller denoiser in place of the full one, plus
``compression.json``: what was removed, why (each unit's score or each group's pattern
probabilities), the parameter counts, and the retraining losses. ``layerstudio ship`` installs
it as a preset like any trained run.

Methods, by kind of denoiser:

- ``unet`` (``UNet2DConditionModel``): ``laptop`` (output-loss criterion + knapsack),
  ``handpicked`` (BK-SDM's order), ``random``, ``task-loss`` (the knapsack on the ground-truth
  loss); ``ratio`` is the share of the U-Net's parameters to remove.
- ``dit`` (``transformer_blocks`` / ``single_transformer_blocks``): ``tinyfusion`` (learned),
  ``bi`` (ShortGPT block influence), ``evenly`` (evenly spaced), ``random``; ``ratio`` is the
  share of each block list to remove (0.5: half as deep).

Every method retrains for the same ``finetune_steps`` with the same objective, so results
compare after equal fine-tuning, as both papers insist.
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InvalidInputError
from .calibration import PipelineObjective, RecipeObjective
from .depth import (
    block_influence,
    block_lists,
    evenly_spaced,
    kept_model,
    last_is_fixed,
    loaded_cleanly,
    random_blocks,
)
from .distill import LAPTOP_WEIGHTS, TINYFUSION_WEIGHTS, masked_feature_loss, retrain
from .laptop import additivity, output_losses, select_units, task_losses
from .tinyfusion import dit_feature_pairs, group_plan, learn_keep
from .unet_layers import pruned_unet, removable_units

__all__ = ["DIT_METHODS", "UNET_METHODS", "prune"]

UNET_METHODS = ("laptop", "handpicked", "random", "task-loss")
DIT_METHODS = ("tinyfusion", "bi", "evenly", "random")
COMPRESSION_FILE = "compression.json"
DEFAULT_PROMPTS = ("a red apple", "a cat face", "a rocket", "a blue star", "a sunflower",
                   "a car", "a ghost", "an orange heart")


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _load(model: str):
    """The pipeline to prune: a preset name or a pipeline folder."""
    from ..presets import PRESETS, load_preset

    if model in PRESETS:
        return load_preset(model)
    if Path(model).is_dir():
        from diffusers import DiffusionPipeline

        return DiffusionPipeline.from_pretrained(model, dtype=torch.float32)
    raise InvalidInputError(f"{model!r} is neither a model preset nor a pipeline folder")


def _objective(model: str, pipe, prompts: Sequence[str] | None, batch_size: int | None,
               device: str):
    """The preset's own training task when it has a recipe, else its sampling trajectories."""
    from ..presets import PRESETS, known_prompts, recipe_of

    if model in PRESETS and recipe_of(model) and not prompts:
        try:
            return RecipeObjective(model, device=device, batch_size=batch_size)
        except LookupError:  # its recipe trains something else (an adapter on a frozen base)
            pass
    words = list(prompts or (known_prompts(model) if model in PRESETS else []) or
                 DEFAULT_PROMPTS)
    return PipelineObjective(pipe, words)


def _check_kind(pipe, kind: str) -> None:
    """A clear error, before any work, when the pipeline's denoiser is not of that kind."""
    from diffusers import UNet2DConditionModel

    unet, transformer = getattr(pipe, "unet", None), getattr(pipe, "transformer", None)
    if kind == "unet" and not isinstance(unet, UNet2DConditionModel):
        found = type(unet or transformer).__name__
        raise InvalidInputError(f"`prune unet` needs a U-Net (UNet2DConditionModel); this "
                                f"pipeline denoises with a {found} (try `prune dit`)")
    if kind == "dit" and not hasattr(transformer, "transformer_blocks"):
        found = type(unet or transformer).__name__
        raise InvalidInputError(f"`prune dit` needs a transformer with transformer_blocks; "
                                f"this pipeline denoises with a {found} (try `prune unet`)")


def unet_feature_pairs(student: nn.Module, teacher: nn.Module) -> list[tuple[nn.Module,
                                                                             nn.Module]]:
    """Stage outputs compared by LAPTOP-Diff's feature KD: each down block, the mid block
    (when the student keeps it) and each up block, against the teacher's same stage."""
    pairs = list(zip(student.down_blocks, teacher.down_blocks, strict=True))
    if student.mid_block is not None:
        pairs.append((student.mid_block, teacher.mid_block))
    return pairs + list(zip(student.up_blocks, teacher.up_blocks, strict=True))


def _prune_unet(teacher, objective, calls, method: str, ratio: float, seed: int,
                report: dict) -> nn.Module:
    units = removable_units(teacher)
    scored: dict[str, float] = {}

    def scores() -> dict[str, float]:
        if method == "task-loss":
            if not objective.has_ground_truth:
                raise InvalidInputError("the task-loss criterion needs a preset with a "
                                        "training recipe (ground truth)")
            scored.update(task_losses(teacher, objective, max(1, len(calls))))
        else:
            scored.update(output_losses(teacher, calls, units))
        return scored

    try:
        removed = select_units(teacher, method, ratio, scores, seed=seed)
    except ValueError as error:
        raise InvalidInputError(str(error)) from None
    report["units"] = {unit.name: {"params": unit.params, **(
        {"score": round(scored[unit.name], 6)} if unit.name in scored else {})}
        for unit in units}
    report["removed"] = removed
    if method == "laptop":
        report["additivity"] = additivity(teacher, calls, scored, seed=seed)
    return pruned_unet(teacher, removed)


def _most_influential(scores: list[float], count: int, last_fixed: bool) -> list[int]:
    """ShortGPT's choice: the ``count`` blocks of highest influence (a fixed last block
    always among them)."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    if last_fixed:
        order = [len(scores) - 1] + [i for i in order if i != len(scores) - 1]
    return sorted(order[:count])


def _prune_dit(teacher, objective, calls, method: str, ratio: float, seed: int,
               learn_steps: int, group: int | None, report: dict, progress: bool):
    try:
        lists = block_lists(teacher)
        plans = {name: group_plan(len(blocks), ratio, group, last_is_fixed(blocks))
                 for name, blocks in lists.items()}
    except ValueError as error:
        raise InvalidInputError(str(error)) from None
    counts = {name: sum(kept for _, kept in plan) + (len(lists[name]) -
              sum(len(ix) for ix, _ in plan)) for name, plan in plans.items()}
    if method == "tinyfusion":
        keep, learned = learn_keep(teacher, objective, ratio, learn_steps, calls, group,
                                   progress=progress)
        report["learning"] = {"steps": learn_steps, "groups": learned["groups"],
                              "loss_first": learned["loss"][0],
                              "loss_last": learned["loss"][-1]}
    elif method == "bi":
        with torch.no_grad():
            influence = block_influence(teacher, lambda: [teacher(*c.args, **c.kwargs)
                                                          for c in calls])
        keep = {name: _most_influential(scores, counts[name], last_is_fixed(lists[name]))
                for name, scores in influence.items()}
        report["influence"] = influence
    elif method == "evenly":
        keep = {name: evenly_spaced(len(lists[name]), count) for name, count in counts.items()}
    else:
        keep = {}
        for i, (name, count) in enumerate(sorted(counts.items())):
            fixed = last_is_fixed(lists[name])  # the fixed last block is not drawn
            drawn = random_blocks(len(lists[name]) - fixed, count - fixed, seed + i) \
                if count > fixed else []
            keep[name] = drawn + ([len(lists[name]) - 1] if fixed else [])
    report["keep"] = keep
    return kept_model(teacher, keep), keep


def prune(model: str, kind: str, method: str | None, output: str | Path, ratio: float = 0.5,
          calib: int = 64, finetune_steps: int = 200, learn_steps: int = 100,
          group: int | None = None, learning_rate: float | None = None,
          batch_size: int | None = None, prompts: Sequence[str] | None = None, seed: int = 0,
          device: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Prune ``model``'s denoiser (``kind`` ``unet`` or ``dit``) with ``method`` and save the
    pipeline with the smaller denoiser to ``output``; returns the report also written there.

    ``calib``: calibration examples (scores, block influence, distillation inputs without
    ground truth); ``finetune_steps``: retraining steps (0: none); ``learn_steps``: TinyFusion's
    mask-learning steps; ``learning_rate``: default the recipe stage's (1e-4 without one);
    ``prompts``: calibrate on sampling runs of these prompts even where
    the preset has a training recipe; ``device``: default CUDA when present."""
    if kind not in ("unet", "dit"):
        raise InvalidInputError(f"prune a 'unet' or a 'dit', not {kind!r}")
    method = method or ("laptop" if kind == "unet" else "tinyfusion")
    methods = UNET_METHODS if kind == "unet" else DIT_METHODS
    if method not in methods:
        raise InvalidInputError(f"{kind} methods: {', '.join(methods)}; not {method!r}")
    if not 0 < ratio < 1:
        raise InvalidInputError(f"--ratio must be between 0 and 1, got {ratio}")
    if calib < 1 or finetune_steps < 0:
        raise InvalidInputError("--calib must be at least 1 and --finetune-steps 0 or more")
    output = Path(output)
    torch.manual_seed(seed)
    started = time.perf_counter()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe = _load(model).to(device)
    _check_kind(pipe, kind)
    objective = _objective(model, pipe, prompts, batch_size, device)
    teacher = objective.denoiser
    calls = objective.calls(calib)
    report: dict[str, Any] = {"base": model, "kind": kind, "method": method, "ratio": ratio,
                              "seed": seed, "calibration_samples": calib, "objective":
                              "recipe task" if objective.has_ground_truth else
                              "sampling trajectories (distillation only)"}
    if kind == "unet":
        student = _prune_unet(teacher, objective, calls, method, ratio, seed, report)
        pairs, loss, weights = unet_feature_pairs(student, teacher), None, LAPTOP_WEIGHTS
    else:
        student, keep = _prune_dit(teacher, objective, calls, method, ratio, seed,
                                   learn_steps, group, report, progress)
        pairs, loss, weights = (dit_feature_pairs(student, teacher, keep), masked_feature_loss,
                                TINYFUSION_WEIGHTS)
    selected = time.perf_counter()
    if learning_rate is None:
        learning_rate = objective.stage.learning_rate if objective.has_ground_truth else 1e-4
    history = retrain(student, teacher, objective, finetune_steps, calls, pairs,
                      **({"feature_loss": loss} if loss else {}), weights=weights,
                      learning_rate=learning_rate, progress=progress)
    report["params"] = {"before": _params(teacher), "after": _params(student),
                        "removed": round(1 - _params(student) / _params(teacher), 4)}
    report["retraining"] = {"steps": finetune_steps, "learning_rate": learning_rate,
                            "loss_first": history[0] if history else None,
                            "loss_last": history[-1] if history else None}
    report["seconds"] = {"selection": round(selected - started, 1),
                         "retraining": round(time.perf_counter() - selected, 1)}
    _save(pipe, objective.key, student, output, report)
    return report


def _save(pipe, key: str, student: nn.Module, output: Path, report: dict) -> None:
    """The pipeline with ``student`` as its denoiser, fp16, written to a staging folder and
    renamed into place (no half-written model); then checked to load cleanly."""
    staging = output.with_name(output.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    setattr(pipe, key, copy.deepcopy(student))  # registers the new class in model_index
    for component in pipe.components.values():  # the shipped format; the student stays fp32
        if isinstance(component, nn.Module):
            component.half()
    pipe.save_pretrained(staging, safe_serialization=True)
    loaded_cleanly(type(student), staging / key)
    try:  # the whole pipeline must still assemble around the smaller denoiser
        type(pipe).from_pretrained(staging, local_files_only=True)
    except (ValueError, RuntimeError, KeyError) as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise InvalidInputError(f"the pruned {key} no longer fits {type(pipe).__name__}: "
                                f"{error}") from None
    (staging / COMPRESSION_FILE).write_text(json.dumps(report, indent=2) + "\n")
    if output.exists():
        shutil.rmtree(output)
    staging.rename(output)
