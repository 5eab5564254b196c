"""Dataset plumbing: torch wrappers, held-out manifests, CLI, and real-dataset loaders on tiny
fixtures built here."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from layerstudio import InvalidInputError, LayerStack
from layerstudio.cli import main
from layerstudio.datasets import generate
from layerstudio.datasets.loaders import CrelloDataset, LayeredFileFolder, MulanLayers
from layerstudio.datasets.splits import build_split_manifest, load_split, split_names
from layerstudio.datasets.torch_data import LayeredDataset, LayeredStream, collate

from conftest import sample_stack


def test_tensors_shapes_ranges_and_padding():
    dataset = LayeredDataset("objects", 4, size=48, max_objects=4)
    loader = DataLoader(dataset, batch_size=4, collate_fn=collate)
    batch = next(iter(loader))
    assert batch["image"].shape == (4, 3, 48, 48)
    layers, valid = batch["layers"], batch["layer_valid"]
    assert layers.shape[0] == 4 and layers.shape[2:] == (4, 48, 48)
    assert layers.min() >= -1 and layers.max() <= 1 and batch["image"].min() >= -1
    counts = valid.sum(dim=1).tolist()
    assert counts == [len(generate("objects", i, size=48, max_objects=4).stack)
                      for i in range(4)]
    for row, count in enumerate(counts):
        assert (layers[row, count:] == -1).all()  # padding is transparent black
    assert len(batch["caption"]) == 4 and isinstance(batch["caption"][0], str)
    assert batch["boxes"].shape == (4, layers.shape[1], 4)


def test_zero_to_one_range_and_extras():
    item = LayeredDataset("effects", 1, size=32, value_range="0..1")[0]
    assert item["layers"].min() >= 0 and item["extras"]["background"].shape == (3, 32, 32)
    assert item["extras"]["mask"].shape == (1, 32, 32)
    # composite of the straight layers equals the image tensor
    expected = torch.from_numpy(generate("effects", 0, size=32).composite()[..., :3]
                                .transpose(2, 0, 1) / 255.0).float()
    assert torch.allclose(item["image"], expected)


def test_stream_workers_split_indices_without_duplicates():
    stream = LayeredStream("transparent", length=8, size=32)
    loader = DataLoader(stream, batch_size=None, num_workers=2)
    captions = sorted(item["caption"] for item in loader)
    expected = sorted(generate("transparent", i, size=32).caption for i in range(8))
    assert captions == expected


def test_committed_heldout_split_still_matches():
    assert "heldout-v1" in split_names()
    samples = load_split("heldout-v1", kind="anime")
    assert len(samples) == 32 and all(s.split == "heldout" for s in samples)
    conventions = {s.meta["convention"] for s in samples}
    assert conventions == {"artist", "normal"}


def test_split_verification_catches_changes(tmp_path):
    manifest = build_split_manifest(per_kind=2, size=32)
    manifest["samples"][0]["sha256"] = "0" * 16
    path = tmp_path / "changed.json"
    path.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="no longer matches"):
        load_split(path=path)


def test_cli_preview_and_export(tmp_path, capsys):
    grid = tmp_path / "grid.png"
    assert main(["data", "preview", "alpha_blend", "-n", "3", "-o", str(grid), "--size",
                 "48"]) == 0
    assert Image.open(grid).size[1] > 3 * 48
    out = tmp_path / "export"
    assert main(["data", "export", "objects", "-n", "3", "-o", str(out), "--format",
                 "psd,zip", "--option", "max_objects=3", "--seed", "4", "--size", "48"]) == 0
    files = sorted(p.name for p in out.iterdir())
    assert files[:3] == ["objects_train_000000.json", "objects_train_000000.psd",
                         "objects_train_000000.zip"] and len(files) == 9
    meta = json.loads((out / "objects_train_000001.json").read_text())
    stack = LayerStack.load(out / "objects_train_000001.psd")
    assert [layer["name"] for layer in meta["layers"]] == [layer.name for layer in stack]
    assert meta["caption"] == generate("objects", 1, seed=4, size=48, max_objects=3).caption


@pytest.mark.parametrize("argv", [
    ["data", "preview", "objects", "-o", "x.jpg"],
    ["data", "export", "objects", "-o", "{tmp}/o", "--format", "gif"],
    ["data", "preview", "objects", "-o", "{tmp}/x.png", "--option", "max_objects=99"],
    ["data", "preview", "objects", "-o", "{tmp}/x.png", "--option", "oops"],
])
def test_cli_data_bad_arguments_exit_2(tmp_path, argv, capsys):
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_layered_file_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    sample_stack().save(tmp_path / "sub" / "red_apple-01.psd")
    stack = sample_stack(1)
    stack.metadata["prompt"] = "a prompt"
    stack.save(tmp_path / "b.zip")
    folder = LayeredFileFolder(tmp_path)
    assert len(folder) == 2
    assert folder[0].caption == "a prompt"
    assert folder[1].caption in ("a test", "red apple 01")
    assert len(folder[1].boxes) == len(folder[1].stack)
    with pytest.raises(InvalidInputError, match="does not exist"):
        LayeredFileFolder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match=r"no \.psd"):
        LayeredFileFolder(tmp_path / "empty")


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, "RGBA").save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("fractions", [False, True])
def test_crello_parquet(tmp_path, fractions):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    bg = np.full((40, 60, 4), 255, np.uint8)
    dot = np.zeros((10, 20, 4), np.uint8)
    dot[..., 0], dot[..., 3] = 200, 255
    geometry = ([0.0, 30.0], [0.0, 5.0], [60.0, 20.0], [40.0, 10.0])
    if fractions:
        geometry = ([0, 0.5], [0, 0.125], [1.0, 1 / 3], [1.0, 0.25])
    table = pa.table({
        "id": ["doc1"], "title": ["Sale poster"], "canvas_width": [60], "canvas_height": [40],
        "left": [geometry[0]], "top": [geometry[1]], "width": [geometry[2]],
        "height": [geometry[3]], "opacity": [[1.0, 0.5]],
        "image": [[{"bytes": _png(bg), "path": None}, {"bytes": _png(dot), "path": None}]],
    })
    (tmp_path / "data").mkdir()
    pq.write_table(table, tmp_path / "data" / "train-00000-of-00001.parquet")
    dataset = CrelloDataset(tmp_path)
    assert len(dataset) == 1
    sample = dataset[0]
    assert sample.caption == "Sale poster" and sample.stack.size == (60, 40)
    top = sample.stack[1]
    assert top.offset == (30, 5) and top.pixels.shape == (10, 20, 4) and top.opacity == 0.5
    with pytest.raises(IndexError):
        dataset[1]


def test_mulan_decomposed_layers(tmp_path):
    bg = np.full((20, 30, 4), 255, np.uint8)
    inst = np.zeros((20, 30, 4), np.uint8)
    inst[5:10, 8:20] = (0, 0, 255, 255)
    for n, array in enumerate((bg, inst)):
        Image.fromarray(array, "RGBA").save(tmp_path / f"coco_42-layer_{n}.png")
    (tmp_path / "coco_42.txt").write_text("a blue box\n")
    dataset = MulanLayers(tmp_path)
    sample = dataset[0]
    assert len(dataset) == 1 and sample.caption == "a blue box"
    assert sample.stack[1].offset == (8, 5) and sample.boxes[1] == (8, 5, 20, 10)
    (tmp_path / "none").mkdir()
    with pytest.raises(InvalidInputError, match="layer_"):
        MulanLayers(tmp_path / "none")
