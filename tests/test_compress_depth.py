"""Depth pruning of diffusion transformers (issue 23, part 1): rebuilt models load cleanly with
plain ``from_pretrained`` and compute what the kept blocks compute; the selection baselines."""

from __future__ import annotations

import pytest
import torch

from layerstudio.compress.depth import (
    block_influence,
    block_lists,
    evenly_spaced,
    kept_model,
    random_blocks,
    saved_and_loaded,
)
from layerstudio.tiny_models import tiny_flux


def _inputs(model, seed: int = 0) -> dict:
    """One FLUX call's inputs: 16 image tokens, 6 text tokens, (layer, y, x) ids."""
    generator = torch.Generator().manual_seed(seed)
    config = model.config
    ids = torch.stack(torch.meshgrid(torch.zeros(1), torch.arange(4.0), torch.arange(4.0),
                                     indexing="ij"), -1).reshape(-1, 3)
    return {"hidden_states": torch.randn(2, 16, config.in_channels, generator=generator),
            "encoder_hidden_states": torch.randn(2, 6, config.joint_attention_dim,
                                                 generator=generator),
            "pooled_projections": torch.randn(2, config.pooled_projection_dim,
                                              generator=generator),
            "timestep": torch.tensor([0.3, 0.7]), "img_ids": ids,
            "txt_ids": torch.zeros(6, 3), "return_dict": False}


@pytest.fixture(scope="module")
def flux():
    torch.manual_seed(0)
    return tiny_flux().eval()


def test_a_pruned_flux_loads_cleanly_and_computes_with_the_kept_blocks(flux, tmp_path):
    keep = {"transformer_blocks": [1], "single_transformer_blocks": [0, 3]}
    pruned = kept_model(flux, keep)
    assert (pruned.config.num_layers, pruned.config.num_single_layers) == (1, 2)
    assert (flux.config.num_layers, flux.config.num_single_layers) == (2, 4)  # a copy
    loaded = saved_and_loaded(pruned, tmp_path / "pruned")
    inputs = _inputs(flux)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs)[0], pruned(**inputs)[0])
        # the same as running the original with the dropped blocks skipped
        skipped = type(flux).from_config(flux.config)
        skipped.load_state_dict(flux.state_dict())
        skipped.transformer_blocks = torch.nn.ModuleList([skipped.transformer_blocks[1]])
        skipped.single_transformer_blocks = torch.nn.ModuleList(
            [skipped.single_transformer_blocks[i] for i in (0, 3)])
        torch.testing.assert_close(skipped(**inputs)[0], pruned(**inputs)[0])
    smaller = sum(p.numel() for p in pruned.parameters())
    assert smaller < sum(p.numel() for p in flux.parameters())


def test_a_model_with_a_wrong_key_count_is_refused(flux, tmp_path):
    pruned = kept_model(flux, {"transformer_blocks": [0], "single_transformer_blocks": [0]})
    pruned.register_to_config(num_single_layers=3)  # the config no longer matches the weights
    with pytest.raises(ValueError, match="does not load cleanly"):
        saved_and_loaded(pruned, tmp_path / "bad")


def test_bad_keep_lists_are_refused(flux):
    with pytest.raises(ValueError, match="say which blocks"):
        kept_model(flux, {"transformer_blocks": [0]})
    with pytest.raises(ValueError, match="keep at least one"):
        kept_model(flux, {"transformer_blocks": [], "single_transformer_blocks": [0]})
    with pytest.raises(ValueError, match="keep at least one"):
        kept_model(flux, {"transformer_blocks": [5], "single_transformer_blocks": [0]})


def test_baseline_selections():
    assert evenly_spaced(4, 2) == [0, 3] and evenly_spaced(6, 3) == [0, 2, 5]
    assert evenly_spaced(5, 5) == [0, 1, 2, 3, 4]
    chosen = random_blocks(8, 4, seed=3)
    assert chosen == sorted(chosen) and len(set(chosen)) == 4
    assert chosen == random_blocks(8, 4, seed=3) != random_blocks(8, 4, seed=4)
    with pytest.raises(ValueError):
        evenly_spaced(3, 0)


def test_block_influence_finds_a_block_that_changes_nothing(flux):
    model = kept_model(flux, {name: range(len(blocks))
                              for name, blocks in block_lists(flux).items()})
    with torch.no_grad():  # single block 2 becomes the identity: its gated output is zero
        block = model.single_transformer_blocks[2]
        block.proj_out.weight.zero_()
        block.proj_out.bias.zero_()
    inputs = _inputs(model)
    scores = block_influence(model, lambda: model(**inputs))
    assert len(scores["transformer_blocks"]) == 2
    single = scores["single_transformer_blocks"]
    assert single[2] == pytest.approx(0, abs=1e-6)
    assert min(s for i, s in enumerate(single) if i != 2) > 1e-4
