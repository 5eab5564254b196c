"""Released LayerDiffuse U-Net patches -> diffusers: the ldm key map, Forge LoRA/diff files and
dense diffusers deltas, on synthetic files with the real key names and tiny shapes."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import save_file

from layerstudio import InvalidInputError
from layerstudio.pipelines.latent_transparency import convert
from layerstudio.pipelines.latent_transparency.convert import (
    apply_deltas,
    forge_to_diffusers_deltas,
    ldm_to_diffusers_key,
    load_unet_patch,
)

SDXL_UP = (True, True, False)
SD15_UP = (False, True, True, True)


@pytest.mark.parametrize("ldm, diffusers, up", [
    # SDXL (layers_per_block 2; attention in down levels 1-2 and up levels 0-1)
    ("input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight",
     "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight", SDXL_UP),
    ("input_blocks.8.1.transformer_blocks.9.attn2.to_k.weight",
     "down_blocks.2.attentions.1.transformer_blocks.9.attn2.to_k.weight", SDXL_UP),
    ("input_blocks.3.0.op.weight", "down_blocks.0.downsamplers.0.conv.weight", SDXL_UP),
    ("input_blocks.5.0.skip_connection.weight",
     "down_blocks.1.resnets.1.conv_shortcut.weight", SDXL_UP),
    ("middle_block.1.proj_in.weight", "mid_block.attentions.0.proj_in.weight", SDXL_UP),
    ("middle_block.2.emb_layers.1.bias", "mid_block.resnets.1.time_emb_proj.bias", SDXL_UP),
    ("output_blocks.2.2.conv.weight", "up_blocks.0.upsamplers.0.conv.weight", SDXL_UP),
    ("output_blocks.5.1.norm.weight", "up_blocks.1.attentions.2.norm.weight", SDXL_UP),
    ("output_blocks.8.2.conv.bias", "up_blocks.2.upsamplers.0.conv.bias", SD15_UP),
    ("output_blocks.7.0.out_layers.3.weight", "up_blocks.2.resnets.1.conv2.weight", SDXL_UP),
    ("label_emb.0.2.weight", "add_embedding.linear_2.weight", SDXL_UP),
    ("input_blocks.0.0.weight", "conv_in.weight", SDXL_UP),
    # SD 1.5 (up level 0 has no attention, so its upsampler is entry 1)
    ("output_blocks.2.1.conv.weight", "up_blocks.0.upsamplers.0.conv.weight", SD15_UP),
    ("output_blocks.5.2.conv.weight", "up_blocks.1.upsamplers.0.conv.weight", SD15_UP),
    ("input_blocks.1.1.proj_out.weight", "down_blocks.0.attentions.0.proj_out.weight",
     SD15_UP),
    ("time_embed.0.weight", "time_embedding.linear_1.weight", SD15_UP),
])
def test_ldm_key_map_matches_the_standard_conversion(ldm, diffusers, up):
    assert ldm_to_diffusers_key(ldm, 2, up) == diffusers


def test_unknown_keys_are_rejected():
    with pytest.raises(InvalidInputError, match="unrecognised"):
        ldm_to_diffusers_key("first_stage_model.decoder.conv_in.weight", 2, SDXL_UP)


def _unet():
    """SDXL-shaped: 3 levels of widths 32/48/64, attention in levels 1-2, 2 layers each."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(32, 48, 64), norm_num_groups=16, cross_attention_dim=32,
        attention_head_dim=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"))


# (ldm key, diffusers target) pairs covering every level of the tiny U-Net
TARGETS = {
    "input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight":
        "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight",
    "input_blocks.8.1.transformer_blocks.0.attn2.to_v.weight":
        "down_blocks.2.attentions.1.transformer_blocks.0.attn2.to_v.weight",
    "middle_block.1.transformer_blocks.0.attn1.to_k.weight":
        "mid_block.attentions.0.transformer_blocks.0.attn1.to_k.weight",
    "output_blocks.1.1.transformer_blocks.0.attn1.to_out.0.weight":
        "up_blocks.0.attentions.1.transformer_blocks.0.attn1.to_out.0.weight",
    "output_blocks.5.1.proj_in.weight": "up_blocks.1.attentions.2.proj_in.weight",
    "output_blocks.2.2.conv.weight": "up_blocks.0.upsamplers.0.conv.weight",
}


