"""The right-hand side of the UI: composite preview, Layers panel, Regenerate and Export.

Every handler takes the session's :class:`~layerstudio.ui.session.Session` from ``gr.State``
and returns :meth:`DocumentView.render`'s outputs, so the preview, the layer list and the
selected layer's properties never disagree with the document.
"""

from __future__ import annotations

import secrets
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from layerstudio.blend import BlendMode
from layerstudio.document import KNOWN_KINDS, LayerStack
from layerstudio.errors import InvalidInputError
from layerstudio.presets import PRESETS, is_available
from layerstudio.studio import Studio

from .mask import mask_canvas, painted_mask
from .runs import StopFlags, cancellable, friendly, wire_run
from .session import Session
from .views import layer_list, preview, status_line

__all__ = ["EXPORT_FORMATS", "DocumentView", "build_document_view", "editing_models",
           "export_document", "wire_export", "wire_layer_operations", "wire_regenerate",
           "wire_transform"]

EXPORT_FORMATS = {"PSD": ".psd", "ORA": ".ora", "ZIP": ".zip", "PNG (flattened)": ".png"}
BLEND_MODES = [mode.value for mode in BlendMode if mode is not BlendMode.PASS_THROUGH]
EXPORT_LIFETIME_S = 3600
"""Exported files are removed from the server's export folder after an hour."""


def editing_models() -> list[str]:
    """Presets that can regenerate a transparent layer (LayerDiffuse text-to-transparent ones;
    ``Studio.edit_layer`` says so clearly if one lacks the transparent encoder) and whose
    files are on this machine."""
    return [name for name, preset in PRESETS.items()
            if preset.mode == "fg" and "latent_transparency" in preset.loader
            and is_available(preset)]


def _file_name(stack: LayerStack) -> str:
    """A download name from the prompt: letters, digits and dashes only."""
    words = "".join(c if c.isalnum() else " " for c in str(stack.metadata.get("prompt", "")))
    slug = "-".join(words.lower().split()[:6])
    return f"layerstudio-{slug}" if slug else "layerstudio"


def export_document(stack: LayerStack, fmt: str, folder: Path) -> Path:
    """Write ``stack`` in format ``fmt`` (a key of :data:`EXPORT_FORMATS`) into a new
    sub-folder of ``folder`` (atomically) and return the file; sub-folders older than
    :data:`EXPORT_LIFETIME_S` are removed on the way."""
    if fmt not in EXPORT_FORMATS:
        raise InvalidInputError(f"unknown export format {fmt!r}; choose one of "
                                f"{', '.join(EXPORT_FORMATS)}")
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        if old.is_dir() and time.time() - old.stat().st_mtime > EXPORT_LIFETIME_S:
            shutil.rmtree(old, ignore_errors=True)
    target = folder / uuid.uuid4().hex / (_file_name(stack) + EXPORT_FORMATS[fmt])
    target.parent.mkdir()
    return stack.save(target)


