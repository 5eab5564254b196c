"""The Edit tab: build a picture step by step with the layer-wise memory (issue 22).

Start a session from a prompt or from the open document (its composite), then add objects
where the brush marks them, replace or remove the layer selected in the Layers panel, and undo
or redo; earlier edits and the background stay as they were, and every edit is a layer of the
document shown on the right (so export works as everywhere). The history lists every step. The
session's memory can be downloaded and uploaded again later, so it survives a restart.

While a session is open its edits own the document: changes made in the Layers panel are
replaced by the next edit's document.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from layerstudio.edit_session import EditSession, memory_path
from layerstudio.errors import InvalidInputError
from layerstudio.presets import PRESETS, is_available
from layerstudio.studio import EDIT_MODEL, Studio

from .layers_panel import DocumentView
from .mask import painted_mask
from .runs import StopFlags, cancellable, friendly, wire_run
from .session import Session
from .views import on_checkerboard

__all__ = ["build_edit_tab", "edit_models", "history_text", "selected_edit"]


def edit_models() -> list[str]:
    """Presets an edit session can run on (opaque U-Net text-to-image models) that are on
    this machine; the shipped default first."""
    found = [name for name, preset in PRESETS.items()
             if preset.mode == "fg" and preset.loader.startswith("diffusers:")
             and is_available(preset)]
    return sorted(found, key=lambda name: name != EDIT_MODEL)


def history_text(edit: EditSession | None) -> str:
    """The session's steps, one a line, undone ones marked."""
    if edit is None:
        return "No session yet: start one from a prompt or from the open document."
    return "\n".join(edit.history)


def selected_edit(session: Session, edit: EditSession) -> int:
    """The edit number of the layer selected in the Layers panel (its provenance says it)."""
    layer = session.require().layers[session.current()]
    number = layer.provenance.get("edit") if layer.provenance.get(
        "pipeline") == "LayeredMemoryEditPipeline" else None
    if not number:
        raise InvalidInputError(f"select a layer an edit added (not {layer.name!r}) in the "
                                "Layers panel first")
    edit.memory.layer(number)
    return int(number)


def _require(edit: EditSession | None) -> EditSession:
    if edit is None:
        raise InvalidInputError("start a session first (from a prompt or the open document)")
    return edit


