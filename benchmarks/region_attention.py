"""ART's layer-wise region crop against full attention, on the same model in one run.

Speed: for 2, 5, 10, 20 and 50 regions placed by the layout planner, one transformer forward
(batch 1) with region crop and with full attention (every layer over the whole canvas):
seconds (median of ``--repeats``), tokens, attention FLOPs (QK^T and AV of every block, text
tokens included) and the attention matrices' memory per block (heads x N^2 floats), with the
ratios full / region.

Quality: held-out ``objects`` layouts (2-4 objects of the model's vocabulary; their captions
and boxes, not their pixels), generated with each attention from the same noise:
box adherence (IoU of the layer's alpha > 0.5 bounding box with its box), alpha soft IoU
against the scene's own object alpha in that box, and the judge's reading of each layer (the
layer over white, cropped to its box: is its top-1 one of the prompt's objects?).
Also the time of a 4-layer generation (background + 3 regions, 20 steps, CFG).

    python benchmarks/region_attention.py [-n 16] [--model tiny-art] [--canvas 128]

The speed table can be taken on a larger canvas than the model was trained on (``--canvas``):
the transformer runs at any size, and real ART canvases have far more tokens than 64 px.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from layerstudio.eval.metrics import alpha_soft_iou
from layerstudio.pipelines.anonymous_region import (
    AnonymousRegionPipeline,
    plan_boxes,
    token_box_pixels,
    token_count,
)
from layerstudio.presets import load_preset
from layerstudio.train.art import GRID, art_scene
from layerstudio.train.tasks import _to_tensor

REGIONS = (2, 5, 10, 20, 50)
SIZE = 64


def _attention_cost(model, tokens: int, text: int) -> tuple[int, float]:
    """(FLOPs of QK^T and AV over all blocks, MB of one block's attention matrices)."""
    config = model.config
    n = tokens + text
    dim = config.num_attention_heads * config.attention_head_dim
    blocks = config.num_layers + config.num_single_layers
    return 4 * n * n * dim * blocks, config.num_attention_heads * n * n * 4 / 2**20


@torch.no_grad()
def speed(pipe, repeats: int, canvas: int = SIZE) -> list[dict]:
    model = pipe.transformer
    text, pooled = pipe.encode_prompt(["many things on a background"])
    rows = []
    for count in REGIONS:
        layout = pipe.layout(plan_boxes(count, canvas, canvas, seed=count), canvas, canvas)
        latents = torch.randn(1, len(layout), model.config.in_channels // 4, canvas // 4,
                              canvas // 4, generator=torch.Generator().manual_seed(0))
        row: dict = {"regions": count, "layers": len(layout)}
        for name, full in (("region", False), ("full", True)):
            seconds = []
            for _ in range(repeats + 1):  # the first run warms up
                started = time.perf_counter()
                model(latents, layout, torch.tensor([0.5]), text, pooled, full_attention=full)
                seconds.append(time.perf_counter() - started)
            tokens = len(layout) * (canvas // GRID) ** 2 if full else token_count(layout)
            flops, memory = _attention_cost(model, tokens, text.shape[1])
            row[name] = {"seconds": round(statistics.median(seconds[1:]), 4),
                         "tokens": tokens, "attention_gflops": round(flops / 1e9, 3),
                         "attention_mb_per_block": round(memory, 2)}
        row["speedup"] = round(row["full"]["seconds"] / row["region"]["seconds"], 2)
        row["flops_ratio"] = round(row["full"]["attention_gflops"] /
                                   row["region"]["attention_gflops"], 2)
        rows.append(row)
    return rows


def _bbox_iou(alpha: np.ndarray, box: tuple[int, int, int, int]) -> float:
    ys, xs = np.nonzero(alpha > 0.5)
    if len(ys) == 0:
        return 0.0
    x, y, w, h = box
    ax0, ay0, ax1, ay1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    inter = max(0, min(ax1, x + w) - max(ax0, x)) * max(0, min(ay1, y + h) - max(ay0, y))
    union = (ax1 - ax0) * (ay1 - ay0) + w * h - inter
    return inter / union


def _named_classes(judge, caption: str) -> set[int]:
    """The judge's classes the caption names (the prompt's objects)."""
    text = " " + " ".join(re.findall(r"[a-z0-9]+", caption.lower())) + " "
    return {i for i, name in enumerate(judge.config.class_names) if f" {name} " in text}


@torch.no_grad()
def quality(pipe, judge, count: int, modes: tuple[tuple[str, bool], ...] = (
        ("region", False), ("full", True))) -> dict:
    """Box adherence, alpha soft IoU, judge reading and time on ``count`` held-out layouts,
    for each (name, full attention) of ``modes``."""
    results: dict = {}
    for name, full in modes:
        adherence, iou, readable, seconds = [], [], [], []
        for index in range(count):
            layers, boxes, caption = art_scene(2024, index, 4, pool=128, split="heldout")
            pixel_boxes = [token_box_pixels(box, GRID) for box in boxes[2:]]
            started = time.perf_counter()
            out = pipe(caption, pixel_boxes, num_inference_steps=20, guidance_scale=4.0,
                       full_attention=full, generator=torch.Generator().manual_seed(index))
            seconds.append(time.perf_counter() - started)
            crops, names = [], _named_classes(judge, caption)
            for layer, truth, box in zip(out.rgba[0, 2:], layers[2:], pixel_boxes,
                                         strict=True):
                adherence.append(_bbox_iou(layer[..., 3], box))
                x, y, w, h = box
                iou.append(alpha_soft_iou(layer[y:y + h, x:x + w, 3],
                                          truth[3, y:y + h, x:x + w].numpy()))
                white = layer[..., :3] * layer[..., 3:] + (1 - layer[..., 3:])
                crop = Image.fromarray(np.rint(white[y:y + h, x:x + w] * 255).astype(np.uint8))
                crops.append(_to_tensor(np.asarray(crop.resize((SIZE, SIZE)))))
            guesses = judge(torch.stack(crops).to(judge.device, judge.dtype)).argmax(1)
            readable += [int(guess) in names for guess in guesses]
        results[name] = {"box_adherence": round(float(np.mean(adherence)), 4),
                         "alpha_soft_iou": round(float(np.mean(iou)), 4),
                         "judge_in_prompt": round(float(np.mean(readable)), 4),
                         "seconds_per_image": round(float(np.mean(seconds)), 3)}
    return results


@torch.no_grad()
def four_layers(pipe) -> float:
    boxes = [(4, 8, 24, 24), (34, 30, 24, 24), (20, 40, 16, 16)]
    pipe("a cat and a dog and a ball on a blue background", boxes, num_inference_steps=20,
         generator=torch.Generator().manual_seed(0))  # warm-up
    started = time.perf_counter()
    pipe("a cat and a dog and a ball on a blue background", boxes, num_inference_steps=20,
         generator=torch.Generator().manual_seed(0))
    return round(time.perf_counter() - started, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=16, help="held-out layouts for quality")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--canvas", type=int, default=SIZE,
                        help="canvas side of the speed table (the model was trained at 64)")
    parser.add_argument("--model", default="tiny-art",
                        help="a preset, or a training run's folder")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    pipe = AnonymousRegionPipeline.from_pretrained(args.model, dtype=torch.float32) \
        if Path(args.model).is_dir() else load_preset(args.model)
    pipe.set_progress_bar_config(disable=True)
    judge = load_preset("tiny-judge")
    rows = speed(pipe, args.repeats, args.canvas)
    report = {"model": args.model, "canvas": args.canvas, "speed": rows,
              "quality": quality(pipe, judge, args.n),
              "four_layer_seconds": four_layers(pipe),
              "threads": torch.get_num_threads()}
    at_20 = [row["speedup"] for row in rows if row["regions"] >= 20]
    report["target"] = {"speedup_at_20_plus_min": min(at_20), "goal": 10.0,
                        "met": min(at_20) >= 10.0}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
