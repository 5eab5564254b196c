"""diffusers' ``output_type`` values, the same for every pipeline: "pil" (PIL images), "np"
((B, H, W, C) float arrays in [0, 1]), "pt" ((B, C, H, W) float tensors in [0, 1]) and
"latent" (the denoised latents, for chaining; each pipeline documents its decoder)."""

from __future__ import annotations

import numpy as np
import PIL.Image
import torch

__all__ = ["OUTPUT_TYPES", "check_output_type", "pictures_as"]

OUTPUT_TYPES = ("pil", "np", "pt", "latent")


def check_output_type(output_type: str) -> None:
    """Refuse an unknown ``output_type`` before any work is done."""
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got "
                         f"{output_type!r}")


def pictures_as(array: np.ndarray, output_type: str
                ) -> list[PIL.Image.Image] | np.ndarray | torch.Tensor:
    """(B, H, W, C) float pictures in [0, 1] (C = 3 or 4) as ``output_type`` asks: PIL
    images rounded to 8 bits, the array itself, or a (B, C, H, W) tensor."""
    if output_type == "np":
        return array
    if output_type == "pt":
        return torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2)
    check_output_type(output_type)
    if output_type != "pil":
        raise ValueError("latents are returned before decoding, not as pictures")
    as_uint8 = np.rint(array * 255).clip(0, 255).astype(np.uint8)
    return [PIL.Image.fromarray(image, "RGBA" if image.shape[-1] == 4 else "RGB")
            for image in as_uint8]
