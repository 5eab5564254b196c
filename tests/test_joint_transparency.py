"""Attention sharing and the joint (foreground + background + blend) pipeline, on tiny random
models: the maths against a plain re-derivation, the identity start, the ldm numbering of the
released files, loading them, and the pipeline end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from layerstudio.pipelines.latent_transparency import (
    AttentionSharingAdapter,
    JointTransparencyPipeline,
    load_released_attention_sharing,
    sharing_targets,
)
from layerstudio.pipelines.latent_transparency.convert import ldm_to_diffusers_key
from layerstudio.tiny_models import (
    tiny_text_encoder,
    tiny_transparent_decoder,
    tiny_transparent_encoder,
    tiny_unet,
    tiny_vae,
)
from layerstudio.tokenizer import build_tokenizer_files, caption_vocabulary, load_tokenizer


def _randomise(adapter: AttentionSharingAdapter, seed: int = 0) -> None:
    """Non-zero everywhere (a fresh adapter starts as the identity)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in adapter.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)


def _reference_unit(unit, attn, h: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
    """The released unit's forward written out with explicit loops (frames, heads, positions),
    returning ``modified - h`` as the reference does."""
    frames, heads = unit.frames, unit.heads

    def attention(q, k, v):  # (tokens, channels) each, one picture
        d = q.shape[-1] // heads
        out = []
        for i in range(heads):
            qs, ks, vs = (t[:, i * d:(i + 1) * d] for t in (q, k, v))
            out.append(torch.softmax(qs @ ks.T / math.sqrt(d), dim=-1) @ vs)
        return torch.cat(out, dim=-1)

    def lora(low, base, x):
        return x @ (base.weight + low.up.weight @ low.down.weight).T + (
            0 if base.bias is None else base.bias)

    modified = h.clone()
    for b in range(h.shape[0] // frames):
        for f in range(frames):
            row = b * frames + f
            x = h[row]
            c = x if context is None else context[row]
            q = lora(unit.to_q_lora[f], attn.to_q, x)
            k = lora(unit.to_k_lora[f], attn.to_k, c)
            v = lora(unit.to_v_lora[f], attn.to_v, c)
            modified[row] = x + lora(unit.to_out_lora[f], attn.to_out[0], attention(q, k, v))
    y = unit.temporal_i(unit.temporal_n(modified))
    temporal = torch.zeros_like(y)
    for b in range(h.shape[0] // frames):
        rows = slice(b * frames, (b + 1) * frames)
        for position in range(h.shape[1]):
            z = y[rows, position]  # (frames, channels): attention across the frames
            out = attention(unit.temporal_q(z), unit.temporal_k(z), unit.temporal_v(z))
            temporal[rows, position] = unit.temporal_o(out)
    return modified + temporal - h


@pytest.mark.parametrize("cross", [False, True])
def test_unit_matches_the_reference_formula(cross):
    torch.manual_seed(0)
    unet = tiny_unet().eval()
    adapter = AttentionSharingAdapter.for_unet(unet, frames=3, rank=4)
    _randomise(adapter)
    name = sharing_targets(unet)[1 if cross else 0]
    unit = adapter.layers[1 if cross else 0]
    attn = unet.get_submodule(name)
    h = torch.randn(6, 16, attn.to_q.in_features)
    context = torch.randn(6, 5, attn.to_k.in_features) if cross else None
    with torch.no_grad():
        assert torch.allclose(unit(attn, h, context), _reference_unit(unit, attn, h, context),
                              atol=1e-4)


def test_fresh_adapter_is_the_identity_and_a_trained_one_shares_across_frames():
    torch.manual_seed(0)
    unet = tiny_unet().eval()
    latents, text = torch.randn(6, 4, 16, 16), torch.randn(6, 7, 128)
    steps = torch.full((6,), 500)
    with torch.no_grad():
        base = unet(latents, steps, text).sample
        adapter = AttentionSharingAdapter.for_unet(unet, rank=4)
        adapter.attach(unet)
        assert torch.allclose(unet(latents, steps, text).sample, base, atol=1e-5)
        _randomise(adapter)
        shared = unet(latents, steps, text).sample
        changed = latents.clone()
        changed[1] += 1.0  # only the background frame of the first picture
        moved = unet(changed, steps, text).sample
        # the foreground of picture 1 feels its background; picture 2 feels nothing
        assert (moved[0] - shared[0]).abs().max() > 1e-3
        assert torch.allclose(moved[3:], shared[3:], atol=1e-5)
        with pytest.raises(ValueError, match="groups of 3"):
            unet(latents[:4], steps[:4], text[:4])
        AttentionSharingAdapter.detach(unet)
        assert torch.allclose(unet(latents, steps, text).sample, base, atol=1e-5)
    assert not any("lora" in key or "temporal" in key for key in unet.state_dict())


def _sd15_shaped_unet():
    """SD 1.5's block layout (4 levels, attention in the first three, 2 layers each) at a tiny
    width, to check the numbering the released files use."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(32, 32, 64, 64), norm_num_groups=16, cross_attention_dim=32,
        attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)


# the released SD 1.5 numbering of the 32 units (lib_layerdiffusion's module mapping)
RELEASED_ORDER = [f"{block}.1.transformer_blocks.0.{attn}"
                  for block in ([f"input_blocks.{n}" for n in (1, 2, 4, 5, 7, 8)] +
                                [f"output_blocks.{n}" for n in range(3, 12)] +
                                ["middle_block"])
                  for attn in ("attn1", "attn2")]


def test_units_are_numbered_as_the_released_sd15_files():
    unet = _sd15_shaped_unet()
    up = tuple("CrossAttn" in kind for kind in unet.config.up_block_types)
    expected = [ldm_to_diffusers_key(name.replace("middle_block", "middle_block") + ".to_q.w",
                                     2, up).removesuffix(".to_q.w") for name in RELEASED_ORDER]
    assert sharing_targets(unet) == expected and len(expected) == 32


def test_released_file_loads_strictly(tmp_path):
    unet = _sd15_shaped_unet()
    made = AttentionSharingAdapter.for_unet(unet, frames=3, rank=8)
    _randomise(made, seed=3)
    path = tmp_path / "layer_sd15_joint.safetensors"
    save_file({f"hookers.{k}": v.contiguous() for k, v in made.state_dict().items()}, path)
    adapter = AttentionSharingAdapter.for_unet(unet, frames=3, rank=8)
    load_released_attention_sharing(adapter, load_file(path))
    assert all(torch.equal(a, b) for a, b in zip(adapter.state_dict().values(),
                                                  made.state_dict().values(), strict=True))
    state = load_file(path)
    with pytest.raises(ValueError, match="does not fit"):
        load_released_attention_sharing(AttentionSharingAdapter.for_unet(tiny_unet(), rank=8),
                                        state)
    with pytest.raises(ValueError, match="shape"):
        load_released_attention_sharing(AttentionSharingAdapter.for_unet(unet, rank=4), state)
    state["kwargs_encoder.blocks_0.0.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="control"):
        load_released_attention_sharing(adapter, state)
    with pytest.raises(ValueError, match="attention modules"):
        adapter.attach(tiny_unet())


@pytest.fixture(scope="module")
def joint_pipe(tmp_path_factory):
    from diffusers import DDIMScheduler

    folder = tmp_path_factory.mktemp("tok")
    build_tokenizer_files(folder, caption_vocabulary())
    tokenizer = load_tokenizer(folder)
    vocab = tokenizer.get_vocab()
    torch.manual_seed(0)
    unet = tiny_unet()
    adapter = AttentionSharingAdapter.for_unet(unet, rank=4)
    _randomise(adapter)
    pipe = JointTransparencyPipeline(
        vae=tiny_vae(), text_encoder=tiny_text_encoder(len(vocab), tokenizer.bos_token_id,
                                                       tokenizer.eos_token_id),
        tokenizer=tokenizer, unet=unet, scheduler=DDIMScheduler(clip_sample=False),
        transparent_decoder=tiny_transparent_decoder(),
        transparent_encoder=tiny_transparent_encoder(), attention_sharing=adapter)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _run(pipe, **kw):
    return pipe(["an ice cream on a beach", "a cat on grass"],
                foreground_prompt=["an ice cream", "a cat"], background_prompt="a beach",
                num_inference_steps=3, height=64, width=64,
                generator=torch.Generator().manual_seed(1), **kw)


def test_joint_pipeline_makes_a_layered_picture(joint_pipe, tmp_path):
    seen = []

    def spy(pipe, step, timestep, tensors):
        seen.append(tensors["latents"].shape[0])
        return tensors

    out = _run(joint_pipe, callback_on_step_end=spy)
    assert seen == [6, 6, 6]  # two pictures x three frames, through the whole loop
    assert len(out.images) == 6 and out.images[0].mode == "RGBA"
    stack = out.layers[1]
    assert [layer.name for layer in stack.layers] == ["background", "foreground",
                                                      "blend (as generated)"]
    assert (stack.layers[0].pixels[..., 3] == 255).all() and not stack.layers[2].visible
    assert stack.metadata["foreground_prompt"] == "a cat"
    assert stack.metadata["background_prompt"] == "a beach"
    again = _run(joint_pipe)
    assert np.array_equal(np.asarray(again.images[3]), np.asarray(out.images[3]))
    joint_pipe.save_pretrained(tmp_path)
    loaded = JointTransparencyPipeline.from_pretrained(tmp_path, local_files_only=True)
    loaded.set_progress_bar_config(disable=True)
    reloaded = _run(loaded)
    assert np.abs(np.asarray(reloaded.images[4], int) - np.asarray(out.images[4], int)).max() <= 1
    with pytest.raises(ValueError, match="prompt has 2 entries, expected 1 or 3"):
        joint_pipe(["a", "b"], foreground_prompt=["x", "y", "z"], num_inference_steps=1)


def test_sharing_survives_processor_resets_and_a_detached_unet_is_refused(joint_pipe):
    before = _run(joint_pipe, output_type="np").images
    joint_pipe.unet.set_default_attn_processor()  # what diffusers users call before xFormers
    np.testing.assert_allclose(_run(joint_pipe, output_type="np").images, before, atol=1e-5)
    AttentionSharingAdapter.detach(joint_pipe.unet)
    try:
        with pytest.raises(ValueError, match="attention sharing"):
            _run(joint_pipe)
    finally:
        joint_pipe.attention_sharing.attach(joint_pipe.unet)
    assert joint_pipe.attention_sharing.is_attached(joint_pipe.unet)


def test_one_generator_per_picture(joint_pipe):
    seeds = [torch.Generator().manual_seed(s) for s in (3, 4, 5, 6)]
    four = joint_pipe(["a beach", "grass"], num_images_per_prompt=2, num_inference_steps=2,
                      height=64, width=64, generator=seeds, output_type="np")
    assert four.images.shape == (12, 64, 64, 4) and len(four.layers) == 4
    assert [stack.metadata["prompt"] for stack in four.layers] == [
        "a beach", "a beach", "grass", "grass"]
    third = joint_pipe("grass", num_inference_steps=2, height=64, width=64,
                       generator=torch.Generator().manual_seed(5), output_type="np")
    np.testing.assert_allclose(four.images[6:9], third.images, atol=1e-5)
    with pytest.raises(ValueError, match="one per picture"):
        joint_pipe(["a", "b"], num_inference_steps=1, generator=seeds[:3])
    with pytest.raises(ValueError, match="3 rows per picture"):
        joint_pipe(prompt_embeds=torch.zeros(4, 77, 128), num_inference_steps=1)
