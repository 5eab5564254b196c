"""Contact sheets of generated samples: one row per sample, the composite then each layer
over a checkerboard, with captions underneath."""

from __future__ import annotations

from PIL import Image, ImageDraw

from layerstudio.imaging import over_checkerboard

from .sample import Sample

__all__ = ["samples_sheet"]


def _layer_on_canvas(sample: Sample, index: int) -> Image.Image:
    layer = sample.stack.layers[index]
    canvas = Image.new("RGBA", sample.stack.size)
    if layer.pixels.size:
        canvas.alpha_composite(layer.to_pil(), tuple(max(0, v) for v in layer.offset))
    return canvas


def samples_sheet(samples: list[Sample], tile: int = 96, max_layers: int = 6) -> Image.Image:
    """Rows of [composite, layer 1, ..., layer k] tiles (k <= ``max_layers``), captioned."""
    columns = 1 + min(max_layers, max(len(s.stack.layers) for s in samples))
    label = 14
    sheet = Image.new("RGB", (columns * (tile + 2), len(samples) * (tile + 2 * label + 4)),
                      "white")
    draw = ImageDraw.Draw(sheet)
    for row, sample in enumerate(samples):
        y = row * (tile + 2 * label + 4)
        tiles = [(sample.stack.composite(), "composite")]
        for i, layer in enumerate(sample.stack.layers[:max_layers]):
            tiles.append((_layer_on_canvas(sample, i), f"{layer.name} ({layer.blend_mode.value})"))
        for col, (image, text) in enumerate(tiles):
            x = col * (tile + 2)
            sheet.paste(over_checkerboard(image.resize((tile, tile)), cell=6), (x, y))
            draw.text((x + 2, y + tile + 1), text[: tile // 6], fill="black")
        draw.text((2, y + tile + label), sample.caption[: columns * tile // 6], fill=(0, 0, 160))
    return sheet
