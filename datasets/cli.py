"""`layerstudio data ...`: look at and export the procedural datasets."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm import tqdm

from layerstudio.errors import LayerStudioError
from layerstudio.io.atomic import atomic_path

from .generate import GENERATORS, SPLITS, generate

__all__ = ["register"]

EXPORT_FORMATS = ("psd", "zip", "ora", "png")


def _options(pairs: list[str]) -> dict:
    """--option key=value pairs; values parsed as JSON where they can be (numbers, true)."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise LayerStudioError(f"--option needs key=value, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def _sample(args: argparse.Namespace, index: int):
    try:
        return generate(args.kind, index, seed=args.seed, size=args.size, split=args.split,
                        **_options(args.option))
    except (ValueError, TypeError) as exc:
        raise LayerStudioError(str(exc)) from None


def cmd_preview(args: argparse.Namespace) -> int:
    from .preview import samples_sheet

    if Path(args.output).suffix.lower() != ".png":
        raise LayerStudioError("the preview is written as .png")
    if not 1 <= args.n <= 256:
        raise LayerStudioError("-n must be between 1 and 256 for a preview")
    samples = [_sample(args, i) for i in range(args.n)]
    with atomic_path(args.output) as tmp:
        samples_sheet(samples, tile=args.tile).save(tmp, "PNG")
    print(f"wrote {args.output} ({args.n} {args.kind} samples)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    formats = [f.strip().lower() for f in args.format.split(",") if f.strip()]
    unknown = sorted(set(formats) - set(EXPORT_FORMATS))
    if unknown or not formats:
        raise LayerStudioError(f"--format takes {', '.join(EXPORT_FORMATS)}; got {args.format!r}")
    if args.n < 1:
        raise LayerStudioError("-n must be at least 1")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    for index in tqdm(range(args.n), desc=f"export {args.kind}", unit="sample"):
        sample = _sample(args, index)
        stem = out / f"{args.kind}_{args.split}_{index:06d}"
        for fmt in formats:
            sample.stack.save(stem.with_suffix(f".{fmt}"))
        with atomic_path(stem.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps(sample.to_json(), ensure_ascii=False, indent=1),
                           encoding="utf-8")
    print(f"wrote {args.n} {args.kind} samples to {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `data` command group to the main parser."""
    data = sub.add_parser("data", help="preview and export the procedural datasets")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION")
    data_sub.required = True
    for name, func, help_text in (("preview", cmd_preview, "contact sheet of samples"),
                                  ("export", cmd_export, "write samples as files + JSON")):
        p = data_sub.add_parser(name, help=help_text)
        p.add_argument("kind", choices=list(GENERATORS))
        p.add_argument("-n", type=int, default=16, help="number of samples")
        p.add_argument("-o", "--output", required=True,
                       help="grid .png (preview) or output folder (export)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--size", type=int, default=128, help="canvas size in pixels")
        p.add_argument("--split", choices=SPLITS, default="train")
        p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                       help="generator option, e.g. max_objects=20 or subtask=glass")
        if name == "preview":
            p.add_argument("--tile", type=int, default=96, help="tile size in pixels")
        else:
            p.add_argument("--format", default="psd", help="comma list of psd,zip,ora,png")
        p.set_defaults(func=func)
