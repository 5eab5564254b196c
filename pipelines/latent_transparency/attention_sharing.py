"""Attention sharing: one U-Net denoises several layers of one picture at once.

LayerDiffuse's joint SD 1.5 models generate a foreground, a background and their blend together
(paper section 3.3). The batch is interleaved in groups of ``frames`` (``(b f)``: foreground,
background, blend, foreground, ...). Every attention module of the U-Net (self and cross) is
replaced by a unit that

1. runs the module's attention separately for each frame, with that frame's own low-rank
   change of the projections: ``W_f = W + up_f @ down_f`` for q, k, v and out;
2. adds the result to the block's input, normalises it (LayerNorm), projects it and lets each
   spatial position attend across the frames ("temporal" attention over the f frames at one
   position, as in video models), then projects out;
3. returns attention + cross-frame term, so the transformer block's residual adds both.

The unit takes the attention module's place in the forward pass itself (the module's
``forward`` is routed to it), not through an attention processor: diffusers replaces processors
freely (``enable_attention_slicing``, ``set_default_attn_processor``, xFormers), which would
silently switch sharing off. Processor changes stay possible and harmless: the routed module
never calls its processor.

At initialisation here the ``up`` matrices and the output projection are zero, so a fresh
adapter leaves the base U-Net unchanged (the released ones are trained). Parameter names follow
the released files (``hookers.layers.N.to_q_lora.F.down.weight``, ``temporal_q``, ...), so
``layer_sd15_joint.safetensors`` loads with :func:`load_released_attention_sharing`. Units are
numbered in ldm order: input blocks, output blocks, middle block, each ``attn1`` then
``attn2``; diffusers' down/up/mid blocks give the same order.
"""

from __future__ import annotations

import re
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

__all__ = ["AttentionSharingAdapter", "SharedAttentionUnit", "load_released_attention_sharing",
           "sharing_targets"]


