"""Layered editing memory (issue 22): multi-edit sequences with and without Background
Consistency Guidance (BCG) and Multi-Query Disentanglement (MQD), one run.

A scripted suite of our own: each sequence starts from a light procedural background (three
quarters white: the tiny backbones learned objects on white, and on busy backgrounds draw
texture, not objects) and makes 3-5
edits (adds of emoji from the backbone's vocabulary in rough boxes, then replaces and
removes), the same script and seeds for every configuration. Scored on the pictures the
method produces (not on the layered document, which keeps every pixel outside an edit's region
by construction):

- background PSNR: outside every mask so far, each picture against the background as the VAE
  gives it back (the VAE's own loss, the same for every configuration, is ``vae_psnr``);
- step PSNR: outside the region each edit repainted, its picture against the one before;
- added accuracy: tiny-judge forced choice among the backbone's vocabulary on the box of an
  object just added or replaced;
- survival: the same judge on every earlier live object after each later edit (boxes at most
  half covered by later ones), and "kept": how often it still sees what it saw right after
  the object was made;
- removal PSNR: inside a removed object's box, the picture against the one before it was
  added;
- seconds per edit.

The baseline is plain masked inpainting of the same backbone (no BCG, no MQD); each other
configuration reports its ratio to it.

    python benchmarks/layered_memory.py [-n 24] [--size 64] [--model tiny-sd] [--steps 20]
        [--sheet PNG]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from layerstudio.datasets.assets.backgrounds import make_background
from layerstudio.datasets.assets.emoji import emoji_pool
from layerstudio.eval.metrics import psnr
from layerstudio.pipelines.layered_memory import LayeredMemoryEditPipeline
from layerstudio.presets import get_preset, load_preset

CONFIGS = {"inpainting": {"background_consistency": False, "multi_query": False},
           "mqd": {"background_consistency": False, "multi_query": True},
           "bcg": {"multi_query": False, "release": 0.0},
           "bcg+mqd": {"release": 0.0},
           "bcg+mqd, late release in a band (default)": {"release": 0.25, "release_band": 1},
           "bcg+mqd, late release everywhere": {"release": 0.25, "release_band": None}}
"""BCG kept to the last step in the "bcg" rows; the pipeline's default releases it for the last
quarter of the steps in a one-latent band around the edit, the paper over the whole picture."""
BASELINE = "inpainting"
BACKGROUNDS = ("gradient", "plain", "stripes", "checker")


@dataclass
class Edit:
    operation: str
    prompt: str | None = None
    box: tuple[int, int, int, int] | None = None
    layer: int | None = None


def _script(rng: np.random.Generator, size: int, vocabulary: list[str]) -> list[Edit]:
    """3-5 edits: two adds, then adds, replaces or removes of live layers."""
    edits, live = [], []
    for index in range(int(rng.integers(3, 6))):
        choice = "add" if index < 2 or not live else \
            str(rng.choice(["add", "replace", "remove"], p=[0.5, 0.25, 0.25]))
        side = int(rng.integers(round(size * 0.5), round(size * 0.7) + 1))
        x, y = (int(v) for v in rng.integers(0, size - side + 1, 2))
        prompt = str(rng.choice(vocabulary))
        number = index + 1
        if choice == "add":
            edits.append(Edit("add", prompt, (x, y, side, side)))
            live.append(number)
        else:
            target = int(rng.choice(live))
            if choice == "remove":
                live.remove(target)
                edits.append(Edit("remove", layer=target))
            else:
                edits.append(Edit("replace", prompt, layer=target))
    return edits


def _box_mask(box: tuple[int, int, int, int], size: int) -> np.ndarray:
    x, y, w, h = box
    mask = np.zeros((size, size), np.float32)
    mask[y:y + h, x:x + w] = 1
    return mask


class Judge:
    """tiny-judge's forced choice among the backbone's vocabulary on a box of a picture."""

    def __init__(self, vocabulary: list[str]) -> None:
        self.model = load_preset("tiny-judge").eval()
        self.among = sorted({self.model.class_for_caption(c) for c in vocabulary} - {None})

    @torch.no_grad()
    def guess(self, picture: np.ndarray, box: tuple[int, int, int, int]) -> int:
        """The class the judge sees in ``box``."""
        x, y, w, h = box
        crop = Image.fromarray(picture[y:y + h, x:x + w]).resize((64, 64), Image.BICUBIC)
        tensor = torch.from_numpy(np.array(crop)).permute(2, 0, 1)[None].float() / 127.5 - 1
        logits = self.model(tensor)[0]
        return self.among[int(logits[self.among].argmax())]

    def right(self, guess: int, caption: str) -> float:
        return float(guess == self.model.class_for_caption(caption))


def _pale(rng: np.random.Generator, size: int, kind: str) -> np.ndarray:
    """A light background (three quarters white): the backbone learned objects on white."""
    background, _ = make_background(rng, (size, size), kind)
    return np.rint(background[..., :3] * 0.25 + 255 * 0.75).astype(np.uint8)


def _sequence(pipe, judge: Judge, background: np.ndarray, edits: list[Edit], seed: int,
              options: dict, config: dict, shown: list | None) -> dict[str, list[float]]:
    size = background.shape[0]
    memory = pipe(image=background, generator=torch.Generator().manual_seed(seed),
                  **options).memories[0]
    original = memory.latest.image  # the background as the VAE gives it back
    pictures = [original]
    boxes: dict[int, tuple] = {}
    prompts: dict[int, str] = {}
    guesses: dict[int, int] = {}
    covered = np.zeros((size, size), bool)
    scores: dict[str, list[float]] = {key: [] for key in (
        "background_psnr", "step_psnr", "added", "survival", "kept", "removal_psnr",
        "seconds", "vae_psnr")}
    scores["vae_psnr"].append(psnr(original / 255, background / 255))
    for number, edit in enumerate(edits, start=1):
        generator = torch.Generator().manual_seed(seed * 100 + number)
        started = time.perf_counter()
        if edit.operation == "add":
            memory = pipe(edit.prompt, mask=_box_mask(edit.box, size), memory=memory,
                          generator=generator, **options, **config).memories[0]
            boxes[number], prompts[number] = edit.box, edit.prompt
        elif edit.operation == "replace":
            memory = pipe(edit.prompt, memory=memory, operation="replace", layer=edit.layer,
                          generator=generator, **options, **config).memories[0]
            prompts[edit.layer] = edit.prompt
        else:
            memory = pipe(memory=memory, operation="remove", layer=edit.layer,
                          generator=generator, **options, **config).memories[0]
        scores["seconds"].append(time.perf_counter() - started)
        picture = memory.latest.image
        region = memory.latest.region.numpy() > 0.05
        if (~region).any():
            scores["step_psnr"].append(psnr(picture[~region] / 255,
                                            pictures[-1][~region] / 255))
        pictures.append(picture)
        current = number if edit.operation == "add" else edit.layer
        if edit.operation == "remove":
            x, y, w, h = boxes.pop(edit.layer)
            prompts.pop(edit.layer)
            guesses.pop(edit.layer)
            before = pictures[edit.layer - 1]  # the picture before the removed layer came
            scores["removal_psnr"].append(psnr(picture[y:y + h, x:x + w] / 255,
                                               before[y:y + h, x:x + w] / 255))
        else:
            guesses[current] = judge.guess(picture, boxes[current])
            scores["added"].append(judge.right(guesses[current], prompts[current]))
            covered |= _box_mask(boxes[current], size) > 0
        if (~covered).any():
            scores["background_psnr"].append(psnr(picture[~covered] / 255,
                                                  original[~covered] / 255))
        for earlier, box in boxes.items():
            if earlier >= current:
                continue
            later = np.zeros((size, size), bool)
            for other, other_box in boxes.items():
                if other > earlier:
                    later |= _box_mask(other_box, size) > 0
            if later[_box_mask(box, size) > 0].mean() <= 0.5:
                guess = judge.guess(picture, box)
                scores["survival"].append(judge.right(guess, prompts[earlier]))
                scores["kept"].append(float(guess == guesses[earlier]))
    if shown is not None:
        shown.append(pictures)
    return scores


def _sheet(rows: dict[str, list], path: Path) -> None:
    """One block per configuration: for each shown sequence, its pictures step by step."""
    tile = 96
    blocks = list(rows.values())
    width = max(len(seq) for block in blocks for seq in block) * tile
    height = sum(len(block) for block in blocks) * tile
    sheet = Image.new("RGB", (width, height), "white")
    y = 0
    for block in blocks:
        for sequence in block:
            for column, picture in enumerate(sequence):
                sheet.paste(Image.fromarray(picture).resize((tile, tile), Image.NEAREST),
                            (column * tile, y))
            y += tile
    sheet.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=24, help="edit sequences")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--model", default="tiny-sd", help="the text-to-image preset")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--sheet", type=Path, help="write a PNG of two sequences per config")
    args = parser.parse_args()

    preset = get_preset(args.model)
    pipe = LayeredMemoryEditPipeline.around(load_preset(args.model))
    pipe.set_progress_bar_config(disable=True)
    options = {"num_inference_steps": args.steps, "guidance_scale": preset.guidance}
    vocabulary = [emoji.caption for emoji in emoji_pool("train", 128)]
    judge = Judge(vocabulary)
    # warm-up: the first calls' one-off costs stay out of the timings
    warm = pipe(image=np.full((args.size, args.size, 3), 255, np.uint8), **options)
    pipe("a cloud", mask=_box_mask((0, 0, 16, 16), args.size), memory=warm.memories[0],
         **options)
    rng = np.random.default_rng(0)
    suite = []
    for index in range(args.n):
        background = _pale(rng, args.size, BACKGROUNDS[index % len(BACKGROUNDS)])
        suite.append((background, _script(rng, args.size, vocabulary)))
    results, shown = {}, {}
    for name, config in CONFIGS.items():
        shown[name] = []
        totals: dict[str, list[float]] = {}
        for index, (background, edits) in enumerate(suite):
            scores = _sequence(pipe, judge, background, edits, index, options,
                               config,
                               shown[name] if index < 2 else None)
            for key, values in scores.items():
                totals.setdefault(key, []).extend(values)
        results[name] = {key: round(float(np.mean(values)), 4) if values else None
                         for key, values in totals.items()}
    base = results[BASELINE]
    for name, row in results.items():
        if name != BASELINE:
            row["ratio_to_inpainting"] = {
                key: round(row[key] / base[key], 3) for key in row
                if isinstance(row.get(key), float) and base.get(key)}
    report = {"benchmark": "layered_memory", "model": args.model, "size": args.size,
              "steps": args.steps, "sequences": args.n,
              "edits": sum(len(edits) for _, edits in suite), "baseline": BASELINE,
              "results": results}
    if args.sheet:
        _sheet(shown, args.sheet)
        report["sheet"] = str(args.sheet)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