@dataclass
class DocumentView:
    """The components that show the document; the ``wire_*`` functions below add the controls
    that change it."""

    state: gr.State
    preview: gr.Image
    status: gr.Markdown
    layers: gr.Gallery
    picker: gr.Dropdown
    name: gr.Textbox
    kind: gr.Dropdown
    visible: gr.Checkbox
    opacity: gr.Slider
    blend: gr.Dropdown
    x: gr.Number
    y: gr.Number

    @property
    def outputs(self) -> list[Any]:
        """What :meth:`render` fills, in order."""
        return [self.state, self.preview, self.status, self.layers, self.picker, self.name,
                self.kind, self.visible, self.opacity, self.blend, self.x, self.y]

    def place(self) -> None:
        """Put the components on the page, in the caller's column."""
        self.state.render()
        self.preview.render()
        self.status.render()
        self.layers.render()
        with gr.Row():
            self.picker.render()
            self.name.render()
            self.kind.render()
        with gr.Row():
            self.visible.render()
            self.opacity.render()
            self.blend.render()
        with gr.Row():
            self.x.render()
            self.y.render()

    @staticmethod
    def render(session: Session) -> tuple[Any, ...]:
        """Values for :attr:`outputs` after ``session`` changed."""
        stack = session.stack
        if stack is None or not stack.layers:
            empty = gr.update(value=None, interactive=False)
            return (session, None, status_line(None), gr.Gallery(value=[]),
                    gr.Dropdown(choices=[], value=None), empty, empty, empty, empty, empty,
                    empty, empty)
        count = len(stack.layers)
        selected = session.selected if session.selected is not None else count - 1
        layer = stack.layers[selected]
        choices = [(f"{i}: {stack.layers[i].name}", i) for i in range(count - 1, -1, -1)]
        editable = {"interactive": True}
        return (session, preview(stack), status_line(stack),
                gr.Gallery(value=layer_list(stack), selected_index=count - 1 - selected),
                gr.Dropdown(choices=choices, value=selected),
                gr.update(value=layer.name, **editable), gr.update(value=layer.kind, **editable),
                gr.update(value=layer.visible, **editable),
                gr.update(value=round(layer.opacity * 100), **editable),
                gr.update(value=layer.blend_mode.value, **editable),
                gr.update(value=layer.offset[0], **editable),
                gr.update(value=layer.offset[1], **editable))


def build_document_view() -> DocumentView:
    """Make the preview and Layers panel components, not yet placed (see
    :meth:`DocumentView.place`), so the tabs built before them can already send to them."""
    hidden = {"render": False}
    return DocumentView(
        state=gr.State(None, time_to_live=6 * 3600, **hidden),
        preview=gr.Image(label="Composite (over a checkerboard where transparent)",
                         type="pil", format="png", interactive=False, height=420,
                         elem_id="composite", buttons=["download", "fullscreen"], **hidden),
        status=gr.Markdown(status_line(None), elem_id="status", **hidden),
        layers=gr.Gallery(label="Layers (top first; click one to select it)", format="png",
                          columns=4, fit_columns=False, height=220, allow_preview=False,
                          object_fit="contain",
                          elem_id="layers", interactive=False, **hidden),
        picker=gr.Dropdown(label="Selected layer", choices=[], elem_id="picker", scale=2,
                           **hidden),
        name=gr.Textbox(label="Name", interactive=False, elem_id="layer-name", scale=2,
                        info="Enter to rename", **hidden),
        kind=gr.Dropdown(label="Kind", choices=list(KNOWN_KINDS), value=None,
                         allow_custom_value=True, interactive=False, **hidden),
        visible=gr.Checkbox(label="Visible", interactive=False, elem_id="layer-visible",
                            **hidden),
        opacity=gr.Slider(0, 100, step=1, label="Opacity %", interactive=False,
                          elem_id="layer-opacity", **hidden),
        blend=gr.Dropdown(label="Blend mode", choices=BLEND_MODES, value=None,
                          interactive=False, elem_id="layer-blend", **hidden),
        x=gr.Number(label="X (left edge, px)", precision=0, interactive=False,
                    elem_id="layer-x", **hidden),
        y=gr.Number(label="Y (top edge, px)", precision=0, interactive=False,
                    elem_id="layer-y", **hidden))


