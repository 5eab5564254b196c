"""The ``layerstudio`` command line.

Every command reports bad input as one ``error:`` line and exits with status 2; import warnings
(rasterised or skipped features) go to stderr as ``warning:`` lines. Set LAYERSTUDIO_DEBUG=1 to
see a traceback for unexpected failures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import traceback
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

from . import __version__
from .document import LayerStack, layer_key
from .errors import InvalidInputError, LayerStudioError
from .io import LAYERED_SUFFIXES

__all__ = ["main"]

EXIT_BAD_INPUT = 2


@contextlib.contextmanager
def _warnings_printed() -> Iterator[None]:
    """Show what a reader or writer warned about (a rasterised layer, transparency a JPEG
    cannot keep) as ``warning:`` lines."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)


def _load(path: str) -> LayerStack:
    with _warnings_printed():
        return LayerStack.load(path)


def _chosen_layer(stack: LayerStack, given: str | None) -> int | str:
    """``--layer``: a name, an index (0 = bottom, -1 = top), or by default the top visible
    layer (never a hidden reference layer)."""
    if given is None:
        return stack.top_visible()
    return layer_key(given)


def _save_output(stack: LayerStack, path: str) -> Path:
    with _warnings_printed():
        return stack.save(path)


def _layer_rows(stack: LayerStack) -> list[dict]:
    rows = []
    for index in range(len(stack.layers) - 1, -1, -1):  # top first, as editors list them
        layer = stack.layers[index]
        rows.append({"index": index, "name": layer.name, "kind": layer.kind,
                     "size": [layer.width, layer.height], "offset": list(layer.offset),
                     "mode": layer.blend_mode.value, "opacity": round(layer.opacity, 4),
                     "visible": layer.visible, "group": "/".join(layer.group),
                     "dtype": str(layer.pixels.dtype)})
    return rows


def cmd_inspect(args: argparse.Namespace) -> int:
    stack = _load(args.file)
    rows = _layer_rows(stack)
    if args.json:
        print(json.dumps({"file": args.file, "width": stack.width, "height": stack.height,
                          "metadata": stack.metadata, "layers": rows}, ensure_ascii=False,
                         indent=2))
        return 0
    print(f"{args.file}: {stack.width}x{stack.height}, {len(rows)} layers (top first)")
    headers = ["#", "name", "kind", "size", "offset", "mode", "opacity", "visible", "group"]
    table = [[str(r["index"]), r["name"], r["kind"], "x".join(map(str, r["size"])),
              ",".join(map(str, r["offset"])), r["mode"], f"{r['opacity']:.2f}",
              "yes" if r["visible"] else "no", r["group"]] for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in table)) if table else len(h)
              for i, h in enumerate(headers)]
    for row in [headers, *table]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
              .rstrip())
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    if Path(args.output).suffix.lower() not in LAYERED_SUFFIXES:
        raise LayerStudioError(f"convert writes layered files ({', '.join(LAYERED_SUFFIXES)});"
                               " use 'layerstudio flatten' for a flat image")
    stack = _load(args.input)
    options = {key: value for key, value in (("depth", args.depth),
                                             ("compression", args.compression)) if value}
    path = stack.save(args.output, **options)
    print(f"wrote {path} ({len(stack)} layers)")
    return 0


def cmd_flatten(args: argparse.Namespace) -> int:
    if Path(args.output).suffix.lower() in LAYERED_SUFFIXES:
        raise LayerStudioError("flatten writes a flat image such as .png; use 'layerstudio "
                               "convert' for layered files")
    stack = _load(args.input)
    path = _save_output(stack, args.output)
    print(f"wrote {path} ({stack.width}x{stack.height})")
    return 0


def _pair(text: str) -> tuple[int, int]:
    try:
        first, second = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two whole numbers like 10,-5, got {text!r}"
                                         ) from None
    return first, second


