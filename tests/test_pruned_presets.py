"""The shipped pruned presets (issue 23) work through every door: plain diffusers loading,
the Python API, the CLI, batch jobs, the UI's model lists, and `layerstudio models`, which says
how each was made and what it measured."""

from __future__ import annotations

import json

from layerstudio.cli import main
from layerstudio.compress.depth import loaded_cleanly
from layerstudio.presets import component_folder, compression_summary, get_preset, known_prompts
from layerstudio.studio import Studio

PRUNED = {"tiny-layerdiffuse-laptop30": "tiny-layerdiffuse", "tiny-art-tf2x": "tiny-art"}


def test_pruned_denoisers_load_with_plain_diffusers_and_are_smaller():
    from diffusers import FluxTransformer2DModel, UNet2DConditionModel

    from layerstudio.pipelines.anonymous_region import AnonymousRegionTransformer

    for name, base in PRUNED.items():
        assert get_preset(name).pruned_from == base
        assert known_prompts(name) == known_prompts(base)  # the base's vocabulary
        key = "unet" if "laptop" in name else "transformer"
        cls = UNet2DConditionModel if key == "unet" else AnonymousRegionTransformer
        small = loaded_cleanly(cls, component_folder(name, key))
        full = loaded_cleanly(cls, component_folder(base, key))
        assert sum(p.numel() for p in small.parameters()) < \
            0.8 * sum(p.numel() for p in full.parameters())
    # the ART transformer is a FLUX transformer: FLUX's own class reads its blocks too
    flux, info = FluxTransformer2DModel.from_pretrained(
        component_folder("tiny-art-tf2x", "transformer"), output_loading_info=True)
    assert (flux.config.num_layers, flux.config.num_single_layers) == (1, 2)
    assert info["missing_keys"] == [] and info["mismatched_keys"] == []


def test_pruned_presets_generate_through_the_api():
    studio = Studio(device="cpu")
    stack = studio.generate("a red apple", model="tiny-layerdiffuse-laptop30", steps=2)
    assert len(stack) == 1 and stack[0].pixels.shape[-1] == 4
    stack = studio.generate("a cat and a dog", model="tiny-art-tf2x", mode="layers",
                            boxes=[(4, 4, 24, 24), (32, 32, 24, 24)], steps=2)
    assert [layer.name for layer in stack][1:3] == ["region 1", "region 2"]


def test_pruned_presets_in_cli_batch_ui_and_models(tmp_path, capsys):
    from layerstudio.ui.generate import models_for

    assert "tiny-layerdiffuse-laptop30" in models_for("fg")
    assert "tiny-art-tf2x" in models_for("layers")
    out = tmp_path / "apple.psd"
    assert main(["generate", "a red apple", "--model", "tiny-layerdiffuse-laptop30",
                 "--steps", "2", "-o", str(out)]) == 0
    assert out.is_file()
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"prompt": "a cat and a dog", "model": "tiny-art-tf2x",
                                "boxes": "4,4,24,24;32,32,24,24", "steps": 2,
                                "name": "pets"}) + "\n")
    assert main(["batch", str(jobs), "--out", str(tmp_path / "batch")]) == 0
    assert (tmp_path / "batch" / "pets.psd").is_file()
    capsys.readouterr()
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    for name, base in PRUNED.items():
        summary = compression_summary(name)
        assert summary.startswith(f"pruned from {base} by ") and "faster per step" in summary
        assert summary in listing
    assert compression_summary("tiny-art") is None
    assert main(["models", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["tiny-art-tf2x"]["compression"] == compression_summary("tiny-art-tf2x")
