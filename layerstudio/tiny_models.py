"""Configurations of the small models LayerStudio trains and ships.

They are ordinary diffusers / transformers classes with small configs, so the shipped folders
load with the same ``from_pretrained`` code as the public checkpoints, and every pipeline can
later sit on the real models unchanged. Sizes are chosen for a 2-core CPU: 64 px images,
16 x 16 x 4 latents (the VAE downsamples by 4), a 3-layer text encoder over our caption
vocabulary.
"""

from __future__ import annotations

from typing import Any

__all__ = ["IMAGE_SIZE", "LATENT_SIZE", "MAX_TOKENS", "tiny_flux", "tiny_sd_pipeline",
           "tiny_sdxl_components",
           "tiny_text_encoder",
           "tiny_transparent_decoder", "tiny_transparent_encoder", "tiny_unet", "tiny_vae"]

IMAGE_SIZE = 64
LATENT_SIZE = 16
MAX_TOKENS = 48


def tiny_vae(**overrides: Any):
    """AutoencoderKL: 64 px RGB <-> latents, by default 16 x 16 x 4 (about 1 M parameters).

    Each entry of ``block_out_channels`` is one resolution level, so n entries downsample by
    2^(n-1); the block types follow its length unless given."""
    from diffusers import AutoencoderKL

    levels = len(overrides.get("block_out_channels", (32, 64, 64)))
    config = dict(in_channels=3, out_channels=3, latent_channels=4,
                  down_block_types=("DownEncoderBlock2D",) * levels,
                  up_block_types=("UpDecoderBlock2D",) * levels,
                  block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=16,
                  sample_size=IMAGE_SIZE)
    config.update(overrides)
    return AutoencoderKL(**config)


def tiny_text_encoder(vocab_size: int, bos_token_id: int, eos_token_id: int,
                      **overrides: Any):
    """CLIPTextModel over our vocabulary: 3 layers, width 128 (about 1.2 M parameters)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = dict(vocab_size=vocab_size, hidden_size=128, intermediate_size=256,
                  num_hidden_layers=3, num_attention_heads=4,
                  max_position_embeddings=MAX_TOKENS, projection_dim=128,
                  bos_token_id=bos_token_id, eos_token_id=eos_token_id,
                  pad_token_id=eos_token_id)
    config.update(overrides)
    return CLIPTextModel(CLIPTextConfig(**config))


def tiny_unet(**overrides: Any):
    """UNet2DConditionModel on 16 x 16 x 4 latents, cross-attending to width-128 text."""
    from diffusers import UNet2DConditionModel

    config = dict(sample_size=LATENT_SIZE, in_channels=4, out_channels=4,
                  down_block_types=("DownBlock2D", "CrossAttnDownBlock2D",
                                    "CrossAttnDownBlock2D"),
                  up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                  block_out_channels=(64, 96, 128), layers_per_block=1,
                  cross_attention_dim=128, attention_head_dim=8, norm_num_groups=32)
    config.update(overrides)
    return UNet2DConditionModel(**config)


def tiny_sd_pipeline(tokenizer, scheduler=None, **unet_overrides: Any):
    """A randomly initialised SD 1.5-shaped ``StableDiffusionPipeline`` over ``tokenizer``
    (tiny VAE, text encoder and U-Net; DDIM by default): what tests of code for public SD
    checkpoints run on."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    vocab = tokenizer.get_vocab()
    return StableDiffusionPipeline(
        vae=tiny_vae(), text_encoder=tiny_text_encoder(len(vocab), tokenizer.bos_token_id,
                                                       tokenizer.eos_token_id),
        tokenizer=tokenizer, unet=tiny_unet(**unet_overrides),
        scheduler=scheduler or DDIMScheduler(clip_sample=False), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)


def tiny_sdxl_components(tokenizer, **unet_overrides: Any) -> dict[str, Any]:
    """Randomly initialised SDXL-shaped parts (two text encoders, the second with a projection;
    a U-Net with SDXL's ``text_time`` added embedding) over ``tokenizer``: what the SDXL
    pipelines are tested on, since the real SDXL cannot be downloaded here."""
    from diffusers import EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    vocab, ids = len(tokenizer.get_vocab()), (tokenizer.bos_token_id, tokenizer.eos_token_id)
    encoder = tiny_text_encoder(vocab, *ids, hidden_size=32, intermediate_size=64,
                                projection_dim=32)
    encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=MAX_TOKENS, projection_dim=32,
        bos_token_id=ids[0], eos_token_id=ids[1], pad_token_id=ids[1]))
    config = dict(sample_size=LATENT_SIZE, in_channels=4, out_channels=4, layers_per_block=1,
                  block_out_channels=(32, 64),
                  down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                  up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=64,
                  attention_head_dim=8, norm_num_groups=16, addition_embed_type="text_time",
                  addition_time_embed_dim=8, projection_class_embeddings_input_dim=32 + 6 * 8,
                  transformer_layers_per_block=1)
    config.update(unet_overrides)
    return dict(vae=tiny_vae(), text_encoder=encoder, text_encoder_2=encoder_2,
                tokenizer=tokenizer, tokenizer_2=tokenizer,
                unet=UNet2DConditionModel(**config), scheduler=EulerDiscreteScheduler())


def tiny_flux(**overrides: Any):
    """FluxTransformer2DModel: 2 double + 4 single blocks, width 128, 3-axis RoPE ids
    (layer, y, x) as the DiT-based methods use; ``transformer_blocks`` and
    ``single_transformer_blocks`` stay plain ModuleLists for depth pruning."""
    from diffusers import FluxTransformer2DModel

    config = dict(patch_size=1, in_channels=16, num_layers=2, num_single_layers=4,
                  attention_head_dim=32, num_attention_heads=4, joint_attention_dim=128,
                  pooled_projection_dim=128, guidance_embeds=False, axes_dims_rope=(8, 12, 12))
    config.update(overrides)
    return FluxTransformer2DModel(**config)


def tiny_transparent_encoder(**overrides: Any):
    """LayerDiffuse offset encoder for the 4x tiny VAE (two stride-2 steps). Offset scale 1:
    the tiny VAE's posterior std is ~0.5, not SD's ~0.002 that the released 300 makes up for."""
    from layerstudio.pipelines.latent_transparency import TransparentVAEEncoder

    config = dict(channels=(32, 64, 128), offset_scale=1.0)
    config.update(overrides)
    return TransparentVAEEncoder(**config)


def tiny_transparent_decoder(**overrides: Any):
    """LayerDiffuse alpha decoder for 64 px images: 4 stages (16, 32, 64, 64), the latent
    injected at 1/4 resolution (about 1.1 M parameters)."""
    from layerstudio.pipelines.latent_transparency import TransparentVAEDecoder

    config = dict(vae_downsampling=4, block_out_channels=(16, 32, 64, 64), layers_per_block=1,
                  down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D",
                                    "AttnDownBlock2D"),
                  up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"))
    config.update(overrides)
    return TransparentVAEDecoder(**config)