def cmd_transform(args: argparse.Namespace) -> int:
    stack = _load(args.input)
    layer = _chosen_layer(stack, args.layer)
    moved = stack.transform(layer, move=args.move, to=args.to, scale=args.scale / 100.0,
                            rotate=args.rotate, flip=args.flip)
    path = _save_output(stack, args.output)
    print(f"wrote {path} (layer {moved.name!r} now {moved.width}x{moved.height} at "
          f"{moved.offset[0]},{moved.offset[1]})")
    return 0


def cmd_upscale(args: argparse.Namespace) -> int:
    from .studio import Studio  # late: torch and diffusers load only for commands that run models

    bigger = Studio(device=args.device).upscale(_load(args.input), args.scale, layer=args.layer)
    path = _save_output(bigger, args.output)
    print(f"wrote {path} ({bigger.width}x{bigger.height}, {len(bigger)} layers, "
          f"Real-ESRGAN x{args.scale})")
    return 0


def cmd_decompose_watermark(args: argparse.Namespace) -> int:
    from layerstudio.pipelines.alpha_decompose.watermark import clean_photos, photo_paths

    paths = photo_paths(args.inputs)
    estimate = clean_photos(paths, args.output, watermark=args.watermark, layered=args.psd,
                            report=lambda message: print(message, file=sys.stderr))
    source = f"estimated from {estimate.photos} photos" if args.watermark is None else \
        f"given ({args.watermark})"
    print(f"wrote {len(paths)} cleaned photo{'s' if len(paths) != 1 else ''} and "
          f"watermark.png to {args.output} (watermark {source})")
    return 0


def _write_sheet(stack: LayerStack, path: str | Path, **options: int) -> None:
    """A contact sheet of every layer and the composite, written atomically as PNG."""
    from .io.atomic import atomic_path
    from .preview import contact_sheet

    sheet = contact_sheet(stack, **options)
    with atomic_path(path) as tmp:
        sheet.save(tmp, "PNG")


