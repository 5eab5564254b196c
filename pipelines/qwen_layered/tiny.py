"""Tiny random Qwen-Image-Layered components of the real classes, built offline.

The released model's classes at a few thousand parameters each: the MMDiT with layer-3D RoPE
and the extra "is RGB" timestep condition, the RGBA VAE (4 input channels), a two-layer
Qwen2.5-VL text encoder and a byte-level Qwen2 tokenizer made here (the 256 byte symbols and
the chat-template special tokens; no merges, so every byte is a token). Tests and the shipped
tiny decomposer start from them. The Qwen2-VL processor (only needed to caption a picture when
no prompt is given) is left out: in transformers 5 it requires torchvision's video processor.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["SPECIAL_TOKENS", "tiny_qwen_layered_components", "tiny_qwen_tokenizer"]

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                  "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")


def tiny_qwen_tokenizer():
    """A byte-level ``Qwen2Tokenizer`` with the chat template's special tokens."""
    from transformers import Qwen2Tokenizer

    from layerstudio.tokenizer import byte_symbols

    vocab = {symbol: index for index, symbol in enumerate(byte_symbols())}
    for token in SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], unk_token=None)
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS[1:])})
    return tokenizer


def tiny_qwen_layered_components(seed: int = 0, width: int = 16, depth: int = 2,
                                 heads: int = 3, head_dim: int = 16) -> dict[str, Any]:
    """Scheduler, RGBA VAE, text encoder, tokenizer and transformer for
    :class:`~.pipeline.QwenLayeredPipeline` (no processor). ``width`` is the text encoder's;
    ``depth``, ``heads`` and ``head_dim`` size the transformer."""
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImageTransformer2DModel,
    )
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tokenizer = tiny_qwen_tokenizer()
    ids = tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS))
    torch.manual_seed(seed)
    transformer = QwenImageTransformer2DModel(
        patch_size=2, in_channels=16, out_channels=4, num_layers=depth,
        attention_head_dim=head_dim, num_attention_heads=heads, joint_attention_dim=width,
        axes_dims_rope=(head_dim // 2, head_dim // 4, head_dim // 4),
        use_layer3d_rope=True, use_additional_t_cond=True)
    vae = AutoencoderKLQwenImage(base_dim=24, z_dim=4, dim_mult=[1, 2, 4], num_res_blocks=1,
                                 temperal_downsample=[False, True], input_channels=4,
                                 latents_mean=[0.0] * 4, latents_std=[1.0] * 4)
    config = Qwen2_5_VLConfig(
        text_config={"hidden_size": width, "intermediate_size": width, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "num_key_value_heads": 2,
                     "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default",
                                      "type": "default"},
                     "rope_theta": 1e6, "vocab_size": len(tokenizer),
                     "bos_token_id": ids[0], "eos_token_id": ids[0], "pad_token_id": ids[0]},
        vision_config={"depth": 1, "hidden_size": width, "intermediate_size": width,
                       "num_heads": 2, "out_hidden_size": width},
        vocab_size=len(tokenizer), bos_token_id=ids[0], eos_token_id=ids[0],
        pad_token_id=ids[0], vision_start_token_id=ids[3], vision_end_token_id=ids[4],
        image_token_id=ids[5], video_token_id=ids[6])
    text_encoder = Qwen2_5_VLForConditionalGeneration(config)
    return {"scheduler": FlowMatchEulerDiscreteScheduler(), "vae": vae,
            "text_encoder": text_encoder, "tokenizer": tokenizer, "transformer": transformer}
