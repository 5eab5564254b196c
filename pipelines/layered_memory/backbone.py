"""The three text-to-image shapes the editing pipeline drives with one loop.

- SD 1.5-shaped: ``UNet2DConditionModel`` + one CLIP text encoder (tiny-sd,
  tiny-layerdiffuse, SD 1.5);
- SDXL-shaped: the U-Net with the ``text_time`` added embedding + two CLIP encoders (the
  penultimate hidden states of both side by side, the second's projected pooled output);
- PixArt-shaped: ``PixArtTransformer2DModel`` + a T5 encoder with its token mask (the paper's
  backbone, PixArt-alpha).

A prompt becomes a :class:`TextCondition`; :func:`predict_noise` runs the backbone on a batch
of latents against one. Both follow the diffusers pipelines of each shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["TextCondition", "encode_text", "kind_of", "predict_noise"]


@dataclass
class TextCondition:
    """One or more prompts as the backbone reads them: ``embeds`` (B, T, D), ``pooled``
    (B, P) for SDXL, ``mask`` (B, T) for T5 (1 = a real token)."""

    embeds: torch.Tensor
    pooled: torch.Tensor | None = None
    mask: torch.Tensor | None = None

    def tensors(self) -> dict[str, torch.Tensor]:
        """The non-empty parts by name (what the memory file stores)."""
        parts = {"embeds": self.embeds, "pooled": self.pooled, "mask": self.mask}
        return {name: value for name, value in parts.items() if value is not None}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> TextCondition:
        return cls(tensors["embeds"], tensors.get("pooled"), tensors.get("mask"))

    def map(self, change) -> TextCondition:
        """The condition with ``change`` applied to every tensor."""
        return TextCondition(change(self.embeds),
                             None if self.pooled is None else change(self.pooled),
                             None if self.mask is None else change(self.mask))

    def to(self, device, dtype: torch.dtype) -> TextCondition:
        """On ``device``, embeddings in ``dtype`` (the token mask keeps its own)."""
        return TextCondition(self.embeds.to(device, dtype),
                             None if self.pooled is None else self.pooled.to(device, dtype),
                             None if self.mask is None else self.mask.to(device))

    def repeat(self, count: int) -> TextCondition:
        return self.map(lambda t: t.repeat_interleave(count, dim=0))

    @staticmethod
    def cat(parts: list[TextCondition], dim: int = 0) -> TextCondition:
        """Batched (``dim=0``) or, for regional attention, token blocks side by side
        (``dim=1``: the pooled vector is the last part's, the edit being made)."""
        first = parts[0]
        pooled = None if first.pooled is None else (
            torch.cat([p.pooled for p in parts]) if dim == 0 else parts[-1].pooled)
        mask = None if first.mask is None else torch.cat([p.mask for p in parts], dim)
        return TextCondition(torch.cat([p.embeds for p in parts], dim), pooled, mask)


def kind_of(pipe) -> str:
    """"pixart", "sdxl" or "sd" from the components present; a transformer must read its
    text by cross-attention (PixArt's ``caption_projection``): MQD splits cross-attention,
    and a joint-attention (FLUX-shaped) model has none."""
    transformer = getattr(pipe, "transformer", None)
    if transformer is not None:
        if not hasattr(transformer, "caption_projection"):
            raise ValueError(f"{type(transformer).__name__} reads text by joint attention; the "
                             "editing pipeline needs a U-Net or a PixArt-shaped transformer")
        return "pixart"
    if getattr(pipe, "unet", None) is None:
        raise ValueError("the editing pipeline needs a unet or a transformer")
    return "sdxl" if getattr(pipe, "text_encoder_2", None) is not None else "sd"


def _ids(tokenizer, prompts: list[str], device) -> torch.Tensor:
    return tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length,
                     truncation=True, return_tensors="pt").input_ids.to(device)


@torch.no_grad()
def encode_text(pipe, prompts: list[str], zeros_for_empty: bool = False) -> TextCondition:
    """``prompts`` through the pipeline's text encoder(s). ``zeros_for_empty``: SDXL's
    negative-prompt rule (an empty negative prompt is all zeros)."""
    device = pipe._execution_device
    kind = kind_of(pipe)
    if kind == "pixart":
        tokens = pipe.tokenizer(prompts, padding="max_length",
                                max_length=pipe.tokenizer.model_max_length, truncation=True,
                                add_special_tokens=True, return_tensors="pt")
        mask = tokens.attention_mask.to(device)
        embeds = pipe.text_encoder(tokens.input_ids.to(device), attention_mask=mask)[0]
        return TextCondition(embeds.to(pipe.transformer.dtype), mask=mask)
    if kind == "sd":
        embeds = pipe.text_encoder(_ids(pipe.tokenizer, prompts, device))[0]
        return TextCondition(embeds.to(pipe.unet.dtype))
    hidden, pooled = [], None
    for tokenizer, encoder in ((pipe.tokenizer, pipe.text_encoder),
                               (pipe.tokenizer_2, pipe.text_encoder_2)):
        out = encoder(_ids(tokenizer, prompts, device), output_hidden_states=True)
        hidden.append(out.hidden_states[-2])
        pooled = out[0]
    condition = TextCondition(torch.cat(hidden, -1).to(pipe.unet.dtype),
                              pooled.to(pipe.unet.dtype))
    if zeros_for_empty and all(not p for p in prompts):
        condition = condition.map(torch.zeros_like)
    return condition


def predict_noise(pipe, latents: torch.Tensor, timestep: torch.Tensor,
                  condition: TextCondition) -> torch.Tensor:
    """The backbone's noise prediction for ``latents`` (already scaled by the scheduler)
    against ``condition`` (same batch)."""
    kind = kind_of(pipe)
    batch = latents.shape[0]
    if kind == "pixart":
        model = pipe.transformer
        height, width = (side * pipe.vae_scale_factor for side in latents.shape[-2:])
        added = {"resolution": None, "aspect_ratio": None}
        if model.use_additional_conditions:
            added = {"resolution": torch.tensor([[height, width]] * batch).to(latents),
                     "aspect_ratio": torch.tensor([[height / width]] * batch).to(latents)}
        out = model(latents, encoder_hidden_states=condition.embeds,
                    encoder_attention_mask=condition.mask,
                    timestep=timestep.expand(batch).to(latents.device),
                    added_cond_kwargs=added, return_dict=False)[0]
        if out.shape[1] == 2 * latents.shape[1]:  # learned variance: the mean only
            out = out.chunk(2, dim=1)[0]
        return out
    added = None
    if kind == "sdxl":
        height, width = (side * pipe.vae_scale_factor for side in latents.shape[-2:])
        time_ids = torch.tensor([[height, width, 0, 0, height, width]] * batch)
        added = {"text_embeds": condition.pooled, "time_ids": time_ids.to(latents)}
    return pipe.unet(latents, timestep, encoder_hidden_states=condition.embeds,
                     added_cond_kwargs=added, return_dict=False)[0]
