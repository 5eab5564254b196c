"""``Studio``: the Python API behind the CLI and the UI, in terms of layer stacks.

It loads presets lazily (offline), keeps them for the next call, checks arguments before any
model runs, and turns every pipeline's output into a :class:`LayerStack` with its provenance
(model, prompt, seed, steps, guidance, seconds) in the metadata::

    from layerstudio.studio import Studio
    stack = Studio().generate("an ice cream", seed=1)
    stack.save("ice.psd")
    scene = Studio().generate("a turtle", mode="bg2fg", background="beach.png")
    poster = Studio().generate("a cat and a ball on grass", mode="layers",
                               boxes=[(4, 8, 24, 24), (36, 30, 20, 20)])
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .blend import BlendMode
from .compositing import to_float_rgba
from .document import GroupInfo, Layer, LayerStack, layer_key
from .errors import InvalidInputError
from .imaging import as_rgba_array, fit_square
from .methods import Method, MethodTable
from .presets import get_preset, load_preset, vocabulary_hint

__all__ = ["DEFAULT_MODEL", "EDIT_MODEL", "GENERATION", "MODES", "MODE_MODELS", "StepCallback",
           "Studio", "layer_prompts", "resolve_boxes", "step_hook"]

StepCallback = Callable[[int, int], None]
"""``on_step(done, total)``, called after every denoising step; raising
:class:`~layerstudio.errors.Cancelled` (or anything) from it stops the generation there."""

MAX_SIDE = 2048


def _settings(preset, steps: int | None, size: int | None, guidance: float | None
              ) -> tuple[int, int, float]:
    """Steps, size and guidance: the preset's defaults where not given, checked."""
    try:
        steps = preset.steps if steps is None else int(steps)
        size = preset.resolution if size is None else int(size)
        guidance = preset.guidance if guidance is None else float(guidance)
    except (TypeError, ValueError, OverflowError):
        raise InvalidInputError(f"steps, size and guidance must be numbers, got {steps!r}, "
                                f"{size!r} and {guidance!r}") from None
    if not 1 <= steps <= 1000:
        raise InvalidInputError(f"steps must be between 1 and 1000, got {steps}")
    if not 16 <= size <= MAX_SIDE or size % 16:
        raise InvalidInputError(f"size must be a multiple of 16 between 16 and {MAX_SIDE}, "
                                f"got {size}")
    if not 0 <= guidance <= 50:
        raise InvalidInputError(f"guidance must be between 0 and 50, got {guidance}")
    return steps, size, guidance


def generation_notes(preset, prompt: str, size: int) -> list[str]:
    """What a user should know about a result that ran fine but may disappoint: a prompt
    outside a tiny model's vocabulary, a size far from the one it was trained at. Stored in
    the document's ``metadata["notes"]``; the CLI prints them, the UI shows them, batch keeps
    them in each job's manifest."""
    notes = []
    hint = vocabulary_hint(preset.name, prompt)
    if hint:
        notes.append(hint)
    if not preset.resolution / 2 <= size <= preset.resolution * 2:
        notes.append(f"{preset.name} was trained at {preset.resolution} px; at {size} px expect "
                     f"noise or repeated patterns (use --size {preset.resolution})")
    return notes


def _square_condition(rgba: np.ndarray, size: int, fit: str | None, mode: str
                      ) -> tuple[np.ndarray, list[str]]:
    """The given layer on the model's square canvas, aspect kept: a background is cropped to
    fill it, a foreground padded so nothing is cut (unless ``fit`` says otherwise); a note
    says what was done to a non-square image."""
    what = "background" if mode == "bg2fg" else "foreground"
    fit = fit or ("crop" if what == "background" else "pad")
    height, width = rgba.shape[:2]
    square = fit_square(rgba, size, fit)
    if width == height:
        return square, []
    done = {"crop": "centre-cropped", "pad": "padded with transparency",
            "stretch": "stretched"}[fit]
    return square, [f"the {width}x{height} {what} was {done} to the {size}x{size} canvas "
                    f"(--fit crop, pad or stretch)"]


