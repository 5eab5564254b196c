"""Regenerate the sample pictures of the README and docs from the shipped checkpoints.

Each text-to-image preset draws prompts of its own vocabulary (the first of its sorted
known prompts, spread over the list) at its 64 px, through the one door users take
(`Studio.generate(..., upscale=4)`): the result is 256 px from the shipped Real-ESRGAN
upscaler. Transparent results are shown over a checkerboard. Writes
docs/images/PRESET-samples.png. With ``--anime METHOD``: docs/images/anime-edits.png, two
illustrations split into production layers and edited. With ``--edit``:
docs/images/edit-session.png, step-by-step edit sessions (issue 22) on tiny-sd.

    python docs/pictures.py [--only tiny-sd tiny-layerdiffuse] [--count 8]
    python docs/pictures.py --anime anime-classical
    python docs/pictures.py --edit
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from layerstudio.imaging import over_checkerboard
from layerstudio.presets import known_prompts
from layerstudio.studio import Studio

IMAGES = Path(__file__).resolve().parent / "images"
PRESETS = ("tiny-sd", "tiny-dit", "tiny-layerdiffuse")
TILE, LABEL = 256, 18


def prompts(preset: str, count: int) -> list[str]:
    """``count`` prompts spread evenly over the preset's sorted vocabulary."""
    known = known_prompts(preset)
    return [known[i * len(known) // count] for i in range(count)]


def sheet(studio: Studio, preset: str, count: int, columns: int = 4) -> Image.Image:
    font = ImageFont.load_default(size=12)
    rows = (count + columns - 1) // columns
    out = Image.new("RGB", (columns * (TILE + 4), rows * (TILE + LABEL + 4)), "white")
    draw = ImageDraw.Draw(out)
    for i, prompt in enumerate(prompts(preset, count)):
        stack = studio.generate(prompt, model=preset, seed=i, upscale=4)
        picture = over_checkerboard(stack.composite(), cell=16, light=150, dark=110)
        x, y = (i % columns) * (TILE + 4), (i // columns) * (TILE + LABEL + 4)
        out.paste(picture.resize((TILE, TILE)), (x, y))
        draw.rectangle((x, y + TILE, x + TILE, y + TILE + LABEL), fill="black")
        draw.text((x + 3, y + TILE + 2), prompt, fill="white", font=font)
    return out


def anime_edits(studio: Studio, method: str) -> Image.Image:
    """Two held-out illustrations (one per convention) split by ``method``, their four
    layers, then the structure-aware edits: a region recoloured (its shading follows), the
    shadow restyled, the line art recoloured and thickened."""
    import numpy as np

    from layerstudio.datasets.generate import generate
    from layerstudio.pipelines.anime_layers.edits import (
        recolour_region,
        restyle_line_art,
        restyle_shadow,
    )
    from layerstudio.preview import labelled_grid

    def alone(stack, index: int) -> Image.Image:
        layer = stack.layers[index].copy(blend_mode="normal", opacity=1.0)
        return over_checkerboard(type(stack)(stack.width, stack.height, [layer]).composite(),
                                 cell=16, light=150, dark=110).convert("RGB")

    rows = []
    for index, convention in ((3, "artist"), (5, "normal")):
        sample = generate("anime", index, size=256, split="heldout", seed=13,
                          convention=convention)
        picture = sample.stack.composite_array()[..., :3]
        stack = studio.decompose(picture, method=method, convention=convention)
        flat = sample.stack.layers[1]  # click inside the illustration's largest flat colour
        ys, xs = np.nonzero(flat.pixels[..., 3] > 250)
        x, y = int(xs[len(xs) // 2]) + flat.offset[0], int(ys[len(ys) // 2]) + flat.offset[1]
        recoloured = recolour_region(stack, x, y, "#3366cc")
        restyled = restyle_shadow(recoloured, "#c05080", 0.8)
        inked = restyle_line_art(restyled, "#402010", thicken=1)
        rows.append([Image.fromarray(np.rint(picture * 255).astype(np.uint8)),
                     *(alone(stack, i) for i in range(4)),
                     *(edited.composite().convert("RGB")
                       for edited in (recoloured, restyled, inked))])
    labels = ["picture", "flat colour", "shadow", "highlight", "line art",
              "region recoloured", "shadow restyled", "lines thicker"]
    return labelled_grid(rows, labels, tile=TILE)


EDITS = [{"add": "a smiling cat face with heart shaped eyes", "box": [2, 22, 40, 40]},
         {"add": "a sun behind cloud", "box": [28, 0, 36, 34]},
         {"remove": 1}]
"""Issue 22's three-edit sequence: add, add, remove the first."""


def edit_sessions(studio: Studio, seeds: tuple[int, ...] = (0, 1, 2, 3)) -> Image.Image:
    """One row per seed: the light background, the document after each of :data:`EDITS`,
    then the last document's layers alone (the background and the second edit's)."""
    import numpy as np

    from layerstudio.datasets.assets.backgrounds import make_background
    from layerstudio.preview import labelled_grid

    rows = []
    for seed in seeds:
        background, _ = make_background(np.random.default_rng(seed), (64, 64), "gradient")
        background = np.rint(background[..., :3] * 0.25 + 255 * 0.75).astype(np.uint8)
        session = studio.edit_session(background, seed=seed)
        row = [Image.fromarray(background)]
        for edit in EDITS:
            row.append(session.apply([edit]).composite().convert("RGB"))
        stack = session.stack
        row += [over_checkerboard(type(stack)(stack.width, stack.height, [layer]).composite(),
                                  cell=4, light=150, dark=110).convert("RGB")
                for layer in stack.layers]
        rows.append(row)
    labels = ["background", "1. add a cat", "2. add a sun", "3. remove layer 1",
              "layer: background", "layer: the sun edit"]
    return labelled_grid(rows, labels, tile=160)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=PRESETS, default=list(PRESETS))
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--anime", metavar="METHOD",
                        help="instead: docs/images/anime-edits.png by this anime method")
    parser.add_argument("--edit", action="store_true",
                        help="instead: docs/images/edit-session.png (edit sessions on tiny-sd)")
    args = parser.parse_args()
    studio = Studio()
    if args.edit:
        path = IMAGES / "edit-session.png"
        edit_sessions(studio).save(path)
        print(path)
        return
    if args.anime:
        path = IMAGES / "anime-edits.png"
        anime_edits(studio, args.anime).save(path)
        print(path)
        return
    for preset in args.only:
        path = IMAGES / f"{preset}-samples.png"
        sheet(studio, preset, args.count).save(path)
        print(path)


if __name__ == "__main__":
    main()
