"""Reading ncnn models (``.param`` text + ``.bin`` weights) without ncnn, for the layer types
Real-ESRGAN's released compact models use.

ncnn's ``.param`` lists one layer a line: type, name, input and output counts, blob names,
then ``key=value`` parameters (for Convolution: 0 output channels, 1 kernel size, 5 bias term,
6 weight count; for PReLU: 0 slope count). The ``.bin`` holds the weights in layer order:
a Convolution's weights behind a 4-byte tag that says how they are stored (``0x01306B47``:
fp16, padded to 4 bytes; ``0``: fp32), then its bias as raw fp32; a PReLU's slopes as raw
fp32. Other tagged storages (int8, quantised tables) are refused by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["NcnnLayer", "read_ncnn"]

MAGIC = 7767517
FP16_TAG = 0x01306B47
WEIGHTED = {"Convolution", "PReLU"}
"""Layer types whose weights are read; layers of other types must carry none."""
WEIGHTLESS = {"Input", "Split", "PixelShuffle", "Interp", "BinaryOp"}


@dataclass
class NcnnLayer:
    """One layer: its type and name, its input and output blobs, its integer/float
    parameters (key -> value as written) and its arrays (``weight``, ``bias``, ``slope``)."""

    kind: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[int, str]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def param(self, key: int, default: float = 0) -> float:
        return float(self.params.get(key, default))


def _parse_param(text: str) -> list[NcnnLayer]:
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != [str(MAGIC)]:
        raise ValueError(f"not an ncnn .param file (it must start with {MAGIC})")
    count = int(lines[1][0])
    layers = []
    for fields in lines[2:2 + count]:
        kind, name, n_in, n_out = fields[0], fields[1], int(fields[2]), int(fields[3])
        blobs = fields[4:4 + n_in + n_out]
        params = dict(item.split("=", 1) for item in fields[4 + n_in + n_out:])
        if any(key.startswith("-") for key in params):
            raise ValueError(f"layer {name}: array parameters are not supported")
        layers.append(NcnnLayer(kind, name, blobs[:n_in], blobs[n_in:],
                                {int(k): v for k, v in params.items()}))
    if len(layers) != count:
        raise ValueError(f"the .param file announces {count} layers but lists {len(layers)}")
    return layers


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, size: int) -> bytes:
        if self.at + size > len(self.data):
            raise ValueError("the .bin file ends before the weights the .param file needs")
        chunk = self.data[self.at:self.at + size]
        self.at += size
        return chunk

    def raw_fp32(self, count: int) -> np.ndarray:
        return np.frombuffer(self.take(4 * count), "<f4").copy()

    def tagged(self, count: int, where: str) -> np.ndarray:
        tag = int(np.frombuffer(self.take(4), "<u4")[0])
        if tag == FP16_TAG:
            values = np.frombuffer(self.take(2 * count), "<f2").astype(np.float32)
            self.take((-2 * count) % 4)  # padded to 4 bytes
            return values
        if tag == 0:
            return self.raw_fp32(count)
        raise ValueError(f"{where}: weights stored as {tag:#010x} (int8 or quantised) are not "
                         "supported; only fp16 and fp32")


def read_ncnn(param: str | Path, weights: str | Path) -> list[NcnnLayer]:
    """The layers of an ncnn model with their weights, in file order."""
    layers = _parse_param(Path(param).read_text(encoding="utf-8"))
    reader = _Reader(Path(weights).read_bytes())
    for layer in layers:
        if layer.kind == "Convolution":
            count = int(layer.param(6))
            layer.arrays["weight"] = reader.tagged(count, layer.name)
            if int(layer.param(5)):
                layer.arrays["bias"] = reader.raw_fp32(int(layer.param(0)))
        elif layer.kind == "PReLU":
            layer.arrays["slope"] = reader.raw_fp32(int(layer.param(0, 1)))
        elif layer.kind not in WEIGHTLESS:
            raise ValueError(f"layer {layer.name}: ncnn layer type {layer.kind!r} is not "
                             f"supported (known: {', '.join(sorted(WEIGHTED | WEIGHTLESS))})")
    if reader.at != len(reader.data):
        raise ValueError(f"{len(reader.data) - reader.at} bytes of the .bin file are left over: "
                         "it does not belong to this .param file")
    return layers