def checked_seed(seed: Any) -> int:
    """A seed as torch takes it (a whole number in [0, 2^63), 5.0 counting as 5), or a clear
    error."""
    if isinstance(seed, float) and seed.is_integer():
        seed = int(seed)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) \
            or not 0 <= seed < 2**63:
        raise InvalidInputError(f"seed must be a whole number from 0 to 2^63 - 1, got {seed!r}")
    return int(seed)


def _pixels(value: Any, what: str) -> np.ndarray:
    """A given image as straight RGBA: a path to any image or layered file (its composite),
    a PIL image or an array."""
    if isinstance(value, (str, Path)):
        value = LayerStack.load(value).composite()
    return as_rgba_array(value, what=what)


def resolve_boxes(boxes: Any, size: int, seed: int = 0) -> list[tuple[int, int, int, int]]:
    """A layout in any form users give it: a list of ``(x, y, w, h)``, a ``"x,y,w,h;..."``
    string, a path to a JSON layout or to a sketch image (one flat colour per region), or a
    number of regions to place automatically."""
    from .pipelines.anonymous_region import (
        boxes_from_sketch,
        load_layout,
        parse_boxes,
        plan_boxes,
    )

    if boxes is None:
        raise InvalidInputError("mode 'layers' needs a layout: boxes (x,y,w,h;...), a "
                                "layout JSON or sketch, or a number of regions")
    if isinstance(boxes, int) and not isinstance(boxes, bool):
        return plan_boxes(boxes, size, size, seed)
    if isinstance(boxes, Path) or (isinstance(boxes, str) and Path(boxes).suffix):
        path = Path(boxes)
        if not path.is_file():
            raise InvalidInputError(f"layout file {path} does not exist")
        if path.suffix.lower() == ".json":
            return load_layout(path)[0]
        return boxes_from_sketch(_pixels(path, "layout sketch"), size)
    if isinstance(boxes, str):
        return parse_boxes(boxes)
    try:
        return [tuple(int(v) for v in box) for box in boxes]  # type: ignore[misc]
    except (TypeError, ValueError):
        raise InvalidInputError(f"boxes must be (x, y, w, h) tuples, got {boxes!r}") from None


def layer_prompts(prompt: str, foreground: str | None, background: str | None
                  ) -> tuple[str, str]:
    """The foreground and background prompts of a joint generation: as given, else split
    from "X on Y" (the last " on "), else the whole prompt for the foreground and nothing
    for the background."""
    if foreground is None or background is None:
        head, sep, tail = prompt.strip().rpartition(" on ")
        guessed = (head, tail) if sep and head and tail else (prompt.strip(), "")
        foreground = guessed[0] if foreground is None else foreground
        background = guessed[1] if background is None else background
    return foreground, background


def _layer_budget(layers: int | str | None) -> int | None:
    """``layers`` as a number of layers (background included), or None for "auto"."""
    from .decompose import MAX_LAYERS

    if layers is None or (isinstance(layers, str) and layers.strip().lower() == "auto"):
        return None
    try:
        count = int(layers)
    except (TypeError, ValueError):
        raise InvalidInputError(f"layers must be a number or 'auto', got {layers!r}") from None
    if isinstance(layers, bool) or not 1 <= count <= MAX_LAYERS or count != float(layers):
        raise InvalidInputError(f"layers must be a whole number from 1 to {MAX_LAYERS} or "
                                f"'auto', got {layers!r}")
    return count


