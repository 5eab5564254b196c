"""The decompose task: a flat picture back into layers, by any registered method.

:data:`DECOMPOSITION` is the table every front door reads (``Studio.decompose``, ``layerstudio
decompose``, batch ``{"task": "decompose"}`` lines). A method's ``run`` gets a
:class:`Request` (the checked inputs) and the Studio (for its models) and returns a
:class:`~layerstudio.document.LayerStack` on the input's canvas; the task then records what
every method reports the same way: the method, the seconds taken and how well the layers
re-composite to the input (PSNR and mean absolute error, in the metadata).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .compositing import to_float_rgba
from .document import LayerStack
from .errors import InvalidInputError
from .imaging import as_rgba_array, resized_straight
from .methods import Method, MethodTable

__all__ = ["ANIME_CONVENTIONS", "DECOMPOSITION", "MAX_LAYERS", "Request", "anime_convention",
           "auto_layer_count", "parse_box", "read_mask", "recomposition"]

MAX_LAYERS = 64


@dataclass
class Request:
    """What a decompose method gets: the opaque picture (float RGB in [0, 1]), the layer
    budget (None: as many as the method finds), the region to work on (a boolean mask or
    None), the prompt, seed and steps (for model methods), a progress callback
    ``on_step(done, total)`` (total 0 when unknown), for the effects methods whether
    shadows and glows get layers of their own, for the see-through method the blend type
    ("auto" or None: the method chooses), and for the anime methods the recombination
    convention (:data:`ANIME_CONVENTIONS`; None: "artist")."""

    rgb: np.ndarray
    layers: int | None
    region: np.ndarray | None
    prompt: str | None
    seed: int
    steps: int | None
    on_step: Callable[[int, int], None] | None
    separate_effects: bool = False
    blend: str | None = None
    convention: str | None = None


def _classical(request: Request, studio: Any) -> LayerStack:
    from layerstudio.pipelines.classical_decompose import classical_decomposition

    done = [0]

    def counted() -> None:
        done[0] += 1
        if request.on_step is not None:
            request.on_step(done[0], 0)

    return classical_decomposition(request.rgb, request.layers, request.region, counted)


def _layerd(preset_name: str) -> Callable[[Request, Any], LayerStack]:
    """The run function of a LayerD preset: peel until the matte is empty or the budget is
    spent; progress counts peels (their total is unknown until the end)."""

    def run(request: Request, studio: Any) -> LayerStack:
        from .studio import step_hook

        pipe = studio.pipeline(preset_name)
        output = pipe(request.rgb, layers=request.layers, **step_hook(request.on_step, 0))
        stack = output.stacks[0]
        stack.metadata["model"] = preset_name
        return stack

    return run


def _steps(request: Request, default: int) -> int:
    """The denoising steps a model method runs: the request's, or its preset's default."""
    steps = default if request.steps is None else int(request.steps)
    if not 1 <= steps <= 1000:
        raise InvalidInputError(f"steps must be between 1 and 1000, got {steps}")
    return steps


def _effects(method: str, request: Request, extract: Callable[..., Any]) -> LayerStack:
    """An effects method's layers: each object the region marks pulled out by
    ``extract(picture, part)``, one after the other (``layers.peeled``)."""
    from layerstudio.pipelines.decompose_effects.layers import effects_stack, peeled

    if request.region is None:
        raise InvalidInputError(f"{method} pulls out one object: give a mask or a box "
                                "around it")
    return effects_stack(peeled(request.rgb, request.region, extract), request.separate_effects)


def _effects_classical(request: Request, studio: Any) -> LayerStack:
    from layerstudio.pipelines.decompose_effects.classical import extract_with_effects

    return _effects("effects-classical", request,
                    lambda rgb, part: extract_with_effects(rgb, part, request.on_step))


def _effects_model(preset_name: str) -> Callable[[Request, Any], LayerStack]:
    """The run function of a LayerDecomp preset (``with_model.extract_with_model``)."""

    def run(request: Request, studio: Any) -> LayerStack:
        from layerstudio.pipelines.decompose_effects.with_model import extract_with_model
        from layerstudio.presets import get_preset

        from .studio import step_hook

        preset = get_preset(preset_name)
        steps = _steps(request, preset.steps)
        pipe = studio.pipeline(preset_name)
        stack = _effects(preset_name, request, lambda rgb, part: extract_with_model(
            pipe, rgb, part, resolution=preset.resolution, steps=steps, seed=request.seed,
            callbacks=step_hook(request.on_step, steps)))
        stack.metadata.update(model=preset_name, steps=steps, seed=request.seed)
        return stack

    return run


def _see_through(preset_name: str) -> Callable[[Request, Any], LayerStack]:
    """The run function of a DiffDecompose preset (``at_size.decompose_see_through``)."""

    def run(request: Request, studio: Any) -> LayerStack:
        from layerstudio.pipelines.alpha_decompose.at_size import decompose_see_through
        from layerstudio.pipelines.alpha_decompose.blends import blend_mode
        from layerstudio.presets import get_preset

        from .studio import step_hook

        preset = get_preset(preset_name)
        steps = _steps(request, preset.steps)
        blend = request.blend or "auto"
        if blend != "auto":
            blend_mode(blend)
        stack = decompose_see_through(
            studio.pipeline(preset_name), request.rgb, blend, resolution=preset.resolution,
            steps=steps, seed=request.seed, prompt=request.prompt,
            callbacks=step_hook(request.on_step, steps))
        stack.metadata.update(model=preset_name, steps=steps, asked_blend=blend)
        return stack

    return run


ANIME_CONVENTIONS = {"artist": ("artist", "screen"), "artist-add": ("artist", "add"),
                     "normal": ("normal", "screen")}
"""How the anime layers recombine: ``artist`` (shadow multiply, highlight screen),
``artist-add`` (highlight linear dodge instead), ``normal`` (both plain alpha-over)."""


def anime_convention(request: Request) -> tuple[str, str]:
    """(convention, highlight blend) the request asks for."""
    name = request.convention or "artist"
    if name not in ANIME_CONVENTIONS:
        raise InvalidInputError(f"convention must be one of {', '.join(ANIME_CONVENTIONS)}, "
                                f"got {name!r}")
    return ANIME_CONVENTIONS[name]


def _anime_classical(request: Request, studio: Any) -> LayerStack:
    from layerstudio.pipelines.anime_layers.classical import classical_anime_layers

    done = [0]

    def counted() -> None:
        done[0] += 1
        if request.on_step is not None:
            request.on_step(done[0], 4)

    return classical_anime_layers(request.rgb, *anime_convention(request), on_step=counted)


def _anime_model(preset_name: str) -> Callable[[Request, Any], LayerStack]:
    """The run function of an anime layers preset: the model sees the picture at its
    resolution; its line art and flat colour are scaled back and the layers solved at full
    size (``AnimeLayersPipeline.solved``)."""

    def run(request: Request, studio: Any) -> LayerStack:
        import cv2
        import torch

        from layerstudio.presets import get_preset

        from .studio import step_hook

        preset = get_preset(preset_name)
        steps = _steps(request, preset.steps)
        convention, highlight = anime_convention(request)
        pipe = studio.pipeline(preset_name)
        side = preset.resolution
        small = cv2.resize(request.rgb.astype(np.float32), (side, side),
                           interpolation=cv2.INTER_AREA)
        out = pipe(small, convention, request.prompt, highlight=highlight,
                   num_inference_steps=steps, output_type="np",
                   generator=torch.Generator().manual_seed(request.seed),
                   **step_hook(request.on_step, steps))
        stack = pipe.solved(request.rgb, out.images[0], convention, highlight)
        stack.metadata.update(model=preset_name, steps=steps)
        return stack

    return run


AUTO_RANGE = (2, 8)
"""The layer counts ``layers="auto"`` chooses from for model methods."""


def auto_layer_count(rgb: np.ndarray) -> int:
    """How many layers to ask a model for when the user says "auto": the objects the
    classical analysis finds on the picture (at <= 256 px) plus the background, kept within
    :data:`AUTO_RANGE`. Measured against the true counts in ``benchmarks/decompose.py``."""
    import cv2

    from layerstudio.pipelines.classical_decompose import ClassicalDecomposer

    height, width = rgb.shape[:2]
    scale = min(1.0, 256 / max(height, width))
    if scale < 1.0:
        rgb = cv2.resize(rgb, (max(1, round(width * scale)), max(1, round(height * scale))),
                         interpolation=cv2.INTER_AREA)
    found = len(ClassicalDecomposer()(rgb.astype(np.float32)).pieces) + 1
    return int(np.clip(found, *AUTO_RANGE))


def _frames_at(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(L, h, w, 4) straight RGBA float frames resized to ``size`` (w, h)."""
    if frames.shape[2:0:-1] == tuple(size):
        return frames
    return np.stack([resized_straight(frame, size) for frame in frames])


