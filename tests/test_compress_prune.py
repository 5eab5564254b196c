"""`layerstudio prune` end to end (issue 23): on the shipped presets (their own training task),
on a public-shaped pipeline folder (calibrated on its own sampling runs), the folders it writes
(plain diffusers from_pretrained, no missing keys), and clear errors for bad requests."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from layerstudio.cli import main
from layerstudio.compress.depth import loaded_cleanly
from layerstudio.compress.prune import prune

CHEAP = ["--calib", "2", "--finetune-steps", "1", "--batch-size", "2"]


def test_prune_unet_on_the_shipped_transparency_preset(tmp_path, capsys):
    from diffusers import UNet2DConditionModel

    from layerstudio.pipelines.latent_transparency import LatentTransparencyPipeline

    out = tmp_path / "laptop"
    assert main(["prune", "unet", "--model", "tiny-layerdiffuse", "--ratio", "0.3", *CHEAP,
                 "-o", str(out)]) == 0
    assert "removed" in capsys.readouterr().out
    report = json.loads((out / "compression.json").read_text())
    assert report["method"] == "laptop" and report["objective"] == "recipe task"
    assert report["params"]["removed"] >= 0.3
    assert set(report["removed"]) <= set(report["units"])
    assert all("score" in unit for unit in report["units"].values())
    assert -1 <= report["additivity"]["correlation"] <= 1
    unet = loaded_cleanly(UNet2DConditionModel, out / "unet")  # plain diffusers class
    assert sum(p.numel() for p in unet.parameters()) == report["params"]["after"]
    pipe = LatentTransparencyPipeline.from_pretrained(out, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a red apple", num_inference_steps=2, height=64, width=64,
                 generator=torch.Generator().manual_seed(0)).images[0]
    assert image.mode == "RGBA" and image.size == (64, 64)


def test_prune_dit_with_tinyfusion_on_the_shipped_art_preset(tmp_path):
    from layerstudio.pipelines.anonymous_region import (
        AnonymousRegionPipeline,
        AnonymousRegionTransformer,
    )

    out = tmp_path / "tinyfusion"
    assert main(["prune", "dit", "--model", "tiny-art", "--learn-steps", "2", *CHEAP,
                 "-o", str(out)]) == 0
    report = json.loads((out / "compression.json").read_text())
    assert len(report["keep"]["transformer_blocks"]) == 1
    assert len(report["keep"]["single_transformer_blocks"]) == 2
    assert report["learning"]["steps"] == 2
    probabilities = [g["probability"] for g in report["learning"]["groups"]]
    assert [len(p) for p in probabilities] == [2, 6]  # 1:2 and 2:4 patterns
    transformer = loaded_cleanly(AnonymousRegionTransformer, out / "transformer")
    assert (transformer.config.num_layers, transformer.config.num_single_layers) == (1, 2)
    pipe = AnonymousRegionPipeline.from_pretrained(out, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    result = pipe("a cat and a dog", [(4, 4, 24, 24)], num_inference_steps=2,
                  generator=torch.Generator().manual_seed(0))
    assert result.rgba.shape[:2] == (1, 3)


def test_dit_baselines_on_a_flux_shaped_preset(tmp_path):
    from diffusers import FluxTransformer2DModel

    report = prune("tiny-dit", "dit", "bi", tmp_path / "bi", calib=2, finetune_steps=0,
                   progress=False)
    scores = report["influence"]
    assert len(scores["single_transformer_blocks"]) == 4
    kept = report["keep"]["single_transformer_blocks"]
    assert kept == sorted(np.argsort(scores["single_transformer_blocks"])[-2:].tolist())
    loaded_cleanly(FluxTransformer2DModel, tmp_path / "bi" / "transformer")
    evenly = prune("tiny-dit", "dit", "evenly", tmp_path / "evenly", calib=2,
                   finetune_steps=0, progress=False)
    assert evenly["keep"] == {"transformer_blocks": [1], "single_transformer_blocks": [0, 3]}


def test_prune_a_public_shaped_pipeline_folder_on_its_own_samples(tmp_path, tokenizer):
    """A pipeline with no recipe (an SD 1.5-shaped one, random): calibration records its
    sampling runs and retraining distils from them; plain diffusers loads the result."""
    from diffusers import StableDiffusionPipeline

    from layerstudio.tiny_models import tiny_sd_pipeline

    torch.manual_seed(0)
    pipe = tiny_sd_pipeline(tokenizer)
    pipe.save_pretrained(tmp_path / "sd")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat\na red apple\n")
    out = tmp_path / "pruned"
    assert main(["prune", "unet", "--model", str(tmp_path / "sd"), "--ratio", "0.2",
                 "--calib", "4", "--finetune-steps", "2", "--prompts", str(prompts),
                 "-o", str(out)]) == 0
    report = json.loads((out / "compression.json").read_text())
    assert report["objective"].startswith("sampling trajectories")
    assert report["retraining"]["loss_last"] is not None
    loaded = StableDiffusionPipeline.from_pretrained(out, dtype=torch.float32)
    assert sum(p.numel() for p in loaded.unet.parameters()) == report["params"]["after"]
    loaded.set_progress_bar_config(disable=True)
    loaded("a cat", num_inference_steps=2, height=64, width=64, output_type="np")


@pytest.mark.parametrize(("argv", "message"), [
    (["prune", "dit", "--model", "tiny-layerdiffuse"], "transformer_blocks"),
    (["prune", "unet", "--model", "tiny-art"], "U-Net"),
    (["prune", "unet", "--model", "tiny-layerdiffuse", "--ratio", "1.5"], "between 0 and 1"),
    (["prune", "unet", "--model", "tiny-layerdiffuse", "--method", "tinyfusion"],
     "laptop, handpicked"),
    (["prune", "unet", "--model", "no-such-model"], "neither a model preset"),
    (["prune", "dit", "--model", "tiny-art", "--ratio", "0.3"], "groups"),
])
def test_bad_prune_requests_get_a_clear_error(argv, message, tmp_path, capsys):
    assert main([*argv, *CHEAP, "-o", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