def cmd_preview(args: argparse.Namespace) -> int:
    if Path(args.output).suffix.lower() != ".png":
        raise LayerStudioError("the preview is written as .png")
    stack = _load(args.input)
    _write_sheet(stack, args.output, tile=args.tile, columns=args.columns)
    print(f"wrote {args.output} ({len(stack)} layer{'' if len(stack) == 1 else 's'} + composite)")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .presets import PRESETS, compression_summary, get_preset, is_available, known_prompts

    if args.prompts:
        get_preset(args.prompts)  # an unknown name is an error, not an empty list
        prompts = known_prompts(args.prompts)
        if args.json:
            print(json.dumps(prompts, indent=2))
        elif prompts:
            print("\n".join(prompts))
        else:
            print(f"{args.prompts} has no fixed vocabulary: any prompt is fair")
        return 0

    rows = [{"name": p.name, "source": p.source, "loader": p.loader.split(":")[1],
             "resolution": p.resolution, "available": is_available(p), "good_for": p.good_for,
             "licence": p.licence, "compression": compression_summary(p.name)}
            for p in PRESETS.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        where = "shipped" if row["source"] == "shipped" else f"HF {row['source']}"
        here = "yes" if row["available"] else "no"
        size = f"{row['resolution']}px" if row["resolution"] else "any"
        print(f"{row['name']:<20} {where:<52} {size:>7}  here: {here:<3}  {row['good_for']}")
        if row["compression"]:
            print(f"{'':<20} {row['compression']}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .train import load_recipe, train

    if args.steps is not None and args.steps < 1:
        raise LayerStudioError("--steps must be at least 1")
    if args.workers < 0:
        raise LayerStudioError("--workers must be 0 or more")
    if len(args.recipe) > 1 or args.recipe == ["family"]:
        from .train.family import train_in_order

        for run in train_in_order(args.recipe, args.output, steps=args.steps,
                                  resume=args.resume, workers=args.workers):
            print(f"trained {run.name} into {run}")
        return 0
    recipe = load_recipe(args.recipe[0])
    output = train(recipe, args.output, steps=args.steps, resume=args.resume,
                   workers=args.workers)
    print(f"trained {recipe.name} into {output}")
    return 0


def cmd_ship(args: argparse.Namespace) -> int:
    from .train.ship import ship

    shared = ship(args.run, args.preset)
    taken = ", ".join(f"{part} from {other}" for part, other in shared.items()) or "nothing"
    print(f"shipped {args.run} as {args.preset} (shared: {taken})")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from .compress.prune import prune

    prompts = None
    if args.prompts:
        prompts = [line.strip() for line in Path(args.prompts).read_text().splitlines()
                   if line.strip()]
    report = prune(args.model, args.kind, args.method, args.output, ratio=args.ratio,
                   calib=args.calib, finetune_steps=args.finetune_steps,
                   learn_steps=args.learn_steps, group=args.group,
                   learning_rate=args.learning_rate, batch_size=args.batch_size,
                   prompts=prompts, seed=args.seed, device=args.device)
    params = report["params"]
    print(f"pruned {args.model} ({args.kind}, {report['method']}): {params['before']:,} -> "
          f"{params['after']:,} parameters ({params['removed']:.0%} removed), retrained "
          f"{args.finetune_steps} steps; wrote {args.output} (details in compression.json; "
          f"`layerstudio ship {args.output} PRESET` installs it)")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .eval.runner import evaluate

    print(json.dumps(evaluate(args.preset, split=args.split, n=args.n, seed=args.seed),
                     indent=2))
    return 0


def _layout_argument(args: argparse.Namespace):
    """--boxes / --layout / --regions (one of them) as Studio's ``boxes``; giving one picks
    mode 'layers' when --mode was not given."""
    given = [value for value in (args.boxes, args.layout, args.regions) if value is not None]
    if len(given) > 1:
        raise InvalidInputError("give one of --boxes, --layout and --regions")
    args.mode = args.mode or ("layers" if given else "fg")
    return given[0] if given else None


def cmd_generate(args: argparse.Namespace) -> int:
    from .imaging import over_checkerboard
    from .studio import Studio

    boxes = _layout_argument(args)
    stack = Studio(device=args.device).generate(
        args.prompt, model=args.model, mode=args.mode, background=args.background,
        foreground=args.foreground, stop_at=args.stop_at,
        foreground_prompt=args.foreground_prompt, background_prompt=args.background_prompt,
        boxes=boxes, seed=args.seed, steps=args.steps,
        size=args.size, guidance=args.guidance, negative_prompt=args.negative,
        augment=args.augment, fit=args.fit, upscale=args.upscale)
    path = _save_output(stack, args.output)
    message = f"wrote {path} ({len(stack)} layer{'s' if len(stack) != 1 else ''}, " \
              f"{stack.width}x{stack.height}, {stack.metadata['seconds']} s)"
    if args.preview:
        preview = Path(path).with_suffix(".preview.png")
        over_checkerboard(stack.composite()).save(preview)
        message += f" and preview {preview}"
    print(message)
    for note in stack.metadata.get("notes", []):
        print(f"note: {note}", file=sys.stderr)
    return 0


def cmd_decompose(args: argparse.Namespace) -> int:
    from .studio import Studio

    with _warnings_printed():
        stack = Studio(device=args.device).decompose(
            args.input, method=args.method, layers=args.layers, mask=args.mask, box=args.box,
            prompt=args.prompt, seed=args.seed, steps=args.steps, layer=args.layer,
            upscale=args.upscale, separate_effects=args.separate_effects, blend=args.blend,
            convention=args.convention)
    path = _save_output(stack, args.output)
    info = stack.metadata["splits"][-1] if args.layer is not None else stack.metadata
    what = f"layer {info['layer']!r} split into a group of " if args.layer is not None else ""
    message = (f"wrote {path} ({what}{info['layers']} layer{'s' if info['layers'] != 1 else ''}"
               f" by {info['method']}, re-composing at {info['recomposition_psnr']} dB, "
               f"{info['seconds']} s)")
    if args.preview:
        preview = Path(path).with_suffix(".preview.png")
        _write_sheet(stack, preview)
        message += f" and preview {preview}"
    print(message)
    for note in info.get("notes", []):
        print(f"note: {note}", file=sys.stderr)
    return 0


def cmd_edit(args: argparse.Namespace) -> int:
    from .studio import Studio

    document = _load(args.input)
    layer = _chosen_layer(document, args.layer)
    stack = Studio(device=args.device).edit_layer(
        document, layer, args.prompt, mask=args.mask, strength=args.strength,
        model=args.model, seed=args.seed, steps=args.steps, guidance=args.guidance,
        negative_prompt=args.negative, augment=args.augment)
    path = _save_output(stack, args.output)
    edited = stack.layers[stack.index(layer)]
    print(f"wrote {path} (layer {edited.name!r} regenerated in "
          f"{edited.provenance['edit']['seconds']} s; {len(stack) - 1} other layers as they were)")
    return 0


def cmd_edit_session(args: argparse.Namespace) -> int:
    from . import jsonsafe
    from .edit_session import memory_path, run_script
    from .studio import Studio

    script_path = Path(args.script)
    if not script_path.is_file():
        raise InvalidInputError(f"script {script_path} does not exist")
    script = jsonsafe.loads(script_path.read_text(encoding="utf-8"), str(script_path))
    studio = Studio(device=args.device)

    def report(_number: int, line: str) -> None:
        print(f"  {line}", flush=True)

    if args.resume:
        if isinstance(script, dict) and "background" in script:
            raise InvalidInputError("--resume continues a saved session: leave \"background\" "
                                    "out of the script")
        session = studio.open_edit_session(args.resume)
        session.apply(script.get("edits", []) if isinstance(script, dict) else script,
                      script_path.parent, on_edit=report)
    else:
        session = run_script(studio, script, script_path.parent, seed=args.seed,
                             steps=args.steps, size=args.size, model=args.model,
                             guidance=args.guidance, on_edit=report)
    document, memory = session.save(args.output)
    message = (f"wrote {document} ({len(session.layers)} edit layer"
               f"{'' if len(session.layers) == 1 else 's'} over the background, "
               f"{session.size[0]}x{session.size[1]}) and its memory {memory}")
    if args.preview:
        preview = Path(document).with_suffix(".preview.png")
        _write_sheet(session.stack, preview)
        message += f" and preview {preview}"
    print(message)
    for note in session.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"continue it with: layerstudio edit-session MORE.json --resume {memory_path(document)}"
          f" -o {document}", file=sys.stderr)
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    from .batch import run_batch

    formats = tuple(part.strip().lower().lstrip(".") for part in args.format.split(",")
                    if part.strip())
    summary = run_batch(args.jobs, args.out, formats, resume=args.resume, device=args.device)
    print(f"batch: {summary.line()}; outputs in {args.out}")
    for note, count in summary.notes.items():
        print(f"note: {count} job{'' if count == 1 else 's'}: {note}", file=sys.stderr)
    if summary.failed:
        print(f"error: {summary.failed} job(s) failed; see {Path(args.out) / 'errors.jsonl'}",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    try:
        from .ui.app import launch
    except ImportError as exc:
        raise LayerStudioError(f"the web UI needs Gradio ({exc.name} is not installed): "
                               "pip install 'layerstudio[ui]'") from None
    if not 1 <= args.concurrency <= 16:
        raise LayerStudioError("--concurrency must be between 1 and 16")
    if not 1 <= args.max_upload_mb <= 4096:
        raise LayerStudioError("--max-upload-mb must be between 1 and 4096")
    from .studio import Studio

    print(f"LayerStudio UI on http://{args.host}:{args.port} (Ctrl+C to stop)", flush=True)
    launch(args.host, args.port, concurrency=args.concurrency,
           max_upload_mb=args.max_upload_mb, studio=Studio(device=args.device), quiet=True)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import GENERATED, demo_stack, generate_objects
    from .imaging import over_checkerboard

    generated = None
    if not args.procedural:
        from .studio import Studio

        print(f"generating {len(GENERATED)} layers with the shipped transparent model "
              "(256 px through the upscaler)...", flush=True)
        generated = generate_objects(Studio(device=args.device), seed=args.seed)
    stack = demo_stack(seed=args.seed, generated=generated)
    path = stack.save(args.output)
    preview = Path(path).with_suffix(".preview.png")
    over_checkerboard(stack.composite()).save(preview)
    print(f"wrote {path} ({len(stack)} layers) and preview {preview}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="layerstudio",
        description="Generate and edit images as stacks of transparent layers; read and "
                    "write PSD/PSB, OpenRaster and ZIP.")
    parser.add_argument("--version", action="version", version=f"layerstudio {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("inspect", help="list the layers of a PSD/ORA/ZIP/image file")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("convert", help="convert between .psd, .ora and .zip")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--depth", type=int, choices=(8, 16), help="PSD bits per channel")
    p.add_argument("--compression", choices=("rle", "zip", "raw"),
                   help="PSD channel compression (default rle)")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("flatten", help="write the flattened composite as .png (or .webp/.tif)")
    p.add_argument("input")
    p.add_argument("output")
    p.set_defaults(func=cmd_flatten)

    p = sub.add_parser("transform", help="move, scale, rotate or flip one layer")
    p.add_argument("input", help="layered file (.psd, .psb, .ora, .zip) or image")
    p.add_argument("-o", "--output", required=True, help="output file")
    p.add_argument("--layer", help="layer name or index (default: the top visible layer)")
    p.add_argument("--move", type=_pair, metavar="DX,DY", help="move by DX,DY pixels")
    p.add_argument("--to", type=_pair, metavar="X,Y", help="put the top-left corner at X,Y")
    p.add_argument("--scale", type=float, default=100.0, metavar="PERCENT",
                   help="scale about the layer's centre (default 100)")
    p.add_argument("--rotate", type=int, default=0, choices=(0, 90, 180, 270, -90),
                   help="degrees clockwise about the layer's centre")
    p.add_argument("--flip", choices=("horizontal", "vertical"))
    p.set_defaults(func=cmd_transform)

    p = sub.add_parser("decompose-watermark",
                       help="remove one watermark from many photos stamped with it (Dekel et "
                            "al. 2017): estimate it, clean every photo at full size")
    p.add_argument("inputs", nargs="+", metavar="PHOTOS", help="photos, or folders of them")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                   help="folder for the cleaned photos (PNG) and watermark.png")
    p.add_argument("--watermark", metavar="RGBA.png",
                   help="the watermark itself, with its alpha (skips estimating it)")
    p.add_argument("--psd", action="store_true",
                   help="write each photo as a PSD of [clean photo, watermark layer]")
    p.set_defaults(func=cmd_decompose_watermark)

    p = sub.add_parser("upscale", help="every layer 2x or 4x larger (Real-ESRGAN, offline)")
    p.add_argument("input", help="layered file (.psd, .psb, .ora, .zip) or image")
    p.add_argument("-o", "--output", required=True, help="output file")
    p.add_argument("--scale", type=int, default=4, choices=(2, 4))
    p.add_argument("--layer", help="upscale only this layer (name or index); the others are "
                   "resized with Lanczos so the document stays aligned")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: CUDA when present")
    p.set_defaults(func=cmd_upscale)

    p = sub.add_parser("preview", help="contact sheet of every layer over a checkerboard")
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True, help="output .png")
    p.add_argument("--tile", type=int, default=192, help="tile size in pixels")
    p.add_argument("--columns", type=int, default=5)
    p.set_defaults(func=cmd_preview)

    p = sub.add_parser("demo", help="write a layered poster: a drawn scene with objects the "
                                    "shipped models generate")
    p.add_argument("-o", "--output", default="layerstudio-demo.psd",
                   help="output file (.psd, .ora, .zip or .png)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--procedural", action="store_true",
                   help="draw the scene only, without generated layers (no models)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when present")
    p.set_defaults(func=cmd_demo)

    from .studio import DEFAULT_MODEL, EDIT_MODEL, MODE_MODELS, MODES

    p = sub.add_parser("generate", help="generate a layered image from a prompt")
    p.add_argument("prompt")
    p.add_argument("-o", "--output", required=True,
                   help="output file (.psd, .ora, .zip or .png)")
    p.add_argument("--model", help="model preset (default: the shipped one for the mode, "
                   f"{', '.join(f'{m}: {n}' for m, n in MODE_MODELS.items())}; "
                   "see `layerstudio models`)")
    p.add_argument("--mode", choices=MODES,
                   help="fg (default): one transparent foreground layer from text; bg2fg: a "
                        "foreground for --background; fg2bg: a background behind "
                        "--foreground; joint: foreground, background and blend together; "
                        "layers: one transparent layer per box (--boxes/--layout/--regions)")
    p.add_argument("--boxes", metavar="X,Y,W,H;...",
                   help="layers: the regions in pixels, bottom to top")
    p.add_argument("--layout", metavar="FILE",
                   help="layers: a JSON layout or a sketch image (one flat colour a region)")
    p.add_argument("--regions", type=int, metavar="N",
                   help="layers: place N regions automatically")
    p.add_argument("--background", metavar="FILE",
                   help="background image or layered file (its composite), for bg2fg")
    p.add_argument("--foreground", metavar="FILE",
                   help="transparent foreground image or layered file, for fg2bg")
    p.add_argument("--fit", choices=("crop", "pad", "stretch"),
                   help="how a non-square --background/--foreground meets the square canvas "
                        "(default: crop a background, pad a foreground)")
    p.add_argument("--stop-at", type=float, default=1.0, metavar="F",
                   help="fraction of steps that see the given layer (default 1)")
    p.add_argument("--foreground-prompt", metavar="TEXT",
                   help="joint: the foreground layer's prompt (default: X of 'X on Y')")
    p.add_argument("--background-prompt", metavar="TEXT",
                   help="joint: the background layer's prompt (default: Y of 'X on Y')")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, help="denoising steps (default: the preset's)")
    p.add_argument("--size", type=int, help="square side in pixels (default: the preset's)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale")
    p.add_argument("--negative", help="negative prompt")
    p.add_argument("--augment", action="store_true",
                   help="8-pass median alpha decode (slower, cleaner edges)")
    p.add_argument("--preview", action="store_true",
                   help="also write OUTPUT.preview.png over a checkerboard")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when present")
    p.add_argument("--upscale", type=int, choices=(2, 4),
                   help="make the result 2x or 4x larger (Real-ESRGAN, offline)")
    p.set_defaults(func=cmd_generate)

    from .decompose import ANIME_CONVENTIONS, DECOMPOSITION

    p = sub.add_parser(
        "decompose", help="split a picture into layers that re-composite to it",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Split a picture (any image, or a layered file's composite) into layers.",
        epilog="methods:\n" + "\n".join(
            f"  {name:<12} {DECOMPOSITION.get(name).summary}" for name in DECOMPOSITION))
    p.add_argument("input", help="image or layered file (its composite is used)")
    p.add_argument("-o", "--output", required=True, help="output file (.psd, .ora, .zip)")
    p.add_argument("--method", choices=list(DECOMPOSITION),
                   help=f"default {DECOMPOSITION.default}; see the list below")
    p.add_argument("--layers", metavar="N|auto",
                   help="at most N layers, background included (default auto)")
    p.add_argument("--mask", metavar="FILE",
                   help="picture-sized image, white = the region to decompose")
    p.add_argument("--box", metavar="X,Y,W,H", help="the region to decompose, in pixels "
                   "(several: X,Y,W,H;X,Y,W,H; the effects methods peel each in turn)")
    p.add_argument("--layer", help="split this layer (name or index) of a layered INPUT into "
                                   "a group of sub-layers, keeping the rest of the document")
    p.add_argument("--prompt", help="what the picture shows (model methods)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, help="denoising steps (model methods)")
    p.add_argument("--separate-effects", action="store_true",
                   help="put the shadow (multiply), reflection and glow (screen) in layers of "
                        "their own under the object (effects methods)")
    p.add_argument("--blend", choices=("auto", "normal", "screen", "add", "multiply"),
                   help="the see-through layer's blend type (method alpha; default auto)")
    p.add_argument("--convention", choices=list(ANIME_CONVENTIONS),
                   help="how shadow and highlight recombine (anime methods): artist = "
                        "multiply / screen (default), artist-add = multiply / linear dodge, "
                        "normal = plain alpha-over")
    p.add_argument("--preview", action="store_true",
                   help="also write OUTPUT.preview.png: every layer and the composite")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when present")
    p.add_argument("--upscale", type=int, choices=(2, 4),
                   help="make the result 2x or 4x larger (Real-ESRGAN, offline)")
    p.set_defaults(func=cmd_decompose)

    p = sub.add_parser("edit", help="regenerate one layer of a document from a prompt, "
                                    "leaving the others untouched")
    p.add_argument("input", help="layered file (.psd, .ora, .zip) or image")
    p.add_argument("prompt")
    p.add_argument("-o", "--output", required=True, help="output file (.psd, .ora, .zip, .png)")
    p.add_argument("--layer",
                   help="layer name or index (0 = bottom, -1 = top; default: the top visible "
                        "layer)")
    p.add_argument("--mask", metavar="FILE",
                   help="canvas-sized greyscale image: white = repaint, black = keep")
    p.add_argument("--strength", type=float, default=0.6,
                   help="how far the layer may change, in (0, 1] (default 0.6)")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"default {DEFAULT_MODEL}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, help="denoising steps (default: the preset's)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale")
    p.add_argument("--negative", help="negative prompt")
    p.add_argument("--augment", action="store_true", help="8-pass median alpha decode")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when present")
    p.set_defaults(func=cmd_edit)

    p = sub.add_parser("edit-session", help="edit step by step from a JSON script (add, "
                       "replace, remove, undo) without disturbing earlier edits; every edit a "
                       "layer")
    p.add_argument("script", help='JSON: {"background": "a prompt" or "image.png", "edits": '
                                  '[{"add": "a cat", "box": [x, y, w, h]}, {"add": "a hat", '
                                  '"mask": "mask.png"}, {"replace": 1, "prompt": "a dog"}, '
                                  '{"remove": 1}, {"undo": true}]} (layers are numbered by '
                                  'the edit that added them, from 1)')
    p.add_argument("-o", "--output", required=True,
                   help="output document (.psd, .ora, .zip, .png); the memory is saved beside "
                        "it as NAME.memory.safetensors")
    p.add_argument("--resume", metavar="FILE",
                   help="continue a saved session (its document or memory file) with the "
                        "script's edits")
    p.add_argument("--model", help=f"text-to-image preset (default {EDIT_MODEL})")
    p.add_argument("--seed", type=int, help="default: the script's, else 0")
    p.add_argument("--steps", type=int, help="denoising steps (default: the preset's)")
    p.add_argument("--size", type=int, help="square canvas side (default: the preset's)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale")
    p.add_argument("--preview", action="store_true",
                   help="also write a contact sheet of the layers (NAME.preview.png)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when present")
    p.set_defaults(func=cmd_edit_session)

    p = sub.add_parser("batch", help="run every job of a JSON Lines file (one object a line: "
                       "prompt, model, mode, boxes, seed, ...; or task: decompose, image, "
                       "method, layers, ...)")
    p.add_argument("jobs", help="the .jsonl file")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--format", default="psd", metavar="LIST",
                   help="comma-separated: psd, ora, zip, png (default psd)")
    p.add_argument("--resume", action="store_true",
                   help="skip jobs whose manifest (NAME.json) is already in DIR")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when present")
    p.set_defaults(func=cmd_batch)

    p = sub.add_parser("ui", help="the web UI: generate, edit layers, export (Gradio)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to serve on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--concurrency", type=int, default=1,
                   help="model runs at a time; more wait in the queue (default 1)")
    p.add_argument("--max-upload-mb", type=int, default=64, help="largest upload (default 64)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when present")
    p.set_defaults(func=cmd_ui)

    p = sub.add_parser("ship", help="install a trained run as a shipped preset, storing "
                                    "components other presets already have only once")
    p.add_argument("run", help="the --output folder of `layerstudio train`")
    p.add_argument("preset", help="shipped preset name, e.g. tiny-layerdiffuse-bg2fg")
    p.set_defaults(func=cmd_ship)

    p = sub.add_parser("models", help="list the model presets and whether they are here")
    p.add_argument("--json", action="store_true")
    p.add_argument("--prompts", metavar="PRESET",
                   help="list the prompts a shipped tiny model was trained on")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("train", help="train a preset from its recipe")
    p.add_argument("recipe", nargs="+",
                   help="shipped recipe name (tiny-sd, tiny-dit, tiny-judge) or a .toml; "
                        "several (or 'family': every preset on tiny-sd's latent space) train "
                        "in order into OUTPUT/NAME, each on the new runs of its bases")
    p.add_argument("--output", required=True, help="folder for checkpoints and weights")
    p.add_argument("--workers", type=int, default=0,
                   help="processes drawing training batches (default 0: one thread); "
                        "use most CPU cores on a GPU machine")
    p.add_argument("--steps", type=int, help="override every stage's step count")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("prune", help="a smaller, faster denoiser: LAPTOP-Diff layer pruning "
                                     "of a U-Net or TinyFusion depth pruning of a DiT")
    p.add_argument("kind", choices=("unet", "dit"))
    p.add_argument("--model", required=True, help="model preset or pipeline folder")
    p.add_argument("--ratio", type=float, default=0.5,
                   help="unet: share of parameters to remove; dit: share of blocks "
                        "(default 0.5)")
    p.add_argument("--method", default=None,
                   help="unet: laptop (default), handpicked, random, task-loss; "
                        "dit: tinyfusion (default), bi, evenly, random")
    p.add_argument("--calib", type=int, default=64, help="calibration examples (default 64)")
    p.add_argument("--finetune-steps", type=int, default=200,
                   help="retraining steps after pruning (default 200; 0: none)")
    p.add_argument("--learn-steps", type=int, default=100,
                   help="TinyFusion's mask-learning steps (default 100)")
    p.add_argument("--group", type=int, help="TinyFusion group size M (default 4 or 2)")
    p.add_argument("--learning-rate", type=float,
                   help="retraining learning rate (default: the recipe's, else 1e-4)")
    p.add_argument("--batch-size", type=int, help="retraining batch (default: the recipe's)")
    p.add_argument("--prompts", help="text file, one prompt a line: calibrate on sampling "
                                     "runs of these (models without a training recipe)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when present")
    p.add_argument("-o", "--output", required=True, help="folder for the pruned pipeline")
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("eval", help="quality and speed of a shipped preset (JSON)")
    p.add_argument("preset")
    p.add_argument("--split", choices=("train", "heldout"), default="heldout")
    p.add_argument("-n", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_eval)

    from .datasets.cli import register as register_data

    register_data(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except LayerStudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # never show a bare traceback to a user
        if os.environ.get("LAYERSTUDIO_DEBUG"):
            traceback.print_exc()
        print(f"internal error: {type(exc).__name__}: {exc} (set LAYERSTUDIO_DEBUG=1 for "
              "details, and please report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
