"""An offline CLIP tokenizer built from our own caption vocabulary.

`CLIPTokenizer` is byte-level BPE: a word is split into byte symbols (the last one carrying
``</w>``) and merged pair by pair, lowest merge rank first. We want every word of our caption
vocabulary to come out as one token, and anything else to fall back to smaller pieces. So the
vocabulary holds the 256 byte symbols (and their ``</w>`` forms), and merges are added word by
word: tokenize the word with the merges so far and, while it is still in pieces, append a merge
of its first two pieces. A merge appended later has a higher rank than every earlier one, so it
can never change how an earlier word is merged. The result is saved as ``vocab.json`` and
``merges.txt``, the files `CLIPTokenizer.from_pretrained` reads, with no download.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from collections.abc import Iterable
from pathlib import Path

__all__ = ["build_tokenizer_files", "byte_symbols", "caption_vocabulary", "load_tokenizer"]

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
_WORD = re.compile(r"[a-z]+|[0-9]|[^\sa-z0-9]+")


@functools.cache
def byte_symbols() -> list[str]:
    """GPT-2/CLIP's reversible byte -> printable unicode mapping, in byte order."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    table, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


def _symbols(word: str) -> list[str]:
    table = byte_symbols()
    pieces = [table[b] for b in word.encode("utf-8")]
    pieces[-1] += "</w>"
    return pieces


def _apply(pieces: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Byte-pair merging as CLIP does it: repeatedly merge the lowest-ranked adjacent pair."""
    while len(pieces) > 1:
        best = min(((ranks.get(pair, 1 << 60), i) for i, pair in
                    enumerate(itertools.pairwise(pieces))), default=None)
        if best is None or best[0] == 1 << 60:
            break
        i = best[1]
        pieces = [*pieces[:i], pieces[i] + pieces[i + 1], *pieces[i + 2:]]
    return pieces


def caption_vocabulary(extra: Iterable[str] = ()) -> list[str]:
    """Every word our generators can put in a caption, sorted: emoji names, shape, colour,
    background, effect and layout words, plus ``extra``."""
    from .datasets.assets.backgrounds import _CAPTIONS
    from .datasets.assets.emoji import catalog
    from .datasets.assets.shapes import COLOURS, SHAPES

    words: set[str] = set()
    texts = [e.caption for e in catalog()] + list(_CAPTIONS.values()) + list(COLOURS)
    texts += [*SHAPES,
        "a an the and on of with over in to more word illustration photo plain background",
        "gradient noise texture stripes checkerboard drop cast contact shadow reflection glow",
        "watermark pane glass lens flare warm light leak drifting smoke falling rain x ray",
        "solid soft edged semi transparent faded sun cat sale new hello art love go top hi"]
    texts += list(extra)
    for text in texts:
        words.update(_WORD.findall(text.lower()))
    return sorted(w for w in words if w.isalpha() or w.isdigit())


def build_tokenizer_files(folder: str | Path, words: Iterable[str]) -> int:
    """Write vocab.json, merges.txt and the tokenizer configs; returns the vocabulary size."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab: dict[str, int] = {}
    for symbol in byte_symbols():
        vocab.setdefault(symbol, len(vocab))
    for symbol in byte_symbols():
        vocab.setdefault(symbol + "</w>", len(vocab))
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for word in sorted(set(words)):
        pieces = _apply(_symbols(word), ranks)
        while len(pieces) > 1:
            pair = (pieces[0], pieces[1])
            ranks[pair] = len(merges)
            merges.append(pair)
            vocab.setdefault(pair[0] + pair[1], len(vocab))
            pieces = _apply(pieces, ranks)
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": BOS, "eos_token": EOS, "pad_token": EOS, "unk_token": EOS}))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "CLIPTokenizer", "model_max_length": 48, "bos_token": BOS,
         "eos_token": EOS, "pad_token": EOS, "unk_token": EOS, "do_lower_case": True}))
    return len(vocab)


def load_tokenizer(folder: str | Path):
    """`CLIPTokenizer.from_pretrained` on a local folder (never touches the network)."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
