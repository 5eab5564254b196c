"""A procedurally drawn layered poster that exercises the whole document pipeline.

Until the generative pipelines land this is what ``layerstudio demo`` writes: a real layered
file (background, a glowing sun in screen mode, mountains with a multiply shadow, a group of
birds, a title) that opens in Photoshop, GIMP or Krita. Everything is drawn from a seed.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from .blend import BlendMode
from .document import GroupInfo, Layer, LayerStack

__all__ = ["demo_stack"]


def _rgba(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGBA")).copy()


def demo_stack(width: int = 768, height: int = 512, seed: int = 0) -> LayerStack:
    """Build the demo poster as a :class:`LayerStack` (deterministic for a given seed)."""
    rng = np.random.default_rng(seed)
    stack = LayerStack(width, height, metadata={"method": "demo", "seed": seed})

    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    top, bottom = np.array([40, 60, 140]), np.array([250, 170, 120])
    sky = (top * (1 - ys) + bottom * ys) * np.ones((1, width, 1))
    stack.add(Layer("Sky", sky.astype(np.uint8), kind="background"))

    sun = Image.new("RGBA", (260, 260))
    ImageDraw.Draw(sun).ellipse((70, 70, 190, 190), fill=(255, 220, 120, 255))
    glow = sun.filter(ImageFilter.GaussianBlur(28))
    stack.add(Layer("Sun glow", _rgba(glow), offset=(width // 2 - 130, height // 5 - 60),
                    blend_mode=BlendMode.SCREEN, kind="effect"))
    stack.add(Layer("Sun", _rgba(sun), offset=(width // 2 - 130, height // 5 - 60)))

    for name, base, colour, rough in (("Far mountains", 0.55, (90, 80, 140), 40),
                                      ("Near mountains", 0.7, (50, 45, 90), 70)):
        ridge = Image.new("RGBA", (width, height))
        xs = np.linspace(0, width, 24)
        heights = height * base + rng.uniform(-rough, rough, xs.size)
        points = [(0, height), *zip(xs.tolist(), heights.tolist(), strict=True), (width, height)]
        ImageDraw.Draw(ridge).polygon(points, fill=(*colour, 255))
        shade = Image.new("RGBA", (width, height))
        ImageDraw.Draw(shade).polygon([(x + 30, y + 20) for x, y in points],
                                      fill=(120, 110, 160, 255))
        stack.add(Layer(f"{name} shadow", _rgba(shade.filter(ImageFilter.GaussianBlur(12))),
                        blend_mode=BlendMode.MULTIPLY, opacity=0.6, kind="shadow"
                        ).cropped_to_content())
        stack.add(Layer(name, _rgba(ridge), kind="object").cropped_to_content())

    stack.set_group(("Birds",), GroupInfo(opacity=0.85))
    for i in range(5):
        bird = Image.new("RGBA", (40, 20))
        ImageDraw.Draw(bird).line([(2, 4), (20, 16), (38, 4)], fill=(30, 25, 50, 255), width=3)
        x, y = int(rng.integers(width // 6, width - 60)), int(rng.integers(20, height // 3))
        stack.add(Layer(f"Bird {i + 1}", _rgba(bird), offset=(x, y), group=("Birds",)))

    title = Image.new("RGBA", (width, 90))
    font = ImageFont.load_default(size=48)
    ImageDraw.Draw(title).text((width // 2, 45), "LayerStudio", font=font, anchor="mm",
                               fill=(255, 255, 255, 235))
    stack.add(Layer("Title", _rgba(title), offset=(0, height - 110), kind="text"
                    ).cropped_to_content())
    return stack
