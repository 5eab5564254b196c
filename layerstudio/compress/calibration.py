"""What a denoiser is shown while it is pruned and retrained: calibration calls and losses.

Both methods score and retrain a denoiser on the inputs it really sees. An *objective* supplies
them for any pipeline:

- :class:`RecipeObjective` for a shipped preset trained from a recipe: its own training task,
  so calibration inputs are real (x_t, t, c) of its data and retraining has the ground-truth
  task loss (the papers' setting).
- :class:`PipelineObjective` for any other pipeline (a public SDXL, a FLUX checkpoint): the
  denoiser's inputs recorded while the pipeline samples from prompts. There is no ground truth,
  so retraining is distillation alone.

A :class:`Call` is one recorded forward of the denoiser (its args and kwargs, detached), which
:func:`replay` runs again on the full model or any pruned one.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["Call", "PipelineObjective", "RecipeObjective", "denoiser_name", "output_of",
           "recording", "replay"]

CALIBRATION_STEP = 1_000_000
"""Recipe batches from this step on calibrate; retraining uses steps 0, 1, ... (disjoint)."""


@dataclass
class Call:
    """One forward of a denoiser: positional and keyword arguments, tensors detached."""

    args: tuple
    kwargs: dict[str, Any]

    @property
    def batch(self) -> int:
        first = next(v for v in [*self.args, *self.kwargs.values()]
                     if isinstance(v, torch.Tensor))
        return int(first.shape[0])


def _detached(value):
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, (list, tuple)):
        return type(value)(_detached(v) for v in value)
    if isinstance(value, dict):
        return {k: _detached(v) for k, v in value.items()}
    return value


def output_of(result) -> torch.Tensor:
    """The prediction a denoiser returned (``.sample`` of an output, or the first of a tuple)."""
    if isinstance(result, torch.Tensor):
        return result
    if isinstance(result, (tuple, list)):
        return result[0]
    return result.sample


def replay(model: nn.Module, call: Call) -> torch.Tensor:
    """``model``'s prediction for a recorded call."""
    return output_of(model(*call.args, **call.kwargs))


@contextmanager
def recording(model: nn.Module) -> Iterator[list[Call]]:
    """Within the block, every forward of ``model`` is appended to the yielded list."""
    calls: list[Call] = []

    def hook(_module, args, kwargs):
        calls.append(Call(_detached(args), _detached(kwargs)))

    handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield calls
    finally:
        handle.remove()


def denoiser_name(pipe_or_module) -> str:
    """``unet`` or ``transformer``: which component of a pipeline (or task module) denoises."""
    parts = pipe_or_module if isinstance(pipe_or_module, nn.ModuleDict) \
        else pipe_or_module.components
    for name in ("unet", "transformer"):
        if name in parts and isinstance(parts[name], nn.Module):
            return name
    raise LookupError(f"{type(pipe_or_module).__name__} has no unet or transformer to prune")


def _take(calls: list[Call], samples: int) -> list[Call]:
    """Calls until they hold ``samples`` examples."""
    taken, seen = [], 0
    for call in calls:
        if seen >= samples:
            break
        taken.append(call)
        seen += call.batch
    return taken


class RecipeObjective:
    """A shipped preset's own training task (its recipe's last stage), on its own weights."""

    def __init__(self, preset: str, device: torch.device | str = "cpu",
                 batch_size: int | None = None) -> None:
        from ..presets import component_folder, pipeline_parts, preset_path, recipe_of
        from ..train import load_recipe
        from ..train.registry import TASKS

        recipe = recipe_of(preset)
        if not recipe:
            raise ValueError(f"{preset!r} has no training recipe; use a PipelineObjective")
        stage = load_recipe(recipe).stages[-1]
        self._folder = tempfile.TemporaryDirectory(prefix="layerstudio-prune-")
        work = Path(self._folder.name)
        index = preset_path(preset) / "model_index.json"
        for part in pipeline_parts(index):  # the preset as one folder, shared parts included
            (work / part).symlink_to(component_folder(preset, part).resolve(),
                                     target_is_directory=True)
        (work / "model_index.json").symlink_to(index.resolve())
        options = {**stage.options, "init_from": str(work)}
        self.stage = dataclasses.replace(stage, options=options,
                                         batch_size=batch_size or stage.batch_size)
        self.task = TASKS[stage.task](self.stage, work, torch.device(device))
        self.module = self.task.trainable().to(device)
        self.module.requires_grad_(False)
        self.key = denoiser_name(self.module)
        self.denoiser = self.module[self.key].eval()

    @property
    def has_ground_truth(self) -> bool:
        return True

    def loss(self, model: nn.Module, step: int) -> torch.Tensor:
        """The task's training loss with ``model`` as the denoiser, on batch ``step`` (the
        batch and its noise are a pure function of the step)."""
        torch.manual_seed(self.stage.options.get("seed", 0) * 7919 + step)
        self.module[self.key] = model
        try:
            return self.task.loss(self.module, self.task.batch(step))
        finally:
            self.module[self.key] = self.denoiser

    def calls(self, samples: int) -> list[Call]:
        """Calibration: the (x_t, t, c) the full model sees in task batches, ``samples``
        examples in all."""
        found: list[Call] = []
        step = CALIBRATION_STEP
        with torch.no_grad(), recording(self.denoiser) as calls:
            while sum(call.batch for call in calls) < samples:
                self.loss(self.denoiser, step)
                step += 1
            found = _take(calls, samples)
        return found


class PipelineObjective:
    """Inputs recorded while ``pipe`` samples ``prompts``: any pipeline, no ground truth."""

    def __init__(self, pipe, prompts: Sequence[str], steps: int = 20,
                 call_kwargs: dict[str, Any] | None = None) -> None:
        if not prompts:
            raise ValueError("give calibration prompts")
        self.pipe, self.prompts, self.steps = pipe, list(prompts), steps
        self.call_kwargs = dict(call_kwargs or {})
        self.key = denoiser_name(pipe)
        self.denoiser = getattr(pipe, self.key).eval()
        self._recorded: list[Call] = []

    @property
    def has_ground_truth(self) -> bool:
        return False

    def loss(self, model: nn.Module, step: int) -> None:
        """No ground truth: retraining distils on :meth:`calls` alone."""
        return None

    def calls(self, samples: int) -> list[Call]:
        """The denoiser's inputs over whole sampling runs, one prompt at a time (each run's
        steps cover every noise level), until ``samples`` examples are recorded."""
        self.pipe.set_progress_bar_config(disable=True)
        index = 0
        with torch.no_grad(), recording(self.denoiser) as calls:
            while sum(call.batch for call in calls) < samples:
                prompt = self.prompts[index % len(self.prompts)]
                self.pipe(prompt, num_inference_steps=self.steps,
                          generator=torch.Generator().manual_seed(index), **self.call_kwargs)
                index += 1
            self._recorded = _take(calls, samples)
        return self._recorded
