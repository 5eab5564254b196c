"""The Upscale accordion: the document, or only the selected layer, 2x or 4x larger through
the shipped Real-ESRGAN model (:meth:`Studio.upscale`), undoable like every edit."""

from __future__ import annotations

from typing import Any

import gradio as gr

from layerstudio.studio import Studio

from .layers_panel import DocumentView
from .runs import StopFlags, cancellable, friendly, wire_run
from .session import Session

__all__ = ["wire_upscale"]


def wire_upscale(view: DocumentView, studio: Studio, flags: StopFlags,
                 concurrency: int) -> None:
    """Scale choice, what to upscale, the button, Stop and a notice."""
    with gr.Accordion("Upscale (Real-ESRGAN)", open=False):
        with gr.Row():
            scale = gr.Radio(["2x", "4x"], value="4x", label="Scale", elem_id="upscale-scale")
            which = gr.Radio(["Whole document", "Selected layer only"], value="Whole document",
                             label="Upscale", info="the other layers are resized smoothly "
                             "so everything stays aligned", elem_id="upscale-which")
        with gr.Row():
            start = gr.Button("Upscale", variant="primary", elem_id="upscale")
            stop = gr.Button("Stop", variant="stop")
        notice = gr.Markdown("", elem_id="upscale-notice", min_height=48)

    @friendly
    def upscale(session: Session | None, chosen: str, what: str, request: gr.Request,
                progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
        session = session or Session()
        index = session.current() if what == "Selected layer only" else None
        factor = int(chosen.rstrip("x"))

        def work(on_step) -> str:
            progress(0, desc="upscaling")
            bigger = studio.upscale(session.require(), factor, layer=index, on_step=on_step)
            session.replace(bigger, selected=session.current())
            part = "the selected layer" if index is not None else "every layer"
            return (f"Upscaled {part} {factor}x: the document is now "
                    f"{bigger.width}x{bigger.height}.")

        message = cancellable(flags, request.session_hash, "upscaling", progress, work,
                              "the document is unchanged.")
        return (*view.render(session), message)

    wire_run(start, stop, flags, upscale, [view.state, scale, which],
             [*view.outputs, notice], notice, "upscale", concurrency)
