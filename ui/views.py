"""What the UI shows of a document: the composite preview, the layer list and a status line.

Previews are PIL images that the app hands to Gradio with ``format="png"`` (Gradio's default
WebP is lossy and would smear alpha edges). Small canvases are enlarged with nearest-neighbour
so that a 64 px generation is not a blur in the browser.

Gradio caches an output image under a hash of its bytes and writes that file in place, so two
clients shown identical pictures at once (50 people opening one file) would rewrite one cache
file while the other's browser downloads it, getting it truncated. Every picture for the page
therefore carries a unique PNG text chunk (:func:`for_page`): its own cache file, written once.
"""

from __future__ import annotations

import uuid

from PIL import Image

from layerstudio.document import Layer, LayerStack
from layerstudio.imaging import enlarged, fit_within, over_checkerboard
from layerstudio.preview import placed

__all__ = ["MIN_PREVIEW", "THUMBNAIL", "canvas_point", "enlarged", "for_page", "layer_caption",
           "layer_list", "on_checkerboard", "preview", "status_line"]

MIN_PREVIEW = 384
"""Canvases smaller than this are shown enlarged (whole multiples, nearest-neighbour)."""
THUMBNAIL = 96


def for_page(image: Image.Image) -> Image.Image:
    """``image`` marked with a unique PNG text chunk, so Gradio caches it in a file of its own
    (see the module docstring); the pixels are untouched."""
    image.info["layerstudio-render"] = uuid.uuid4().hex
    return image


def on_checkerboard(image: Image.Image, minimum: int = MIN_PREVIEW) -> Image.Image:
    """An RGBA image for the page: enlarged, over a checkerboard (transparency shows as grey
    squares)."""
    image = enlarged(image, minimum)
    return for_page(over_checkerboard(image, cell=max(4, image.width // 32)))


def preview(stack: LayerStack) -> Image.Image:
    """The flattened document, as :func:`on_checkerboard` shows it."""
    return on_checkerboard(stack.composite())


def canvas_point(stack: LayerStack, x: int, y: int) -> tuple[int, int]:
    """The canvas pixel under pixel (x, y) of :func:`preview`'s picture (what a click on the
    composite reports: small canvases are shown enlarged)."""
    factor = max(1, MIN_PREVIEW // max(stack.size))  # as layerstudio.imaging.enlarged
    return int(x) // factor, int(y) // factor


def layer_caption(layer: Layer) -> str:
    """The layer's name under its thumbnail, after its group path and marked when hidden (the
    rest of its properties show beside the list when it is selected)."""
    name = " / ".join((*layer.group, layer.name))
    return name if layer.visible else f"{name} (hidden)"


def layer_list(stack: LayerStack | None) -> list[tuple[Image.Image, str]]:
    """Thumbnails with captions, top layer first (as in Photoshop's Layers panel)."""
    if stack is None:
        return []
    items = []
    for layer in reversed(stack.layers):
        thumb = placed(stack, layer)
        if max(thumb.size) > THUMBNAIL:
            thumb = thumb.resize(fit_within(thumb.size, THUMBNAIL), Image.Resampling.LANCZOS)
        else:
            thumb = enlarged(thumb, THUMBNAIL)
        if not layer.visible:  # faded, as editors grey out hidden layers
            thumb.putalpha(thumb.getchannel("A").point(lambda a: a * 35 // 100))
        items.append((for_page(over_checkerboard(thumb, cell=6)), layer_caption(layer)))
    return items


def status_line(stack: LayerStack | None) -> str:
    """Canvas size, layer count and how the document was made (model, seed, seconds)."""
    if stack is None:
        return "No document yet: generate one or open a file."
    info = stack.metadata
    made = ", ".join(f"{key} {info[key]}" for key in ("model", "seed", "steps", "seconds")
                     if key in info)
    count = len(stack.layers)
    return (f"{stack.width}x{stack.height} px · {count} layer{'' if count == 1 else 's'}"
            + (f" · {made}" if made else ""))
