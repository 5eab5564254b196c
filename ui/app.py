"""The LayerStudio web UI: assemble the tabs and the Layers panel, then serve them safely.

Safe by default: it binds 127.0.0.1; uploads are capped (``max_upload_mb``) and read by
LayerStudio's size-checked readers; no text from the page is used as a file path; errors
appear as messages; each browser session has its own document in ``gr.State``; model work
goes through Gradio's queue with ``concurrency`` runs at a time (one Studio, shared, whose
pipelines take turns). Fonts come from the system, so the page makes no outside requests.
"""

from __future__ import annotations

import ipaddress
import logging
import tempfile
from pathlib import Path

import gradio as gr

from layerstudio.studio import Studio

from .anime_panel import wire_anime_edits
from .decompose_tab import build_decompose_tab
from .edit_tab import build_edit_tab
from .generate import build_generate_tab
from .layers_panel import (
    build_document_view,
    wire_export,
    wire_layer_operations,
    wire_regenerate,
    wire_transform,
)
from .open_tab import build_open_tab
from .runs import StopFlags
from .upscale_panel import wire_upscale

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "build_app", "launch", "theme"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
QUEUE_SIZE = 64
"""Events waiting beyond this many are refused with 'queue full' instead of piling up."""

log = logging.getLogger("layerstudio.ui")


def theme() -> gr.themes.Base:
    """Gradio's default look with system fonts (its default fetches Google Fonts)."""
    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "monospace"])


def build_app(studio: Studio | None = None, *, concurrency: int = 1,
              export_folder: str | Path | None = None) -> gr.Blocks:
    """The UI as a ``gr.Blocks`` (queue configured; not launched)."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    studio = studio or Studio()
    flags = StopFlags()
    folder = Path(export_folder or tempfile.mkdtemp(prefix="layerstudio-exports-"))
    with gr.Blocks(title="LayerStudio", analytics_enabled=False,
                   delete_cache=(3600, 3600)) as app:
        gr.Markdown("## LayerStudio: layered images from text, ready for your image editor")
        view = build_document_view()
        with gr.Row():
            with gr.Column(scale=2), gr.Tabs():
                with gr.Tab("Generate", id="generate"):
                    build_generate_tab(app, view, studio, flags, concurrency)
                with gr.Tab("Decompose", id="decompose"):
                    build_decompose_tab(view, studio, flags, concurrency)
                with gr.Tab("Edit", id="edit"):
                    build_edit_tab(view, studio, flags, concurrency, folder)
                with gr.Tab("Open", id="open"):
                    build_open_tab(view)
            with gr.Column(scale=3):
                view.place()
                wire_layer_operations(view)
                wire_transform(view)
                wire_regenerate(view, studio, flags, concurrency)
                wire_anime_edits(view)
                wire_upscale(view, studio, flags, concurrency)
                wire_export(view, folder)
    app.queue(max_size=QUEUE_SIZE, default_concurrency_limit=8)
    return app


CSS = "#composite img { object-fit: scale-down !important; }"
"""The composite is never shown larger than its pixels: Gradio maps a click on an image to
pixels assuming it is only ever scaled down (gradio 6.31), so an enlarged small picture would
send the wrong pixel to the click-to-recolour edit."""


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def launch(host: str = DEFAULT_HOST, port: int | None = DEFAULT_PORT, *,
           concurrency: int = 1, max_upload_mb: int = 64, studio: Studio | None = None,
           block: bool = True, quiet: bool = False) -> gr.Blocks:
    """Serve the UI at http://HOST:PORT; returns the running app when ``block`` is False."""
    if not _is_loopback(host):
        log.warning("serving on %s: anyone who can reach this machine can use the UI and "
                    "its compute", host)
    app = build_app(studio, concurrency=concurrency)
    app.launch(server_name=host, server_port=port, max_file_size=f"{max_upload_mb}mb",
               show_error=False, ssr_mode=False, prevent_thread_lock=not block, quiet=quiet,
               theme=theme(), css=CSS, footer_links=["api"], inbrowser=False)
    return app