def wire_layer_operations(view: DocumentView) -> None:
    """Selection, properties and the Up/Down/Duplicate/Merge down/Delete/Undo buttons."""
    with gr.Row():
        buttons = {label: gr.Button(label, size="sm", elem_id=f"layer-{key}")
                   for key, label in (("up", "Move up"), ("down", "Move down"),
                                      ("duplicate", "Duplicate"), ("merge", "Merge down"),
                                      ("delete", "Delete"), ("undo", "Undo"))}
    render = view.render

    @friendly
    def select(session: Session | None, index: int | None) -> tuple[Any, ...]:
        session = session or Session()
        if index is not None:
            session.select(int(index))
        return render(session)

    @friendly
    def select_thumbnail(session: Session | None, event: gr.SelectData) -> tuple[Any, ...]:
        session = session or Session()
        session.select(len(session.require().layers) - 1 - int(event.index))
        return render(session)

    @friendly
    def set_properties(session: Session | None, name: str, kind: str, visible: bool,
                       opacity: float, blend: str) -> tuple[Any, ...]:
        session = session or Session()
        session.set_properties(name=name, kind=kind, visible=visible,
                               opacity=float(opacity) / 100.0, blend_mode=blend)
        return render(session)

    def operation(method: str):
        @friendly
        def run(session: Session | None) -> tuple[Any, ...]:
            session = session or Session()
            getattr(Session, method)(session)
            return render(session)

        run.__name__ = method
        return run

    quick = {"show_progress": "hidden"}  # instant: no spinner, and an error stays a toast
    view.picker.input(select, [view.state, view.picker], view.outputs, api_name="select_layer",
                      **quick)
    view.layers.select(select_thumbnail, [view.state], view.outputs, api_name=False, **quick)
    properties = [view.state, view.name, view.kind, view.visible, view.opacity, view.blend]
    view.name.submit(set_properties, properties, view.outputs, api_name="set_layer", **quick)
    for control in (view.kind, view.visible, view.blend):
        control.input(set_properties, properties, view.outputs, api_name=False, **quick)
    view.opacity.release(set_properties, properties, view.outputs, api_name=False, **quick)
    for label, method in (("Move up", "move_up"), ("Move down", "move_down"),
                          ("Duplicate", "duplicate"), ("Merge down", "merge_down"),
                          ("Delete", "delete"), ("Undo", "undo")):
        buttons[label].click(operation(method), [view.state], view.outputs, api_name=method,
                             **quick)


def wire_transform(view: DocumentView) -> None:
    """Move (the X/Y boxes), scale, turn and flip the selected layer, each undoable."""
    with gr.Row():
        scale = gr.Number(value=100, minimum=1, maximum=6400, precision=0, label="Scale %",
                          elem_id="layer-scale", scale=1)
        buttons = {key: gr.Button(label, size="sm", elem_id=f"layer-{key}", scale=1)
                   for key, label in (("scale", "Scale"), ("left", "Rotate 90° left"),
                                      ("right", "Rotate 90° right"),
                                      ("flip-h", "Flip horizontal"),
                                      ("flip-v", "Flip vertical"))}

    @friendly
    def move_to(session: Session | None, x: float | None, y: float | None) -> tuple[Any, ...]:
        session = session or Session()
        if x is None or y is None:
            raise InvalidInputError("give the layer's X and Y in pixels")
        session.transform(to=(int(x), int(y)))
        return view.render(session)

    def change(**how: Any):
        @friendly
        def run(session: Session | None, percent: float | None = None) -> tuple[Any, ...]:
            session = session or Session()
            if "scale" in how:
                if percent is None:
                    raise InvalidInputError("give the scale in percent")
                session.transform(scale=float(percent) / 100.0)
            else:
                session.transform(**how)
            return view.render(session)

        return run

    quick = {"show_progress": "hidden"}
    for box in (view.x, view.y):
        box.submit(move_to, [view.state, view.x, view.y], view.outputs,
                   api_name="move_layer" if box is view.x else False, **quick)
    buttons["scale"].click(change(scale=True), [view.state, scale], view.outputs,
                           api_name="scale_layer", **quick)
    for key, how, api in (("left", {"rotate": -90}, "rotate_left"),
                          ("right", {"rotate": 90}, "rotate_right"),
                          ("flip-h", {"flip": "horizontal"}, "flip_horizontal"),
                          ("flip-v", {"flip": "vertical"}, "flip_vertical")):
        buttons[key].click(change(**how), [view.state], view.outputs, api_name=api, **quick)


