"""What the UI shows of a document: the composite preview, the layer list and a status line.

Previews are PIL images that the app hands to Gradio with ``format="png"`` (Gradio's default
WebP is lossy and would smear alpha edges). Small canvases are enlarged with nearest-neighbour
so that a 64 px generation is not a blur in the browser.
"""

from __future__ import annotations

from PIL import Image

from layerstudio.document import Layer, LayerStack
from layerstudio.imaging import fit_within, over_checkerboard
from layerstudio.preview import placed

__all__ = ["MIN_PREVIEW", "THUMBNAIL", "enlarged", "layer_caption", "layer_list",
           "on_checkerboard", "preview", "status_line"]

MIN_PREVIEW = 384
"""Canvases smaller than this are shown enlarged (whole multiples, nearest-neighbour)."""
THUMBNAIL = 96


def enlarged(image: Image.Image, minimum: int) -> Image.Image:
    """``image`` scaled up by the whole factor that brings its long side nearest ``minimum``
    from below (nearest-neighbour: pixels stay sharp squares); unchanged if already as big."""
    factor = max(1, minimum // max(image.size))
    if factor == 1:
        return image
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)


def on_checkerboard(image: Image.Image, minimum: int = MIN_PREVIEW) -> Image.Image:
    """An RGBA image for the page: enlarged, over a checkerboard (transparency shows as grey
    squares)."""
    image = enlarged(image, minimum)
    return over_checkerboard(image, cell=max(4, image.width // 32))


def preview(stack: LayerStack) -> Image.Image:
    """The flattened document, as :func:`on_checkerboard` shows it."""
    return on_checkerboard(stack.composite())


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
        items.append((over_checkerboard(thumb, cell=6), layer_caption(layer)))
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
