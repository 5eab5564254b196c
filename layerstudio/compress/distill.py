"""Retraining a pruned denoiser: ground-truth task loss plus distillation from the full model.

:class:`Distillation` hooks a student (the pruned model) and its teacher (the full one): each
time the student runs, the teacher runs on the same inputs (no gradient) and the step collects
output KD (MSE of the predictions) and feature KD between paired modules. Nothing is wrapped or
replaced, so the student runs inside any task's loss unchanged.

The feature terms follow the two papers:

- LAPTOP-Diff's normalized feature KD: each stage output pair contributes
  ``||F_S - F_T||^2 / ||F_T||^2`` (the teacher norm detached), so a few numerically large stages
  no longer drown the rest (:func:`normalized_feature_loss`).
- TinyFusion's masked feature KD: MSE where the teacher feature is within two standard
  deviations of its mean, which leaves out the massive activations of DiTs
  (:func:`masked_feature_loss`).

:func:`retrain` is the loop: AdamW, warm-up and cosine decay, gradient clipping, a progress bar.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .calibration import Call, output_of, replay

__all__ = ["Distillation", "Weights", "masked_feature_loss", "normalized_feature_loss",
           "retrain"]

FeatureLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def normalized_feature_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """LAPTOP-Diff: ||F_S - F_T||^2 / ||F_T||^2, the denominator detached."""
    teacher = teacher.detach()
    return (student - teacher).pow(2).sum() / teacher.pow(2).sum().clamp_min(1e-12)


def masked_feature_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """TinyFusion: MSE over the features with |h - mean| < 2 std (massive activations out)."""
    teacher = teacher.detach()
    keep = ((teacher - teacher.mean()).abs() < 2 * teacher.std()).to(student.dtype)
    return ((student - teacher).pow(2) * keep).sum() / keep.sum().clamp_min(1)


def _hidden(output) -> torch.Tensor:
    """The hidden-state stream a block or stage returns: U-Net down blocks return (hidden,
    skips), FLUX blocks (text, image), others a tensor or an output with ``.sample``."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, tuple):
        # FLUX blocks: (encoder_hidden_states, hidden_states); U-Net down blocks: (h, skips)
        return output[1] if isinstance(output[1], torch.Tensor) else output[0]
    return output.sample


class Distillation:
    """Context manager: while open, every forward of ``student`` runs ``teacher`` on the same
    inputs and records the output and feature distillation terms (read with :meth:`take`).

    ``pairs``: (student module, teacher module) whose outputs are compared with
    ``feature_loss``."""

    def __init__(self, student: nn.Module, teacher: nn.Module,
                 pairs: Sequence[tuple[nn.Module, nn.Module]] = (),
                 feature_loss: FeatureLoss = normalized_feature_loss) -> None:
        self.student, self.teacher, self.pairs = student, teacher, list(pairs)
        self.feature_loss = feature_loss
        self._handles: list = []
        self._teacher_out: torch.Tensor | None = None
        self._features: dict[str, list[torch.Tensor]] = {"student": [], "teacher": []}
        self.outputs: list[torch.Tensor] = []
        self.features: list[torch.Tensor] = []

    def _before(self, _module, args, kwargs) -> None:
        self._features = {"student": [], "teacher": []}
        with torch.no_grad():
            self._teacher_out = output_of(self.teacher(*args, **kwargs))

    def _after(self, _module, _args, _kwargs, result) -> None:
        self.outputs.append(F.mse_loss(output_of(result).float(), self._teacher_out.float()))
        student, teacher = self._features["student"], self._features["teacher"]
        if student:
            self.features.append(torch.stack([
                self.feature_loss(s.float(), t.float()) for s, t in zip(student, teacher,
                                                                        strict=True)]).sum())

    def _keeper(self, side: str):
        def hook(_module, _args, output) -> None:
            self._features[side].append(_hidden(output))
        return hook

    def __enter__(self) -> Distillation:
        self._handles.append(self.student.register_forward_pre_hook(self._before,
                                                                   with_kwargs=True))
        self._handles.append(self.student.register_forward_hook(self._after, with_kwargs=True))
        for student, teacher in self.pairs:
            self._handles.append(student.register_forward_hook(self._keeper("student")))
            self._handles.append(teacher.register_forward_hook(self._keeper("teacher")))
        return self

    def __exit__(self, *_exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def take(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(output KD, feature KD) averaged over the student's forwards since the last take."""
        zero = torch.zeros(())
        out = torch.stack(self.outputs).mean() if self.outputs else zero
        feat = torch.stack(self.features).mean() if self.features else zero
        self.outputs, self.features = [], []
        return out, feat


@dataclass(frozen=True)
class Weights:
    """Loss weights of retraining: ground truth, output KD, feature KD (decayed linearly to
    zero over the run when ``feature_decay``)."""

    task: float = 1.0
    output: float = 1.0
    feature: float = 1.0
    feature_decay: bool = False


LAPTOP_WEIGHTS = Weights(task=1.0, output=1.0, feature=1.0)
"""LAPTOP-Diff (after BK-SDM): task loss + output KD + normalized feature KD, equal weights."""
TINYFUSION_WEIGHTS = Weights(task=0.1, output=0.9, feature=1.0, feature_decay=True)
"""TinyFusion: 0.9 output KD + 0.1 ground truth + a decaying masked feature KD."""


def retrain(student: nn.Module, teacher: nn.Module, objective, steps: int,
            calls: Sequence[Call] = (), pairs: Sequence[tuple[nn.Module, nn.Module]] = (),
            feature_loss: FeatureLoss = normalized_feature_loss,
            weights: Weights = LAPTOP_WEIGHTS, learning_rate: float = 1e-4,
            warmup: int = 10, progress: bool = True) -> list[float]:
    """Train ``student`` in place for ``steps``; returns the loss of each step.

    With a ground-truth objective each step is one task batch (task loss on the student, KD
    on the same inputs); without one (:class:`PipelineObjective`) each step replays one of
    ``calls`` and distils alone."""
    if steps <= 0:
        return []
    if not objective.has_ground_truth and not calls:
        raise ValueError("distilling without ground truth needs recorded calls")
    teacher.eval().requires_grad_(False)
    student.train().requires_grad_(True)
    params = [p for p in student.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.0)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, factor)
    history = []
    with Distillation(student, teacher, pairs, feature_loss) as kd:
        for step in tqdm(range(steps), desc="retraining", disable=not progress):
            if objective.has_ground_truth:
                task = objective.loss(student, step)
            else:
                replay(student, calls[step % len(calls)])
                task = torch.zeros(())
            output, feature = kd.take()
            decay = 1 - step / steps if weights.feature_decay else 1.0
            loss = (weights.task * task + weights.output * output
                    + weights.feature * decay * feature)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimiser.step()
            schedule.step()
            history.append(float(loss.detach()))
    student.eval()
    return history
