"""The Generate tab: prompt, mode, model, layout, seed and sampling settings -> a new document.

:func:`studio_arguments` turns the form into :meth:`Studio.generate` keywords and is plain
Python (tested without a browser). It reads only the fields the chosen mode uses, so a
background image left over from another mode is never sent, and it never treats text from
the page as a file path: typed boxes go through ``parse_boxes`` and drawn ones through
``boxes_from_sketch``, not through ``resolve_boxes``, which also opens layout files.
"""

from __future__ import annotations

import secrets
from typing import Any

import gradio as gr
import numpy as np

from layerstudio.errors import InvalidInputError
from layerstudio.io.raster import read_image_file
from layerstudio.pipelines.anonymous_region import boxes_from_sketch, parse_boxes
from layerstudio.presets import PRESETS, get_preset, is_available
from layerstudio.studio import GENERATION, MODE_MODELS, MODES, Studio

from .layers_panel import DocumentView
from .runs import StopFlags, cancellable, friendly, wire_run
from .session import Session

__all__ = ["LAYOUT_SOURCES", "MODE_LABELS", "build_generate_tab", "models_for",
           "studio_arguments"]

MODE_LABELS = {"fg": "Transparent layer", "bg2fg": "Foreground for my background",
               "fg2bg": "Background behind my foreground", "joint": "Foreground + background",
               "layers": "Layers in boxes"}
LAYOUT_SOURCES = ("Type boxes", "Draw regions", "Automatic")
SIZES = (64, 128, 256, 512, 768, 1024)
SKETCH_SIDE = 256
BRUSH_COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4",
                 "#f032e6", "#bfef45"]


def models_for(mode: str | None) -> list[str]:
    """Generators for ``mode`` (every mode when None) whose files are here, the shipped
    defaults first (the judge preset has mode 'fg' but no sampling steps: it is not a
    generator)."""
    names = [name for name, preset in PRESETS.items()
             if (mode is None or preset.mode == mode) and preset.steps > 0
             and is_available(preset)]
    defaults = [MODE_MODELS[mode]] if mode else list(MODE_MODELS.values())
    return sorted(names, key=lambda name: name not in defaults)


def _sketch_boxes(sketch: Any, size: int) -> list[tuple[int, int, int, int]]:
    """Boxes of a drawing (one colour a region), scaled from the drawing to the canvas."""
    if isinstance(sketch, dict):  # the image editor's value: draw on its composite
        sketch = sketch.get("composite")
    if sketch is None:
        raise InvalidInputError("draw one region per colour first, or type the boxes")
    array = np.asarray(sketch)
    if array.ndim == 3 and array.shape[2] == 4 and not array[..., 3].any():
        raise InvalidInputError("the drawing is empty: draw one region per colour")
    return boxes_from_sketch(array, size)


def _condition(path: str | None) -> np.ndarray | None:
    """An uploaded image (a file in Gradio's upload folder) read with our size checks."""
    return None if not path else read_image_file(path)


def studio_arguments(*, prompt: str, negative: str, mode: str, model: str | None,
                     seed: int | float | None, randomise: bool, steps: int | float,
                     guidance: float, size: int | float, background: str | None = None,
                     foreground: str | None = None, foreground_prompt: str = "",
                     background_prompt: str = "", layout: str = LAYOUT_SOURCES[0],
                     boxes: str = "", sketch: Any = None, regions: int | float = 3,
                     augment: bool = False, stop_at: float = 1.0) -> dict[str, Any]:
    """Keywords for :meth:`Studio.generate` from the form, seed drawn when ``randomise``."""
    if mode not in MODES:
        raise InvalidInputError(f"unknown mode {mode!r}")
    used_seed = secrets.randbelow(2**31) if randomise or seed is None else int(seed)
    arguments: dict[str, Any] = dict(
        prompt=prompt, mode=mode, model=model or None, seed=used_seed, steps=int(steps),
        guidance=float(guidance), size=int(size), negative_prompt=negative or None)
    takes = GENERATION.get(mode).takes
    if "background" in takes:
        arguments["background"] = _condition(background)
    if "foreground" in takes:
        arguments["foreground"] = _condition(foreground)
    if "stop_at" in takes:
        arguments["stop_at"] = float(stop_at)
    if "foreground_prompt" in takes:
        arguments.update(foreground_prompt=foreground_prompt.strip() or None,
                         background_prompt=background_prompt.strip() or None)
    if "boxes" in takes:
        if layout == "Type boxes":
            arguments["boxes"] = parse_boxes(boxes or "")
        elif layout == "Draw regions":
            arguments["boxes"] = _sketch_boxes(sketch, int(size))
        elif layout == "Automatic":
            arguments["boxes"] = int(regions)
        else:
            raise InvalidInputError(f"unknown layout source {layout!r}")
    if augment and mode in ("fg", "bg2fg", "joint"):
        arguments["augment"] = True
    return arguments


def _preset_defaults(model: str | None) -> tuple[Any, Any, Any]:
    """Steps, guidance and size updates for the chosen model's own defaults."""
    if not model:
        return gr.update(), gr.update(), gr.update()
    preset = get_preset(model)
    return (gr.update(value=preset.steps), gr.update(value=preset.guidance),
            gr.update(value=preset.resolution))