def build_edit_tab(view: DocumentView, studio: Studio, flags: StopFlags, concurrency: int,
                   folder: Path) -> None:
    """Lay out the Edit tab (inside the caller's ``gr.Tab``) and wire it to ``view``."""
    models = edit_models()
    edit_state = gr.State(None)
    gr.Markdown("Edit step by step: every edit is a layer, and later edits leave earlier ones "
                "and the background as they were.")
    background = gr.Textbox(label="Background prompt (or start from the open document)",
                            elem_id="edit-background")
    with gr.Row():
        model = gr.Dropdown(models, value=models[0] if models else None, label="Model",
                            elem_id="edit-model")
        seed = gr.Number(value=0, precision=0, minimum=0, label="Seed")
        randomise = gr.Checkbox(value=False, label="New seed")
        steps = gr.Number(value=0, precision=0, minimum=0, maximum=200,
                          label="Steps (0: the model's)")
    with gr.Row():
        from_prompt = gr.Button("New session from the prompt", elem_id="edit-from-prompt")
        from_document = gr.Button("New session from the open document",
                                  elem_id="edit-from-document")
    prompt = gr.Textbox(label="What to add, or what the selected layer should become",
                        elem_id="edit-prompt")
    paint = gr.Button("Paint where (on the current picture)", size="sm", elem_id="edit-paint")
    painting = gr.ImageEditor(
        label="Rough mask: brush where the new object goes", type="numpy", image_mode="RGBA",
        sources=[], transforms=[], layers=False, format="png", elem_id="edit-mask",
        brush=gr.Brush(colors=["#ff00ff"], color_mode="fixed", default_size=32))
    with gr.Row():
        add = gr.Button("Add in the painted mask", variant="primary", elem_id="edit-add")
        replace = gr.Button("Replace the selected layer", elem_id="edit-replace")
        remove = gr.Button("Remove the selected layer", elem_id="edit-remove")
        stop = gr.Button("Stop", variant="stop")
    with gr.Row():
        undo = gr.Button("Undo edit", size="sm", elem_id="edit-undo")
        redo = gr.Button("Redo edit", size="sm", elem_id="edit-redo")
        save = gr.Button("Download the session", size="sm", elem_id="edit-save")
    history = gr.Textbox(history_text(None), label="History", lines=5, interactive=False,
                         elem_id="edit-history")
    with gr.Row():
        saved = gr.File(label="Session memory (.memory.safetensors)", interactive=False,
                        elem_id="edit-saved")
        resume = gr.File(label="Resume a saved session", file_types=[".safetensors"],
                         elem_id="edit-resume")
    notice = gr.Markdown("", elem_id="edit-notice", min_height=48)
    outputs = [*view.outputs, edit_state, history, painting, seed, notice]

    def shown(session: Session, edit: EditSession, message: str, used: int
              ) -> tuple[Any, ...]:
        session.replace(edit.stack)
        notes = "".join(f" Note: {note}." for note in edit.notes)
        return (*view.render(session), edit, history_text(edit), None, used, message + notes)

    def seed_of(number: float | None, fresh: bool) -> int:
        return secrets.randbelow(2**31) if fresh or number is None else int(number)

    def starter(from_open: bool):
        @friendly
        def start(session: Session | None, edit: EditSession | None, text: str,
                  preset: str | None, number: float | None, fresh: bool, count: float | None,
                  request: gr.Request, progress: gr.Progress = gr.Progress()
                  ) -> tuple[Any, ...]:
            session = session or Session()
            if not preset:
                raise InvalidInputError("no text-to-image model for edit sessions is installed")
            if from_open:
                given: Any = np.asarray(session.require().composite())
            elif text.strip():
                given = text.strip()
            else:
                raise InvalidInputError("type a background prompt, or open a document first")
            used = seed_of(number, fresh)
            made: list[EditSession] = []

            def work(on_step) -> str:
                made.append(studio.edit_session(given, model=preset, seed=used,
                                                steps=int(count) if count else None,
                                                on_step=on_step))
                return (f"New session on {preset} (seed {used}, {made[0].size[0]} px). Paint "
                        "where an object goes and press Add.")

            message = cancellable(flags, request.session_hash, "starting", progress, work,
                                  "no session was started.")
            if not made:
                return (*view.render(session), edit, history_text(edit), gr.update(), used,
                        message)
            return shown(session, made[0], message, used)

        return start

    def operation(kind: str):
        @friendly
        def run(session: Session | None, edit: EditSession | None, text: str, drawn: Any,
                number: float | None, request: gr.Request,
                progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
            session = session or Session()
            edit = _require(edit)
            mask = painted_mask(drawn, edit.size)
            layer = None if kind == "add" else selected_edit(session, edit)
            if kind == "add" and mask is None:
                raise InvalidInputError("paint where the new object goes first (Paint where)")
            before = edit.memory

            def work(on_step) -> str:
                if kind == "add":
                    edit.add(text, mask=mask, on_step=on_step)
                elif kind == "replace":
                    edit.replace(layer, text, mask=mask, on_step=on_step)
                else:
                    edit.remove(layer, on_step=on_step)
                return f"Done in {edit.seconds:.1f} s: {edit.history[edit.memory.cursor - 1]}."

            message = cancellable(flags, request.session_hash, f"{kind} edit", progress, work,
                                  "the document is unchanged.")
            if edit.memory is before:  # stopped
                return (*view.render(session), edit, history_text(edit), gr.update(),
                        number, message)
            return shown(session, edit, message, int(number or 0))

        return run

    @friendly
    def load_painting(session: Session | None, edit: EditSession | None
                      ) -> tuple[dict[str, Any], str]:
        picture = (session or Session()).require().composite() if edit is None else \
            edit.stack.composite()
        background = np.asarray(on_checkerboard(picture))
        return ({"background": background, "layers": [], "composite": background},
                "Brush roughly where the new object goes, then press Add.")

    def stepper(which: str):
        @friendly
        def step(session: Session | None, edit: EditSession | None, number: float | None
                 ) -> tuple[Any, ...]:
            session = session or Session()
            edit = _require(edit)
            getattr(edit, which)()
            line = edit.history[edit.memory.cursor - 1]
            return shown(session, edit, f"{which.capitalize()}: now at {line}.",
                         int(number or 0))

        return step

    @friendly
    def download(edit: EditSession | None) -> tuple[str, str]:
        edit = _require(edit)
        path = edit.memory.save(memory_path(folder / f"edit-session-{secrets.token_hex(4)}.psd"))
        return str(path), "Keep this file: upload it under Resume to continue the session."

    @friendly
    def reopen(session: Session | None, upload: Any, number: float | None) -> tuple[Any, ...]:
        if upload is None:
            return (*view.render(session or Session()), None, history_text(None), gr.update(),
                    number, "")
        path = upload if isinstance(upload, str) else getattr(upload, "name", upload)
        edit = studio.open_edit_session(path)
        return shown(session or Session(), edit, f"Resumed a session of {len(edit.history)} "
                     f"steps on {edit.model}.", int(number or 0))

    common = [view.state, edit_state]
    wire_run(from_prompt, stop, flags, starter(False),
             [*common, background, model, seed, randomise, steps], outputs, notice,
             "edit_session_start", concurrency)
    wire_run(from_document, stop, flags, starter(True),
             [*common, background, model, seed, randomise, steps], outputs, notice,
             "edit_session_from_document", concurrency)
    for button, kind in ((add, "add"), (replace, "replace"), (remove, "remove")):
        wire_run(button, stop, flags, operation(kind), [*common, prompt, painting, seed],
                 outputs, notice, f"edit_session_{kind}", concurrency)
    paint.click(load_painting, common, [painting, notice], api_name=False,
                show_progress="hidden")
    quick = {"show_progress": "hidden"}
    undo.click(stepper("undo"), [*common, seed], outputs, api_name="edit_session_undo", **quick)
    redo.click(stepper("redo"), [*common, seed], outputs, api_name="edit_session_redo", **quick)
    save.click(download, [edit_state], [saved, notice], api_name="edit_session_save", **quick)
    resume.upload(reopen, [view.state, resume, seed], outputs, api_name="edit_session_resume",
                  **quick)
