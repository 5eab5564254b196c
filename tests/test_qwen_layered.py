"""Qwen-Image-Layered on tiny random components of its real classes, offline: the bugs of
diffusers' pipeline that ours fixes, and the decompose method built on it."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from layerstudio.decompose import auto_layer_count
from layerstudio.errors import InvalidInputError
from layerstudio.pipelines.qwen_layered import QwenLayeredPipeline, tiny_qwen_layered_components
from layerstudio.presets import PRESETS
from layerstudio.studio import Studio


@pytest.fixture(scope="module")
def pipe() -> QwenLayeredPipeline:
    made = QwenLayeredPipeline(**tiny_qwen_layered_components())
    made.set_progress_bar_config(disable=True)
    return made


PICTURE = np.random.default_rng(0).integers(0, 256, (64, 64, 4), dtype=np.uint8)


def _run(pipe, prompt, **options):
    options = {"layers": 2, "num_inference_steps": 2, "resolution": 64, "output_type": "np",
               "negative_prompt": " ", **options}
    return pipe(PICTURE, prompt, **options)


def test_masks_and_pictures_stay_with_their_prompts(pipe):
    """diffusers tiles masks and condition latents (p0, p1, p0, p1) against embeddings
    repeated (p0, p0, p1, p1); here each image equals the same prompt run alone."""
    prompts = ["a", "a much longer prompt about a poster"]
    seeds = [torch.Generator().manual_seed(s) for s in (1, 2, 3, 4)]
    batch = _run(pipe, prompts, num_images_per_prompt=2, generator=seeds).images
    assert batch.shape == (4, 2, 64, 64, 4)
    for index, (prompt, seed) in enumerate(zip([prompts[0]] * 2 + [prompts[1]] * 2,
                                               (1, 2, 3, 4), strict=True)):
        alone = _run(pipe, prompt, generator=torch.Generator().manual_seed(seed)).images[0]
        np.testing.assert_allclose(batch[index], alone, atol=2e-4)


def test_tensor_pictures_latent_output_and_clear_errors(pipe):
    as_tensor = torch.from_numpy(PICTURE).permute(2, 0, 1)[None].float() / 255
    from_tensor = _run(pipe, "a poster", generator=torch.Generator().manual_seed(0)).images
    again = pipe(as_tensor, "a poster", layers=2, num_inference_steps=2, resolution=64,
                 negative_prompt=" ", output_type="np",
                 generator=torch.Generator().manual_seed(0)).images
    np.testing.assert_allclose(again, from_tensor, atol=1 / 255)
    latents = _run(pipe, "a poster", output_type="latent",
                   generator=torch.Generator().manual_seed(0)).images
    decoded = pipe.decode_latents(latents, 64, 64, 2)
    np.testing.assert_allclose(decoded, from_tensor, atol=1e-5)
    assert decoded.min() >= 0.0 and decoded.max() <= 1.0
    with pytest.raises(ValueError, match="resolution must be a multiple of 32"):
        _run(pipe, "a poster", resolution=100)
    with pytest.raises(ValueError, match="give a prompt describing the picture"):
        _run(pipe, "")
    with pytest.raises(ValueError, match="layers must be a whole number"):
        _run(pipe, "a poster", layers=0)


def test_the_layers_come_back_as_a_stack(pipe):
    out = _run(pipe, "a poster", layers=3, output_type="pil")
    stack = out.layers[0]
    assert [layer.kind for layer in stack.layers] == ["background", "object", "object"]
    assert len(out.images[0]) == 3 and out.images[0][0].mode == "RGBA"
    assert stack.metadata["prompt"] == "a poster" and stack.metadata["layers"] == 3


@pytest.fixture
def studio_with_tiny_qwen(pipe, monkeypatch) -> Studio:
    """A Studio whose qwen-image-layered preset is the tiny pipeline at 64 px, 2 steps."""
    preset = PRESETS["qwen-image-layered"]
    monkeypatch.setitem(PRESETS, "qwen-image-layered",
                        dataclasses.replace(preset, resolution=64, steps=2))
    studio = Studio(device="cpu")
    studio._pipelines["qwen-image-layered"] = pipe
    return studio


def test_the_decompose_door_runs_the_model(studio_with_tiny_qwen):
    picture = np.random.default_rng(1).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    steps = []
    stack = studio_with_tiny_qwen.decompose(
        picture, method="qwen-image-layered", layers=3, prompt="a poster", seed=4,
        on_step=lambda done, total: steps.append((done, total)))
    assert stack.size == (80, 48) and len(stack) <= 3
    assert stack.metadata["method"] == "qwen-image-layered" and stack.metadata["seed"] == 4
    assert stack.metadata["asked_layers"] == 3 and steps == [(1, 2), (2, 2)]
    assert "recomposition_psnr" in stack.metadata
    auto = studio_with_tiny_qwen.decompose(picture, method="qwen-image-layered",
                                           prompt="a poster")
    assert auto.metadata["layers_rule"] == "auto"
    assert auto.metadata["asked_layers"] == auto_layer_count(picture / 255.0)
    with pytest.raises(InvalidInputError, match="give a prompt"):
        studio_with_tiny_qwen.decompose(picture, method="qwen-image-layered")
    with pytest.raises(InvalidInputError,
                       match="box is for methods 'classical', 'effects-classical'"):
        studio_with_tiny_qwen.decompose(picture, method="qwen-image-layered", box="0,0,8,8")


def test_without_the_weights_the_message_says_what_to_download():
    with pytest.raises(InvalidInputError, match="hf download Qwen/Qwen-Image-Layered"):
        Studio(device="cpu").decompose(PICTURE, method="qwen-image-layered", prompt="a")


SMOKE = """name = "tiny-layered-smoke"
seed = 0
[[stages]]
name = "vae"
task = "qwen_layered_vae"
steps = 2
batch_size = 2
learning_rate = 1e-3
save_every = 2
sample_every = 2
options = { max_layers = 3, statistics_scenes = 2 }
[[stages]]
name = "transformer"
task = "qwen_layered_transformer"
steps = 2
batch_size = 2
learning_rate = 1e-3
save_every = 2
sample_every = 2
options = { max_layers = 3 }
"""


def test_the_training_recipe_runs_and_exports_a_pipeline(tmp_path):
    from layerstudio.cli import main
    from layerstudio.pipelines.qwen_layered.training import layered_scene

    layers, composite = layered_scene(0, 1, max_layers=3)
    assert layers.shape[0] <= 3 and layers.shape[1:] == composite.shape == (4, 64, 64)
    recipe = tmp_path / "smoke.toml"
    recipe.write_text(SMOKE)
    out = tmp_path / "run"
    assert main(["train", str(recipe), "--output", str(out)]) == 0
    assert (out / "samples" / "transformer-000002.png").is_file()
    vae_config = json.loads((out / "vae" / "config.json").read_text())
    assert vae_config["latents_std"] != [1.0] * 4  # measured, not the defaults
    trained = QwenLayeredPipeline.from_pretrained(out, local_files_only=True,
                                                  dtype=torch.float32)
    trained.set_progress_bar_config(disable=True)
    made = trained(PICTURE, "the layers of this picture", layers=3, num_inference_steps=2,
                   resolution=64, output_type="np").images
    assert made.shape == (1, 3, 64, 64, 4)
