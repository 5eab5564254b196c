"""TinyFusion on FLUX-shaped transformers (issue 23): local N:M groups, gated blocks, LoRA
starting as the identity, and a learned choice that finds the blocks a model can do without;
the student-teacher block pairing of the recovery distillation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from layerstudio.compress.calibration import Call
from layerstudio.compress.depth import kept_model
from layerstudio.compress.tinyfusion import (
    Gate,
    LoRALinear,
    dit_feature_pairs,
    group_plan,
    learn_keep,
)
from layerstudio.tiny_models import tiny_flux


def _inputs(model, seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.stack(torch.meshgrid(torch.zeros(1), torch.arange(4.0), torch.arange(4.0),
                                     indexing="ij"), -1).reshape(-1, 3)
    return {"hidden_states": torch.randn(2, 16, model.config.in_channels, generator=generator),
            "encoder_hidden_states": torch.randn(2, 6, model.config.joint_attention_dim,
                                                 generator=generator),
            "pooled_projections": torch.randn(2, model.config.pooled_projection_dim,
                                              generator=generator),
            "timestep": torch.rand(2, generator=generator), "img_ids": ids,
            "txt_ids": torch.zeros(6, 3), "return_dict": False}


def _silence(block: nn.Module) -> None:
    """Make a FLUX block the identity on both streams: zero the last layer of every residual
    branch (attention outputs, feed-forwards; a single block's shared output projection)."""
    ends = {"proj_out", "attn.to_out.0", "attn.to_add_out", "ff.net.2", "ff_context.net.2"}
    for name, module in block.named_modules():
        if name in ends:
            nn.init.zeros_(module.weight)
            nn.init.zeros_(module.bias)


class _Distil:
    """An objective without ground truth over fixed calls (what a PipelineObjective gives)."""

    has_ground_truth = False


def test_groups_follow_the_ratio():
    assert group_plan(4, 0.5) == [([0, 1, 2, 3], 2)]
    assert group_plan(2, 0.5) == [([0, 1], 1)]
    assert group_plan(6, 0.5) == [([0, 1], 1), ([2, 3], 1), ([4, 5], 1)]
    assert group_plan(8, 0.75) == [([0, 1, 2, 3], 1), ([4, 5, 6, 7], 1)]
    assert group_plan(5, 0.5, last_fixed=True) == [([0, 1, 2, 3], 2)]  # SD3's last block
    with pytest.raises(ValueError, match="groups"):
        group_plan(3, 0.5)


def test_gates_mix_block_and_input_and_lora_starts_as_identity():
    torch.manual_seed(0)
    model = tiny_flux().eval()
    block = model.single_transformer_blocks[0]
    gate = Gate(block)
    inputs = {"hidden_states": torch.randn(2, 16, 128), "encoder_hidden_states":
              torch.randn(2, 6, 128), "temb": torch.randn(2, 128),
              "image_rotary_emb": None}
    with torch.no_grad():
        full = block(**inputs)
        gate.mask = torch.tensor([1.0, 0.0])
        mixed = gate(**inputs)
    torch.testing.assert_close(mixed[1][0], full[1][0])  # kept for example 0
    torch.testing.assert_close(mixed[1][1], inputs["hidden_states"][1])  # skipped for 1
    torch.testing.assert_close(mixed[0][1], inputs["encoder_hidden_states"][1])
    linear = nn.Linear(8, 4)
    lora = LoRALinear(linear, rank=2)
    x = torch.randn(3, 8)
    torch.testing.assert_close(lora(x), linear(x))


def test_learning_finds_the_blocks_the_model_can_do_without():
    torch.manual_seed(0)
    model = tiny_flux().eval()
    _silence(model.transformer_blocks[1])
    for index in (1, 3):
        _silence(model.single_transformer_blocks[index])
    calls = [Call((), _inputs(model, seed)) for seed in range(4)]
    keep, report = learn_keep(model, _Distil(), 0.5, 60, calls, progress=False)
    assert keep == {"transformer_blocks": [0], "single_transformer_blocks": [0, 2]}
    assert report["loss"][-1] < report["loss"][0]
    single = next(g for g in report["groups"] if g["list"] == "single_transformer_blocks")
    assert single["patterns"][single["probability"].index(max(single["probability"]))] == \
        [0, 2]
    assert isinstance(model.transformer_blocks[0], nn.Module) and not isinstance(
        model.transformer_blocks[0], Gate)  # the model itself is untouched
    pruned = kept_model(model, keep)
    with torch.no_grad():  # the silenced blocks were identities: nothing changes
        torch.testing.assert_close(pruned(**calls[0].kwargs)[0], model(**calls[0].kwargs)[0],
                                   atol=1e-5, rtol=1e-4)


def test_student_blocks_pair_with_the_end_of_their_stretch():
    torch.manual_seed(0)
    teacher = tiny_flux()
    keep = {"transformer_blocks": [0], "single_transformer_blocks": [0, 2]}
    student = kept_model(teacher, keep)
    pairs = dit_feature_pairs(student, teacher, keep)
    expected = [(student.transformer_blocks[0], teacher.transformer_blocks[1]),
                (student.single_transformer_blocks[0], teacher.single_transformer_blocks[1]),
                (student.single_transformer_blocks[1], teacher.single_transformer_blocks[3])]
    assert [(a is c, b is d) for (a, b), (c, d) in zip(pairs, expected, strict=True)] == \
        [(True, True)] * 3
