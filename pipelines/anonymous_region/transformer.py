"""The Anonymous Region Transformer: a FLUX-style MMDiT over a variable number of layers.

Every layer's latent is packed into 2 x 2 patch tokens and embedded by the MMDiT's own
``x_embedder``; a learnable per-layer embedding (zero at start, so a text-to-image MMDiT is
the starting point) says which layer a token belongs to, and the 3-axis rotary ids are
``(layer, row, column)``. Only the tokens inside each layer's box enter the transformer
(:mod:`.regions`), concatenated with the text tokens for joint attention, and the velocity is
scattered back, zero outside the boxes. ``full_attention=True`` runs every layer over the
whole canvas instead (the baseline the paper compares against); its output is masked to the
boxes the same way.

The class subclasses ``FluxTransformer2DModel`` (same parameter names), so a FLUX checkpoint
loads into it with :meth:`AnonymousRegionTransformer.from_flux`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from diffusers import FluxTransformer2DModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.modeling_outputs import Transformer2DModelOutput

# diffusers' pipeline loader recognises a custom component as loadable by finding its base
# class's name (``ModelMixin``) in the component's module, so the name must be here.
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401
from torch import nn

from ..flow_matching import pack_latents, unpack_latents
from .regions import TokenBox, box_mask, crop_tokens, region_ids, scatter_tokens

__all__ = ["AnonymousRegionTransformer"]


class AnonymousRegionTransformer(FluxTransformer2DModel):
    """``FluxTransformer2DModel`` + ``max_layers`` layer embeddings + region-cropped forward."""

    @register_to_config
    def __init__(self, patch_size: int = 1, in_channels: int = 64,
                 out_channels: int | None = None, num_layers: int = 19,
                 num_single_layers: int = 38, attention_head_dim: int = 128,
                 num_attention_heads: int = 24, joint_attention_dim: int = 4096,
                 pooled_projection_dim: int = 768, guidance_embeds: bool = False,
                 axes_dims_rope: tuple[int, int, int] = (16, 56, 56),
                 max_layers: int = 52) -> None:
        super().__init__(patch_size=patch_size, in_channels=in_channels,
                         out_channels=out_channels, num_layers=num_layers,
                         num_single_layers=num_single_layers,
                         attention_head_dim=attention_head_dim,
                         num_attention_heads=num_attention_heads,
                         joint_attention_dim=joint_attention_dim,
                         pooled_projection_dim=pooled_projection_dim,
                         guidance_embeds=guidance_embeds, axes_dims_rope=axes_dims_rope)
        self.layer_embedding = nn.Parameter(torch.zeros(max_layers, self.inner_dim))

    @classmethod
    def from_flux(cls, flux: FluxTransformer2DModel, max_layers: int = 52
                  ) -> AnonymousRegionTransformer:
        """The same MMDiT with layer embeddings (zero) added: where ART training starts."""
        config = {k: v for k, v in flux.config.items() if not k.startswith("_")}
        model = cls(**config, max_layers=max_layers)
        missing, unexpected = model.load_state_dict(flux.state_dict(), strict=False)
        if unexpected or set(missing) != {"layer_embedding"}:
            raise ValueError(f"not a FLUX-shaped transformer: missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]}")
        return model.to(flux.device) if flux.dtype == model.dtype else \
            model.to(flux.device, flux.dtype)

    def forward(self, hidden_states: torch.Tensor, boxes: Sequence[TokenBox],
                timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                pooled_projections: torch.Tensor, txt_ids: torch.Tensor | None = None,
                guidance: torch.Tensor | None = None, full_attention: bool = False,
                joint_attention_kwargs: dict[str, Any] | None = None,
                return_dict: bool = True, position_layers: Sequence[int] | None = None,
                layer_types: Sequence[int] | None = None):
        """Velocity of every layer. ``hidden_states``: (B, L, C, H, W) latents; ``boxes``: L
        token boxes (layer 0 and 1 the whole canvas); ``timestep`` in [0, 1] as FLUX takes it.
        ``position_layers``: each layer's id on the rotary layer axis (default its index;
        layers given the same id share position codes); ``layer_types``: which learned layer
        embedding each layer gets (default its index). Returns (B, L, C, H, W), zero outside
        each layer's box."""
        batch, layers, _channels, height, width = hidden_states.shape
        if layers != len(boxes):
            raise ValueError(f"{layers} latent layers but {len(boxes)} boxes")
        types = list(range(layers)) if layer_types is None else list(layer_types)
        if len(types) != layers:
            raise ValueError(f"{layers} latent layers but {len(types)} layer types")
        if max(types) >= self.config.max_layers:
            raise ValueError(f"{layers} layers (layer type {max(types)} the highest); this model "
                             f"has embeddings for at most {self.config.max_layers}")
        rows, cols = height // 2, width // 2
        tokens = pack_latents(hidden_states.flatten(0, 1)).view(batch, layers, rows, cols, -1)
        tokens = self.x_embedder(tokens) + self.layer_embedding[types][:, None, None]
        used = [(0, 0, cols, rows)] * layers if full_attention else list(boxes)
        sequence = crop_tokens(tokens, used)
        img_ids = region_ids(used, sequence.device, sequence.dtype, position_layers)
        if txt_ids is None:
            txt_ids = sequence.new_zeros(encoder_hidden_states.shape[1], 3)
        temb = self.time_text_embed(timestep.to(sequence.dtype) * 1000, pooled_projections) \
            if guidance is None else self.time_text_embed(
                timestep.to(sequence.dtype) * 1000, guidance.to(sequence.dtype) * 1000,
                pooled_projections)
        context = self.context_embedder(encoder_hidden_states)
        rotary = self.pos_embed(torch.cat([txt_ids, img_ids]))
        for block in [*self.transformer_blocks, *self.single_transformer_blocks]:
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                context, sequence = self._gradient_checkpointing_func(
                    block, sequence, context, temb, rotary, joint_attention_kwargs)
            else:
                context, sequence = block(hidden_states=sequence, encoder_hidden_states=context,
                                          temb=temb, image_rotary_emb=rotary,
                                          joint_attention_kwargs=joint_attention_kwargs)
        sequence = self.proj_out(self.norm_out(sequence, temb))
        grid = scatter_tokens(sequence, used, rows, cols)
        if full_attention:
            grid = grid * box_mask(boxes, rows, cols, grid).permute(0, 1, 3, 4, 2)
        output = unpack_latents(grid.flatten(0, 1).flatten(1, 2), height, width)
        output = output.view(batch, layers, -1, height, width)
        return Transformer2DModelOutput(sample=output) if return_dict else (output,)

