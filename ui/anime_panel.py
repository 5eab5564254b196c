"""Illustration edits in the UI (issue 21): on a document split by an anime method (flat
colour, shadow, highlight and line art layers), click a region of the composite to recolour
it, restyle the shadow, recolour or thicken the line art. Each edit is undoable, and the
composite updates at once (:mod:`layerstudio.pipelines.anime_layers.edits`).
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from layerstudio.errors import InvalidInputError
from layerstudio.pipelines.anime_layers.edits import (
    recolour_region,
    restyle_line_art,
    restyle_shadow,
)

from .layers_panel import DocumentView
from .runs import friendly
from .session import Session
from .views import canvas_point

__all__ = ["wire_anime_edits"]


def wire_anime_edits(view: DocumentView) -> None:
    """The "Illustration layers" accordion and the click on the composite it listens to."""
    with gr.Accordion("Illustration layers: recolour, shadow, line art", open=False):
        gr.Markdown("For documents split by `anime` / `anime-classical` (Decompose tab). "
                    "Tick the box, pick a colour, then click a region of the composite: its "
                    "flat colour changes and its shadow and highlight follow.")
        with gr.Row():
            clicking = gr.Checkbox(False, label="Clicking the composite recolours a region",
                                   elem_id="anime-click")
            fill = gr.ColorPicker("#3366cc", label="Region colour", elem_id="anime-fill")
        with gr.Row():
            shadow_colour = gr.ColorPicker("#9a8fd0", label="Shadow colour")
            strength = gr.Slider(0, 100, value=100, step=1, label="Shadow strength %")
            shadow = gr.Button("Apply to the shadow", size="sm", elem_id="anime-shadow")
        with gr.Row():
            line_colour = gr.ColorPicker("#000000", label="Line colour")
            thicken = gr.Slider(0, 8, value=0, step=1, label="Thicken lines by (px)")
            lines = gr.Button("Apply to the line art", size="sm", elem_id="anime-lines")
        notice = gr.Markdown("", elem_id="anime-notice")

    render = view.render
    quick = {"show_progress": "hidden"}

    @friendly
    def clicked(session: Session | None, on: bool, colour: str, event: gr.SelectData
                ) -> tuple[Any, ...]:
        session = session or Session()
        if not on:
            return (*render(session), "")
        x, y = canvas_point(session.require(), *event.index)
        session.replace(recolour_region(session.require(), x, y, colour))
        return (*render(session), f"Recoloured the region at ({x}, {y}) to {colour}.")

    @friendly
    def restyle_shadows(session: Session | None, colour: str, percent: float
                        ) -> tuple[Any, ...]:
        session = session or Session()
        session.replace(restyle_shadow(session.require(), colour, float(percent) / 100))
        return (*render(session), f"Shadow now {colour} at {percent:.0f}%.")

    @friendly
    def restyle_lines(session: Session | None, colour: str, grow: float) -> tuple[Any, ...]:
        session = session or Session()
        if grow is None or grow < 0:
            raise InvalidInputError("thicken takes 0 px or more")
        session.replace(restyle_line_art(session.require(), colour, int(grow)))
        return (*render(session), f"Line art now {colour}, {int(grow)} px thicker.")

    outputs = [*view.outputs, notice]
    view.preview.select(clicked, [view.state, clicking, fill], outputs,
                        api_name="recolour_region", **quick)
    shadow.click(restyle_shadows, [view.state, shadow_colour, strength], outputs,
                 api_name="restyle_shadow", **quick)
    lines.click(restyle_lines, [view.state, line_colour, thicken], outputs,
                api_name="restyle_line_art", **quick)
