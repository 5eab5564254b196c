"""``Studio``: the Python API behind the CLI and the UI, in terms of layer stacks.

It loads presets lazily (offline), keeps them for the next call, checks arguments before any
model runs, and turns every pipeline's output into a :class:`LayerStack` with its provenance
(model, prompt, seed, steps, guidance, seconds) in the metadata::

    from layerstudio.studio import Studio
    stack = Studio().generate("a red apple", seed=1)
    stack.save("apple.psd")
"""

from __future__ import annotations

import time
from typing import Any

from .document import Layer, LayerStack
from .errors import InvalidInputError
from .presets import get_preset, load_preset

__all__ = ["DEFAULT_MODEL", "MODES", "Studio"]

DEFAULT_MODEL = "tiny-layerdiffuse"
MODES = ("fg",)
"""Generation modes available now: ``fg`` = one transparent foreground layer (or, for an RGB
model such as ``tiny-sd``, one opaque image layer)."""

MAX_SIDE = 2048


class Studio:
    """Generation front end. ``device`` is "cpu", "cuda" or None (CUDA when present)."""

    def __init__(self, device: str | None = None) -> None:
        import torch

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._pipelines: dict[str, Any] = {}

    def pipeline(self, model: str):
        """The loaded pipeline of preset ``model`` (loaded once, then reused)."""
        if model not in self._pipelines:
            pipe = load_preset(model)
            pipe.to(self.device)
            pipe.set_progress_bar_config(leave=False)
            self._pipelines[model] = pipe
        return self._pipelines[model]

    def generate(self, prompt: str, *, model: str = DEFAULT_MODEL, mode: str = "fg",
                 seed: int = 0, steps: int | None = None, size: int | None = None,
                 guidance: float | None = None, negative_prompt: str | None = None,
                 augment: bool = False) -> LayerStack:
        """A layered image for ``prompt``. Defaults (steps, size, guidance) come from the
        preset; ``augment`` runs the 8-pass alpha decoder (transparent models only)."""
        preset = get_preset(model)
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidInputError("the prompt is empty; describe what to generate")
        if mode not in MODES:
            raise InvalidInputError(f"unknown mode {mode!r}; available: {', '.join(MODES)}")
        steps = preset.steps if steps is None else int(steps)
        size = preset.resolution if size is None else int(size)
        guidance = preset.guidance if guidance is None else float(guidance)
        if not 1 <= steps <= 1000:
            raise InvalidInputError(f"steps must be between 1 and 1000, got {steps}")
        if not 16 <= size <= MAX_SIDE or size % 16:
            raise InvalidInputError(f"size must be a multiple of 16 between 16 and {MAX_SIDE}, "
                                    f"got {size}")
        if not 0 <= guidance <= 50:
            raise InvalidInputError(f"guidance must be between 0 and 50, got {guidance}")

        import torch

        pipe = self.pipeline(model)
        options: dict[str, Any] = dict(num_inference_steps=steps, guidance_scale=guidance,
                                       height=size, width=size,
                                       generator=torch.Generator().manual_seed(int(seed)))
        if negative_prompt:
            options["negative_prompt"] = negative_prompt
        transparent = hasattr(pipe, "transparent_decoder")
        if augment:
            if not transparent:
                raise InvalidInputError(f"--augment needs a transparent model; {model!r} "
                                        "generates opaque images")
            options["augment"] = True
        started = time.perf_counter()
        result = pipe(prompt, **options)
        seconds = round(time.perf_counter() - started, 3)
        info = {"model": model, "prompt": prompt, "seed": int(seed), "steps": steps,
                "guidance": guidance, "mode": mode, "seconds": seconds}
        if transparent:
            stack = result.layers[0]
            stack.metadata.update(info)
            return stack
        image = result.images[0].convert("RGBA")
        return LayerStack(image.width, image.height,
                          [Layer("image", image, kind="background", provenance=info)],
                          metadata=info)
