"""The Decompose tab: a picture becomes a layered document, or one layer becomes a group.

The method list, and which options each method takes, come from the decompose table
(:data:`layerstudio.decompose.DECOMPOSITION`), so a new method appears here without a change
to this file. The picture is uploaded into an image editor whose brush marks the region to
decompose (optional; a typed box works too); the result replaces the document in the Layers
panel, where everything (export included) works on it. "Decompose the selected layer" splits
that layer of the current document into a group in place. "Extract with its effects" pulls the
brushed or boxed object out with its shadow or glow (the first effects method installed).
"""

from __future__ import annotations

from typing import Any

import gradio as gr
import numpy as np

from layerstudio.decompose import ANIME_CONVENTIONS, DECOMPOSITION, MAX_LAYERS
from layerstudio.errors import InvalidInputError
from layerstudio.studio import Studio

from .layers_panel import DocumentView
from .mask import painted_mask
from .runs import StopFlags, cancellable, friendly, wire_run
from .session import Session

__all__ = ["LAYER_CHOICES", "build_decompose_tab", "decompose_arguments", "effects_method"]

LAYER_CHOICES = ["auto", *(str(n) for n in range(2, 13))]


def _picture(drawn: Any) -> np.ndarray:
    """The uploaded picture from the editor's value."""
    background = drawn.get("background") if isinstance(drawn, dict) else None
    if background is None:
        raise InvalidInputError("upload a picture to decompose first")
    return np.asarray(background)


def decompose_arguments(method: str, layers: str, box: str, prompt: str, seed: float | None,
                        steps: float | None, region: np.ndarray | None,
                        separate: bool = False, blend: str = "auto",
                        convention: str = "artist") -> dict[str, Any]:
    """Keywords for :meth:`Studio.decompose` from the form: only the options the method
    takes (the others stay hidden in the page and are not sent)."""
    takes = DECOMPOSITION.get(method).takes
    arguments: dict[str, Any] = {"method": method}
    if "layers" in takes:
        arguments["layers"] = layers or "auto"
    if "box" in takes and box.strip():
        arguments["box"] = box.strip()
    if "mask" in takes and region is not None:
        if "box" in arguments:
            raise InvalidInputError("paint a region or type a box, not both")
        arguments["mask"] = region
    if "prompt" in takes:
        arguments["prompt"] = prompt.strip() or None
    if "seed" in takes:
        arguments["seed"] = int(seed or 0)
    if "steps" in takes and steps:
        arguments["steps"] = int(steps)
    if "separate_effects" in takes:
        arguments["separate_effects"] = bool(separate)
    if "blend" in takes:
        arguments["blend"] = blend or "auto"
    if "convention" in takes:
        arguments["convention"] = convention or "artist"
    return arguments


def effects_method(chosen: str | None = None) -> str:
    """The method "Extract with its effects" uses: the one chosen in the Method list when it
    is an effects method (one that can separate effects), else the first of the table whose
    model is here."""
    takers = DECOMPOSITION.taking("separate_effects")
    if chosen in takers:
        return chosen
    for name in takers:
        if DECOMPOSITION.installed(name):
            return name
    raise InvalidInputError("no method to extract an object with its effects is installed")


def _summary(info: dict[str, Any], what: str) -> str:
    notes = "".join(f" Note: {note}." for note in info.get("notes", []))
    return (f"{what} {info['layers']} layer{'' if info['layers'] == 1 else 's'} by "
            f"{info['method']} in {info['seconds']:.1f} s; they re-composite to the picture at "
            f"{info['recomposition_psnr']} dB.{notes}")


