"""LayerDiffuse pieces on tiny random models: padding, the two networks, the codec and the
SD1.5- and SDXL-shaped transparent pipelines."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from layerstudio import LayerStack
from layerstudio.pipelines.latent_transparency import (
    LatentTransparencyPipeline,
    LatentTransparencyXLPipeline,
    TransparentPipelineOutput,
    TransparentVAEDecoder,
    TransparentVAEEncoder,
    decode_rgba,
    encode_rgba,
    pad_rgb,
    premultiplied_on_grey,
    rgba_tensors,
)
from layerstudio.tiny_models import (
    tiny_sdxl_components,
    tiny_text_encoder,
    tiny_transparent_decoder,
    tiny_transparent_encoder,
    tiny_unet,
    tiny_vae,
)


def _disc(size: int = 32, colour=(200, 40, 40)) -> np.ndarray:
    """A red disc, opaque in the middle with a soft rim, on junk colour under alpha 0."""
    yy, xx = np.mgrid[:size, :size]
    distance = np.hypot(yy - size / 2, xx - size / 2)
    alpha = np.clip((size / 4 - distance) / 2 + 0.5, 0, 1)
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., :3] = (0, 255, 0)  # garbage where transparent
    rgba[alpha > 0, :3] = colour
    rgba[..., 3] = np.rint(alpha * 255)
    return rgba


def test_pad_rgb_fills_transparent_areas_from_the_nearest_colours():
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[:, :10] = (255, 0, 0, 255)   # red strip on the left
    rgba[:, 30:] = (0, 0, 255, 255)   # blue strip on the right
    rgba[:, 10:30, :3] = (0, 255, 0)  # green junk under alpha 0
    padded = pad_rgb(rgba)
    assert padded.shape == (40, 40, 3) and padded.dtype == np.float32
    assert np.allclose(padded[:, :10], (1, 0, 0)) and np.allclose(padded[:, 30:], (0, 0, 1))
    assert padded[:, 10:30, 1].max() < 1e-6  # the junk is gone
    near_red, near_blue = padded[20, 11], padded[20, 28]
    assert near_red[0] > near_red[2] and near_blue[2] > near_blue[0]
    assert np.all(np.diff(padded[20, 10:30, 0]) <= 1e-6)  # red fades towards the blue side
    assert np.allclose(pad_rgb(np.zeros((8, 8, 4), np.uint8)), 0)
    with pytest.raises(ValueError, match="RGBA"):
        pad_rgb(np.zeros((8, 8, 3), np.uint8))


def test_released_layouts_and_zero_starts():
    encoder, decoder = TransparentVAEEncoder(), TransparentVAEDecoder()
    names = list(encoder.state_dict())
    assert names[0] == "blocks.0.weight" and names[-1] == "blocks.16.bias"
    assert encoder.blocks[16].weight.shape == (4, 256, 3, 3)
    assert sum(p.numel() for p in decoder.parameters()) == pytest.approx(104.1e6, rel=0.01)
    assert decoder.latent_conv_in.weight.shape == (64, 4, 1, 1) and decoder.latent_stage == 3
    small = tiny_transparent_encoder()
    offset = small(torch.rand(2, 1, 64, 64), torch.rand(2, 3, 64, 64))
    assert offset.shape == (2, 4, 16, 16) and offset.abs().max() == 0  # zero-initialised
    with pytest.raises(ValueError, match="power of two"):
        TransparentVAEDecoder(vae_downsampling=6)


@pytest.mark.parametrize("build", [tiny_transparent_encoder, tiny_transparent_decoder])
def test_transparent_models_round_trip(build, tmp_path):
    torch.manual_seed(0)
    model = build()
    for parameter in model.parameters():  # break the zero init so the check means something
        parameter.data.normal_(0, 0.05)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    again = type(model).from_pretrained(tmp_path)
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name


def test_augmented_decode_is_the_median_of_eight_symmetric_passes():
    torch.manual_seed(0)
    decoder = tiny_transparent_decoder().eval()
    pixels, latent = torch.rand(1, 3, 64, 64), torch.randn(1, 4, 16, 16)
    single, median = decoder.decode(pixels, latent), decoder.decode(pixels, latent, True)
    assert single.shape == median.shape == (1, 4, 64, 64)
    assert median.min() >= 0 and median.max() <= 1 and not torch.equal(single, median)
    # the spec, written out: every rotation of the image and of its mirror, mapped back
    passes = []
    for mirror in (lambda x: x, lambda x: torch.flip(x, (3,))):
        for k in range(4):
            out = decoder.decode(torch.rot90(mirror(pixels), k, (2, 3)),
                                 torch.rot90(mirror(latent), k, (2, 3)))
            passes.append(mirror(torch.rot90(out, -k, (2, 3))))
    assert torch.allclose(median, torch.stack(passes).median(0).values, atol=1e-6)
    with pytest.raises(ValueError, match="multiples of 8"):
        decoder.decode(torch.rand(1, 3, 60, 60), torch.randn(1, 4, 15, 15))


def test_codec_untrained_offset_is_the_posterior_mean_and_shapes_hold():
    torch.manual_seed(0)
    vae, encoder, decoder = tiny_vae(), tiny_transparent_encoder(), tiny_transparent_decoder()
    rgba, padded = rgba_tensors([_disc(64), _disc(64, (20, 20, 220))])
    assert rgba.shape == (2, 4, 64, 64) and padded.shape == (2, 3, 64, 64)
    grey = premultiplied_on_grey(rgba)
    assert torch.allclose(grey[:, :, 0, 0], torch.zeros(2, 3))  # transparent -> mid grey
    with torch.no_grad():
        latent = encode_rgba(vae, encoder, rgba, padded)
        mean = vae.encode(grey).latent_dist.mean
        assert torch.allclose(latent, mean)  # zero-initialised encoder: no offset yet
        out = decode_rgba(vae, decoder, latent)
    assert out.shape == (2, 4, 64, 64) and out.min() >= 0 and out.max() <= 1


@pytest.fixture(scope="module")
def sd_pipe(tokenizer):
    from diffusers import DDIMScheduler

    torch.manual_seed(0)
    vocab = tokenizer.get_vocab()
    pipe = LatentTransparencyPipeline(
        vae=tiny_vae(), text_encoder=tiny_text_encoder(len(vocab), tokenizer.bos_token_id,
                                                       tokenizer.eos_token_id),
        tokenizer=tokenizer, unet=tiny_unet(), scheduler=DDIMScheduler(clip_sample=False),
        transparent_decoder=tiny_transparent_decoder(),
        transparent_encoder=tiny_transparent_encoder())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _generate(pipe, **kwargs):
    options = dict(num_inference_steps=2, height=64, width=64,
                   generator=torch.Generator().manual_seed(0))
    return pipe(["a red apple", "a cat face"], **{**options, **kwargs})


def test_sd_pipeline_returns_rgba_layers_deterministically(sd_pipe, tmp_path):
    first, second = _generate(sd_pipe), _generate(sd_pipe)
    assert isinstance(first, TransparentPipelineOutput)
    assert [image.mode for image in first.images] == ["RGBA", "RGBA"]
    assert all(np.array_equal(np.asarray(a), np.asarray(b))
               for a, b in zip(first.images, second.images, strict=True))
    stack = first.layers[1]
    assert isinstance(stack, LayerStack) and stack.size == (64, 64) and len(stack) == 1
    assert stack.layers[0].provenance["prompt"] == "a cat face"
    assert stack.metadata["pipeline"] == "LatentTransparencyPipeline"
    assert first.previews()[0].mode == "RGB"
    path = stack.save(tmp_path / "out.psd")
    assert len(LayerStack.load(path)) == 1


def test_sd_pipeline_round_trips_through_save_pretrained(sd_pipe, tmp_path):
    sd_pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["transparent_decoder"] == ["layerstudio.pipelines.latent_transparency.models",
                                            "TransparentVAEDecoder"]
    again = LatentTransparencyPipeline.from_pretrained(tmp_path, local_files_only=True)
    again.set_progress_bar_config(disable=True)
    a = _generate(sd_pipe, output_type="np").images
    b = _generate(again, output_type="np").images
    assert a.shape == (2, 64, 64, 4) and np.allclose(a, b, atol=1e-5)


def test_sd_pipeline_options(sd_pipe):
    steps = []
    result = sd_pipe("a rocket", num_inference_steps=3, height=64, width=64,
                     num_images_per_prompt=2, augment=True, return_dict=False,
                     callback_on_step_end=lambda pipe, i, t, kw: steps.append(i) or kw)
    images, stacks = result
    assert len(images) == len(stacks) == 2 and steps == [0, 1, 2]
    assert stacks[1].layers[0].provenance["prompt"] == "a rocket"
    with pytest.raises(ValueError, match="output_type"):
        _generate(sd_pipe, output_type="tensor")


def test_sdxl_shaped_pipeline_runs_end_to_end(tokenizer):
    torch.manual_seed(0)
    pipe = LatentTransparencyXLPipeline(**tiny_sdxl_components(tokenizer),
                                        transparent_decoder=tiny_transparent_decoder())
    pipe.set_progress_bar_config(disable=True)
    first, second = _generate(pipe), _generate(pipe)
    assert first.images[0].size == (64, 64) and first.images[0].mode == "RGBA"
    assert np.array_equal(np.asarray(first.images[1]), np.asarray(second.images[1]))
    assert first.layers[0].metadata["pipeline"] == "LatentTransparencyXLPipeline"


@pytest.mark.slow
def test_transparent_training_smoke_run(tmp_path):
    from layerstudio.cli import main

    recipe = tmp_path / "ld.toml"
    stage = ('[[stages]]\nname = "{name}"\ntask = "{task}"\nsteps = 2\nbatch_size = 2\n'
             'warmup_steps = 1\nema_decay = 0.9\nsave_every = 1\nsample_every = 2\n'
             'options = {{ pool = 8 }}\n')
    out = tmp_path / "run"
    recipe.write_text('name = "ld-smoke"\nseed = 0\n' +
                      stage.format(name="transparent-vae", task="transparent_vae") +
                      stage.format(name="unet", task="transparent_unet"))
    assert main(["train", str(recipe), "--output", str(out)]) == 0
    assert (out / "samples" / "transparent-vae-000002.png").is_file()
    pipe = LatentTransparencyPipeline.from_pretrained(out, local_files_only=True,
                                                      dtype=torch.float32)
    assert isinstance(pipe.transparent_decoder, TransparentVAEDecoder)
    assert pipe.transparent_decoder.dtype == torch.float32
    weights = out / "transparent_decoder" / "diffusion_pytorch_model.safetensors"
    assert weights.stat().st_size < 3 * 2**20  # fp16
    # a conditioned mode fine-tuned from that folder: conv_in widened to 8 channels
    from layerstudio.pipelines.latent_transparency import ConditionedTransparencyPipeline

    conditioned = tmp_path / "bg2fg"
    recipe.write_text('name = "bg2fg-smoke"\nseed = 0\n' + stage.format(
        name="bg2fg", task="conditioned_unet").replace(
        "pool = 8", f'pool = 8, mode = "bg2fg", base = "{out}"'))
    assert main(["train", str(recipe), "--output", str(conditioned)]) == 0
    assert (conditioned / "samples" / "bg2fg-000002.png").is_file()
    pipe = ConditionedTransparencyPipeline.from_pretrained(conditioned, local_files_only=True)
    assert pipe.config.mode == "bg2fg" and pipe.unet.config.in_channels == 8
    # the joint model: an attention-sharing adapter on a frozen U-Net (here the run's own)
    from layerstudio.pipelines.latent_transparency import JointTransparencyPipeline

    joint = tmp_path / "joint"
    recipe.write_text('name = "joint-smoke"\nseed = 0\n' + stage.format(
        name="joint", task="joint_unet").replace(
        "pool = 8", f'pool = 8, rank = 4, base = "{out}", unet_base = "{out}"'))
    assert main(["train", str(recipe), "--output", str(joint)]) == 0
    assert (joint / "samples" / "joint-000002.png").is_file()
    pipe = JointTransparencyPipeline.from_pretrained(joint, local_files_only=True)
    assert pipe.attention_sharing.config.rank == 4
    frozen = LatentTransparencyPipeline.from_pretrained(out, local_files_only=True).unet
    assert all(torch.equal(a, b) for a, b in zip(pipe.unet.state_dict().values(),
                                                  frozen.state_dict().values(), strict=True))


@pytest.mark.parametrize("mode", ["bg2fg", "fg2bg"])
def test_conditioned_pipeline_returns_background_and_foreground(tokenizer, tmp_path, mode):
    from diffusers import DDIMScheduler

    from layerstudio.pipelines.latent_transparency import ConditionedTransparencyPipeline

    torch.manual_seed(0)
    vocab = tokenizer.get_vocab()
    pipe = ConditionedTransparencyPipeline(
        vae=tiny_vae(), text_encoder=tiny_text_encoder(len(vocab), tokenizer.bos_token_id,
                                                       tokenizer.eos_token_id),
        tokenizer=tokenizer, unet=tiny_unet(in_channels=8),
        scheduler=DDIMScheduler(clip_sample=False),
        transparent_decoder=tiny_transparent_decoder(),
        transparent_encoder=tiny_transparent_encoder(), mode=mode)
    pipe.set_progress_bar_config(disable=True)
    condition = _disc(48) if mode == "fg2bg" else np.full((64, 64, 3), (30, 90, 200), np.uint8)
    seen = []
    handle = pipe.unet.conv_in.register_forward_pre_hook(  # what the U-Net's first conv sees
        lambda module, args: seen.append(args[0][:, 4:].abs().sum().item()))

    def run(**kw):
        return pipe(["a red apple", "a cat"], condition=condition, num_inference_steps=4,
                    height=64, width=64, generator=torch.Generator().manual_seed(0), **kw)

    first = run(stop_at=0.5)
    handle.remove()
    assert len(seen) == 4 and seen[0] > 0 and seen[1] > 0 and seen[2] == seen[3] == 0
    assert np.array_equal(np.asarray(first.images[1]), np.asarray(run(stop_at=0.5).images[1]))
    stack = first.layers[0]
    assert [layer.name for layer in stack.layers] == ["background", "foreground"]
    generated = stack.layers[1 if mode == "bg2fg" else 0]
    assert generated.provenance["generated"] and generated.provenance["mode"] == mode
    if mode == "bg2fg":
        assert (stack.layers[0].pixels[..., :3] == (30, 90, 200)).all()  # the given background
    else:
        assert (stack.layers[0].pixels[..., 3] == 255).all()  # a generated opaque background
    pipe.save_pretrained(tmp_path)
    again = ConditionedTransparencyPipeline.from_pretrained(tmp_path, local_files_only=True)
    assert again.config.mode == mode
    with pytest.raises(ValueError, match="stop_at"):
        run(stop_at=2.0)


def test_conditioned_pipeline_needs_a_widened_unet(tokenizer):
    from diffusers import DDIMScheduler

    from layerstudio.pipelines.latent_transparency import ConditionedTransparencyPipeline

    vocab = tokenizer.get_vocab()
    with pytest.raises(ValueError, match="8 input channels"):
        ConditionedTransparencyPipeline(
            vae=tiny_vae(), text_encoder=tiny_text_encoder(len(vocab), tokenizer.bos_token_id,
                                                           tokenizer.eos_token_id),
            tokenizer=tokenizer, unet=tiny_unet(), scheduler=DDIMScheduler(),
            transparent_decoder=tiny_transparent_decoder(),
            transparent_encoder=tiny_transparent_encoder())


def test_shipped_tiny_layerdiffuse_makes_clean_transparent_objects(monkeypatch):
    """The shipped preset, offline: its transparent VAE recovers held-out alpha, and what it
    generates is an object on transparency (opaque core, clear surroundings)."""
    from layerstudio.eval.transparency import alpha_reconstruction
    from layerstudio.presets import load_preset

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pipe = load_preset("tiny-layerdiffuse")
    assert isinstance(pipe, LatentTransparencyPipeline)
    assert alpha_reconstruction(pipe, 16)["native"]["alpha_soft_iou"] > 0.8
    pipe.set_progress_bar_config(disable=True)
    out = pipe(["a red apple", "a maple leaf"], num_inference_steps=20,
               generator=torch.Generator().manual_seed(0), output_type="np")
    again = pipe(["a red apple", "a maple leaf"], num_inference_steps=20,
                 generator=torch.Generator().manual_seed(0), output_type="np")
    assert np.array_equal(out.images, again.images)
    for image in out.images:
        alpha = image[..., 3]
        assert (alpha > 0.9).mean() > 0.05  # an object
        assert (alpha < 0.1).mean() > 0.3   # on transparency
        assert alpha[:2].mean() < 0.1 and alpha[-2:].mean() < 0.1  # clear top and bottom rows