def build_generate_tab(page: gr.Blocks, view: DocumentView, studio: Studio, flags: StopFlags,
                       concurrency: int) -> None:
    """Lay out the Generate tab (inside the caller's ``gr.Tab`` of ``page``) and wire it to
    ``view``."""
    first = models_for("fg")
    every = models_for(None)  # Gradio checks a value against the choices it started with,
    # so the API accepts any model here; the page narrows the list to the mode on load
    prompt = gr.Textbox(label="Prompt", lines=2, elem_id="prompt",
                        placeholder="an ice cream  ·  for 'Foreground + background': a cat "
                                    "on a sofa")
    mode = gr.Radio([(label, key) for key, label in MODE_LABELS.items()], value="fg",
                    label="What to make", elem_id="mode")
    model = gr.Dropdown(every, value=first[0] if first else None, label="Model",
                        elem_id="model")
    with gr.Group(visible=False) as background_group:
        background = gr.Image(label="Your background", type="filepath", sources=["upload"])
    with gr.Group(visible=False) as foreground_group:
        foreground = gr.Image(label="Your foreground (transparent PNG)", type="filepath",
                              sources=["upload"], image_mode="RGBA")
    with gr.Row(visible=False) as joint_group:
        foreground_prompt = gr.Textbox(label="Foreground prompt (optional)")
        background_prompt = gr.Textbox(label="Background prompt (optional)")
    with gr.Group(visible=False) as layout_group:
        layout = gr.Radio(list(LAYOUT_SOURCES), value="Type boxes", label="Layout")
        boxes = gr.Textbox(label="Boxes: x,y,w,h in canvas pixels, ';' between regions",
                           value="4,8,28,28;30,28,28,28", elem_id="boxes")
        sketch = gr.Sketchpad(label="One brush colour a region (pick the brush first)",
                              canvas_size=(SKETCH_SIDE, SKETCH_SIDE),
                              brush=gr.Brush(colors=BRUSH_COLOURS, default_size=24),
                              type="numpy", image_mode="RGBA", format="png", visible=False,
                              elem_id="sketch")
        regions = gr.Slider(1, 20, value=3, step=1, label="Regions (placed automatically)",
                            visible=False)
    with gr.Row():
        seed = gr.Number(value=0, precision=0, minimum=0, label="Seed", elem_id="seed")
        randomise = gr.Checkbox(value=False, label="New seed each time",
                                info="off = seed locked, the same picture again")
    with gr.Accordion("Settings", open=False):
        with gr.Row():
            steps = gr.Slider(1, 100, value=20, step=1, label="Steps")
            guidance = gr.Slider(0, 20, value=4.0, step=0.5, label="Guidance")
            size = gr.Dropdown(list(SIZES), value=64, label="Size (px)",
                               allow_custom_value=True)
        negative = gr.Textbox(label="Negative prompt")
        with gr.Row():
            augment = gr.Checkbox(label="Cleaner alpha (8-pass decoder)")
            stop_at = gr.Slider(0, 1, value=1.0, step=0.05, label="Stop conditioning at",
                                info="for the modes that take your image")
    with gr.Row():
        start = gr.Button("Generate", variant="primary", elem_id="generate")
        stop = gr.Button("Stop", variant="stop", elem_id="stop")
    notice = gr.Markdown("", elem_id="generate-notice", min_height=48)

    def mode_changed(chosen: str) -> tuple[Any, ...]:
        names = models_for(chosen)
        return (gr.Dropdown(choices=names, value=names[0] if names else None),
                gr.update(visible=chosen == "bg2fg"), gr.update(visible=chosen == "fg2bg"),
                gr.update(visible=chosen == "joint"), gr.update(visible=chosen == "layers"),
                *_preset_defaults(names[0] if names else None))

    def layout_changed(chosen: str) -> tuple[Any, ...]:
        return tuple(gr.update(visible=chosen == source) for source in LAYOUT_SOURCES)

    by_mode = [model, background_group, foreground_group, joint_group, layout_group, steps,
               guidance, size]
    mode.change(mode_changed, mode, by_mode, api_name=False)
    page.load(mode_changed, mode, by_mode, api_name=False)  # the page lists the mode's models
    model.input(_preset_defaults, model, [steps, guidance, size], api_name=False)
    layout.change(layout_changed, layout, [boxes, sketch, regions], api_name=False)

    @friendly
    def generate(session: Session | None, text: str, avoid: str, chosen_mode: str,
                 preset: str | None, number: float | None, fresh: bool, step_count: float,
                 scale: float, side: float, background_file: str | None,
                 foreground_file: str | None, front: str, back: str, source: str,
                 typed: str, drawing: Any, count: float, cleaner: bool, until: float,
                 request: gr.Request, progress: gr.Progress = gr.Progress()
                 ) -> tuple[Any, ...]:
        session = session or Session()
        arguments = studio_arguments(
            prompt=text, negative=avoid, mode=chosen_mode, model=preset, seed=number,
            randomise=fresh, steps=step_count, guidance=scale, size=side,
            background=background_file, foreground=foreground_file, foreground_prompt=front,
            background_prompt=back, layout=source, boxes=typed, sketch=drawing,
            regions=count, augment=cleaner, stop_at=until)

        def work(on_step) -> str:
            progress(0, desc="loading the model")
            stack = studio.generate(**arguments, on_step=on_step)
            session.replace(stack)
            count = len(stack.layers)
            notes = "".join(f" Note: {note}." for note in stack.metadata.get("notes", []))
            return (f"Made {count} layer{'' if count == 1 else 's'} in "
                    f"{stack.metadata.get('seconds', 0):.1f} s (seed {arguments['seed']})."
                    f"{notes}")

        message = cancellable(flags, request.session_hash, "generating", progress, work,
                              "the document is unchanged.")
        return (*view.render(session), arguments["seed"], message)

    wire_run(start, stop, flags, generate,
             [view.state, prompt, negative, mode, model, seed, randomise, steps, guidance, size,
              background, foreground, foreground_prompt, background_prompt, layout, boxes,
              sketch, regions, augment, stop_at],
             [*view.outputs, seed, notice], notice, "generate", concurrency)
