"""Contact sheets: every layer of a stack on its canvas, over a checkerboard, labelled.

Used by ``layerstudio preview`` and the docs; the quickest way to see what a file holds.
"""

from __future__ import annotations

from PIL import Image, ImageDraw

from .document import Layer, LayerStack
from .imaging import fit_within, over_checkerboard

__all__ = ["contact_sheet", "placed"]


def placed(stack: LayerStack, layer: Layer) -> Image.Image:
    """``layer`` alone at its place on the document's canvas (RGBA, canvas-sized), with its
    own pixels only: opacity, blend mode and visibility are not applied."""
    canvas = Image.new("RGBA", stack.size)
    if layer.pixels.size:
        x, y = layer.offset
        canvas.alpha_composite(layer.to_pil().crop((max(0, -x), max(0, -y), layer.width,
                                                    layer.height)), (max(0, x), max(0, y)))
    return canvas


def contact_sheet(stack: LayerStack, tile: int = 192, columns: int = 5,
                  include_composite: bool = True) -> Image.Image:
    """One tile per layer (bottom first), each showing the layer placed on the full canvas.

    Tiles are ``tile`` pixels on their long side; labels give name and blend mode, and hidden
    layers are marked. The flattened composite comes first when ``include_composite``.
    """
    width, height = fit_within(stack.size, tile)
    label_h = 16
    entries: list[tuple[Image.Image, str]] = []
    if include_composite:
        entries.append((stack.composite(), "composite"))
    for layer in stack.layers:
        canvas = placed(stack, layer)
        hidden = "" if layer.visible else " [hidden]"
        entries.append((canvas, f"{layer.name} ({layer.blend_mode.value}){hidden}"))
    columns = max(1, min(columns, len(entries)))
    rows = (len(entries) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * (width + 4), rows * (height + label_h + 4)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (image, label) in enumerate(entries):
        x, y = (i % columns) * (width + 4), (i // columns) * (height + label_h + 4)
        thumb = image.resize((width, height), Image.Resampling.LANCZOS)
        sheet.paste(over_checkerboard(thumb, cell=6), (x, y))
        draw.rectangle((x, y + height, x + width, y + height + label_h), fill="black")
        draw.text((x + 3, y + height + 2), label[:40], fill="white")
    return sheet
