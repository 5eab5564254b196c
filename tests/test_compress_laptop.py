"""LAPTOP-Diff on U-Nets (issue 23): removable units of SD 1.5-, SDXL- and our own shapes, the
rebuilt U-Nets (clean plain from_pretrained, same computation as skipping the unit), the
one-shot criterion, additivity, the knapsack and the baselines, and the normalized KD."""

from __future__ import annotations

import itertools
import random

import pytest
import torch
from diffusers import UNet2DConditionModel
from torch import nn

from layerstudio.compress.calibration import Call
from layerstudio.compress.depth import saved_and_loaded
from layerstudio.compress.distill import (
    Distillation,
    masked_feature_loss,
    normalized_feature_loss,
)
from layerstudio.compress.laptop import (
    additivity,
    handpicked,
    knapsack,
    output_losses,
    select_units,
)
from layerstudio.compress.prune import unet_feature_pairs
from layerstudio.compress.unet_layers import (
    LayerPrunedUNet2DConditionModel,
    Unit,
    _up_drops,
    pruned_unet,
    removable_units,
    unit_parameters,
)
from layerstudio.tiny_models import tiny_unet


def _sd15() -> UNet2DConditionModel:
    """SD 1.5's layout (3 cross-attention stages and a plain last one, 2 resnets a stage),
    narrow."""
    return UNet2DConditionModel(
        sample_size=8, block_out_channels=(32, 32, 64, 64), layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=16, attention_head_dim=8, norm_num_groups=8)


def _sdxl() -> UNet2DConditionModel:
    """SDXL's layout (a plain first stage, then transformer stacks 2 and 3 deep, the mid as
    deep as the last), narrow."""
    return UNet2DConditionModel(
        sample_size=8, block_out_channels=(32, 64, 64), layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2, 3), cross_attention_dim=16, attention_head_dim=8,
        norm_num_groups=8)


SHAPES = {"tiny-sd": lambda: tiny_unet(cross_attention_dim=16), "sd15": _sd15, "sdxl": _sdxl}


def _call(unet, seed: int = 0, batch: int = 2) -> Call:
    generator = torch.Generator().manual_seed(seed)
    size = unet.config.sample_size
    return Call((torch.randn(batch, 4, size, size, generator=generator),
                 torch.randint(0, 1000, (batch,), generator=generator),
                 torch.randn(batch, 5, unet.config.cross_attention_dim, generator=generator)),
                {})


@pytest.fixture(scope="module", params=sorted(SHAPES))
def unet(request):
    torch.manual_seed(0)
    return SHAPES[request.param]().eval()


def test_every_unit_alone_rebuilds_a_smaller_unet_that_runs(unet):
    units = removable_units(unet)
    kinds = {unit.kind for unit in units}
    assert {"pair", "mid"} <= kinds and ("attentions" in kinds or "block" in kinds)
    call = _call(unet)
    total = sum(p.numel() for p in unet.parameters())
    for unit in units:
        pruned = pruned_unet(unet, [unit.name])
        assert total - sum(p.numel() for p in pruned.parameters()) == unit.params > 0
        with torch.no_grad():
            assert pruned(*call.args).sample.shape == call.args[0].shape


def test_unit_sets_load_with_plain_from_pretrained(unet, tmp_path):
    names = [unit.name for unit in removable_units(unet)]
    rng = random.Random(0)
    call = _call(unet)
    for trial in range(3):
        chosen = rng.sample(names, min(len(names), 2 + trial * 2))
        pruned = pruned_unet(unet, chosen)
        loaded = saved_and_loaded(pruned, tmp_path / str(trial))  # asserts no missing keys
        with torch.no_grad():
            torch.testing.assert_close(loaded(*call.args).sample, pruned(*call.args).sample)
    everything = pruned_unet(unet, names)
    assert sum(p.numel() for p in everything.parameters()) < \
        0.8 * sum(p.numel() for p in unet.parameters())


class _Skip(nn.Module):
    """Stands in for a removed module: passes its input through."""

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states


def test_removing_an_inner_block_or_the_mid_block_is_skipping_it():
    torch.manual_seed(0)
    unet = _sdxl().eval()
    call = _call(unet)
    for name, path in (("down2.attn1.block2", ("down_blocks", 2, 1, 2)),
                       ("up0.attn0.block1", ("up_blocks", 0, 0, 1)),
                       ("mid.attn0.block1", None), ("mid", None)):
        skipped = UNet2DConditionModel.from_config(unet.config).eval()
        skipped.load_state_dict(unet.state_dict())
        if name == "mid":
            skipped.mid_block = _Skip()
        elif path is None:
            skipped.mid_block.attentions[0].transformer_blocks[1] = _Skip()
        else:
            blocks, stage, stack, block = path
            getattr(skipped, blocks)[stage].attentions[stack].transformer_blocks[block] = _Skip()
        with torch.no_grad():
            torch.testing.assert_close(pruned_unet(unet, [name])(*call.args).sample,
                                       skipped(*call.args).sample)