def build_decompose_tab(view: DocumentView, studio: Studio, flags: StopFlags,
                        concurrency: int) -> None:
    """Lay out the Decompose tab (inside the caller's ``gr.Tab``) and wire it to ``view``."""
    picture = gr.ImageEditor(
        label="Picture (optional: brush over the part to decompose)", type="numpy",
        image_mode="RGBA", sources=["upload", "clipboard"], transforms=[], layers=False,
        format="png", elem_id="decompose-picture",
        brush=gr.Brush(colors=["#ff00ff"], color_mode="fixed", default_size=24))
    method = gr.Dropdown(list(DECOMPOSITION), value=DECOMPOSITION.default, label="Method",
                         info=DECOMPOSITION.get(DECOMPOSITION.default).summary,
                         elem_id="decompose-method")
    with gr.Row():
        layers = gr.Dropdown(LAYER_CHOICES, value="auto", label="Layers",
                             info=f"background included; up to {MAX_LAYERS}",
                             allow_custom_value=True, elem_id="decompose-layers")
        box = gr.Textbox(label="Box x,y,w,h (optional; several: x,y,w,h;x,y,w,h)",
                         elem_id="decompose-box")
    prompt = gr.Textbox(label="What the picture shows", visible=False)
    with gr.Row():
        seed = gr.Number(value=0, precision=0, minimum=0, label="Seed", visible=False)
        steps = gr.Number(value=None, precision=0, minimum=1, label="Steps", visible=False)
    separate = gr.Checkbox(False, label="Shadow, reflection and glow on layers of their own "
                                        "(multiply / normal / screen), so they can be softened "
                                        "or deleted alone",
                           visible=False, elem_id="decompose-separate")
    blend = gr.Dropdown(["auto", "normal", "screen", "add", "multiply"], value="auto",
                        label="Blend of the see-through layer",
                        info="normal: watermark, glass; screen: flare, smoke, rain; add: light "
                             "leak; multiply: X-ray; auto: the model's choice",
                        visible=False, elem_id="decompose-blend")
    convention = gr.Dropdown(list(ANIME_CONVENTIONS), value="artist",
                             label="How shadow and highlight recombine",
                             info="artist: shadow multiply, highlight screen; artist-add: "
                                  "highlight linear dodge; normal: plain alpha-over",
                             visible=False, elem_id="decompose-convention")
    with gr.Row():
        start = gr.Button("Decompose", variant="primary", elem_id="decompose")
        extract = gr.Button("Extract with its effects", elem_id="extract-effects")
        split = gr.Button("Decompose the selected layer", elem_id="decompose-layer")
        stop = gr.Button("Stop", variant="stop")
    notice = gr.Markdown("", elem_id="decompose-notice", min_height=48)

    def method_changed(chosen: str) -> tuple[Any, ...]:
        entry = DECOMPOSITION.get(chosen)
        return (gr.Dropdown(info=entry.summary), gr.update(visible="layers" in entry.takes),
                gr.update(visible="box" in entry.takes),
                gr.update(visible="prompt" in entry.takes),
                gr.update(visible="seed" in entry.takes),
                gr.update(visible="steps" in entry.takes),
                gr.update(visible="separate_effects" in entry.takes),
                gr.update(visible="blend" in entry.takes),
                gr.update(visible="convention" in entry.takes))

    method.change(method_changed, method,
                  [method, layers, box, prompt, seed, steps, separate, blend, convention],
                  api_name=False)

    @friendly
    def decompose(session: Session | None, drawn: Any, chosen: str, count: str, typed: str,
                  text: str, number: float | None, step_count: float | None, apart: bool,
                  blend_type: str, recombination: str, request: gr.Request,
                  progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
        session = session or Session()
        pixels = _picture(drawn)
        region = painted_mask(drawn, (pixels.shape[1], pixels.shape[0]))
        arguments = decompose_arguments(chosen, count, typed, text, number, step_count, region,
                                        apart, blend_type, recombination)

        def work(on_step) -> str:
            progress(0, desc="decomposing")
            stack = studio.decompose(pixels, **arguments, on_step=on_step)
            session.replace(stack)
            return _summary(stack.metadata, "Made")

        message = cancellable(flags, request.session_hash, "decomposing", progress, work,
                              "the document is unchanged.")
        return (*view.render(session), message)

    @friendly
    def extract_effects(session: Session | None, drawn: Any, chosen: str, typed: str,
                        number: float | None, step_count: float | None, apart: bool,
                        request: gr.Request, progress: gr.Progress = gr.Progress()
                        ) -> tuple[Any, ...]:
        """The object under the brush or box, with its shadow or glow, above the clean
        background (one layer, or a group of object and effect layers with ``apart``), by
        the effects method chosen in the list or else the first one installed."""
        pixels = _picture(drawn)
        region = painted_mask(drawn, (pixels.shape[1], pixels.shape[0]))
        if region is None and not typed.strip():
            raise InvalidInputError("brush over the object or type a box around it first")
        return decompose(session, drawn, effects_method(chosen), "auto", typed, "", number,
                         step_count, apart, "auto", "artist", request, progress)

    @friendly
    def decompose_selected(session: Session | None, chosen: str, count: str, text: str,
                           number: float | None, step_count: float | None,
                           request: gr.Request, progress: gr.Progress = gr.Progress()
                           ) -> tuple[Any, ...]:
        session = session or Session()
        index = session.current()
        arguments = decompose_arguments(chosen, count, "", text, number, step_count, None)

        def work(on_step) -> str:
            progress(0, desc="decomposing the layer")
            stack = studio.decompose(session.require(), layer=index, **arguments,
                                     on_step=on_step)
            session.replace(stack, selected=index)
            return _summary(stack.metadata["splits"][-1], "Split the layer into")

        message = cancellable(flags, request.session_hash, "decomposing the layer", progress,
                              work, "the document is unchanged.")
        return (*view.render(session), message)

    wire_run(start, stop, flags, decompose,
             [view.state, picture, method, layers, box, prompt, seed, steps, separate, blend,
              convention],
             [*view.outputs, notice], notice, "decompose", concurrency)
    wire_run(extract, stop, flags, extract_effects,
             [view.state, picture, method, box, seed, steps, separate],
             [*view.outputs, notice], notice, "extract_effects", concurrency)
    wire_run(split, stop, flags, decompose_selected,
             [view.state, method, layers, prompt, seed, steps],
             [*view.outputs, notice], notice, "decompose_layer", concurrency)
