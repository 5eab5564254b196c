"""Real-ESRGAN as a diffusers pipeline, to chain after any generator: its ``images`` (PIL, RGBA
or RGB, arrays or tensors) in, the same pictures 2x or 4x larger out.

    from layerstudio.presets import load_preset
    from layerstudio.pipelines.realesrgan import RealESRGANPipeline
    made = load_preset("tiny-layerdiffuse")(["an ice cream"])
    big = RealESRGANPipeline(upscaler=load_preset("realesr-animevideov3"))(made.images, scale=4)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.utils import BaseOutput

from layerstudio.compositing import to_float_rgba
from layerstudio.imaging import as_rgba_array

from .compact import CompactUpscaler
from .upscale import SCALES, upscale_rgba

__all__ = ["RealESRGANOutput", "RealESRGANPipeline"]


@dataclass
class RealESRGANOutput(BaseOutput):
    """``images``: the upscaled pictures as ``output_type`` asks (PIL images keep the input's
    mode, RGB or RGBA; arrays and tensors are RGBA in [0, 1])."""

    images: Any


def _as_rgba(image: Any) -> tuple[np.ndarray, str]:
    """One picture as straight RGBA float (H, W, 4) and its PIL mode ("RGB" or "RGBA"):
    a PIL image, an (H, W, C) array or a (C, H, W) tensor, as
    :func:`~layerstudio.imaging.as_rgba_array` accepts them (checked, size-limited)."""
    if isinstance(image, PIL.Image.Image):
        mode = "RGBA" if "A" in image.getbands() else "RGB"
    else:
        if isinstance(image, torch.Tensor):
            image = image.detach().cpu().float().numpy()
        image = np.asarray(image)
        if image.ndim == 3 and image.shape[0] in (3, 4) and image.shape[-1] not in (3, 4):
            image = image.transpose(1, 2, 0)  # (C, H, W), as diffusers' "pt" output
        mode = "RGBA" if image.ndim == 3 and image.shape[-1] == 4 else "RGB"
    return to_float_rgba(as_rgba_array(image, what="a picture")), mode


class RealESRGANPipeline(DiffusionPipeline):
    """Pictures -> pictures ``scale`` times larger (alpha-aware, tiled; see
    :func:`~.upscale.upscale_rgba`). Deterministic: no ``generator``."""

    model_cpu_offload_seq = "upscaler"

    def __init__(self, upscaler: CompactUpscaler) -> None:
        super().__init__()
        self.register_modules(upscaler=upscaler)

    @torch.no_grad()
    def __call__(self, image: Any, scale: int = 4, tile: int = 192, output_type: str = "pil",
                 return_dict: bool = True,
                 callback_on_step_end: Callable[..., dict] | None = None
                 ) -> RealESRGANOutput | tuple:
        """Upscale ``image`` (one picture or a list; a (B, C, H, W) tensor or (B, H, W, C)
        array is a batch). ``callback_on_step_end(pipe, i, i, {})`` runs after each picture;
        setting ``pipe._interrupt`` leaves the remaining pictures out."""
        from layerstudio.pipelines.output_types import pictures_as

        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {scale}")
        if output_type not in ("pil", "np", "pt"):
            raise ValueError(f"output_type must be pil, np or pt, got {output_type!r}")
        batch = image if isinstance(image, list) else \
            list(image) if getattr(image, "ndim", 3) == 4 else [image]
        self._interrupt = False
        made = []
        with self.progress_bar(total=len(batch)) as bar:
            for number, picture in enumerate(batch):
                if self._interrupt:
                    break
                rgba, mode = _as_rgba(picture)
                big = upscale_rgba(self.upscaler, rgba, scale, tile=tile)
                made.append(big[..., :3] if output_type == "pil" and mode == "RGB" else big)
                if callback_on_step_end is not None:
                    callback_on_step_end(self, number, number, {})
                bar.update()
        self.maybe_free_model_hooks()
        if output_type == "pil":
            images = [pictures_as(one[None], "pil")[0] for one in made]
        elif len({one.shape for one in made}) > 1:
            raise ValueError("the pictures differ in size: ask for output_type='pil'")
        else:
            images = pictures_as(np.stack(made), output_type) if made else []
        return RealESRGANOutput(images=images) if return_dict else (images,)

    @property
    def interrupt(self) -> bool:
        return getattr(self, "_interrupt", False)
