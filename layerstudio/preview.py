"""Contact sheets: every layer of a stack on its canvas, over a checkerboard, labelled.

Used by ``layerstudio preview`` and the docs; the quickest way to see what a file holds.
"""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from .document import Layer, LayerStack
from .imaging import enlarged, fit_within, over_checkerboard

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


LABEL_FONT_SIZE = 12
"""Pillow's built-in font drops the space after an "s" at its default 10 px; 12 px is clean."""


def contact_sheet(stack: LayerStack, tile: int = 192, columns: int = 5,
                  include_composite: bool = True) -> Image.Image:
    """One tile per layer (bottom first), each showing the layer placed on the full canvas.

    Tiles are ``tile`` pixels on their long side: larger canvases are scaled down, small ones
    (a 64 px generation) enlarged in whole steps with sharp pixels. The checkerboard is a mid
    grey, so white layers (text, highlights) show as well as black ones. Labels give name and
    blend mode, hidden layers are marked, and a label too long for its tile ends in an
    ellipsis. The flattened composite comes first when ``include_composite``.
    """
    font = ImageFont.load_default(size=LABEL_FONT_SIZE)
    size = fit_within(stack.size, tile)
    if max(stack.size) < tile:
        size = enlarged(Image.new("L", stack.size), tile).size
    width, height = max(size[0], 96), size[1]  # room for a readable label
    label_h = LABEL_FONT_SIZE + 6
    entries: list[tuple[Image.Image, str]] = []
    if include_composite:
        entries.append((stack.composite(), "composite"))
    for layer in stack.layers:
        hidden = "" if layer.visible else " [hidden]"
        entries.append((placed(stack, layer), f"{layer.name} ({layer.blend_mode.value}){hidden}"))
    columns = max(1, min(columns, len(entries)))
    rows = (len(entries) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * (width + 4), rows * (height + label_h + 4)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (image, label) in enumerate(entries):
        x, y = (i % columns) * (width + 4), (i // columns) * (height + label_h + 4)
        resample = Image.Resampling.NEAREST if size[0] > stack.width else \
            Image.Resampling.LANCZOS
        thumb = over_checkerboard(image.resize(size, resample), cell=8, light=150, dark=110)
        sheet.paste(thumb, (x + (width - size[0]) // 2, y))
        draw.rectangle((x, y + height, x + width, y + height + label_h), fill="black")
        draw.text((x + 3, y + height + 2), _fitted(label, font, width - 6), fill="white",
                  font=font)
    return sheet


def _fitted(label: str, font: ImageFont.FreeTypeFont, width: int) -> str:
    """``label``, shortened with an ellipsis until it fits ``width`` pixels."""
    if font.getlength(label) <= width:
        return label
    while label and font.getlength(label + "…") > width:
        label = label[:-1]
    return label.rstrip() + "…"


def labelled_grid(rows: list[list[Image.Image]], labels: list[str], tile: int = 160
                  ) -> Image.Image:
    """Rows of pictures under one line of column labels (wrapped to the tile), each picture
    scaled to ``tile`` px (nearest: small model outputs stay crisp) and any transparency shown
    over a checkerboard: how benchmarks show their samples side by side."""
    import textwrap

    top = 40
    sheet = Image.new("RGB", (len(labels) * tile, top + len(rows) * tile), "white")
    draw = ImageDraw.Draw(sheet)
    for column, label in enumerate(labels):
        wrapped = "\n".join(textwrap.fill(line, 26, break_on_hyphens=False)
                            for line in label.split("\n"))
        draw.multiline_text((column * tile + 3, 1), wrapped, fill="black")
    for row, images in enumerate(rows):
        for column, image in enumerate(images):
            if image.mode == "RGBA":
                image = over_checkerboard(image, 8)
            sheet.paste(image.convert("RGB").resize((tile, tile), Image.Resampling.NEAREST),
                        (column * tile, top + row * tile))
    return sheet
