"""Loading the released LayerDiffuse U-Net patches into diffusers U-Nets.

Two formats exist:

- ``LayerDiffusion/layerdiffusion-v1`` (Forge): keys ``diffusion_model.<ldm key>::lora::0``
  (up, rank 256) and ``...::lora::1`` (down), whose product is the weight delta, and
  ``...::diff`` (a dense delta; a conv_in delta with more input channels than the model widens
  it, zero-padded, for the conditioned modes);
- ``lllyasviel/LayerDiffuse_Diffusers``: dense deltas already under diffusers key names.

The ldm names map to diffusers names with the standard rule (the one diffusers' single-file
loader uses): the ldm U-Net numbers its down path as a flat list ``input_blocks.N`` with
``layers_per_block`` resnet(+attention) entries and one downsampler per level, so entry N >= 1
is level ``(N - 1) // (layers_per_block + 1)``, position ``(N - 1) % (layers_per_block + 1)``;
up blocks have one more entry per level. Getting this wrong loads silently into the wrong
layers, so every delta is shape-checked against its target and a missing target is an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from layerstudio.errors import InvalidInputError

__all__ = ["apply_deltas", "forge_to_diffusers_deltas", "ldm_to_diffusers_key",
           "load_unet_patch", "widen_conv_in"]

_RESNET = (("in_layers.0", "norm1"), ("in_layers.2", "conv1"), ("emb_layers.1", "time_emb_proj"),
           ("out_layers.0", "norm2"), ("out_layers.3", "conv2"),
           ("skip_connection", "conv_shortcut"))
_TOP = {"time_embed.0": "time_embedding.linear_1", "time_embed.2": "time_embedding.linear_2",
        "label_emb.0.0": "add_embedding.linear_1", "label_emb.0.2": "add_embedding.linear_2",
        "input_blocks.0.0": "conv_in", "out.0": "conv_norm_out", "out.2": "conv_out"}


def _resnet(rest: str) -> str:
    for old, new in _RESNET:
        if rest.startswith(old):
            return new + rest[len(old):]
    return rest


def ldm_to_diffusers_key(key: str, layers_per_block: int,
                         up_has_attention: tuple[bool, ...]) -> str:
    """The diffusers name of an ldm U-Net parameter name (without ``diffusion_model.``).

    ``up_has_attention[i]`` says whether diffusers' ``up_blocks[i]`` has attentions: there the
    upsampler is entry 2 of the last ldm output block of the level, elsewhere entry 1.
    """
    for old, new in _TOP.items():
        if key.startswith(old + "."):
            return new + key[len(old):]
    per_down, per_up = layers_per_block + 1, layers_per_block + 1
    if m := re.match(r"input_blocks\.(\d+)\.(\d+)\.(.+)", key):
        n, part, rest = int(m[1]), int(m[2]), m[3]
        level, index = divmod(n - 1, per_down)
        if index == layers_per_block:  # the level's downsampler
            return f"down_blocks.{level}.downsamplers.0.conv.{rest.removeprefix('op.')}"
        kind = "resnets" if part == 0 else "attentions"
        rest = _resnet(rest) if part == 0 else rest
        return f"down_blocks.{level}.{kind}.{index}.{rest}"
    if m := re.match(r"middle_block\.(\d)\.(.+)", key):
        part, rest = int(m[1]), m[2]
        if part == 1:
            return f"mid_block.attentions.0.{rest}"
        return f"mid_block.resnets.{part // 2}.{_resnet(rest)}"
    if m := re.match(r"output_blocks\.(\d+)\.(\d+)\.(.+)", key):
        n, part, rest = int(m[1]), int(m[2]), m[3]
        level, index = divmod(n, per_up)
        if level >= len(up_has_attention):
            raise InvalidInputError(f"{key}: the model has only {len(up_has_attention)} "
                                    "up blocks")
        upsampler_part = 2 if up_has_attention[level] else 1
        if part == 0:
            return f"up_blocks.{level}.resnets.{index}.{_resnet(rest)}"
        if part == upsampler_part and rest.startswith("conv."):
            return f"up_blocks.{level}.upsamplers.0.{rest}"
        return f"up_blocks.{level}.attentions.{index}.{rest}"
    raise InvalidInputError(f"unrecognised ldm U-Net key {key!r}")


def _layout(unet) -> tuple[int, tuple[bool, ...]]:
    config = unet.config
    layers = config.layers_per_block
    if not isinstance(layers, int):
        raise InvalidInputError("only U-Nets with one layers_per_block for all levels are "
                                "supported by the ldm key map")
    return layers, tuple("CrossAttn" in kind for kind in config.up_block_types)


def forge_to_diffusers_deltas(state: Mapping[str, torch.Tensor], unet
                              ) -> dict[str, torch.Tensor]:
    """Dense weight deltas under diffusers names from a Forge-format patch file's tensors."""
    layers, up_attention = _layout(unet)
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    deltas: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name, _, kind = key.partition("::")
        if not name.startswith("diffusion_model."):
            raise InvalidInputError(f"{key!r} is not a Forge U-Net patch key "
                                    "(expected diffusion_model.<ldm key>::lora::0/1 or ::diff)")
        target = ldm_to_diffusers_key(name.removeprefix("diffusion_model."), layers,
                                      up_attention)
        if kind in ("lora::0", "lora::1"):
            pairs.setdefault(target, {})[kind[-1]] = value
        elif kind in ("diff", "diff::0"):
            deltas[target] = value
        else:
            raise InvalidInputError(f"{key!r}: unknown patch kind {kind!r}")
    for target, pair in pairs.items():
        if set(pair) != {"0", "1"}:
            raise InvalidInputError(f"LoRA for {target} lacks its "
                                    f"{'up (::0)' if '0' not in pair else 'down (::1)'} half")
        up, down = pair["0"].float(), pair["1"].float()
        deltas[target] = (up.flatten(1) @ down.flatten(1)).reshape(
            up.shape[0], *down.shape[1:])
    return deltas


