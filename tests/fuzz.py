"""A corpus of hostile and damaged files, and a runner that feeds them to LayerStudio.

The corpus is made, seeded, from real files (our writers' PSD/PSB/ORA/ZIP/PNG and, when
present, the Photoshop fixtures) by mutations of two kinds: blind ones (flipped bytes,
truncation, header fields set to extremes) and crafted ones, one per class of attack we have
seen (the same 64-megapixel PNG named 40 times, JSON nested 2,000 deep, ``Infinity`` sizes,
offsets past 2^31, stacks 1,000 deep, thousands of same-named groups, encrypted or
unknown-method ZIP members, corrupt deflate streams, decompression bombs, ...).

Each file is read (``load_stack``) and, when that succeeds, written back as PSD, ORA and ZIP and
read again. The only acceptable outcomes are success and a :class:`LayerStudioError`; anything
else is an internal error, and a file taking longer than ``--timeout`` seconds is a time-out.

    python tests/fuzz.py [--count 600] [--seed 0] [--out DIR] [--timeout 30]

prints JSON: counts of clean errors, successes, internal errors and time-outs, the peak
memory of the process, and every internal error or time-out with its file.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import signal
import struct
import sys
import tempfile
import time
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from layerstudio import Layer, LayerStack
from layerstudio.blend import BlendMode
from layerstudio.errors import LayerStudioError
from layerstudio.io import load_stack

from conftest import FIXTURES

# --- seeds: real files ---------------------------------------------------------------------------

def seed_stack(rng: np.random.Generator) -> LayerStack:
    """A small document with groups, blend modes, an empty and a 16-bit layer."""
    stack = LayerStack(48, 40, metadata={"prompt": "fuzz", "seed": 1})
    for i in range(4):
        pixels = rng.integers(0, 256, (12 + i, 10 + i, 4), dtype=np.uint8)
        stack.add(Layer(f"layer {i}", pixels, offset=(i * 5, i * 3), opacity=0.8,
                        blend_mode=list(BlendMode)[i], group=("g",) if i % 2 else ()))
    stack.add(Layer("empty", np.zeros((4, 4, 4), np.uint8)))
    stack.add(Layer("deep", rng.integers(0, 65536, (6, 6, 4), dtype=np.uint16)))
    return stack


def seed_files(folder: Path, rng: np.random.Generator) -> list[Path]:
    stack = seed_stack(rng)
    files = [stack.save(folder / f"seed{suffix}") for suffix in (".psd", ".psb", ".ora",
                                                                   ".zip", ".png")]
    if FIXTURES.is_dir():
        files += sorted(p for p in FIXTURES.iterdir() if p.suffix in (".psd", ".psb")
                        and p.stat().st_size < 400_000)
    return files


# --- blind mutations -----------------------------------------------------------------------------

def flip_bytes(data: bytes, rng: np.random.Generator) -> bytes:
    out = bytearray(data)
    for i in rng.integers(0, len(out), int(rng.integers(1, 40))):
        out[i] = int(rng.integers(0, 256))
    return bytes(out)


def truncate(data: bytes, rng: np.random.Generator) -> bytes:
    return data[:int(rng.integers(1, max(2, len(data))))]


def psd_header(data: bytes, rng: np.random.Generator) -> bytes:
    """A PSD header or section length set to an extreme."""
    out = bytearray(data)
    field = [(4, ">H"), (12, ">H"), (14, ">I"), (18, ">I"), (22, ">H"), (24, ">H"),
             (26, ">I")][int(rng.integers(0, 7))]
    size = struct.calcsize(field[1])
    value = [0, 1, 2, 7, 2 ** (8 * size) - 1, 2 ** (8 * size - 1), 300_000, 40_000][
        int(rng.integers(0, 8)) % (8 if size == 4 else 6)]
    out[field[0]:field[0] + size] = struct.pack(field[1], value % 2 ** (8 * size))
    return bytes(out)


# --- crafted archives ----------------------------------------------------------------------------

def _png(width: int, height: int, color: int = 0) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (width, height), (color, 0, 0, 255)).save(buffer, "PNG",
                                                                 compress_level=9)
    return buffer.getvalue()


def _bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` (no pixel data to match)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b""))


def _zip(entries: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, body in entries.items():
            archive.writestr(name, body)
    return buffer.getvalue()


def _manifest(layers: list[dict], **top) -> bytes:
    body = {"format": "layerstudio", "version": 1, "width": 32, "height": 32,
            "metadata": {}, "groups": [], "layers": layers}
    body.update(top)
    return json.dumps(body).encode()


def _entry(file: str = "a.png", **fields) -> dict:
    return {"name": "a", "file": file, "offset": [0, 0], "size": [8, 8], **fields}


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _psd_with_xmp(manifest: bytes, wrap: str = "{}") -> bytes:
    """A small PSD whose XMP packet carries ``manifest`` (placed where ``{}`` is in ``wrap``)."""
    from psd_tools import PSDImage
    from psd_tools.constants import Resource
    from psd_tools.psd.image_resources import ImageResource

    from layerstudio.io.psd import _xmp_packet

    psd = PSDImage.new("RGBA", (8, 8))
    psd.create_pixel_layer_from_array(np.full((4, 4, 4), 255, np.uint8), name="a")
    packet = _xmp_packet(manifest).decode("utf-8")
    start = packet.index("<layerstudio:manifest>")
    end = packet.index("</layerstudio:manifest>") + len("</layerstudio:manifest>")
    packet = packet[:start] + wrap.replace("{}", packet[start:end]) + packet[end:]
    psd.image_resources[Resource.XMP_METADATA] = ImageResource(
        key=Resource.XMP_METADATA, data=packet.encode("utf-8"))
    buffer = io.BytesIO()
    psd.save(buffer)
    return buffer.getvalue()


def crafted() -> Iterator[tuple[str, str, bytes]]:
    """(name, suffix, bytes) for each crafted attack."""
    small = _png(8, 8)
    yield "same-big-png-40x", ".zip", _zip({
        "manifest.json": _manifest([_entry("big.png", size=[8192, 8192])] * 40),
        "big.png": _png(8192, 8192)})
    yield "bomb-png-in-zip", ".zip", _zip({"manifest.json": _manifest([_entry("b.png")]),
                                           "b.png": _bomb_png(100_000, 100_000)})
    yield "bomb-png", ".png", _bomb_png(60_000, 60_000)
    yield "deep-json-manifest", ".zip", _zip({"manifest.json": (
        '{"format": "layerstudio", "version": 1, "width": 8, "height": 8, "layers": [], '
        f'"metadata": {{"x": {_nested(2000)}}}}}').encode()})
    for token in ("Infinity", "1e400", "-Infinity", "NaN", "1e308"):
        yield f"size-{token}", ".zip", _zip({"manifest.json": _manifest(
            [_entry()], width=0).replace(b'"width": 0', f'"width": {token}'.encode()),
            "a.png": small})
        yield f"offset-{token}", ".zip", _zip({"manifest.json": _manifest(
            [_entry(offset=[0, 0])]).replace(b'"offset": [0, 0]',
                                              f'"offset": [{token}, 0]'.encode()),
            "a.png": small})
    for offset in (2 ** 31, -(2 ** 31) - 1, 2 ** 40):
        yield f"offset-{offset}", ".zip", _zip({"manifest.json": _manifest(
            [_entry(offset=[offset, 0])]), "a.png": small})
    yield "list-metadata", ".zip", _zip({"manifest.json": _manifest([_entry()], metadata=[1]),
                                         "a.png": small})
    yield "list-layer-entry", ".zip", _zip({"manifest.json": _manifest([[1, 2]]),
                                            "a.png": small})
    yield "deep-group-path", ".zip", _zip({"manifest.json": _manifest(
        [_entry(group=[f"g{i}" for i in range(500)])]), "a.png": small})
    yield "empty-layer-size", ".zip", _zip({"manifest.json": _manifest(
        [_entry(size=[0, 0])]), "a.png": small})
    yield "zip-slip", ".zip", _zip({"manifest.json": _manifest([_entry("../../etc/passwd")])})
    yield "stored-method", ".zip", _zip({"manifest.json": _manifest([_entry()]),
                                         "a.png": small}, zipfile.ZIP_STORED)
    unknown = bytearray(_zip({"manifest.json": _manifest([_entry()]), "a.png": small}))
    for position in range(len(unknown) - 4):  # compression method 99 in every header
        if unknown[position:position + 4] in (b"PK\x03\x04", b"PK\x01\x02"):
            at = position + (8 if unknown[position + 2] == 3 else 10)
            unknown[at:at + 2] = struct.pack("<H", 99)
    yield "unknown-method", ".zip", bytes(unknown)
    encrypted = bytearray(_zip({"manifest.json": _manifest([_entry()]), "a.png": small}))
    for position in range(len(encrypted) - 4):
        if encrypted[position:position + 4] in (b"PK\x03\x04", b"PK\x01\x02"):
            at = position + (6 if encrypted[position + 2] == 3 else 8)
            encrypted[at] |= 1
    yield "encrypted", ".zip", bytes(encrypted)
    deflate = bytearray(_zip({"manifest.json": _manifest([_entry()]) + b" " * 4000,
                              "a.png": small}))
    deflate[60:90] = b"\xff" * 30
    yield "corrupt-deflate", ".zip", bytes(deflate)

    yield "psd-deep-xmp-json", ".psd", _psd_with_xmp(
        ('{"format": "layerstudio", "version": 1, "layers": [], "metadata": '
         + _nested(2000) + "}").encode())
    yield "psd-deep-xmp-xml", ".psd", _psd_with_xmp(
        b'{"format": "layerstudio", "version": 1, "layers": []}',
        wrap="<a>" * 5000 + "{}" + "</a>" * 5000)

    def ora(xml: str, extra: dict[str, bytes] | None = None) -> bytes:
        return _zip({"mimetype": b"image/openraster", "stack.xml": xml.encode(),
                     "a.png": small, **(extra or {})})
    yield "ora-deep-stacks", ".ora", ora('<image w="8" h="8">' + "<stack>" * 1000
                                         + '<layer src="a.png"/>' + "</stack>" * 1000
                                         + "</image>")
    yield "ora-many-groups", ".ora", ora('<image w="8" h="8"><stack>'
                                         + '<stack name="a"><layer src="a.png"/></stack>'
                                         * 3000 + "</stack></image>")
    yield "ora-same-png-40x", ".ora", _zip({
        "mimetype": b"image/openraster", "big.png": _png(8192, 8192),
        "stack.xml": ('<image w="8192" h="8192"><stack>'
                      + '<layer src="big.png"/>' * 40 + "</stack></image>").encode()})
    yield "ora-inf-size", ".ora", ora('<image w="1e400" h="8"><stack>'
                                      '<layer src="a.png"/></stack></image>')
    yield "ora-offset-2^31", ".ora", ora('<image w="8" h="8"><stack><layer src="a.png" '
                                         'x="2147483648"/></stack></image>')
    yield "ora-sidecar-list", ".ora", ora('<image w="8" h="8"><stack><layer src="a.png"/>'
                                          '</stack></image>', {"layerstudio.json": _manifest(
                                              [[1]], metadata=[2])})
    yield "ora-sidecar-deep", ".ora", ora('<image w="8" h="8"><stack><layer src="a.png"/>'
                                          '</stack></image>', {"layerstudio.json":
                                                               _nested(2000).encode()})
    yield "ora-entity", ".ora", ora('<!DOCTYPE x [<!ENTITY a "aaaa">]><image w="8" h="8">'
                                    '<stack><layer src="a.png"/></stack></image>')


# --- the corpus and the runner -------------------------------------------------------------------

MUTATIONS: dict[str, Callable[[bytes, np.random.Generator], bytes]] = {
    "flip": flip_bytes, "truncate": truncate, "header": psd_header}


def make_corpus(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """Write at least ``count`` files into ``folder``: every crafted case, then blind
    mutations of the seed files, round-robin."""
    rng = np.random.default_rng(seed)
    seeds_folder = folder / "seeds"
    seeds_folder.mkdir(parents=True, exist_ok=True)
    seeds = seed_files(seeds_folder, rng)
    files = []
    for name, suffix, data in crafted():
        path = folder / f"crafted-{name}{suffix}"
        path.write_bytes(data)
        files.append(path)
    index = 0
    while len(files) < count:
        source = seeds[index % len(seeds)]
        kinds = ["flip", "truncate"] + (["header"] if source.suffix in (".psd", ".psb")
                                        else [])
        kind = kinds[index // len(seeds) % len(kinds)]
        path = folder / f"{kind}-{index:04d}-{source.stem}{source.suffix}"
        path.write_bytes(MUTATIONS[kind](source.read_bytes(), rng))
        files.append(path)
        index += 1
    return files


class TimedOut(Exception):
    pass


def _alarm(_signum, _frame):
    raise TimedOut


def exercise(path: Path, out: Path) -> str:
    """Read ``path``; on success write it as PSD/ORA/ZIP and read each back. Returns
    'success' or 'clean error'; anything else propagates."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stack = load_stack(path)
            for suffix in (".psd", ".ora", ".zip"):
                load_stack(stack.save(out / f"again{suffix}"))
    except LayerStudioError:
        return "clean error"
    return "success"


def run(files: list[Path], timeout: int = 30) -> dict:
    """Exercise every file; returns the counts and the failures."""
    counts = {"clean error": 0, "success": 0, "internal error": 0, "timeout": 0}
    failures = []
    previous = signal.signal(signal.SIGALRM, _alarm)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        for path in files:
            signal.alarm(timeout)
            try:
                outcome = exercise(path, Path(scratch))
            except TimedOut:
                outcome = "timeout"
                failures.append({"file": path.name, "outcome": outcome})
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt):
                    raise
                outcome = "internal error"
                failures.append({"file": path.name, "outcome": outcome,
                                 "error": f"{type(exc).__name__}: {exc}"[:300]})
            finally:
                signal.alarm(0)
            counts[outcome] += 1
    signal.signal(signal.SIGALRM, previous)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"files": len(files), **counts, "seconds": round(time.perf_counter() - started, 1),
            "peak_memory_mib": round(peak_mib), "failures": failures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=int, default=30)
    parser.add_argument("--out", type=Path, help="keep the corpus here (default: temporary)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.out or Path(scratch)
        files = make_corpus(folder, args.count, args.seed)
        print(json.dumps(run(files, args.timeout), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
