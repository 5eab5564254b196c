"""Wall time of repeated CLI calls, against the floor set by the libraries they need.

A `layerstudio generate` on the shipped 64 px model does under a second of work; the rest is
start-up. This measures, as a fresh process each time (the way a shell script calls it):

- ``inspect`` of a small PSD, against the baseline ``python -c "import numpy, PIL,
  psd_tools"`` (what reading a PSD cannot avoid);
- ``generate`` with the default model, against ``python -c "from diffusers import
  StableDiffusionPipeline"`` (torch, diffusers and transformers: the base class of every
  shipped U-Net pipeline) plus the generation's own seconds (what generating cannot avoid).

Prints JSON: median wall seconds of each (``--repeat`` runs), the baselines and the ratios.

    python benchmarks/cli_startup.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from layerstudio import Layer, LayerStack


def _wall(argv: list[str], repeat: int) -> tuple[float, str]:
    times, output = [], ""
    for _ in range(repeat):
        started = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - started)
        output = done.stdout
    return statistics.median(times), output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    cli = [sys.executable, "-m", "layerstudio"]
    with tempfile.TemporaryDirectory() as folder:
        psd = LayerStack(256, 256, layers=[
            Layer(f"layer {i}", np.full((64, 64, 4), 60 * i, np.uint8), offset=(40 * i, 30))
            for i in range(4)]).save(Path(folder) / "small.psd")
        inspect, _ = _wall([*cli, "inspect", str(psd)], args.repeat)
        inspect_floor, _ = _wall([sys.executable, "-c", "import numpy, PIL, psd_tools"],
                                 args.repeat)
        generate, printed = _wall([*cli, "generate", "an ice cream", "-o",
                                   str(Path(folder) / "out.psd"), "--seed", "0"], args.repeat)
        work = float(printed.rsplit(", ", 1)[1].split(" s")[0])  # "(..., 0.56 s)"
        import_floor, _ = _wall([sys.executable, "-c",
                                 "from diffusers import StableDiffusionPipeline"], args.repeat)
    print(json.dumps({
        "inspect_seconds": round(inspect, 2),
        "inspect_baseline_seconds": round(inspect_floor, 2),
        "inspect_ratio": round(inspect / inspect_floor, 2),
        "generate_seconds": round(generate, 2),
        "generate_work_seconds": work,
        "generate_baseline_seconds": round(import_floor + work, 2),
        "generate_ratio": round(generate / (import_floor + work), 2),
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
