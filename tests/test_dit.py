"""Rectified-flow maths and the MMDiT text-to-image pipeline on tiny random models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from layerstudio.cli import main
from layerstudio.pipelines.dit_text_to_image import DiTPipelineOutput, DiTTextToImagePipeline
from layerstudio.pipelines.flow_matching import (
    image_ids,
    logit_normal_sigmas,
    noisy_latents,
    pack_latents,
    schedule_shift,
    shifted,
    unpack_latents,
    velocity_target,
)
from layerstudio.tiny_models import tiny_flux, tiny_text_encoder, tiny_vae
from layerstudio.tokenizer import build_tokenizer_files, caption_vocabulary, load_tokenizer


def test_packing_round_trips_and_matches_flux():
    from diffusers import FluxPipeline

    latents = torch.randn(2, 4, 6, 8)
    packed = pack_latents(latents)
    assert packed.shape == (2, 12, 16)
    assert torch.equal(unpack_latents(packed, 6, 8), latents)
    assert torch.equal(packed, FluxPipeline._pack_latents(latents, 2, 4, 6, 8))
    with pytest.raises(ValueError, match="even"):
        pack_latents(torch.zeros(1, 4, 5, 4))


def test_image_ids_are_layer_row_column():
    ids = image_ids(4, 6, layer=3)
    assert ids.shape == (6, 3)
    assert ids[:, 0].eq(3).all()
    assert ids[4].tolist() == [3, 1, 1]  # second row, second column of a 2 x 3 token grid


def test_time_shift_matches_flux_and_its_scheduler():
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True)
    for tokens in (64, 256, 1024, 4096):
        assert schedule_shift(tokens, scheduler.config) == pytest.approx(calculate_shift(tokens))
    sigmas = np.linspace(1.0, 0.1, 10)
    scheduler.set_timesteps(sigmas=sigmas, mu=0.8)
    expected = shifted(torch.tensor(sigmas), 0.8).float()
    assert torch.allclose(scheduler.sigmas[:-1], expected, atol=1e-6)


def test_exact_velocity_reaches_the_data_in_one_euler_step():
    x0, noise = torch.randn(3, 5, 8), torch.randn(3, 5, 8)
    sigmas = torch.tensor([1.0, 0.6, 0.2])
    xt = noisy_latents(x0, noise, sigmas)
    assert torch.allclose(xt[0], noise[0])
    # Euler from sigma to 0 along the true velocity lands on x0 (the flow is straight)
    back = xt - sigmas.view(-1, 1, 1) * velocity_target(x0, noise)
    assert torch.allclose(back, x0, atol=1e-6)


def test_training_sigmas_are_in_range_and_shift_upward():
    generator = torch.Generator().manual_seed(0)
    plain = logit_normal_sigmas(4000, generator=torch.Generator().manual_seed(0))
    more = logit_normal_sigmas(4000, generator=generator, mu=1.0)
    assert plain.min() > 0 and plain.max() < 1
    assert abs(plain.median().item() - 0.5) < 0.03
    assert more.median() > plain.median() + 0.15


@pytest.fixture(scope="module")
def tiny_pipe(tmp_path_factory):
    from diffusers import FlowMatchEulerDiscreteScheduler

    folder = tmp_path_factory.mktemp("tokenizer")
    build_tokenizer_files(folder, caption_vocabulary())
    tokenizer = load_tokenizer(folder)
    torch.manual_seed(0)
    pipe = DiTTextToImagePipeline(
        vae=tiny_vae(), text_encoder=tiny_text_encoder(len(tokenizer.get_vocab()),
                                                       tokenizer.bos_token_id,
                                                       tokenizer.eos_token_id),
        tokenizer=tokenizer, transformer=tiny_flux(),
        scheduler=FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _run(pipe, **kwargs):
    options = dict(num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                   output_type="np")
    return pipe(["a red apple", "a cat face"], **{**options, **kwargs}).images


def test_pipeline_is_deterministic_and_round_trips(tiny_pipe, tmp_path):
    first, second = _run(tiny_pipe), _run(tiny_pipe)
    assert first.shape == (2, 64, 64, 3) and np.array_equal(first, second)
    assert not np.array_equal(first[0], first[1])
    tiny_pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["transformer"] == ["diffusers", "FluxTransformer2DModel"]
    again = DiTTextToImagePipeline.from_pretrained(tmp_path, local_files_only=True)
    again.set_progress_bar_config(disable=True)
    assert np.allclose(_run(again), first, atol=1e-5)


def test_pipeline_outputs_guidance_and_callbacks(tiny_pipe):
    seen = []

    def callback(pipe, step, timestep, tensors):
        seen.append((step, tuple(tensors["latents"].shape)))
        return {"latents": tensors["latents"]}

    result = tiny_pipe("a rocket", num_inference_steps=3, height=32, width=96,
                       generator=torch.Generator().manual_seed(1),
                       callback_on_step_end=callback)
    assert isinstance(result, DiTPipelineOutput) and result.images[0].size == (96, 32)
    assert seen == [(0, (1, 48, 16)), (1, (1, 48, 16)), (2, (1, 48, 16))]  # 4 x 12 tokens
    unguided = _run(tiny_pipe, guidance_scale=1.0)
    assert not np.allclose(unguided, _run(tiny_pipe))
    latents = _run(tiny_pipe, output_type="latent")
    assert latents.shape == (2, 4, 16, 16)
    pt = _run(tiny_pipe, output_type="pt", num_images_per_prompt=2)
    assert pt.shape == (4, 3, 64, 64) and pt.min() >= 0 and pt.max() <= 1


@pytest.mark.parametrize("kwargs, message", [
    ({"height": 36}, "multiples of 8"),
    ({"output_type": "gif"}, "output_type"),
    ({"negative_prompt": ["x", "y", "z"]}, "negative_prompt"),
    ({"callback_on_step_end_tensor_inputs": ("noise",)}, "callback tensors"),
])
def test_pipeline_rejects_bad_arguments(tiny_pipe, kwargs, message):
    with pytest.raises(ValueError, match=message):
        _run(tiny_pipe, **kwargs)


@pytest.mark.slow
def test_dit_training_smoke_run(tmp_path):
    recipe = tmp_path / "dit.toml"
    recipe.write_text('name = "dit-smoke"\nseed = 0\n[[stages]]\nname = "dit"\n'
                      'task = "dit_text_to_image"\nsteps = 2\nbatch_size = 2\n'
                      'warmup_steps = 1\nema_decay = 0.9\nsave_every = 1\nsample_every = 2\n'
                      'options = { kinds = ["transparent"], pool = 8 }\n')
    out = tmp_path / "run"
    assert main(["train", str(recipe), "--output", str(out)]) == 0
    assert (out / "samples" / "dit-000002.png").is_file()
    pipe = DiTTextToImagePipeline.from_pretrained(out, local_files_only=True,
                                                  dtype=torch.float32)
    assert pipe.transformer.config.num_layers == 2
    assert next((out / "transformer").glob("*.safetensors")).stat().st_size < 8 * 2**20
    assert main(["train", str(recipe), "--output", str(out), "--steps", "3", "--resume"]) == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [2, 3]
