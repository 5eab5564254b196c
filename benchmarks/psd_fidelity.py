"""How closely LayerStudio renders real Photoshop files, against psd-tools' own renderer.

For every PSD/PSB in a folder (default: ``../shared/fixtures/photoshop-psd``) that stores
Photoshop's flattened composite, both renderers composite the layers and are compared with that
composite (mean absolute difference over RGBA premultiplied on white, in 1/255 units). Prints
JSON: per file the two errors and whether our import warned; totals within 0.5/255 and 2/255,
files differing by more than 2/255 with and without a warning, and the ratio of files we match
to files psd-tools matches (the baseline, in the same run).

    python benchmarks/psd_fidelity.py [FOLDER]
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
from psd_tools import PSDImage

from layerstudio.errors import LayerStudioError
from layerstudio.io import load_stack

DEFAULT_FOLDER = Path(os.environ.get(
    "LAYERSTUDIO_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures")
) / "photoshop-psd"
"""The Photoshop fixtures: ``shared/fixtures`` beside the clone or ``$LAYERSTUDIO_FIXTURES``."""


def _on_white(rgba: np.ndarray) -> np.ndarray:
    """Straight RGBA in [0, 1] -> RGB over white, so transparent pixels compare equal."""
    alpha = rgba[..., 3:4]
    return rgba[..., :3] * alpha + (1.0 - alpha)


def _as_float(image) -> np.ndarray:
    return np.asarray(image.convert("RGBA"), np.float32) / 255.0


def _error(ours: np.ndarray, reference: np.ndarray) -> float:
    if ours.shape != reference.shape:
        return float("inf")
    return float(np.abs(_on_white(ours) - _on_white(reference)).mean() * 255.0)


def measure(path: Path) -> dict | None:
    """Both renderers' error against Photoshop's composite; None when the file stores none."""
    psd = PSDImage.open(path)
    try:
        reference = _as_float(psd.composite(force=False)) if psd.has_preview() else None
    except ValueError:  # a stored composite psd-tools cannot decode: nothing to compare with
        reference = None
    if reference is None:
        return None
    row: dict = {"file": path.name}
    try:
        row["psd_tools"] = round(_error(_as_float(psd.composite(force=True)), reference), 3)
    except Exception as exc:  # the baseline may fail where we do not
        row["psd_tools"] = None
        row["psd_tools_error"] = f"{type(exc).__name__}: {exc}"
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            stack = load_stack(path)
        row["ours"] = round(_error(stack.composite_array(), reference), 3)
        row["warned"] = bool(caught)
    except LayerStudioError as exc:
        row["ours"], row["warned"], row["error"] = None, True, str(exc)
    return row


def summary(rows: list[dict]) -> dict:
    def within(key: str, limit: float) -> int:
        return sum(1 for r in rows if r.get(key) is not None and r[key] <= limit)

    differing = [r for r in rows if r["ours"] is None or r["ours"] > 2.0]
    ours, theirs = within("ours", 0.5), within("psd_tools", 0.5)
    return {
        "files": len(rows),
        "ours_within_0.5": ours, "ours_within_2": within("ours", 2.0),
        "psd_tools_within_0.5": theirs, "psd_tools_within_2": within("psd_tools", 2.0),
        "ours_over_2_with_warning": sum(1 for r in differing if r["warned"]),
        "ours_over_2_without_warning": [r["file"] for r in differing if not r["warned"]],
        "ratio_within_0.5_vs_psd_tools": round(ours / theirs, 3) if theirs else None,
    }


def main(argv: list[str]) -> int:
    folder = Path(argv[0]) if argv else DEFAULT_FOLDER
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".psd", ".psb"))
    rows = [row for row in map(measure, files) if row is not None]
    print(json.dumps({"folder": str(folder), "summary": summary(rows), "files": rows},
                     indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
