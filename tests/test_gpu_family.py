"""The GPU family script's pruning: what comes back from a device call resumes correctly."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _stage(run: Path, name: str, step: int) -> None:
    folder = run / "checkpoints" / name
    folder.mkdir(parents=True)
    (folder / "progress.json").write_text(json.dumps({"step": step}))
    (folder / "optimizer.bin").write_bytes(b"x" * 1000)


def test_prune_keeps_finished_progress_drops_unfinished_and_links_copies(tmp_path):
    prune = runpy.run_path(str(ROOT / ".ci" / "gpu_family_prune.py"))
    sd, ld = tmp_path / "tiny-sd", tmp_path / "tiny-layerdiffuse"
    _stage(sd, "vae", 1200)          # tiny-sd.toml: vae 1200 steps -> finished
    _stage(sd, "unet", 300)          # of 5000 -> unfinished
    for run in (sd, ld):
        (run / "vae").mkdir(parents=True)
        (run / "vae" / "weights.safetensors").write_bytes(b"same frozen vae")
    (ld / "unet").mkdir()
    (ld / "unet" / "weights.safetensors").write_bytes(b"its own unet")
    prune["main"](tmp_path)
    assert sorted(p.name for p in (sd / "checkpoints").iterdir()) == ["vae"]
    assert [p.name for p in (sd / "checkpoints" / "vae").iterdir()] == ["progress.json"]
    copies = [run / "vae" / "weights.safetensors" for run in (sd, ld)]
    assert copies[0].samefile(copies[1]) and copies[1].read_bytes() == b"same frozen vae"
    assert not (ld / "unet" / "weights.safetensors").samefile(copies[0])