class _LowRank(nn.Module):
    """``up @ down``, the change one frame makes to one projection (``up`` starts at zero)."""

    def __init__(self, in_features: int, out_features: int, rank: int) -> None:
        super().__init__()
        self.down = nn.Linear(in_features, rank, bias=False)
        self.up = nn.Linear(rank, out_features, bias=False)
        nn.init.zeros_(self.up.weight)

    def merged(self, base: nn.Linear, like: torch.Tensor) -> tuple[torch.Tensor, Any]:
        weight = base.weight.to(like) + (self.up.weight @ self.down.weight).to(like)
        return weight, None if base.bias is None else base.bias.to(like)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head scaled dot-product attention on (batch, tokens, channels) tensors."""
    batch, _, channels = q.shape
    split = [t.reshape(batch, -1, heads, channels // heads).transpose(1, 2) for t in (q, k, v)]
    out = F.scaled_dot_product_attention(*split)
    return out.transpose(1, 2).reshape(batch, -1, channels)


class SharedAttentionUnit(nn.Module):
    """The replacement of one attention module (see the module docstring)."""

    def __init__(self, query_dim: int, context_dim: int, inner_dim: int, heads: int,
                 frames: int, rank: int) -> None:
        super().__init__()
        if inner_dim != query_dim:
            raise ValueError(f"attention sharing needs inner dim == query dim, got "
                             f"{inner_dim} and {query_dim}")
        self.heads, self.frames = heads, frames
        self.to_q_lora = nn.ModuleList(_LowRank(query_dim, inner_dim, rank) for _ in range(frames))
        self.to_k_lora = nn.ModuleList(_LowRank(context_dim, inner_dim, rank)
                                       for _ in range(frames))
        self.to_v_lora = nn.ModuleList(_LowRank(context_dim, inner_dim, rank)
                                       for _ in range(frames))
        self.to_out_lora = nn.ModuleList(_LowRank(inner_dim, query_dim, rank)
                                         for _ in range(frames))
        self.temporal_i = nn.Linear(inner_dim, inner_dim)
        self.temporal_n = nn.LayerNorm(inner_dim, elementwise_affine=True, eps=1e-6)
        self.temporal_q = nn.Linear(inner_dim, inner_dim)
        self.temporal_k = nn.Linear(inner_dim, inner_dim)
        self.temporal_v = nn.Linear(inner_dim, inner_dim)
        self.temporal_o = nn.Linear(inner_dim, inner_dim)
        nn.init.zeros_(self.temporal_o.weight)
        nn.init.zeros_(self.temporal_o.bias)

    def _linear(self, x: torch.Tensor, layer: nn.Module) -> torch.Tensor:
        return F.linear(x, layer.weight.to(x), layer.bias.to(x))

    def forward(self, attn, hidden: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """``attn``: the diffusers ``Attention`` whose projections are the base weights."""
        frames = self.frames
        if hidden.shape[0] % frames:
            raise ValueError(f"attention sharing needs the batch in groups of {frames} "
                             f"frames, got a batch of {hidden.shape[0]}")
        framed = hidden.unflatten(0, (-1, frames))  # (b, f, tokens, channels)
        framed_context = framed if context is None else context.unflatten(0, (-1, frames))
        outs = []
        for f in range(frames):
            x, c = framed[:, f], framed_context[:, f]
            q = F.linear(x, *self.to_q_lora[f].merged(attn.to_q, x))
            k = F.linear(c, *self.to_k_lora[f].merged(attn.to_k, x))
            v = F.linear(c, *self.to_v_lora[f].merged(attn.to_v, x))
            o = F.linear(_attend(q, k, v, self.heads), *self.to_out_lora[f].merged(
                attn.to_out[0], x))
            outs.append(attn.to_out[1](o))  # dropout, as the module would
        attention = torch.stack(outs, dim=1).flatten(0, 1)
        mixed = hidden + attention
        x = self._linear(F.layer_norm(mixed, mixed.shape[-1:], self.temporal_n.weight.to(mixed),
                                      self.temporal_n.bias.to(mixed), self.temporal_n.eps),
                         self.temporal_i)
        tokens = x.shape[1]
        x = x.unflatten(0, (-1, frames)).transpose(1, 2).flatten(0, 1)  # (b tokens, f, c)
        x = _attend(self._linear(x, self.temporal_q), self._linear(x, self.temporal_k),
                    self._linear(x, self.temporal_v), self.heads)
        x = self._linear(x, self.temporal_o)
        x = x.unflatten(0, (-1, tokens)).transpose(1, 2).flatten(0, 1)  # back to (b f)
        return attention + x


class _SharedForward:
    """What an attention module's ``forward`` becomes: its unit, called with the module. A
    plain object, not a module, so the unit's weights stay in the adapter and out of the
    U-Net's state dict. (The same instance-level ``forward`` wrapping accelerate's hooks use.)"""

    def __init__(self, unit: SharedAttentionUnit, attn) -> None:
        self.unit, self.attn = unit, attn

    def __call__(self, hidden_states, encoder_hidden_states=None, attention_mask=None,
                 **cross_attention_kwargs):
        return self.unit(self.attn, hidden_states, encoder_hidden_states)


_ORDER = {"down_blocks": 0, "up_blocks": 1, "mid_block": 2}


def sharing_targets(unet) -> list[str]:
    """Names of the U-Net's attention modules in ldm order (input, output, middle blocks;
    ``attn1`` before ``attn2``), which is how the released units are numbered."""
    names = [name.removesuffix(".processor") for name in unet.attn_processors]

    def key(name: str) -> tuple:
        block = name.split(".", 1)[0]
        return (_ORDER[block], *(int(n) for n in re.findall(r"\.(\d+)", name)), name)

    return sorted(names, key=key)


class AttentionSharingAdapter(ModelMixin, ConfigMixin):
    """The trained part of a joint model: one :class:`SharedAttentionUnit` per attention
    module of the U-Net it was made for. ``shapes`` lists (query_dim, context_dim, inner_dim,
    heads) per unit, in :func:`sharing_targets` order."""

    @register_to_config
    def __init__(self, shapes: list[list[int]], frames: int = 3, rank: int = 256) -> None:
        super().__init__()
        self.layers = nn.ModuleList(SharedAttentionUnit(*shape, frames=frames, rank=rank)
                                    for shape in shapes)

    @classmethod
    def for_unet(cls, unet, frames: int = 3, rank: int = 256) -> AttentionSharingAdapter:
        shapes = []
        for name in sharing_targets(unet):
            attn = unet.get_submodule(name)
            shapes.append([attn.to_q.in_features, attn.to_k.in_features,
                           attn.to_q.out_features, attn.heads])
        return cls(shapes=shapes, frames=frames, rank=rank)

    def attach(self, unet) -> None:
        """Route every attention module of ``unet`` through its unit."""
        names = sharing_targets(unet)
        if len(names) != len(self.layers):
            raise ValueError(f"this adapter has {len(self.layers)} units but the U-Net has "
                             f"{len(names)} attention modules")
        for name, unit, shape in zip(names, self.layers, self.config.shapes, strict=True):
            attn = unet.get_submodule(name)
            found = [attn.to_q.in_features, attn.to_k.in_features, attn.to_q.out_features,
                     attn.heads]
            if found != list(shape):
                raise ValueError(f"{name}: the adapter was made for (query, context, inner, "
                                 f"heads) = {tuple(shape)}, the U-Net has {tuple(found)}")
            attn.forward = _SharedForward(unit, attn)

    def is_attached(self, unet) -> bool:
        """Whether every attention module of ``unet`` runs through this adapter's unit."""
        names = sharing_targets(unet)
        if len(names) != len(self.layers):
            return False
        routes = [unet.get_submodule(name).__dict__.get("forward") for name in names]
        return all(isinstance(route, _SharedForward) and route.unit is unit
                   for route, unit in zip(routes, self.layers, strict=True))

    @staticmethod
    def detach(unet) -> None:
        """Give the U-Net back its ordinary attention."""
        for name in sharing_targets(unet):
            unet.get_submodule(name).__dict__.pop("forward", None)