def _plain(given: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    return {}, {}


def _conditioned(given: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    stop_at = float(given["stop_at"])
    return {"condition": given["condition"], "stop_at": stop_at}, {"stop_at": stop_at}


def _joint(given: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    front, back = layer_prompts(given["prompt"], given["foreground_prompt"],
                                given["background_prompt"])
    prompts = {"foreground_prompt": front, "background_prompt": back}
    return prompts, dict(prompts)


def _regions(given: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    return {"boxes": given["boxes"]}, {"boxes": [list(box) for box in given["boxes"]]}


GENERATION = MethodTable("generate", noun="mode")
"""Generation modes. ``run(given) -> (pipeline options, metadata)`` turns the checked inputs
(``prompt``, ``condition``, ``stop_at``, ``foreground_prompt``, ``background_prompt``,
``boxes``) into what the mode's pipeline takes and what its document records."""
GENERATION.add(Method("fg", "one transparent foreground layer from text (or one opaque image "
                      "layer for an RGB model such as tiny-sd)", _plain,
                      preset="tiny-layerdiffuse"))
GENERATION.add(Method("bg2fg", "a transparent foreground made for a given --background",
                      _conditioned, ("background", "fit", "stop_at"),
                      "tiny-layerdiffuse-bg2fg"))
GENERATION.add(Method("fg2bg", "a background made behind a given --foreground", _conditioned,
                      ("foreground", "fit", "stop_at"), "tiny-layerdiffuse-fg2bg"))
GENERATION.add(Method("joint", "foreground, background and the model's own blend from text "
                      "alone (the blend hidden)", _joint,
                      ("foreground_prompt", "background_prompt"), "tiny-layerdiffuse-joint"))
GENERATION.add(Method("layers", "a background and one transparent layer per box (ART)",
                      _regions, ("boxes",), "tiny-art"))
MODES = tuple(GENERATION)
MODE_MODELS = {mode: GENERATION.get(mode).preset for mode in GENERATION}
"""The shipped model each generation mode uses by default."""
DEFAULT_MODEL = MODE_MODELS["fg"]
EDIT_MODEL = "tiny-sd"
"""The shipped model edit sessions run on: an opaque text-to-image backbone."""
_LABELS = {"boxes": "boxes are", "foreground_prompt": "foreground and background prompts are",
           "background_prompt": "foreground and background prompts are"}


def step_hook(on_step: StepCallback | None, steps: int) -> dict[str, Any]:
    """The ``callback_on_step_end`` option that reports progress to ``on_step``; the total is
    the pipeline's own count when it keeps one (img2img runs ``strength`` of the steps)."""
    if on_step is None:
        return {}

    def report(pipe, step: int, _timestep, tensors: dict) -> dict:
        on_step(step + 1, int(getattr(pipe, "num_timesteps", 0) or steps))
        return tensors

    return {"callback_on_step_end": report}


def checked_upscale(scale: Any) -> int | None:
    """An ``upscale`` option: None/0 (no upscaling), 2 or 4; anything else is a clear
    error."""
    if scale in (None, 0, "", "none"):
        return None
    try:
        value = float(scale)
    except (TypeError, ValueError):
        raise InvalidInputError(f"upscale must be 2 or 4, got {scale!r}") from None
    if value not in (2.0, 4.0):
        raise InvalidInputError(f"upscale must be 2 or 4, got {scale!r}")
    return int(value)


def _document(document: Any) -> LayerStack:
    """A document argument: a :class:`LayerStack` as given, or a path to any layered or image
    file, loaded."""
    stack = LayerStack.load(document) if isinstance(document, (str, Path)) else document
    if not isinstance(stack, LayerStack):
        raise InvalidInputError("the document must be a LayerStack or a file path")
    return stack


def quiet_loading_bars() -> None:
    """No "Loading weights" bars from diffusers and transformers where stderr is not a
    terminal (logs, pipes): there they are noise around LayerStudio's own messages."""
    if sys.stderr.isatty():
        return
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


class Studio:
    """Generation front end. ``device`` is "cpu", "cuda" or None (CUDA when present).

    One Studio may serve several threads (the web UI does): model calls take turns under a
    lock, because a diffusers pipeline keeps per-call state (the scheduler's timesteps)."""

    def __init__(self, device: str | None = None) -> None:
        import torch

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._pipelines: dict[str, Any] = {}
        self._lock = threading.RLock()

    def pipeline(self, model: str):
        """The loaded pipeline (or lone model, such as the upscaler) of preset ``model``
        (loaded once, then reused)."""
        with self._lock:
            if model not in self._pipelines:
                quiet_loading_bars()
                pipe = load_preset(model)
                pipe.to(self.device)
                if hasattr(pipe, "set_progress_bar_config"):  # a pipeline, not a lone model
                    pipe.set_progress_bar_config(leave=False, disable=None)  # None: on a tty
                self._pipelines[model] = pipe
            return self._pipelines[model]

    def generate(self, prompt: str, *, model: str | None = None, mode: str = "fg",
                 background: Any = None, foreground: Any = None, stop_at: float = 1.0,
                 foreground_prompt: str | None = None, background_prompt: str | None = None,
                 boxes: Any = None, seed: int = 0, steps: int | None = None,
                 size: int | None = None, guidance: float | None = None,
                 negative_prompt: str | None = None, augment: bool = False,
                 fit: str | None = None, upscale: int | None = None,
                 on_step: StepCallback | None = None) -> LayerStack:
        """A layered image for ``prompt``. ``model`` defaults to the shipped one for ``mode``;
        ``background`` (``bg2fg``) / ``foreground`` (``fg2bg``) is the given layer: a path
        to any image or layered file (its composite is used), a PIL image or an array;
        ``stop_at`` < 1 lets the last steps run without it. In ``joint`` mode ``prompt``
        describes the whole picture and ``foreground_prompt`` / ``background_prompt`` the
        layers; when they are not given, "X on Y" is split into X and Y. Defaults (steps, size,
        guidance) come from the preset; ``augment`` runs the 8-pass alpha decoder
        (transparent models only). In ``layers`` mode ``boxes`` is the layout (see
        :func:`resolve_boxes`): one transparent layer per box, bottom to top. ``on_step``
        (see :data:`StepCallback`) reports progress and can cancel. ``upscale`` (2 or 4)
        enlarges the result with :meth:`upscale`."""
        seed = checked_seed(seed)
        upscale = checked_upscale(upscale)
        method = GENERATION.get(mode)
        model = model or method.preset
        preset = get_preset(model)
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidInputError("the prompt is empty; describe what to generate")
        if preset.mode not in GENERATION:
            raise InvalidInputError(f"{model!r} is not a generator ({preset.good_for}); for "
                                    f"{mode} use {method.preset!r}")
        if preset.mode != mode:
            raise InvalidInputError(f"{model!r} generates in mode {preset.mode!r}, not "
                                    f"{mode!r}; for {mode} use {method.preset!r}")
        condition = self._condition(method, background, foreground)
        GENERATION.check_inputs(method, {"foreground_prompt": foreground_prompt or None,
                                         "background_prompt": background_prompt or None,
                                         "boxes": boxes}, _LABELS)
        if not 0.0 <= stop_at <= 1.0:
            raise InvalidInputError(f"stop_at must be between 0 and 1, got {stop_at}")
        steps, size, guidance = _settings(preset, steps, size, guidance)
        layout = resolve_boxes(boxes, size, seed) if "boxes" in method.takes else None
        fit_notes = []
        if condition is not None:
            condition, fit_notes = _square_condition(condition, size, fit, mode)
        elif fit is not None:
            raise InvalidInputError("fit is for a given background or foreground image")

        import torch

        pipe = self.pipeline(model)
        options: dict[str, Any] = dict(num_inference_steps=steps, guidance_scale=guidance,
                                       height=size, width=size,
                                       generator=torch.Generator().manual_seed(seed))
        if negative_prompt:
            options["negative_prompt"] = negative_prompt
        own, recorded = method.run({"prompt": prompt, "condition": condition,
                                    "stop_at": stop_at, "foreground_prompt": foreground_prompt,
                                    "background_prompt": background_prompt, "boxes": layout})
        options.update(own)
        transparent = hasattr(pipe, "transparent_decoder")
        if augment:
            if not transparent:
                raise InvalidInputError(f"--augment needs a transparent model; {model!r} "
                                        "generates opaque images")
            options["augment"] = True
        options.update(step_hook(on_step, steps))
        with self._lock:
            started = time.perf_counter()
            result = pipe(prompt, **options)
        seconds = round(time.perf_counter() - started, 3)
        info = {"model": model, "prompt": prompt, "seed": seed, "steps": steps,
                "guidance": guidance, "mode": mode, "seconds": seconds}
        notes = generation_notes(preset, prompt, size) + fit_notes
        if notes:
            info["notes"] = notes
        info.update(recorded)
        if transparent:
            stack = result.layers[0]
            stack.metadata.update(info)
        else:
            image = result.images[0].convert("RGBA")
            stack = LayerStack(image.width, image.height,
                               [Layer("image", image, kind="background", provenance=info)],
                               metadata=info)
        return self.upscale(stack, upscale) if upscale else stack

    def upscale(self, document: Any, scale: int = 4, *, layer: int | str | None = None,
                on_step: StepCallback | None = None) -> LayerStack:
        """``document`` (a stack or a path to any image or layered file) ``scale`` (2 or 4)
        times larger through the shipped Real-ESRGAN model, every layer (or only ``layer``;
        the others Lanczos-scaled), offsets and canvas scaled; see
        :func:`layerstudio.upscale.upscale_stack`. ``on_step(done, total)`` counts layers."""
        from .upscale import UPSCALER, upscale_stack

        stack = _document(document)
        index = None if layer is None else stack.index(layer_key(layer))
        with self._lock:
            return upscale_stack(stack, checked_upscale(scale), self.pipeline(UPSCALER),
                                 layer=index, on_layer=on_step)

    def edit_layer(self, document: Any, layer: int | str | None, prompt: str, *,
                   mask: Any = None, strength: float = 0.6, model: str = DEFAULT_MODEL,
                   seed: int = 0, steps: int | None = None, guidance: float | None = None,
                   negative_prompt: str | None = None, augment: bool = False,
                   on_step: StepCallback | None = None) -> LayerStack:
        """Regenerate one layer of ``document`` (a :class:`LayerStack` or a path to any
        layered or image file) from ``prompt``, leaving every other layer untouched.

        The layer (on the full canvas) goes through the transparent model's img2img path:
        ``strength`` in (0, 1] is how far it may move; ``mask`` (greyscale, canvas-sized,
        white = repaint) limits the change to a region, outside which the layer's pixels and
        alpha stay exactly as they were. Name, opacity, blend mode, group and visibility are
        kept. ``on_step`` as in :meth:`generate`. Returns a new stack."""
        seed = checked_seed(seed)
        stack = _document(document)
        stack = stack.copy()
        index = stack.top_visible() if layer is None else stack.index(layer)
        target = stack.layers[index]
        if target.adjustment is not None:
            raise InvalidInputError(f"{target.name!r} is an adjustment layer ("
                                    f"{target.adjustment.kind}); it has no pixels to regenerate")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidInputError("the prompt is empty; describe what the layer should show")
        preset = get_preset(model)
        if preset.mode != "fg":
            raise InvalidInputError(f"editing needs a text-to-transparent-layer model; "
                                    f"{model!r} is a {preset.mode} model")
        if not 0.0 < strength <= 1.0:
            raise InvalidInputError(f"strength must be in (0, 1], got {strength}")
        steps, _, guidance = _settings(preset, steps, None, guidance)
        pipe = self.pipeline(model)
        if not hasattr(pipe, "transparent_encoder") or pipe.transparent_encoder is None:
            raise InvalidInputError(f"{model!r} cannot edit transparent layers (it has no "
                                    "transparent encoder)")
        alone = target.copy(opacity=1.0, blend_mode=BlendMode.NORMAL, visible=True, group=())
        canvas = np.asarray(LayerStack(stack.width, stack.height, [alone]).composite())
        if mask is not None:
            mask = _pixels(mask, "the mask")
            if mask.shape[:2] != canvas.shape[:2]:
                raise InvalidInputError(f"the mask is {mask.shape[1]}x{mask.shape[0]}, the "
                                        f"canvas {stack.width}x{stack.height}")
        import torch

        from layerstudio.pipelines.latent_transparency import LatentTransparencyImg2ImgPipeline

        editor = LatentTransparencyImg2ImgPipeline(**pipe.components)
        editor.set_progress_bar_config(leave=False)
        options: dict[str, Any] = dict(num_inference_steps=steps, guidance_scale=guidance,
                                       generator=torch.Generator().manual_seed(seed))
        if negative_prompt:
            options["negative_prompt"] = negative_prompt
        options.update(step_hook(on_step, steps))
        with self._lock:
            started = time.perf_counter()
            made = editor(prompt, image=canvas, mask=mask, strength=strength, augment=augment,
                          **options).images[0]
        if made.size != stack.size:
            made = made.resize(stack.size, Image.LANCZOS)
        info = {"model": model, "prompt": prompt, "seed": seed, "steps": steps,
                "guidance": guidance, "strength": strength, "masked": mask is not None,
                "seconds": round(time.perf_counter() - started, 3)}
        edited = target.copy(pixels=np.asarray(made), offset=(0, 0),
                             provenance={**target.provenance, "edit": info})
        stack.layers[index] = edited if edited.is_empty else edited.cropped_to_content()
        return stack

    def edit_pipeline(self, model: str):
        """The layered-memory editing pipeline on preset ``model``'s backbone (built once,
        sharing the loaded weights)."""
        key = f"{model}#layered-memory"
        with self._lock:
            if key not in self._pipelines:
                from .pipelines.layered_memory import LayeredMemoryEditPipeline
                from .pipelines.layered_memory.backbone import kind_of

                pipe = self.pipeline(model)
                refusal = f"edit sessions run on an opaque text-to-image model with a U-Net " \
                          f"or PixArt transformer (such as {EDIT_MODEL}); {model!r} is not one"
                if getattr(pipe, "transparent_decoder", None) is not None or \
                        getattr(pipe, "vae", None) is None:
                    raise InvalidInputError(refusal)
                try:
                    kind_of(pipe)
                except ValueError as error:
                    raise InvalidInputError(f"{refusal}: {error}") from None
                edit = LayeredMemoryEditPipeline.around(pipe)
                edit.set_progress_bar_config(leave=False, disable=None)
                self._pipelines[key] = edit
            return self._pipelines[key]

    def edit_session(self, background: Any, *, model: str | None = None, seed: int = 0,
                     steps: int | None = None, size: int | None = None,
                     guidance: float | None = None, negative_prompt: str | None = None,
                     base: Path | None = None, on_step: StepCallback | None = None):
        """A new step-by-step editing session (:class:`~layerstudio.edit_session.EditSession`)
        on ``background``: a prompt (generated first), a path to any image or layered file,
        a PIL image or an array (centre-cropped to the square canvas). ``model`` (default
        tiny-sd), ``steps``, ``size`` and ``guidance`` (the preset's by default) hold for the
        whole session; ``base``: the folder a relative background path starts from."""
        import torch

        from .edit_session import EditSession, background_picture

        model = model or EDIT_MODEL
        seed = checked_seed(seed)
        preset = get_preset(model)
        steps, size, guidance = _settings(preset, steps, size, guidance)
        picture, prompt, notes = background_picture(background, size, base)
        pipe = self.edit_pipeline(model)
        with self._lock:
            started = time.perf_counter()
            try:
                result = pipe(prompt or None, image=picture,
                              height=size, width=size, num_inference_steps=steps,
                              guidance_scale=guidance, negative_prompt=negative_prompt or None,
                              generator=torch.Generator().manual_seed(seed),
                              **step_hook(on_step, steps))
            except ValueError as error:
                raise InvalidInputError(str(error)) from None
        memory = result.memories[0]
        memory.settings.update(model=model, seed=seed, guidance=guidance,
                               negative=negative_prompt or "")
        session = EditSession(self, memory)
        session.notes = notes + (generation_notes(preset, prompt, size) if prompt else [])
        session.seconds = round(time.perf_counter() - started, 3)
        return session

    def open_edit_session(self, path: str | Path):
        """A saved session, from its memory file or the document saved beside it."""
        from .edit_session import EditSession, memory_path
        from .pipelines.layered_memory import EditMemory

        memory = EditMemory.load(memory_path(path))
        if "model" not in memory.settings:
            raise InvalidInputError(f"{path}: the memory does not say which model made it")
        return EditSession(self, memory)

    def edit_sequence(self, background: Any, edits: list | None = None, *,
                      model: str | None = None,
                      seed: int = 0, steps: int | None = None, size: int | None = None,
                      guidance: float | None = None, negative_prompt: str | None = None
                      ) -> LayerStack:
        """A background and a list of edits (the ``edit-session`` script form, see
        :mod:`layerstudio.edit_session`) as the finished document."""
        session = self.edit_session(background, model=model, seed=seed, steps=steps,
                                    size=size, guidance=guidance,
                                    negative_prompt=negative_prompt)
        return session.apply(edits or [])

    def decompose(self, image: Any, *, method: str | None = None,
                  layers: int | str | None = None, mask: Any = None, box: Any = None,
                  prompt: str | None = None, seed: int = 0, steps: int | None = None,
                  layer: int | str | None = None, upscale: int | None = None,
                  separate_effects: bool = False, blend: str | None = None,
                  convention: str | None = None,
                  on_step: StepCallback | None = None) -> LayerStack:
        """``image`` (a path to any image or layered file, whose composite is used, a PIL
        image or an array) as layers that re-composite to it, by ``method`` (default: the
        first of :data:`~layerstudio.decompose.DECOMPOSITION`). ``layers``: the most layers
        to return, background included (a number, or "auto"/None for as many as the method
        finds); ``mask`` (canvas-sized, white = selected) or ``box`` (x, y, w, h): the region
        to decompose, for the methods that take one; ``prompt``, ``seed``, ``steps``: for
        model methods. The metadata records the method, the seconds taken and the
        recomposition PSNR and error; a transparent input is flattened onto white first
        (noted). With ``layer`` (a name or index), ``image`` is a document and that layer is
        split inside it instead (:meth:`decompose_layer`). ``upscale`` (2 or 4) enlarges
        the result with :meth:`upscale`. ``separate_effects`` (effects methods) puts a
        shadow or glow in a layer of its own (multiply / screen) under the object; ``blend``
        (the see-through method) is the layer's blend type, "auto" by default;
        ``convention`` (the anime methods) how shadow and highlight recombine: "artist"
        (multiply / screen, the default), "artist-add" (multiply / linear dodge) or
        "normal"."""
        from .decompose import DECOMPOSITION, Request, parse_box, read_mask, recomposition

        if checked_upscale(upscale):
            return self.upscale(self.decompose(image, method=method, layers=layers, mask=mask,
                                               box=box, prompt=prompt, seed=seed, steps=steps,
                                               layer=layer, separate_effects=separate_effects,
                                               blend=blend, convention=convention,
                                               on_step=on_step), upscale)

        if layer is not None:
            if mask is not None or box is not None:
                raise InvalidInputError("a mask or box is for a whole picture, not with layer")
            return self.decompose_layer(image, layer, method=method, layers=layers,
                                        prompt=prompt, seed=seed, steps=steps,
                                        on_step=on_step)

        chosen = DECOMPOSITION.get(method)
        seed = checked_seed(seed)
        budget = _layer_budget(layers)
        DECOMPOSITION.check_inputs(chosen, {"layers": budget, "mask": mask, "box": box,
                                            "prompt": prompt or None, "steps": steps,
                                            "separate_effects": separate_effects or None,
                                            "blend": blend, "convention": convention},
                                   {"separate_effects": "separating effects is",
                                    "blend": "a blend type is",
                                    "convention": "a convention is"})
        if mask is not None and box is not None:
            raise InvalidInputError("give a mask or a box, not both")
        rgba = to_float_rgba(_pixels(image, "the picture"))
        notes = []
        if (rgba[..., 3] < 1).any():
            notes.append("the picture's transparency was flattened onto white before "
                         "decomposing")
        rgb = rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])
        size = (rgb.shape[1], rgb.shape[0])
        region = read_mask(mask, size) if mask is not None else \
            parse_box(box, size) if box is not None else None
        request = Request(rgb, budget, region, prompt or None, seed, steps, on_step,
                          bool(separate_effects), blend, convention)
        with self._lock:
            started = time.perf_counter()
            stack = chosen.run(request, self)
        info = {"task": "decompose", "method": chosen.name, "layers": len(stack),
                "seconds": round(time.perf_counter() - started, 3),
                **recomposition(stack, rgb)}
        if "seed" in chosen.takes:
            info["seed"] = seed
        if notes:
            info["notes"] = notes
        stack.metadata.update(info)
        return stack

    def decompose_layer(self, document: Any, layer: int | str | None = None, *,
                        method: str | None = None, layers: int | str | None = None,
                        prompt: str | None = None, seed: int = 0, steps: int | None = None,
                        on_step: StepCallback | None = None) -> LayerStack:
        """Split one layer of ``document`` (a stack or a file path; default: the top visible
        layer) into sub-layers, by :meth:`decompose`, inside a group named after it at its
        place: the group takes the layer's opacity, blend mode and visibility, the sub-layers
        its offset; every other layer is kept. A transparent layer is decomposed on white and
        its alpha then limits every sub-layer (exact where it is opaque). Returns a new
        stack."""
        stack = _document(document)
        stack = stack.copy()
        index = stack.top_visible() if layer is None else stack.index(layer_key(layer))
        target = stack.layers[index]
        if target.adjustment is not None or target.is_empty:
            raise InvalidInputError(f"{target.name!r} has no pixels to decompose")
        parts = self.decompose(target.pixels, method=method, layers=layers, prompt=prompt,
                               seed=seed, steps=steps, on_step=on_step)
        cover = to_float_rgba(as_rgba_array(target.pixels))[..., 3]
        group = (*target.group, target.name)
        stack.set_group(group, GroupInfo(target.opacity, target.blend_mode, target.visible)
                        if target.blend_mode is not BlendMode.NORMAL or target.opacity < 1
                        or not target.visible else GroupInfo())
        pieces = []
        for part in parts.layers:
            pixels = np.asarray(part.pixels).copy()
            x, y = part.offset
            limit = cover[y:y + pixels.shape[0], x:x + pixels.shape[1]]
            pixels[..., 3] = np.rint(pixels[..., 3] * limit).astype(pixels.dtype)
            piece = part.copy(pixels=pixels, group=group,
                              offset=(x + target.offset[0], y + target.offset[1]),
                              provenance={**part.provenance, "split_from": target.name})
            if not piece.is_empty:
                pieces.append(piece.cropped_to_content())
        stack.remove(index)
        for offset, piece in enumerate(pieces):
            stack.add(piece, index + offset)  # the document's size limits apply
        stack.metadata.setdefault("splits", []).append(
            {"layer": target.name, **{key: parts.metadata[key] for key in
                                      ("method", "layers", "recomposition_psnr", "seconds")}})
        return stack

    @staticmethod
    def _condition(method: Method, background: Any, foreground: Any):
        """The given layer a conditioned mode needs, as straight RGBA; errors name what is
        missing or superfluous."""
        given = {"background": background, "foreground": foreground}
        needed = next((name for name in given if name in method.takes), None)
        for name, value in given.items():
            if value is not None and name != needed:
                other = GENERATION.taking(name)[0]
                raise InvalidInputError(
                    f"mode {method.name!r} takes no {name} image" + (
                        f"; use mode {other} to generate around one"
                        if method.name == "fg" else ""))
        if needed is None:
            return None
        value = given[needed]
        if value is None:
            raise InvalidInputError(f"mode {method.name!r} needs a {needed} image "
                                    f"(--{needed} FILE on the command line)")
        return _pixels(value, f"the {needed} image")
