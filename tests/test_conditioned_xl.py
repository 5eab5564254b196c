"""The SDXL-shaped two-stage conditioned LayerDiffuse pipeline on tiny random SDXL-shaped
models, and the released ``layer_xl_*2ble`` / ``layer_xl_*ble2*`` files assembled offline."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from layerstudio.errors import InvalidInputError
from layerstudio.pipelines.latent_transparency import (
    ConditionedTransparencyXLPipeline,
    decode_opaque,
)
from layerstudio.pipelines.latent_transparency.conditioned_xl import on_grey
from layerstudio.tiny_models import tiny_sdxl_components, tiny_transparent_decoder, tiny_vae

BACKGROUND = np.full((64, 64, 3), (30, 90, 200), np.uint8)


def _foreground() -> np.ndarray:
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[20:44, 20:44] = (200, 40, 40, 255)
    return rgba


def _pipe(tokenizer, mode: str) -> ConditionedTransparencyXLPipeline:
    torch.manual_seed(0)
    parts = tiny_sdxl_components(tokenizer, in_channels=8)
    layer_unet = tiny_sdxl_components(tokenizer, in_channels=12)["unet"]
    pipe = ConditionedTransparencyXLPipeline(
        **parts, layer_unet=layer_unet, mode=mode,
        transparent_decoder=tiny_transparent_decoder() if mode == "bg2fg" else None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _widths(unet) -> list[int]:
    """Records the channel count conv_in sees on each call, and how much of the condition
    part is non-zero."""
    seen: list[tuple[int, float]] = []
    unet.conv_in.register_forward_pre_hook(
        lambda module, args: seen.append((args[0].shape[1], args[0][:, 4:].abs().sum().item())))
    return seen


@pytest.mark.parametrize("mode", ["bg2fg", "fg2bg"])
def test_two_stages_make_background_foreground_and_blend(tokenizer, tmp_path, mode):
    pipe = _pipe(tokenizer, mode)
    blend_calls, layer_calls = _widths(pipe.unet), _widths(pipe.layer_unet)
    condition = BACKGROUND if mode == "bg2fg" else _foreground()

    def run(**kw):
        return pipe(["a red apple", "a cat"], condition=condition, num_inference_steps=4,
                    height=64, width=64, guidance_scale=2.0,
                    generator=torch.Generator().manual_seed(0), **kw)

    first = run(stop_at=0.5)
    # 4 steps each, conditions only for the first half: 8 channels, then 12 (given + blend)
    assert [width for width, _ in blend_calls] == [8] * 4
    assert [width for width, _ in layer_calls] == [12] * 4
    for calls in (blend_calls, layer_calls):
        assert calls[0][1] > 0 and calls[1][1] > 0 and calls[2][1] == calls[3][1] == 0
    assert np.array_equal(np.asarray(first.images[1]), np.asarray(run(stop_at=0.5).images[1]))
    stack = first.layers[0]
    assert [layer.name for layer in stack.layers] == ["background", "foreground", "blend"]
    assert not stack.layers[2].visible and stack.layers[2].kind == "reference"
    generated = stack.layers[1 if mode == "bg2fg" else 0]
    assert generated.provenance["generated"] and generated.provenance["mode"] == mode
    if mode == "bg2fg":
        assert (stack.layers[0].pixels[..., :3] == (30, 90, 200)).all()
        assert first.images[0].mode == "RGBA"
    else:
        assert (stack.layers[0].pixels[..., 3] == 255).all()
        assert stack.layers[1].pixels.shape[:2] == (24, 24)  # the given object, cropped
    pipe.save_pretrained(tmp_path)
    again = ConditionedTransparencyXLPipeline.from_pretrained(tmp_path, local_files_only=True)
    assert again.config.mode == mode and again.layer_unet.config.in_channels == 12


def test_a_given_blend_skips_the_blend_stage(tokenizer):
    pipe = _pipe(tokenizer, "bg2fg")
    blend_calls, layer_calls = _widths(pipe.unet), _widths(pipe.layer_unet)
    blend = BACKGROUND.copy()
    blend[20:44, 20:44] = (250, 250, 0)
    out = pipe("a lemon", condition=BACKGROUND, blend=blend, num_inference_steps=2,
               height=64, width=64, generator=torch.Generator().manual_seed(0))
    assert blend_calls == [] and len(layer_calls) == 2  # the layer stage only
    assert out.layers[0].metadata["blend_given"] is True
    # the blend layer is the given picture, through the base VAE
    latent = pipe.encode_picture(blend, foreground=False) / pipe.vae.config.scaling_factor
    with torch.no_grad():
        expected = np.rint(decode_opaque(pipe.vae, latent)[0].permute(1, 2, 0).numpy() * 255)
    assert np.array_equal(out.layers[0].layers[2].pixels, expected.astype(np.uint8))


def test_bad_models_and_inputs_are_named(tokenizer):
    parts = tiny_sdxl_components(tokenizer, in_channels=8)
    with pytest.raises(ValueError, match="layer_unet takes 12 input channels"):
        ConditionedTransparencyXLPipeline(**parts, layer_unet=parts["unet"],
                                          transparent_decoder=tiny_transparent_decoder())
    twelve = tiny_sdxl_components(tokenizer, in_channels=12)["unet"]
    with pytest.raises(ValueError, match="needs a transparent_decoder"):
        ConditionedTransparencyXLPipeline(**parts, layer_unet=twelve, mode="bg2fg")
    pipe = _pipe(tokenizer, "fg2bg")
    with pytest.raises(ValueError, match="stop_at"):
        pipe("x", condition=_foreground(), stop_at=-0.1)
    with pytest.raises(ValueError, match="latents cannot be given"):
        pipe("x", condition=_foreground(), latents=torch.zeros(1, 4, 16, 16))


def test_foregrounds_are_shown_premultiplied_on_grey():
    rgba = np.array([[[255, 0, 0, 255], [255, 0, 0, 0], [0, 255, 255, 128]]], np.uint8)
    reference = 0.5 + (rgba[..., :3] / 255 - 0.5) * (rgba[..., 3:] / 255)  # the release's
    assert np.abs(on_grey(rgba) / 255 - reference).max() <= 0.5 / 255 + 1e-9


def test_a_half_precision_vae_that_asks_for_upcasting_runs_in_float32():
    from layerstudio.pipelines.latent_transparency.codec import encode_opaque

    vae = tiny_vae(force_upcast=True).to(torch.float16)
    seen = []
    vae.encoder.conv_in.register_forward_pre_hook(lambda m, args: seen.append(args[0].dtype))
    encode_opaque(vae, torch.zeros(1, 3, 64, 64))
    assert seen == [torch.float32] and vae.dtype == torch.float16


def test_the_sdxl_conditioned_releases_assemble_offline(tokenizer, tmp_path, monkeypatch):
    """Tiny SDXL stand-in + Forge-format files under the released names: conv_in widened
    by the ``::diff`` deltas (8 and 12 channels), LoRA pairs applied, end to end."""
    from diffusers import StableDiffusionXLPipeline

    from layerstudio.pipelines.latent_transparency import released

    torch.manual_seed(0)
    parts = tiny_sdxl_components(tokenizer)
    StableDiffusionXLPipeline(**parts, add_watermarker=False).save_pretrained(tmp_path / "base")
    patches = tmp_path / "layerdiffusion-v1"
    patches.mkdir()
    q = "transformer_blocks.0.attn1.to_q.weight"
    shape = parts["unet"].down_blocks[1].attentions[0].transformer_blocks[0].attn1.to_q.weight \
        .shape
    for name, channels in (("bg2ble", 8), ("bgble2fg", 12), ("fg2ble", 8), ("fgble2bg", 12)):
        save_file({"diffusion_model.input_blocks.0.0.weight::diff":
                   torch.full((32, channels, 3, 3), 0.01),
                   f"diffusion_model.input_blocks.3.1.{q}::lora::0": torch.ones(shape[0], 2),
                   f"diffusion_model.input_blocks.3.1.{q}::lora::1": torch.ones(2, shape[1])},
                  patches / f"layer_xl_{name}.safetensors")
    decoder = tiny_transparent_decoder()
    save_file(decoder.state_dict(), patches / "vae_transparent_decoder.safetensors")
    config = {k: v for k, v in decoder.config.items() if not k.startswith("_")}
    for kind in ("sdxl-bg2fg", "sdxl-fg2bg"):
        monkeypatch.setitem(released.RELEASES, kind, dataclasses.replace(
            released.RELEASES[kind], base=str(tmp_path / "base"),
            model_config={"decoder": config}))
    pipe = released.load_sdxl_bg2fg(str(patches), dtype=torch.float32)
    assert pipe.config.mode == "bg2fg"
    assert pipe.unet.config.in_channels == 8 and pipe.layer_unet.config.in_channels == 12
    base_conv = parts["unet"].conv_in.weight
    assert torch.allclose(pipe.layer_unet.conv_in.weight[:, :4], base_conv + 0.01)
    assert torch.allclose(pipe.layer_unet.conv_in.weight[:, 4:], torch.full((32, 8, 3, 3), .01))
    changed = pipe.unet.down_blocks[1].attentions[0].transformer_blocks[0].attn1.to_q.weight
    assert torch.allclose(changed, parts["unet"].down_blocks[1].attentions[0]
                          .transformer_blocks[0].attn1.to_q.weight + 2, atol=1e-5)
    pipe.set_progress_bar_config(disable=True)
    out = pipe("a red apple", condition=BACKGROUND, num_inference_steps=2, height=64, width=64,
               generator=torch.Generator().manual_seed(0))
    assert len(out.layers[0].layers) == 3
    back = released.load_sdxl_fg2bg(str(patches), dtype=torch.float32)
    assert back.config.mode == "fg2bg" and back.transparent_decoder is None
    (patches / "layer_xl_fgble2bg.safetensors").unlink()
    with pytest.raises(InvalidInputError, match=r"layer_xl_fgble2bg\.safetensors is missing"):
        released.load_sdxl_fg2bg(str(patches), dtype=torch.float32)


def test_studio_names_what_to_download_for_the_sdxl_conditioned_presets(monkeypatch):
    from layerstudio.studio import Studio

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InvalidInputError, match=r"layer_xl_bg2ble.*layer_xl_bgble2fg"):
        Studio().generate("a cat", mode="bg2fg", model="sdxl-layerdiffuse-bg2fg",
                          background=BACKGROUND)
    with pytest.raises(InvalidInputError, match="generates in mode 'fg2bg'"):
        Studio().generate("a cat", mode="bg2fg", model="sdxl-layerdiffuse-fg2bg",
                          background=BACKGROUND)