def _model_method(preset_name: str) -> Callable[[Request, Any], LayerStack]:
    """The run function of a Qwen-Image-Layered-style model preset: the picture, a prompt
    (captioned by the model when none is given and it can), ``layers`` (or the auto rule)."""

    def run(request: Request, studio: Any) -> LayerStack:
        import torch

        from layerstudio.pipelines.qwen_layered.pipeline import frames_to_stack
        from layerstudio.presets import get_preset

        from .studio import step_hook

        preset = get_preset(preset_name)
        steps = _steps(request, preset.steps)
        count = request.layers or auto_layer_count(request.rgb)
        pipe = studio.pipeline(preset_name)
        picture = np.rint(request.rgb * 255).astype(np.uint8)
        hook = step_hook(request.on_step, steps)
        try:
            output = pipe(picture, request.prompt, negative_prompt=" ",
                          true_cfg_scale=preset.guidance, layers=count,
                          num_inference_steps=steps, resolution=preset.resolution,
                          output_type="np",
                          generator=torch.Generator().manual_seed(request.seed), **hook)
        except ValueError as exc:  # the pipeline's own checks, in the user's terms
            raise InvalidInputError(str(exc)) from None
        height, width = picture.shape[:2]
        info = {"model": preset_name, "prompt": request.prompt, "steps": steps,
                "asked_layers": count, "layers_rule": "given" if request.layers else "auto"}
        return frames_to_stack(_frames_at(output.images[0], (width, height)), info)

    return run


