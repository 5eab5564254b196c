"""Image-to-image and inpainting with the alpha path, on a tiny random transparent pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from layerstudio.pipelines.latent_transparency import (
    LatentTransparencyImg2ImgPipeline,
    LatentTransparencyPipeline,
    encode_rgba,
    rgba_tensors,
)
from layerstudio.tiny_models import (
    tiny_text_encoder,
    tiny_transparent_decoder,
    tiny_transparent_encoder,
    tiny_unet,
    tiny_vae,
)
from layerstudio.tokenizer import build_tokenizer_files, caption_vocabulary, load_tokenizer


@pytest.fixture(scope="module", params=["ddim", "dpm"])
def pipe(request, tmp_path_factory):
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    folder = tmp_path_factory.mktemp("tok")
    build_tokenizer_files(folder, caption_vocabulary())
    tokenizer = load_tokenizer(folder)
    vocab = tokenizer.get_vocab()
    torch.manual_seed(0)
    scheduler = DDIMScheduler(clip_sample=False) if request.param == "ddim" else \
        DPMSolverMultistepScheduler()
    text_to_rgba = LatentTransparencyPipeline(
        vae=tiny_vae(), text_encoder=tiny_text_encoder(len(vocab), tokenizer.bos_token_id,
                                                       tokenizer.eos_token_id),
        tokenizer=tokenizer, unet=tiny_unet(), scheduler=scheduler,
        transparent_decoder=tiny_transparent_decoder(),
        transparent_encoder=tiny_transparent_encoder())
    # the same weights, no copy
    pipe = LatentTransparencyImg2ImgPipeline(**text_to_rgba.components)
    assert pipe.unet is text_to_rgba.unet
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _layer(size: int = 60) -> np.ndarray:
    """A soft blue square on transparency (60 px: not a size the U-Net takes)."""
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[10:50, 10:50] = (40, 80, 200, 255)
    rgba[8:52, 8:10, 3] = 128
    return rgba


def test_img2img_returns_rgba_at_a_size_the_unet_takes(pipe):
    def run():
        return pipe("a blue square", image=_layer(), strength=0.5, num_inference_steps=4,
                    generator=torch.Generator().manual_seed(0))

    out = run()
    assert out.images[0].mode == "RGBA" and out.images[0].size == (64, 64)
    assert out.layers[0].layers[0].provenance["strength"] == 0.5
    assert np.array_equal(np.asarray(out.images[0]), np.asarray(run().images[0]))
    with pytest.raises(ValueError, match="strength"):
        pipe("x", image=_layer(), strength=0)

    # batches as in diffusers: one image per prompt, several images per prompt
    two = pipe(["a blue square", "a red square"], image=[_layer(), _layer()[::-1]],
               strength=0.5, num_inference_steps=2, output_type="np",
               generator=torch.Generator().manual_seed(0), num_images_per_prompt=2)
    assert two.images.shape == (4, 64, 64, 4) and len(two.layers) == 4
    with pytest.raises(ValueError, match="3 images for 2 prompts"):
        pipe(["a", "b"], image=[_layer()] * 3, num_inference_steps=2)
    with pytest.raises(ValueError, match="one size"):
        pipe(["a", "b"], image=[_layer(), _layer(40)], num_inference_steps=2)


def test_inpainting_keeps_the_unmasked_part_and_its_alpha(pipe):
    image = _layer(64)
    mask = np.zeros((64, 64), np.uint8)
    mask[:, :32] = 255  # repaint the left half only
    finals = []

    def spy(p, step, timestep, tensors):  # the user's callback still runs, after the blend
        finals.append(tensors["latents"].clone())
        return tensors

    out = pipe(["a red square", "a cat"], image=image, mask=mask, strength=1.0,
               num_inference_steps=4, generator=torch.Generator().manual_seed(0),
               callback_on_step_end=spy, output_type="np")
    assert len(finals) == 4
    result = np.rint(out.images * 255).astype(int)  # (2, 64, 64, 4)
    # right half: the input itself, alpha included (exactly: pixels are pasted back)
    assert (result[:, :, 40:] == image[None, :, 40:]).all()
    assert (result[:, :, :24] != image[None, :, :24]).any()  # the left half was repainted
    # and the latents outside the mask ended on the input's own latent
    rgba, padded = rgba_tensors([image])
    known = encode_rgba(pipe.vae, pipe.transparent_encoder, rgba, padded) * \
        pipe.vae.config.scaling_factor
    right = finals[-1].shape[-1] // 2 + 2
    assert torch.allclose(finals[-1][..., right:], known.expand(2, -1, -1, -1)[..., right:],
                          atol=1e-5)