def test_the_mid_depth_gets_its_own_config_field_only_when_needed(tmp_path):
    torch.manual_seed(0)
    unet = _sdxl().eval()
    assert type(pruned_unet(unet, ["down2.attn1.block1"])) is UNet2DConditionModel
    mid = pruned_unet(unet, ["mid.attn0.block2"])
    assert isinstance(mid, LayerPrunedUNet2DConditionModel)
    assert mid.config.mid_block_transformer_layers == 2
    # the last down stage shallower but the mid block kept 3 deep
    deeper = pruned_unet(unet, ["down2.attn0.block1", "down2.attn0.block2"])
    assert len(deeper.mid_block.attentions[0].transformer_blocks) == 3
    loaded = saved_and_loaded(deeper, tmp_path / "mid")
    assert len(loaded.mid_block.attentions[0].transformer_blocks) == 3


def test_a_down_pair_takes_a_middle_up_resnet_with_it():
    assert _up_drops(2, {1}) == [1]  # SD: the second down resnet, the middle up one
    assert _up_drops(3, {1, 2}) == [1, 2]
    assert _up_drops(1, {0}) == [1]  # a stage keeping its width loses its only pair
    assert _up_drops(2, {0, 1}) == [1, 2]
    assert _up_drops(2, set()) == []


def test_the_knapsack_finds_the_least_loss_cover():
    rng = random.Random(1)
    for _ in range(20):
        units = [Unit(f"u{i}", "pair", rng.randint(10, 100)) for i in range(7)]
        losses = {unit.name: rng.random() for unit in units}
        target = rng.randint(50, sum(unit.params for unit in units))
        chosen = knapsack(units, losses, target, bins=sum(u.params for u in units))
        best = min((sum(losses[u.name] for u in subset), subset)
                   for r in range(len(units) + 1)
                   for subset in itertools.combinations(units, r)
                   if sum(u.params for u in subset) >= target)
        assert sum(u.params for u in units if u.name in chosen) >= target
        assert sum(losses[name] for name in chosen) == pytest.approx(best[0])
    with pytest.raises(ValueError, match="fewer than"):
        knapsack(units, losses, 10 ** 6)


def test_the_output_criterion_scores_and_selects_within_the_budget():
    torch.manual_seed(0)
    unet = tiny_unet(cross_attention_dim=16).eval()
    calls = [_call(unet, seed) for seed in range(2)]
    scores = output_losses(unet, calls)
    assert set(scores) == {unit.name for unit in removable_units(unet)}
    assert all(value > 0 for value in scores.values())
    check = additivity(unet, calls, scores, subsets=4)
    assert len(check["sets"]) == 4 and -1 <= check["correlation"] <= 1
    total = sum(p.numel() for p in unet.parameters())
    for method in ("laptop", "handpicked", "random"):
        chosen = select_units(unet, method, 0.2, lambda: scores)
        assert unit_parameters(unet, chosen) >= 0.2 * total
    laptop = select_units(unet, "laptop", 0.2, lambda: scores)
    hand = select_units(unet, "handpicked", 0.2, lambda: scores)
    assert sum(scores[n] for n in laptop) <= sum(scores[n] for n in hand) + 1e-9
    with pytest.raises(ValueError, match="unknown"):
        select_units(unet, "magic", 0.2, lambda: scores)


def test_handpicked_follows_bk_sdm_order():
    order = handpicked(removable_units(_sd15()))
    assert order[0] == "mid"
    pairs = [name for name in order if ".pair1" in name]
    assert pairs == ["down3.pair1", "down2.pair1", "down1.pair1", "down0.pair1"]
    stacks = [order.index(name) for name in order if name.endswith(".attentions")]
    assert stacks and order.index(pairs[-1]) < min(stacks)
    assert order[-1].endswith(".pair0")  # first resnets of a stage go last


def test_normalized_feature_kd_weighs_stages_equally():
    teacher_small, teacher_big = torch.ones(4, 8), 1000 * torch.ones(4, 8)
    small = normalized_feature_loss(teacher_small * 1.1, teacher_small)
    big = normalized_feature_loss(teacher_big * 1.1, teacher_big)
    torch.testing.assert_close(small, big)  # same relative error, same term
    # TinyFusion's mask leaves massive activations out
    teacher = torch.zeros(1, 100)
    teacher[0, 0] = 1000.0
    student = teacher.clone()
    student[0, 0] = 0.0
    assert masked_feature_loss(student, teacher) == 0


def test_distillation_hooks_collect_output_and_stage_losses():
    torch.manual_seed(0)
    teacher = tiny_unet(cross_attention_dim=16).eval()
    student = pruned_unet(teacher, ["mid"])
    call = _call(teacher)
    with Distillation(student, teacher, unet_feature_pairs(student, teacher)) as kd:
        student(*call.args)
        output, feature = kd.take()
    assert output > 0 and feature > 0
    (output + feature).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    same = pruned_unet(teacher, [])
    with Distillation(same, teacher, unet_feature_pairs(same, teacher)) as kd:
        same(*call.args)
        output, feature = kd.take()
    assert float(output) == pytest.approx(0, abs=1e-10)
    assert float(feature) == pytest.approx(0, abs=1e-10)
