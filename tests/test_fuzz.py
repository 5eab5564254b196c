"""A fast slice of the fuzz corpus (see tests/fuzz.py for the full run): every mutated file is
a clean error or a success, never an internal error or a hang."""

from __future__ import annotations

from fuzz import make_corpus, run


def test_a_slice_of_the_fuzz_corpus_ends_cleanly(tmp_path, monkeypatch):
    # One 64-megapixel decode shows the document budget at work; four cost time, not coverage.
    monkeypatch.setenv("LAYERSTUDIO_MAX_DOCUMENT_PIXELS", str(64 * 1024 * 1024))
    files = make_corpus(tmp_path, count=120, seed=1)
    assert len(files) >= 120
    report = run(files, timeout=30)
    assert report["failures"] == []
    assert report["internal error"] == 0 and report["timeout"] == 0
    assert report["clean error"] > 0 and report["success"] > 0
