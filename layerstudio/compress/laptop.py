"""LAPTOP-Diff's layer selection for U-Nets, and the baselines it is compared with.

The one-shot criterion: the loss of removing unit u is the output MSE
``mean ||eps_without_u(x_t, t, c) - eps(x_t, t, c)||^2`` over calibration calls. The paper's
observation is that this loss is close to additive (removing a set costs about the sum of its
units' losses), so the best set for a budget is a knapsack problem: the least summed loss among
sets that remove at least the target share of parameters. :func:`additivity` measures how far
that holds for the model at hand (correlation of measured and summed losses over random sets).

Baselines at the same budget: hand-picked removal in BK-SDM's order (the mid block, then the
second resnet/attention pair of each down stage, deepest first, then inner transformer blocks
and attention stacks from the deepest stage out), random units, and the task-loss criterion
(the same knapsack on the ground-truth denoising loss of each pruned model instead of the
output loss).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .calibration import Call, replay
from .unet_layers import Unit, pruned_unet, removable_units, unit_parameters

__all__ = ["additivity", "handpicked", "knapsack", "output_losses", "random_units",
           "select_units", "task_losses"]


@torch.no_grad()
def _output_loss(model, calls: Sequence[Call], reference: list[torch.Tensor]) -> float:
    errors = [F.mse_loss(replay(model, call).float(), ref).item()
              for call, ref in zip(calls, reference, strict=True)]
    return float(np.mean(errors))


@torch.no_grad()
def output_losses(unet, calls: Sequence[Call], units: Sequence[Unit] | None = None
                  ) -> dict[str, float]:
    """The one-shot criterion of every unit: output MSE of the U-Net without it alone."""
    units = list(units or removable_units(unet))
    reference = [replay(unet, call).float() for call in calls]
    return {unit.name: _output_loss(pruned_unet(unet, [unit.name]), calls, reference)
            for unit in units}


@torch.no_grad()
def task_losses(unet, objective, batches: int, units: Sequence[Unit] | None = None
                ) -> dict[str, float]:
    """The task-loss criterion: the ground-truth loss of the U-Net without each unit, over
    ``batches`` fixed calibration batches (the same batches for every unit)."""
    from .calibration import CALIBRATION_STEP

    units = list(units or removable_units(unet))
    steps = range(CALIBRATION_STEP, CALIBRATION_STEP + batches)
    return {unit.name: float(np.mean([objective.loss(pruned_unet(unet, [unit.name]), s).item()
                                      for s in steps])) for unit in units}


@torch.no_grad()
def additivity(unet, calls: Sequence[Call], single: dict[str, float], subsets: int = 8,
               seed: int = 0) -> dict[str, float | list]:
    """How additive the output loss is here: for random sets of 2-4 units, the measured loss
    of removing the set against the sum of its units' single losses (Pearson correlation)."""
    rng = random.Random(seed)
    names = sorted(single)
    if len(names) < 2:
        return {"correlation": float("nan"), "sets": []}
    reference = [replay(unet, call).float() for call in calls]
    rows = []
    for _ in range(subsets):
        chosen = rng.sample(names, rng.randint(2, min(4, len(names))))
        measured = _output_loss(pruned_unet(unet, chosen), calls, reference)
        rows.append({"units": sorted(chosen), "measured": measured,
                     "summed": float(sum(single[name] for name in chosen))})
    measured = np.array([row["measured"] for row in rows])
    summed = np.array([row["summed"] for row in rows])
    correlation = float(np.corrcoef(measured, summed)[0, 1]) if measured.std() and \
        summed.std() else float("nan")
    return {"correlation": correlation, "sets": rows}


def knapsack(units: Sequence[Unit], losses: dict[str, float], target: int,
             bins: int = 2000) -> list[str]:
    """The units of least summed loss that remove at least ``target`` parameters (a covering
    knapsack on parameter counts rounded to ``bins`` steps of the largest total)."""
    if target <= 0:
        return []
    total = sum(unit.params for unit in units)
    if total < target:
        raise ValueError(f"the removable units hold {total:,} parameters, fewer than the "
                         f"{target:,} to remove")
    scale = total / bins
    need = int(np.ceil(target / scale))
    best = [0.0] + [float("inf")] * need
    chosen = [0] * (need + 1)
    for index, unit in enumerate(units):
        weight, cost = max(1, int(unit.params / scale)), losses[unit.name]
        for w in range(need, 0, -1):
            candidate = best[max(0, w - weight)] + cost
            if candidate < best[w]:
                best[w], chosen[w] = candidate, chosen[max(0, w - weight)] | (1 << index)
    return [unit.name for i, unit in enumerate(units) if chosen[need] >> i & 1]


def _stage_depth(name: str) -> tuple[int, int]:
    """Sort key of BK-SDM's hand order: deeper (lower-resolution) stages first."""
    match = re.match(r"(down|up)(\d+)", name)
    if not match:
        return (0, 0)
    stage = int(match.group(2))
    return (1, -stage if match.group(1) == "down" else stage)


def handpicked(units: Sequence[Unit]) -> list[str]:
    """Every unit in BK-SDM's hand order: the mid block, the second down pair of each stage
    (whose mirror is the middle up unit), inner transformer blocks, attention stacks, other
    pairs; within each kind the deepest stage first."""
    def rank(unit: Unit):
        kind = {"mid": 0, "pair": 1, "block": 2, "attentions": 3}[unit.kind]
        if unit.kind == "pair" and not unit.name.endswith("pair1"):
            kind = 4
        return (kind, _stage_depth(unit.name), unit.name)
    return [unit.name for unit in sorted(units, key=rank)]


def random_units(units: Sequence[Unit], seed: int = 0) -> list[str]:
    """Every unit in a random order (seeded)."""
    names = [unit.name for unit in units]
    random.Random(seed).shuffle(names)
    return names


def _first_enough(unet, units: Sequence[Unit], order: Sequence[str], target: int
                  ) -> list[str]:
    """The shortest prefix of ``order`` that removes at least ``target`` parameters (searched
    from the first prefix whose units add up to it: overlaps only make a set remove less)."""
    params = {unit.name: unit.params for unit in units}
    count, summed = 0, 0
    while count < len(order) and summed < target:
        summed += params[order[count]]
        count += 1
    for size in range(max(count, 1), len(order) + 1):
        if unit_parameters(unet, order[:size]) >= target:
            return list(order[:size])
    raise ValueError(f"removing every unit takes away fewer than {target:,} parameters")


def select_units(unet, method: str, ratio: float, scores: Callable[[], dict[str, float]]
                 | None = None, seed: int = 0) -> list[str]:
    """The units ``method`` removes to take away at least ``ratio`` of the U-Net's parameters.

    ``laptop`` and ``task-loss`` run the knapsack on ``scores()`` (output or task losses);
    overlapping units (a pair and its stage's attention stacks) can make the exact removal
    fall short of the sum, so the target is raised until the built model meets it."""
    units = removable_units(unet)
    total = sum(p.numel() for p in unet.parameters())
    target = int(np.ceil(ratio * total))
    if method == "handpicked":
        return _first_enough(unet, units, handpicked(units), target)
    if method == "random":
        return _first_enough(unet, units, random_units(units, seed), target)
    if method not in ("laptop", "task-loss") or scores is None:
        raise ValueError(f"unknown U-Net pruning method {method!r}")
    losses = scores()
    goal = target
    for _ in range(20):
        chosen = knapsack(units, losses, goal)
        removed = unit_parameters(unet, chosen)
        if removed >= target:
            return chosen
        goal += target - removed
    raise ValueError(f"no set of units removes {ratio:.0%} of the parameters")
