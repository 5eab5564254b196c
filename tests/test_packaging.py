"""`pip install .` and `pip install -e .` both give layerstudio.pipelines/ui/datasets."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
METHODS = sorted(folder.name for folder in (ROOT / "pipelines").iterdir()
                 if folder.is_dir() and any(folder.glob("*.py")))
"""Every method package under pipelines/: each must install (a regular install only takes
the packages pyproject.toml lists)."""
CHECK = ("import layerstudio, layerstudio.pipelines, layerstudio.ui, layerstudio.datasets, "
         "layerstudio.io, layerstudio.datasets.assets.emoji, layerstudio.datasets.scenes, "
         "layerstudio.datasets.loaders; import importlib.util as u; "
         + "".join(f"import layerstudio.pipelines.{name}; " for name in METHODS) +
         "assert u.find_spec('datasets') is None or 'layerstudio' not in "
         "(u.find_spec('datasets').origin or ''); "
         "from layerstudio.presets import PRESETS, is_available; "
         "missing = [p.name for p in PRESETS.values() if p.shipped and not is_available(p)]; "
         "assert not missing, f'shipped weights missing: {missing}'; "
         "from layerstudio.datasets.splits import split_names; assert split_names(); "
         "from layerstudio.train import recipe_names; assert 'tiny-sd' in recipe_names(); "
         "print(layerstudio.__file__)")


@pytest.mark.slow
@pytest.mark.parametrize("editable", [False, True], ids=["regular", "editable"])
def test_install_modes(tmp_path, editable):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    # Reuse this environment's dependencies (torch etc.) instead of downloading them again.
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True, check=True)
    Path(site.stdout.strip(), "parent_env.pth").write_text(sysconfig.get_paths()["purelib"])
    target = ["-e", str(ROOT)] if editable else [str(ROOT)]
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", "--no-build-isolation", *target], check=True, cwd=tmp_path)
    out = subprocess.run([str(python), "-c", CHECK], capture_output=True, text=True,
                         cwd=tmp_path, check=True)
    location = Path(out.stdout.strip())
    if editable:
        assert location.is_relative_to(ROOT)
    else:
        assert location.is_relative_to(venv)
    console = subprocess.run([str(venv / "bin" / "layerstudio"), "--version"],
                             capture_output=True, text=True, check=True)
    assert console.stdout.startswith("layerstudio ")
