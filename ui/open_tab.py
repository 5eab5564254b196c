"""The Open tab: a PSD, OpenRaster, ZIP bundle or plain image becomes the document.

The file arrives through Gradio's upload (its size capped by the app's ``max_file_size``) and
is read by LayerStudio's own readers, which check canvas sizes before decoding pixels. What an
importer could not represent (adjustment layers, effects) is shown as warnings in the page.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import gradio as gr

from layerstudio.document import LayerStack
from layerstudio.errors import InvalidInputError
from layerstudio.io import LAYERED_SUFFIXES
from layerstudio.io.raster import RASTER_SUFFIXES

from .layers_panel import DocumentView
from .runs import friendly
from .session import Session

__all__ = ["OPEN_SUFFIXES", "build_open_tab", "open_document"]

OPEN_SUFFIXES = (*LAYERED_SUFFIXES, *RASTER_SUFFIXES)


def open_document(path: str | Path) -> tuple[LayerStack, list[str]]:
    """The stack in an uploaded file and the importer's warnings."""
    path = Path(path)
    if path.suffix.lower() not in OPEN_SUFFIXES:
        raise InvalidInputError(f"cannot open {path.name!r}: LayerStudio opens "
                                f"{', '.join(OPEN_SUFFIXES)}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stack = LayerStack.load(path)
    return stack, [str(warning.message) for warning in caught]


def build_open_tab(view: DocumentView) -> None:
    """Lay out the Open tab (inside the caller's ``gr.Tab``) and wire it to ``view``."""
    upload = gr.File(label="Open a PSD, ORA, ZIP bundle or image", file_types=list(OPEN_SUFFIXES),
                     type="filepath", elem_id="open-file")
    gr.Markdown("The file replaces the current document (Undo brings that back). Layers, "
                "names, order, opacity, blend modes, visibility and groups are kept.")

    @friendly
    def open_file(session: Session | None, path: str | None) -> tuple[Any, ...]:
        session = session or Session()
        if not path:
            return view.render(session)
        stack, notes = open_document(path)
        for note in notes:
            gr.Warning(note)
        session.replace(stack)
        return view.render(session)

    upload.upload(open_file, [view.state, upload], view.outputs, api_name="open",
                  show_progress_on=[view.status])