def widen_conv_in(unet, channels: int) -> None:
    """Give conv_in ``channels`` input channels, the new ones zero (condition latents)."""
    old: nn.Conv2d = unet.conv_in
    new = nn.Conv2d(channels, old.out_channels, old.kernel_size, old.stride, old.padding)
    new = new.to(old.weight.device, old.weight.dtype)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, : old.in_channels] = old.weight
        new.bias.copy_(old.bias)
    unet.conv_in = new
    unet.register_to_config(in_channels=channels)


def apply_deltas(unet, deltas: Mapping[str, torch.Tensor]) -> int:
    """Add ``deltas`` to the U-Net's weights in place; returns how many tensors changed.

    A conv_in delta with more input channels widens conv_in first. Any delta whose target is
    missing or has another shape is an error, so a wrong key map cannot load silently."""
    parameters = dict(unet.named_parameters())
    conv_in = deltas.get("conv_in.weight")
    if conv_in is not None and conv_in.shape[1] > unet.conv_in.in_channels:
        widen_conv_in(unet, conv_in.shape[1])
        parameters = dict(unet.named_parameters())
    problems = [name for name in deltas if name not in parameters]
    problems += [f"{name} (patch {tuple(delta.shape)}, model "
                 f"{tuple(parameters[name].shape)})" for name, delta in deltas.items()
                 if name in parameters and delta.shape != parameters[name].shape]
    if problems:
        raise InvalidInputError(f"the patch does not fit this U-Net: {len(problems)} tensors "
                                f"without a matching target, e.g. {', '.join(problems[:3])}")
    with torch.no_grad():
        for name, delta in deltas.items():
            parameter = parameters[name]
            parameter.add_(delta.to(parameter.device, parameter.dtype))
    return len(deltas)


def load_unet_patch(unet, path: str | Path) -> int:
    """Apply a released LayerDiffuse U-Net patch (.safetensors, either format) in place."""
    from safetensors.torch import load_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise InvalidInputError(f"{path.name}: only .safetensors patches are loaded (never "
                                "pickled checkpoints)")
    state = load_file(str(path))
    if any("::" in key for key in state):
        return apply_deltas(unet, forge_to_diffusers_deltas(state, unet))
    return apply_deltas(unet, state)
