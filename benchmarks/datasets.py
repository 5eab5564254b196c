"""Dataset throughput: samples per second per generator, in-process and through a DataLoader.

Three rates per generator: ``generate`` alone, a DataLoader with no workers (generation plus
tensor conversion: the baseline), and a DataLoader with ``--workers`` persistent workers in
steady state (second epoch; worker start-up is reported separately). Ratios: workers vs the
no-worker baseline, and ``headroom`` = steady loader rate / the rate a small model consumes
data at (DESIGN.md 2: a batch-32 U-Net step in about 1 s, so 32 samples/s).

    python benchmarks/datasets.py [--size 128] [--samples 96] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import time

from torch.utils.data import DataLoader

from layerstudio.datasets import GENERATORS, generate
from layerstudio.datasets.torch_data import LayeredDataset, collate

CONSUMPTION_PER_SECOND = 32.0


def rate(count: int, fn) -> float:
    start = time.perf_counter()
    fn()
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--samples", type=int, default=96)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    report = {"benchmark": "datasets", "size": args.size, "cpus": os.cpu_count(),
              "generators": []}
    for kind in GENERATORS:
        generate(kind, 0, size=args.size)  # warm caches (fonts, emoji catalogue, photos)
        in_process = rate(args.samples, lambda k=kind: [generate(k, i, size=args.size)
                                                        for i in range(args.samples)])
        dataset = LayeredDataset(kind, args.samples, size=args.size)
        baseline = rate(args.samples, lambda d=dataset: list(
            DataLoader(d, batch_size=16, num_workers=0, collate_fn=collate)))
        loader = DataLoader(dataset, batch_size=16, num_workers=args.workers,
                            collate_fn=collate, persistent_workers=args.workers > 0)
        start = time.perf_counter()
        list(loader)  # first epoch: starts the workers and warms their caches
        first_epoch = time.perf_counter() - start
        steady = rate(args.samples, lambda loader=loader: list(loader))
        report["generators"].append({
            "kind": kind,
            "samples_per_second_generate_only": round(in_process, 1),
            "samples_per_second_loader_0_workers": round(baseline, 1),
            f"samples_per_second_loader_{args.workers}_workers": round(steady, 1),
            "first_epoch_seconds": round(first_epoch, 2),
            "workers_speedup_vs_0_workers": round(steady / baseline, 2),
            "headroom_vs_training_need": round(steady / CONSUMPTION_PER_SECOND, 2),
        })
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
