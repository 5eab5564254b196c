"""TinyFusion: learning which transformer blocks to keep, for the model after fine-tuning.

Blocks of each list are cut into local groups of M consecutive blocks of which N are kept. Each
group has one learnable logit per keep pattern (all C(M, N) of them). Every forward samples a
pattern per example with hard Gumbel-softmax (straight-through; logits scaled x100, temperature
annealed 4 -> 0.1) and runs each block as ``m * block(x) + (1 - m) * x``. The point of the
paper is *recoverability*: a rank-8 LoRA on every linear layer, shared across patterns, trains
jointly with the logits, so a pattern scores by how well the model does after a little
training, not right after pruning. The choice is the argmax of the logits' EMA; the LoRA is
discarded and the chosen original blocks are kept (:func:`layerstudio.compress.depth.kept_model`).
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .calibration import Call, replay
from .depth import block_lists, last_is_fixed

__all__ = ["Gate", "LoRALinear", "dit_feature_pairs", "group_plan", "learn_keep"]

LOGIT_SCALE = 100.0


class LoRALinear(nn.Module):
    """``base(x) + up(down(x))``: a frozen linear layer with a trainable rank-``rank`` update
    (``up`` starts at zero, so the layer starts as it was)."""

    def __init__(self, base: nn.Linear, rank: int = 8) -> None:
        super().__init__()
        self.base = base
        self.down = nn.Linear(base.in_features, rank, bias=False, dtype=base.weight.dtype,
                              device=base.weight.device)
        self.up = nn.Linear(rank, base.out_features, bias=False, dtype=base.weight.dtype,
                            device=base.weight.device)
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.up.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.up(self.down(x))


def _add_lora(module: nn.Module, rank: int) -> list[nn.Parameter]:
    """Put a LoRA on every linear layer inside ``module``; returns the LoRA parameters."""
    params = []
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                wrapped = LoRALinear(child, rank)
                setattr(parent, name, wrapped)
                params += [wrapped.down.weight, wrapped.up.weight]
    return params


class Gate(nn.Module):
    """A block run as ``m * block(x) + (1 - m) * x`` with the mask ``m`` (one value per
    example) set before each forward; both streams of a FLUX block are gated."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block
        self.mask: torch.Tensor | None = None

    @staticmethod
    def _mix(mask: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
        m = mask.to(new.dtype).view(-1, *([1] * (new.dim() - 1)))
        return m * new + (1 - m) * old

    def forward(self, *args, **kwargs):
        out = self.block(*args, **kwargs)
        if self.mask is None:
            return out
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        if isinstance(out, tuple):  # FLUX: (encoder_hidden_states, hidden_states)
            text = kwargs.get("encoder_hidden_states", args[1] if len(args) > 1 else None)
            return self._mix(self.mask, out[0], text), self._mix(self.mask, out[1], hidden)
        return self._mix(self.mask, out, hidden)


def group_plan(count: int, ratio: float, group: int | None = None,
               last_fixed: bool = False) -> list[tuple[list[int], int]]:
    """Local groups of a list of ``count`` blocks as (block indices, blocks kept), removing
    ``ratio`` of each group. ``group`` (M) defaults to the largest of 4 and 2 that divides
    the prunable blocks and gives a whole number kept; a fixed last block (SD3) stays out."""
    prunable = count - 1 if last_fixed else count
    sizes = [group] if group else [4, 2]
    for size in sizes:
        kept = size * (1 - ratio)
        if prunable % size == 0 and abs(kept - round(kept)) < 1e-6 and 1 <= round(kept) <= size:
            return [(list(range(start, start + size)), round(kept))
                    for start in range(0, prunable, size)]
    raise ValueError(f"cannot cut {prunable} blocks into groups of {sizes} keeping "
                     f"{1 - ratio:.0%} of each; choose another --ratio or group size")


def dit_feature_pairs(student: nn.Module, teacher: nn.Module, keep: dict[str, list[int]]
                      ) -> list[tuple[nn.Module, nn.Module]]:
    """Student block i against the teacher block that ends the stretch it stands for (the
    block before the next kept one; 2i + 1 for 1:2 groups, as TinyFusion pairs them)."""
    pairs = []
    for name, kept in keep.items():
        teacher_blocks, student_blocks = getattr(teacher, name), getattr(student, name)
        for i, block in enumerate(student_blocks):
            end = kept[i + 1] - 1 if i + 1 < len(kept) else len(teacher_blocks) - 1
            pairs.append((block, teacher_blocks[end]))
    return pairs


def learn_keep(model: nn.Module, objective, ratio: float, steps: int,
               calls: Sequence[Call] = (), group: int | None = None, rank: int = 8,
               lora_lr: float = 1e-4, logit_lr: float = 1e-3, ema: float = 0.999,
               tau: tuple[float, float] = (4.0, 0.1), progress: bool = True
               ) -> tuple[dict[str, list[int]], dict]:
    """Learn the blocks to keep of every block list of ``model`` (untouched: the search runs
    on a copy). Returns (keep, report) where keep maps list name -> kept indices and the
    report holds each group's pattern probabilities and the loss curve."""
    if steps < 1:
        raise ValueError("TinyFusion needs at least one learning step")
    device = next(model.parameters()).device
    student = copy.deepcopy(model).train()
    student.requires_grad_(False)
    lists = block_lists(student)
    plans, gates, logits, patterns = {}, {}, {}, {}
    for name, blocks in lists.items():
        plans[name] = group_plan(len(blocks), ratio, group, last_is_fixed(blocks))
        gated = nn.ModuleList(Gate(block) for block in blocks)
        setattr(student, name, gated)
        gates[name] = gated
        for g, (indices, kept) in enumerate(plans[name]):
            combos = list(itertools.combinations(range(len(indices)), kept))
            patterns[(name, g)] = torch.tensor(
                [[1.0 if i in combo else 0.0 for i in range(len(indices))] for combo in combos],
                device=device)
            logits[(name, g)] = nn.Parameter(torch.zeros(len(combos), device=device))
    lora = _add_lora(nn.ModuleList(gates.values()), rank)
    for param in lora:
        param.requires_grad_(True)
    optimiser = torch.optim.AdamW([{"params": lora, "lr": lora_lr},
                                   {"params": list(logits.values()), "lr": logit_lr}],
                                  weight_decay=0.0)
    averaged = {key: value.detach().clone() for key, value in logits.items()}
    temperature = [tau[0]]

    def sample(_module, args, kwargs) -> None:
        first = next(v for v in [*args, *kwargs.values()] if isinstance(v, torch.Tensor))
        batch = first.shape[0]
        for (name, g), logit in logits.items():
            onehot = F.gumbel_softmax((logit * LOGIT_SCALE).repeat(batch, 1),
                                      tau=temperature[0], hard=True)
            masks = onehot @ patterns[(name, g)]
            for position, index in enumerate(plans[name][g][0]):
                gates[name][index].mask = masks[:, position]

    handle = student.register_forward_pre_hook(sample, with_kwargs=True)
    history = []
    try:
        for step in tqdm(range(steps), desc="learning blocks", disable=not progress):
            temperature[0] = tau[0] + (tau[1] - tau[0]) * step / max(1, steps - 1)
            if objective.has_ground_truth:
                loss = objective.loss(student, step)
            else:
                call = calls[step % len(calls)]
                with torch.no_grad():
                    target = replay(model, call).float()
                loss = F.mse_loss(replay(student, call).float(), target)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            with torch.no_grad():
                for key, logit in logits.items():
                    averaged[key].mul_(ema).add_(logit.detach(), alpha=1 - ema)
            history.append(float(loss.detach()))
    finally:
        handle.remove()
    correction = 1 - ema ** steps  # the EMA started at zero: unbias it (argmax unchanged)
    averaged = {key: value / correction for key, value in averaged.items()}
    keep, report = {}, {"groups": [], "loss": history}
    for name, blocks in lists.items():
        chosen = []
        for g, (indices, _kept) in enumerate(plans[name]):
            best = int(averaged[(name, g)].argmax())
            chosen += [indices[i] for i, on in enumerate(patterns[(name, g)][best]) if on]
            probabilities = torch.softmax(averaged[(name, g)] * LOGIT_SCALE, 0)
            report["groups"].append({
                "list": name, "blocks": indices,
                "patterns": [[indices[i] for i, on in enumerate(p) if on]
                             for p in patterns[(name, g)].tolist()],
                "probability": [round(float(p), 4) for p in probabilities]})
        if last_is_fixed(blocks):
            chosen.append(len(blocks) - 1)
        keep[name] = sorted(chosen)
    return keep, report