def _forge_file(unet, rank: int = 4) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A Forge-format patch for ``unet`` and the dense deltas it stands for."""
    parameters = dict(unet.named_parameters())
    state, expected = {}, {}
    generator = torch.Generator().manual_seed(1)
    for ldm, target in TARGETS.items():
        shape = parameters[target].shape
        up = torch.randn(shape[0], rank, *([1] * (len(shape) - 2)), generator=generator)
        down = torch.randn(rank, *shape[1:], generator=generator)
        state[f"diffusion_model.{ldm}::lora::0"] = up
        state[f"diffusion_model.{ldm}::lora::1"] = down
        expected[target] = (up.flatten(1) @ down.flatten(1)).reshape(shape)
    # the conditioned models widen conv_in to take condition latents: a dense ::diff delta
    conv = torch.randn(32, 8, 3, 3, generator=generator)
    state["diffusion_model.input_blocks.0.0.weight::diff"] = conv
    expected["conv_in.weight"] = conv
    return state, expected


def test_forge_patch_adds_up_times_down_to_the_right_layers(tmp_path):
    unet = _unet()
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    state, expected = _forge_file(unet)
    save_file(state, tmp_path / "layer_xl_fg2ble.safetensors")
    assert load_unet_patch(unet, tmp_path / "layer_xl_fg2ble.safetensors") == len(expected)
    after = unet.state_dict()
    for target, delta in expected.items():
        if target == "conv_in.weight":
            continue
        assert torch.allclose(after[target] - before[target], delta, atol=1e-4), target
    untouched = "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_k.weight"
    assert torch.equal(after[untouched], before[untouched])
    # conv_in now takes 8 channels: the old 4 plus the delta, the new 4 only the delta
    assert unet.config.in_channels == 8 and unet.conv_in.weight.shape == (32, 8, 3, 3)
    widened = before["conv_in.weight"]
    assert torch.allclose(after["conv_in.weight"][:, :4], widened + expected["conv_in.weight"]
                          [:, :4], atol=1e-5)
    assert torch.allclose(after["conv_in.weight"][:, 4:], expected["conv_in.weight"][:, 4:])
    out = unet(torch.randn(1, 8, 16, 16), 10, torch.randn(1, 5, 32)).sample
    assert out.shape == (1, 4, 16, 16)


def test_a_swapped_block_map_is_caught(monkeypatch):
    unet = _unet()
    state, _ = _forge_file(unet)
    # the classic mistake: levels counted without the downsampler entry ((N-1)//2, not //3)
    monkeypatch.setattr(convert, "_layout", lambda unet: (1, (True, True, False)))
    with pytest.raises(InvalidInputError, match="does not fit"):
        apply_deltas(unet, forge_to_diffusers_deltas(state, unet))


def test_dense_diffusers_deltas_and_bad_files(tmp_path):
    unet = _unet()
    target = "down_blocks.2.attentions.0.transformer_blocks.0.attn2.to_q.weight"
    before = unet.state_dict()[target].clone()
    delta = torch.full_like(before, 0.25)
    save_file({target: delta}, tmp_path / "ld_diffusers.safetensors")
    assert load_unet_patch(unet, tmp_path / "ld_diffusers.safetensors") == 1
    assert torch.allclose(unet.state_dict()[target], before + 0.25)
    save_file({target: torch.zeros(3, 3)}, tmp_path / "wrong.safetensors")
    with pytest.raises(InvalidInputError, match=r"patch \(3, 3\)"):
        load_unet_patch(unet, tmp_path / "wrong.safetensors")
    half = {"diffusion_model.middle_block.1.proj_in.weight::lora::0": torch.zeros(64, 2, 1, 1)}
    with pytest.raises(InvalidInputError, match="lacks its down"):
        forge_to_diffusers_deltas(half, unet)
    with pytest.raises(InvalidInputError, match="pickled"):
        load_unet_patch(unet, tmp_path / "model.ckpt")


def test_a_release_assembles_offline_from_local_folders(tmp_path, monkeypatch):
    """The released-checkpoint path end to end, with tiny stand-ins for SD 1.5 and the
    LayerDiffuse files under their real names."""
    from layerstudio.pipelines.latent_transparency import released
    from layerstudio.presets import load_preset
    from layerstudio.tiny_models import tiny_sd_pipeline, tiny_transparent_decoder
    from layerstudio.tokenizer import build_tokenizer_files, caption_vocabulary, load_tokenizer

    # the public preset names what to download when nothing is cached
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InvalidInputError, match=r"layer_sd15_transparent_attn.*base model"):
        load_preset("sd15-layerdiffuse")
    build_tokenizer_files(tmp_path / "tok", caption_vocabulary())
    tokenizer = load_tokenizer(tmp_path / "tok")
    torch.manual_seed(0)
    base = tiny_sd_pipeline(tokenizer)
    unet = base.unet
    base.save_pretrained(tmp_path / "base")
    patches = tmp_path / "layerdiffusion-v1"
    patches.mkdir()
    # tiny U-Net: one layer per block, attention in down levels 1-2 and up levels 0-1
    q = "transformer_blocks.0.attn1.to_q.weight"
    shape = unet.down_blocks[1].attentions[0].transformer_blocks[0].attn1.to_q.weight.shape
    save_file({f"diffusion_model.input_blocks.3.1.{q}::lora::0": torch.ones(shape[0], 2),
               f"diffusion_model.input_blocks.3.1.{q}::lora::1": torch.ones(2, shape[1])},
              patches / "layer_sd15_transparent_attn.safetensors")
    decoder = tiny_transparent_decoder()
    save_file(decoder.state_dict(), patches / "layer_sd15_vae_transparent_decoder.safetensors")
    config = {k: v for k, v in decoder.config.items() if not k.startswith("_")}
    tiny = dataclasses.replace(released.RELEASES["sd15"], base=str(tmp_path / "base"),
                               model_config={"decoder": config})
    monkeypatch.setitem(released.RELEASES, "sd15", tiny)
    pipe = released.load_released("sd15", str(patches), dtype=torch.float32)
    changed = pipe.unet.down_blocks[1].attentions[0].transformer_blocks[0].attn1.to_q.weight
    assert torch.allclose(changed, unet.down_blocks[1].attentions[0].transformer_blocks[0]
                          .attn1.to_q.weight + 2, atol=1e-5)
    pipe.set_progress_bar_config(disable=True)
    out = pipe("a red apple", num_inference_steps=2, height=64, width=64,
               generator=torch.Generator().manual_seed(0))
    assert out.images[0].mode == "RGBA"
    # the joint release: an attention-sharing file (keys hookers.layers.N...) on the same base
    from layerstudio.pipelines.latent_transparency import (
        AttentionSharingAdapter,
        JointTransparencyPipeline,
    )

    made = AttentionSharingAdapter.for_unet(unet, frames=3, rank=6)
    save_file({f"hookers.{k}": v for k, v in made.state_dict().items()},
              patches / "layer_sd15_joint.safetensors")
    monkeypatch.setitem(released.RELEASES, "sd15-joint", dataclasses.replace(
        released.RELEASES["sd15-joint"], base=str(tmp_path / "base"),
        model_config={"decoder": config}))
    joint = released.load_sd15_joint(str(patches), dtype=torch.float32)
    assert isinstance(joint, JointTransparencyPipeline)
    assert joint.attention_sharing.config.rank == 6  # read from the file
    save_file({"hookers.layers.0.to_q_lora.0.down.weight": torch.zeros(6, 3)},
              patches / "layer_sd15_joint.safetensors")
    with pytest.raises(InvalidInputError, match="does not fit"):
        released.load_sd15_joint(str(patches), dtype=torch.float32)
