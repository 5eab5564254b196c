"""``layerstudio batch``: bad lines among good ones, resume, atomic outputs and a data-parallel
split over two CPU processes started by ``accelerate launch --multi_gpu`` (which runs torchrun's
launcher; no GPU is needed for it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from layerstudio import LayerStack
from layerstudio.batch import read_jobs, share_of
from layerstudio.cli import main

JOBS = [
    '{"prompt": "a red apple", "steps": 1, "name": "apple"}',
    'not json',
    '{"prompt": "a cat", "steps": 1, "seed": 3}',
    '',
    '{"prompt": "two things", "boxes": "0,0,24,24;32,32,24,24", "steps": 1, "name": "two"}',
    '{"prompt": "x", "steps": 1, "mode": "bg2fg"}',
    '{"prompt": "y", "name": "../evil"}',
    '{"prompt": "z", "colour": "red"}',
    '{"prompt": "a red apple", "name": "apple"}',
]


def test_bad_jobs_are_recorded_and_the_rest_finish(tmp_path, capsys):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join(JOBS) + "\n")
    out = tmp_path / "out"
    assert main(["batch", str(jobs), "--out", str(out), "--format", "psd,zip,png"]) == 2
    captured = capsys.readouterr()
    assert "3 done, 0 skipped (already finished), 5 failed" in captured.out
    assert "errors.jsonl" in captured.err
    assert "note: " in captured.err and "emoji prompts" in captured.err  # vocabulary notes
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert [(e["line"], e["error"][:20]) for e in errors] == [
        (2, "the line is not vali"), (6, "mode 'bg2fg' needs a"), (7, "name '../evil' must "),
        (8, "unknown key(s) colou"), (9, "name 'apple' is used")]
    manifest = json.loads((out / "two.json").read_text())
    assert manifest["files"] == ["two.psd", "two.zip", "two.png"]
    assert manifest["layers"][1:3] == ["region 1", "region 2"]
    assert manifest["metadata"]["mode"] == "layers" and manifest["line"] == 5
    assert len(LayerStack.load(out / "job-00003.psd")) == 1
    assert not list(out.glob("*.part")) and not (tmp_path / "evil.json").exists()


def test_resume_skips_finished_jobs(tmp_path, capsys):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"prompt": "a red apple", "steps": 1}\n{"prompt": "a cat", "steps": 1}\n')
    out = tmp_path / "out"
    assert main(["batch", str(jobs), "--out", str(out)]) == 0
    first = (out / "job-00001.psd").stat().st_mtime_ns
    (out / "job-00002.json").unlink()  # as if the run had stopped before finishing job 2
    assert main(["batch", str(jobs), "--out", str(out), "--resume"]) == 0
    assert "1 done, 1 skipped" in capsys.readouterr().out
    assert (out / "job-00001.psd").stat().st_mtime_ns == first
    assert (out / "job-00002.json").is_file()


def test_shares_cover_every_job_once(tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(f'{{"prompt": "p{i}"}}\n' for i in range(7)))
    parsed = read_jobs(jobs)
    shares = [[job.line for job in share_of(parsed, rank, 3)] for rank in range(3)]
    assert sorted(line for share in shares for line in share) == list(range(1, 8))
    assert all(shares)


def test_two_processes_split_the_jobs(tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(f'{{"prompt": "a red apple", "steps": 1, "seed": {i}}}\n'
                            for i in range(5)))
    out = tmp_path / "out"
    accelerate = Path(sys.executable).with_name("accelerate")
    subprocess.run([str(accelerate), "launch", "--multi_gpu", "--num_processes", "2",
                    "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                    "--main_process_port", "29541", "-m", "layerstudio", "batch", str(jobs),
                    "--out", str(out), "--device", "cpu"],
                   check=True, capture_output=True, text=True)
    manifests = [json.loads(path.read_text()) for path in sorted(out.glob("*.json"))]
    assert sorted(m["line"] for m in manifests) == [1, 2, 3, 4, 5]
    assert {m["line"]: m["process"] for m in manifests} == {1: 0, 2: 1, 3: 0, 4: 1, 5: 0}
