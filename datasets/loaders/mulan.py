"""MuLAn (Tudosiu et al., CVPR 2024): RGBA layer decompositions of COCO and LAION images.

MuLAn's annotations are distributed as pickles (``*.p.zl``). LayerStudio never unpickles files
it did not write, so it reads MuLAn *after* MuLAn's own decomposition script has turned the
annotations into PNG layers: one folder holding ``<image id>-layer_<n>.png`` files, layer 0 the
background, higher numbers nearer the viewer, each a full-canvas RGBA image; an optional
``<image id>.txt`` beside them holds the caption.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from layerstudio.document import Layer, LayerStack
from layerstudio.errors import InvalidInputError
from layerstudio.io.raster import read_image_file

from ..sample import Sample
from .common import existing_folder, to_sample

__all__ = ["MulanLayers"]

_LAYER_FILE = re.compile(r"^(?P<id>.+)-layer_(?P<n>\d+)\.png$")


class MulanLayers:
    """Decomposed MuLAn images as :class:`Sample` objects, one per image id."""

    def __init__(self, root: str | Path) -> None:
        self.root = existing_folder(root, "MuLAn layers")
        groups: dict[str, list[tuple[int, Path]]] = defaultdict(list)
        for path in self.root.iterdir():
            match = _LAYER_FILE.match(path.name)
            if match:
                groups[match["id"]].append((int(match["n"]), path))
        if not groups:
            raise InvalidInputError(f"no '<id>-layer_<n>.png' files in {self.root}; run "
                                    "MuLAn's decomposition script on the annotations first")
        self.ids = sorted(groups)
        self._layers = {key: [p for _, p in sorted(value)] for key, value in groups.items()}

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> Sample:
        image_id = self.ids[index]
        layers = [read_image_file(path) for path in self._layers[image_id]]
        height, width = layers[0].shape[:2]
        if any(layer.shape[:2] != (height, width) for layer in layers):
            raise InvalidInputError(f"MuLAn image {image_id}: layers differ in size")
        stack = LayerStack(width, height)
        for n, pixels in enumerate(layers):
            layer = Layer("background" if n == 0 else f"instance {n}", pixels,
                          kind="background" if n == 0 else "object")
            stack.add(layer if n == 0 else layer.cropped_to_content())
        caption_file = self.root / f"{image_id}.txt"
        caption = caption_file.read_text(encoding="utf-8").strip() if caption_file.is_file() \
            else ""
        return to_sample("mulan", index, stack, caption, {"id": image_id})