DECOMPOSITION = MethodTable("decompose")
DECOMPOSITION.add(Method(
    "classical", "flat designs at any size, no model: colour regions, plates and text "
    "peeled top first, the background filled under them (LayerD's loop with classical parts)",
    _classical, ("layers", "mask", "box")))
DECOMPOSITION.add(Method(
    "tiny-layerd", "flat designs at any size, shipped model: LayerD's loop - a learned matte "
    "of the layers nothing covers, peeled top first, the hole filled, again",
    _layerd("tiny-layerd"), ("layers",), "tiny-layerd"))
DECOMPOSITION.add(Method(
    "effects-classical", "one object with its shadow or glow, no model (needs a mask or box): "
    "GrabCut and closed-form matting for the object, the luminance ratio to the background "
    "for the effect, the background filled; any size",
    _effects_classical, ("mask", "box", "separate_effects")))
DECOMPOSITION.add(Method(
    "effects", "one object with its shadow, reflection or glow, shipped model (needs a mask "
    "or box): LayerDecomp - a DiT predicts the clean background and the object with its "
    "effects; colours solved from the picture at full size",
    _effects_model("tiny-layerdecomp"), ("mask", "box", "separate_effects", "seed", "steps"),
    "tiny-layerdecomp"))
DECOMPOSITION.add(Method(
    "alpha", "a see-through layer over the whole picture (watermark, glass, flare, smoke, "
    "rain, X-ray), shipped model: DiffDecompose - the clean background and the layer in its "
    "blend mode (blend: normal, screen, add, multiply or auto)",
    _see_through("tiny-diffdecompose"), ("blend", "prompt", "seed", "steps"),
    "tiny-diffdecompose"))