def load_released_attention_sharing(adapter: AttentionSharingAdapter,
                                    state_dict: dict[str, torch.Tensor]) -> None:
    """Load a released joint file (keys ``hookers.layers.N.<unit key>``) into ``adapter``,
    strictly: every key must exist with the same shape. The control variants (files with a
    ``kwargs_encoder``) condition through extra convolutions this adapter does not have."""
    if any(key.startswith("kwargs_encoder.") or ".control_convs." in key for key in state_dict):
        raise ValueError("this file is a conditioned attention-sharing model (it has control "
                         "convolutions); LayerStudio's conditioned modes use the concatenation "
                         "models instead (tiny-layerdiffuse-bg2fg / -fg2bg)")
    renamed = {}
    for key, value in state_dict.items():
        if not key.startswith("hookers.layers."):
            raise ValueError(f"unexpected key {key!r}: not an attention-sharing file")
        renamed[key.removeprefix("hookers.")] = value
    own = adapter.state_dict()
    missing = sorted(set(own) - set(renamed))
    extra = sorted(set(renamed) - set(own))
    if missing or extra:
        raise ValueError(f"the file does not fit this U-Net: missing {missing[:3]}, "
                         f"unexpected {extra[:3]} ({len(missing)} / {len(extra)} in all)")
    for key, value in renamed.items():
        if value.shape != own[key].shape:
            raise ValueError(f"{key}: the file has shape {tuple(value.shape)}, the adapter "
                             f"{tuple(own[key].shape)}")
    adapter.load_state_dict(renamed, strict=True)
