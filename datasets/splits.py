"""Held-out evaluation splits with saved manifests.

A split is a list of sample specs (kind, index, seed, size, options) drawn from the held-out
emoji partition and its own random stream, plus a SHA-256 of each sample's layers. The
manifests are committed (``datasets/splits/*.json``), so every version of LayerStudio evaluates
on the same inputs, and :func:`load_split` notices when a generator change has silently
altered them (numbers would then not be comparable).
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

from .generate import GENERATORS, generate
from .sample import Sample

__all__ = ["SPLIT_SEED", "VARIANTS", "build_split_manifest", "load_split", "split_names"]

SPLIT_SEED = 2026
SPLIT_SIZE = 64
SAMPLES_PER_KIND = 32
VARIANTS: dict[str, list[dict[str, Any]]] = {
    "objects": [{"max_objects": 6}, {"min_objects": 8, "max_objects": 20}],
    "effects": [{"effect": e} for e in ("drop_shadow", "cast_shadow", "contact_shadow",
                                         "reflection", "glow")],
    "alpha_blend": [{"subtask": t} for t in ("watermark", "glass", "flare", "light_leak",
                                              "smoke", "rain", "xray")],
    "anime": [{"convention": "artist"}, {"convention": "normal"}],
    "transparent": [{}],
    "design": [{"max_elements": 4}, {"min_elements": 5, "max_elements": 10}],
}
"""The options each generator's held-out samples cycle through (training uses them too)."""


def _digest(sample: Sample) -> str:
    """Hash of what a generator decided: caption, layer pixels, offsets and modes."""
    digest = hashlib.sha256(sample.caption.encode())
    for layer in sample.stack.layers:
        digest.update(f"{layer.offset}{layer.blend_mode.value}{layer.pixels.shape}".encode())
        digest.update(layer.pixels.tobytes())
    return digest.hexdigest()[:16]


def build_split_manifest(name: str = "heldout-v1", per_kind: int = SAMPLES_PER_KIND,
                         size: int = SPLIT_SIZE) -> dict[str, Any]:
    """The manifest of a held-out split: every generator, its variants in turn."""
    entries = []
    for kind in GENERATORS:
        variants = VARIANTS[kind]
        for index in range(per_kind):
            options = variants[index % len(variants)]
            sample = generate(kind, index, seed=SPLIT_SEED, size=size, split="heldout",
                              **options)
            entries.append({"kind": kind, "index": index, "seed": SPLIT_SEED, "size": size,
                            "options": options, "sha256": _digest(sample)})
    return {"name": name, "split": "heldout", "samples": entries}


def _manifest_path(name: str):
    return resources.files("layerstudio.datasets") / "splits" / f"{name}.json"


def split_names() -> list[str]:
    """Names of the committed split manifests."""
    folder = resources.files("layerstudio.datasets") / "splits"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def load_split(name: str = "heldout-v1", kind: str | None = None, *, verify: bool = True,
               path: str | Path | None = None) -> list[Sample]:
    """Rebuild the samples of a committed split (optionally one generator's only).

    With ``verify`` each sample's layers are checked against the manifest's digest and a
    ValueError names the first that differs.
    """
    source = Path(path) if path else _manifest_path(name)
    manifest = json.loads(source.read_text(encoding="utf-8"))
    samples = []
    for entry in manifest["samples"]:
        if kind is not None and entry["kind"] != kind:
            continue
        sample = generate(entry["kind"], entry["index"], seed=entry["seed"], size=entry["size"],
                          split=manifest["split"], **entry["options"])
        if verify and _digest(sample) != entry["sha256"]:
            raise ValueError(f"split {manifest['name']}: {entry['kind']} sample "
                             f"{entry['index']} no longer matches its manifest; a generator "
                             "changed, so results are not comparable with older versions")
        samples.append(sample)
    return samples