def wire_regenerate(view: DocumentView, studio: Studio, flags: StopFlags,
                    concurrency: int) -> None:
    """Regenerate the selected layer from a prompt and seed; the other layers stay as they
    are (Studio.edit_layer)."""
    models = editing_models()
    render = view.render
    with gr.Accordion("Regenerate the selected layer", open=False):
        prompt = gr.Textbox(label="Prompt for the layer", elem_id="regen-prompt")
        with gr.Row():
            strength = gr.Slider(0.05, 1.0, value=0.6, step=0.05, label="Strength",
                                 info="how far the layer may change")
            seed = gr.Number(value=0, precision=0, label="Seed", minimum=0)
            randomise = gr.Checkbox(value=True, label="New seed each time")
            model = gr.Dropdown(choices=models, value=models[0] if models else None,
                                label="Model")
        with gr.Row():
            paint = gr.Button("Paint where it may change", size="sm", elem_id="mask-load")
            clear = gr.Button("Whole layer (clear the painting)", size="sm")
        painting = gr.ImageEditor(
            label="Mask: paint over the part to redo; unpainted pixels stay exactly as they "
                  "are", type="numpy", image_mode="RGBA", sources=[], transforms=[],
            layers=False, format="png", elem_id="mask",
            brush=gr.Brush(colors=["#ff00ff"], color_mode="fixed", default_size=24))
        with gr.Row():
            start = gr.Button("Regenerate layer", variant="primary", elem_id="regenerate")
            stop = gr.Button("Stop", variant="stop")
        notice = gr.Markdown("", elem_id="regenerate-notice", min_height=48)

    @friendly
    def load_painting(session: Session | None) -> tuple[dict[str, Any], str]:
        session = session or Session()
        background = np.asarray(mask_canvas(session.require(), session.current()))
        return ({"background": background, "layers": [], "composite": background},
                "Paint over the part of the layer to redo, then press Regenerate layer.")

    paint.click(load_painting, [view.state], [painting, notice], api_name=False,
                show_progress="hidden")
    clear.click(lambda: None, None, painting, api_name=False, show_progress="hidden")

    @friendly
    def regenerate(session: Session | None, text: str, amount: float, number: float | None,
                   fresh: bool, preset: str | None, drawn: Any, request: gr.Request,
                   progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
        session = session or Session()
        index = session.current()
        if not preset:
            raise InvalidInputError("no model that can edit transparent layers is installed")
        mask = painted_mask(drawn, session.require().size)
        used = secrets.randbelow(2**31) if fresh or number is None else int(number)

        def work(on_step) -> str:
            edited = studio.edit_layer(session.require(), index, text, mask=mask,
                                       strength=float(amount), model=preset, seed=used,
                                       on_step=on_step)
            session.replace(edited, index)
            seconds = edited.layers[index].provenance["edit"]["seconds"]
            where = "inside the painted mask" if mask is not None else "the whole layer"
            return (f"Regenerated {edited.layers[index].name!r} ({where}) in {seconds:.1f} s "
                    f"(seed {used}); the other layers are as they were.")

        message = cancellable(flags, request.session_hash, "regenerating", progress, work,
                              "the layer is unchanged.")
        return (*render(session), used, message)

    wire_run(start, stop, flags, regenerate,
             [view.state, prompt, strength, seed, randomise, model, painting],
             [*view.outputs, seed, notice], notice, "regenerate_layer", concurrency)


def wire_export(view: DocumentView, folder: Path) -> None:
    """Format choice, Export button and the download link."""
    with gr.Row():
        fmt = gr.Radio(list(EXPORT_FORMATS), value="PSD", label="Export as", scale=3,
                       elem_id="export-format")
        button = gr.Button("Export", variant="primary", scale=1, elem_id="export")
    download = gr.File(label="Download", interactive=False, elem_id="download", height=90)

    @friendly
    def export(session: Session | None, chosen: str) -> str:
        return str(export_document((session or Session()).require(), chosen, folder))

    button.click(export, [view.state, fmt], download, api_name="export",
                 show_progress_on=[download])