DECOMPOSITION.add(Method(
    "anime-classical", "an illustration as production layers, no model: line art (dark "
    "strokes, XDoG), flat colour per region, shadow and highlight by the exact inverses of "
    "the convention (artist: multiply / screen or add; normal); any size",
    _anime_classical, ("convention",)))
DECOMPOSITION.add(Method(
    "anime", "an illustration as production layers, shipped model: per-layer semantic "
    "embeddings guide one DiT decomposer (line art, flat colour, shadow, highlight); the "
    "layers are then solved at full size to re-compose exactly",
    _anime_model("tiny-anime-layers"), ("convention", "prompt", "seed", "steps"),
    "tiny-anime-layers"))
DECOMPOSITION.add(Method(
    "qwen-image-layered", "Qwen-Image-Layered (20B, download + large GPU): any picture into "
    "RGBA layers; layers=auto asks for the objects the classical analysis sees + 1",
    _model_method("qwen-image-layered"), ("layers", "prompt", "seed", "steps"),
    "qwen-image-layered"))


def parse_box(box: Any, size: tuple[int, int]) -> np.ndarray:
    """``x,y,w,h`` (a string or four numbers) as a boolean mask of a ``size`` (w, h) canvas;
    several boxes (``"x,y,w,h;x,y,w,h"`` or a list of four-number lists) as their union (the
    effects methods peel each in turn)."""
    several = box.split(";") if isinstance(box, str) and ";" in box else \
        box if isinstance(box, (list, tuple)) and box and isinstance(box[0], (list, tuple)) \
        else None
    if several is not None:
        parts = [part for part in several if not (isinstance(part, str) and not part.strip())]
        if not parts:
            raise InvalidInputError(f"a box is x,y,w,h in pixels, got {box!r}")
        return np.logical_or.reduce([parse_box(part, size) for part in parts])
    try:
        values = [int(v) for v in (box.split(",") if isinstance(box, str) else box)]
    except (TypeError, ValueError, AttributeError):
        raise InvalidInputError(f"a box is x,y,w,h in pixels, got {box!r}") from None
    if len(values) != 4 or values[2] <= 0 or values[3] <= 0:
        raise InvalidInputError(f"a box is x,y,w,h with a positive width and height, got "
                                f"{box!r}")
    x, y, w, h = values
    width, height = size
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        raise InvalidInputError(f"the box {x},{y},{w},{h} lies outside the {width}x{height} "
                                "picture")
    mask = np.zeros((height, width), bool)
    mask[max(y, 0):y + h, max(x, 0):x + w] = True
    return mask


def read_mask(mask: Any, size: tuple[int, int]) -> np.ndarray:
    """A mask (path, PIL image or array; white or opaque = selected) of a ``size`` canvas
    as booleans."""
    if isinstance(mask, (str, Path)):
        mask = LayerStack.load(mask).composite()
    pixels = to_float_rgba(as_rgba_array(mask, what="the mask"))
    if pixels.shape[1::-1] != tuple(size):
        raise InvalidInputError(f"the mask is {pixels.shape[1]}x{pixels.shape[0]}, the picture "
                                f"{size[0]}x{size[1]}")
    selected = (pixels[..., :3].mean(-1) * pixels[..., 3]) > 0.5
    if not selected.any():
        raise InvalidInputError("the mask selects nothing (white marks the region)")
    return selected


def recomposition(stack: LayerStack, rgb: np.ndarray) -> dict[str, float]:
    """How well the layers re-composite to the picture: PSNR (dB, capped at 99 for an exact
    match) and mean absolute error in [0, 1], over RGB."""
    composite = stack.composite_array()
    alpha = composite[..., 3:]
    flat = composite[..., :3] * alpha + (1 - alpha)  # over white, as the input was flattened
    error = np.abs(flat - rgb)
    mse = float(np.mean(error ** 2))
    psnr = 99.0 if mse <= 1e-10 else min(99.0, 10 * float(np.log10(1 / mse)))
    return {"recomposition_psnr": round(psnr, 2),
            "recomposition_error": round(float(error.mean()), 6)}
