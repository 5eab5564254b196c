"""The benchmark scripts run and report what they promise (timings are not asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _report(script: str, *args: str) -> dict:
    """Run ``benchmarks/SCRIPT ARGS`` and parse the JSON it prints."""
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_composite_benchmark_reports_ratios_and_exactness():
    report = _report("composite.py", "--size", "160", "--layers", "6", "--repeat", "1")
    assert [case["case"] for case in report["cases"]] == ["objects", "full"]
    for case in report["cases"]:
        assert case["speedup_vs_pillow"] > 0 and case["max_diff_vs_pillow_255"] <= 2
        assert case["max_error_vs_exact_255"]["layerstudio"] <= 0.5 + 1e-3
    assert report["psd_export_seconds"] > 0 and report["psd_import_seconds"] > 0


def test_dataset_benchmark_reports_rates():
    report = _report("datasets.py", "--size", "32", "--samples", "16", "--workers", "0")
    from layerstudio.datasets.generate import GENERATORS

    assert [row["kind"] for row in report["generators"]] == list(GENERATORS)
    for row in report["generators"]:
        assert row["samples_per_second_loader_0_workers"] > 0
        assert row["headroom_vs_training_need"] > 0


def test_transparency_benchmark_compares_native_with_matting():
    report = _report("transparency.py", "-n", "4")
    recon, gen = report["reconstruction_heldout"], report["generation"]
    for part in (recon["native"], recon["matting"]):
        assert 0 <= part["alpha_soft_iou"] <= 1
    assert recon["ratio_iou"] > 0
    for part in (gen["native"], gen["matting"]):
        assert part["seconds_per_image"] > 0
        assert 0 <= part["judge_top1_recomposed"] <= part["judge_top5_recomposed"] <= 1


def test_layer_modes_benchmark_reports_each_mode_against_its_baseline():
    report = _report("layer_modes.py", "-n", "2")
    for mode, baseline in (("bg2fg", "text_only"), ("fg2bg", "text_only"),
                           ("joint", "independent")):
        assert set(report[mode]) >= {"native", baseline}
        for part in (report[mode]["native"], report[mode][baseline]):
            assert 0 <= part["judge_top1"] <= part["judge_top5"] <= 1
    joint = report["joint"]
    assert 0 <= joint["native"]["recomposition_error"] <= 1
    assert joint["native"]["seconds_per_picture"] > 0


def test_region_attention_benchmark_compares_region_crop_with_full_attention():
    report = _report("region_attention.py", "-n", "1", "--repeats", "1")
    assert [row["regions"] for row in report["speed"]] == [2, 5, 10, 20, 50]
    for row in report["speed"]:
        assert row["region"]["tokens"] < row["full"]["tokens"]
        assert row["flops_ratio"] > 1 and row["speedup"] > 0
    for part in report["quality"].values():
        assert 0 <= part["alpha_soft_iou"] <= 1 and 0 <= part["box_adherence"] <= 1
        assert 0 <= part["judge_in_prompt"] <= 1
    assert report["four_layer_seconds"] > 0 and "met" in report["target"]


def test_decompose_benchmark_compares_with_one_layer():
    report = _report("decompose.py", "-n", "2", "--size", "128", "--large", "256",
                     "--heldout", "4")
    for name in ("heldout split (64 px)", "designs (128 px)"):
        methods = report[name]
        assert methods["one layer"]["layers"] == 1.0
        assert methods["classical"]["iou_0_vs_one_layer"] > 1.0
        assert methods["classical"]["psnr"] >= 30
    assert report["one design at 256 px"]["classical"]["seconds"] > 0
    assert "effects-classical" in report["skipped (weights not here, or an effects method)"]


def test_effects_benchmark_scores_methods_against_mask_only_matting(layerdecomp_pipe,
                                                                   tmp_path):
    """Every effects method, a run folder as the model (``--model``) and as the ablation row,
    and the picture sheet, in one run."""
    run = tmp_path / "random-run"
    layerdecomp_pipe.save_pretrained(run)
    report = _report("decompose_effects.py", "-n", "3", "--size", "96", "--model", str(run),
                     "--ablation", str(run), "--steps", "2", "--sheet", str(tmp_path / "sheet.png"))
    methods = report["methods"]
    assert set(methods) == {"mask-only matting", "effects-classical", "effects",
                            "effects (random-run)"}
    for scores in methods.values():
        assert scores["all"]["n"] == 3 and scores["all"]["recomposition_psnr"] > 40
        assert 0 <= scores["all"]["effect_iou"] <= scores["all"]["alpha_iou"] + 1
    # matting keeps only the object's own soft edge outside it, not the effect
    assert methods["mask-only matting"]["all"]["effect_iou"] < 0.2
    assert methods["effects-classical"]["all"]["effect_iou_over_baseline"] > 1
    raw = report["raw model output, 3 held-out effects at 64 px, true masks"]
    assert set(raw) == {"effects", "effects (random-run)"}
    assert raw["effects"] == raw["effects (random-run)"]
    assert raw["effects"]["recomposition_psnr"] > 0
    # the same model twice, the same seed: the same scores
    assert methods["effects"]["all"]["effect_iou"] == \
        methods["effects (random-run)"]["all"]["effect_iou"]
    from PIL import Image

    sheet = Image.open(tmp_path / "sheet.png")
    assert sheet.width == 10 * 160 and sheet.height > 160  # picture, truth, 4 methods x 2


def test_anime_benchmark_scores_the_model_and_its_ablation_against_classical(anime_pipe,
                                                                            tmp_path):
    run = tmp_path / "random-run"
    anime_pipe.save_pretrained(run)
    report = _report("anime_layers.py", "-n", "2", "--size", "64", "--model", str(run),
                     "--ablation", str(run), "--steps", "2", "--sheet", str(tmp_path / "s.png"))
    methods = report["methods"]
    assert set(methods) == {"anime-classical", "anime", "anime (random-run)"}
    for scores in methods.values():
        assert scores["recomposition_psnr"] > 40 and scores["seconds"] > 0
        for kind in ("flat", "shadow", "highlight", "lineart"):
            assert 0 <= scores[f"{kind}_iou"] <= 1 and scores[f"{kind}_l1"] >= 0
    assert methods["anime"]["lineart_iou"] == methods["anime (random-run)"]["lineart_iou"]
    assert "line_iou_vs_classical" in methods["anime"]
    from PIL import Image

    assert Image.open(tmp_path / "s.png").width == (1 + 4 + 3 * 4) * 128


def test_quality_benchmark_scores_old_and_new_checkpoints_and_the_vae_round_trip():
    """``--against HEAD`` extracts the committed weights and scores them in the same run."""
    report = _report("quality.py", "-n", "2", "--against", "HEAD", "--presets", "tiny-sd")
    for side in ("new", "old"):
        rows = report["vae_round_trip"][side]
        assert any("tiny-sd" in row["used_by"] for row in rows)
        for row in rows:
            for split in ("train", "heldout"):
                trip = row[split]
                assert 0 <= trip["round_trip_top1"] <= 1 and trip["psnr_db"] > 10
                assert trip["share_of_clean"] is None or trip["share_of_clean"] >= 0
    scored = {entry["preset"]: entry for entry in report["presets"]}
    assert set(scored) == {"tiny-sd"}
    assert scored["tiny-sd"]["old"]["preset"] == "tiny-sd"
    assert "new_over_old_top1" in scored["tiny-sd"] and "random" in scored["tiny-sd"]


def test_latent_space_benchmark_trains_a_candidate_and_scores_it_against_the_shipped_vae(
        tmp_path):
    report = _report("latent_space.py", "--steps", "2", "--only", "c8", "--work", str(tmp_path))
    row = report["candidates"]["c8"]
    assert row["train"]["latent_shape"] == [8, 16, 16] and row["dit_tokens"] == 64
    assert row["ratio_train_top1_vs_shipped"] >= 0
    assert 0 < report["shipped"]["train"]["clean_top1"] <= 1
    assert (tmp_path / "c8" / "training.json").is_file()


def test_alpha_benchmark_scores_every_subtask_and_watermark_removal_by_photos(tokenizer,
                                                                             tmp_path):
    """The model (a random run as ``--model``) and its ablation against the exact inverse
    and inpainting per subtask, the auto blend accuracy, and watermark PSNR against K."""
    from layerstudio.pipelines.alpha_decompose.pipeline import AlphaDecomposePipeline

    from conftest import tiny_in_context_pipe

    run = tmp_path / "random-run"
    tiny_in_context_pipe(AlphaDecomposePipeline, tokenizer, 6).save_pretrained(run)
    report = _report("alpha_decompose.py", "-n", "1", "--steps", "2", "--model", str(run),
                     "--ablation", str(run), "--watermark-size", "64",
                     "--sheet", str(tmp_path / "sheet.png"))
    methods = report["methods"]
    assert set(methods) == {"exact inverse (true layer)", "inpainting (true mask)", "alpha",
                            "alpha (random-run)"}
    subtasks = {"watermark", "glass", "flare", "smoke", "rain", "light_leak", "xray", "all"}
    assert subtasks <= set(methods["alpha"])
    oracle = methods["exact inverse (true layer)"]
    assert oracle["watermark"]["background_rmse"] < 0.01 < \
        methods["inpainting (true mask)"]["watermark"]["background_rmse"]
    same = {key: value for key, value in methods["alpha"]["all"].items() if key != "seconds"}
    assert same == {key: value for key, value in methods["alpha (random-run)"]["all"].items()
                    if key != "seconds"}
    assert methods["alpha"]["all"]["recomposition_error"] < 0.01
    assert 0 <= report["auto blend accuracy"] <= 1
    psnrs = report["watermark removal PSNR by photos (64 px)"]
    assert set(psnrs) == {"stamped", "1 (model, each photo alone)", "4", "16", "64"}
    from PIL import Image

    sheet = Image.open(tmp_path / "sheet.png")  # 3 truths + 3 methods x 2, a row a subtask
    assert sheet.size == (9 * 128, 40 + 7 * 128)


def test_layered_memory_benchmark_scores_each_configuration_against_inpainting(tmp_path):
    report = _report("layered_memory.py", "-n", "2", "--steps", "3", "--sheet",
                     str(tmp_path / "sheet.png"))
    assert report["baseline"] == "inpainting" and report["edits"] >= 6
    results = report["results"]
    assert list(results)[:4] == ["inpainting", "mqd", "bcg", "bcg+mqd"]
    for name, row in results.items():
        assert 0 <= row["added"] <= 1 and row["seconds"] > 0 and row["background_psnr"] > 0
        assert (name == "inpainting") != ("ratio_to_inpainting" in row)
    assert (tmp_path / "sheet.png").is_file()


def test_compress_benchmark_scores_pruned_variants_against_the_full_models(tmp_path):
    common = ["--finetune-steps", "1", "--learn-steps", "1", "--calib", "2", "--repeats", "1",
              "--work", str(tmp_path)]
    unet = _report("compress.py", "--only", "unet", "--unet-methods", "laptop,handpicked",
                   "-n", "2", *common)["unet"]
    assert set(unet["variants"]) == {"full", "laptop@0.45", "handpicked@0.45", "laptop@0.5"}
    laptop = unet["variants"]["laptop@0.45"]
    assert laptop["params_removed"] >= 0.45 and laptop["speedup_per_step"] > 0
    assert 0 <= laptop["judge_top1_recomposed"] <= 1 and "psnr_vs_full" in laptop
    assert set(unet["target"]["beats"]) == {"handpicked"}
    saved = json.loads((tmp_path / "unet-laptop-0.45" / "compression.json").read_text())
    assert saved["quality"]["metric"] == "judge_top1_recomposed"
    dit = _report("compress.py", "--only", "dit", "--dit-methods", "tinyfusion,evenly",
                  "--layouts", "1", *common)["dit"]
    assert set(dit["variants"]) == {"full", "tinyfusion@0.5", "evenly@0.5"}
    assert dit["variants"]["evenly@0.5"]["keep"] == {
        "transformer_blocks": [1], "single_transformer_blocks": [0, 3]}
