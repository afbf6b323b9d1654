"""The worker image installs the project non-editable (``pip install ".[gpu,birdnet]"`` in the Dockerfile):
build it that way and import every module from the build, as a worker would."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[1]

IMPORT_ALL = """
import importlib, pkgutil, sys
import orca_beam, pipelines
target = sys.argv[1]
assert orca_beam.__file__.startswith(target), orca_beam.__file__
names = []
for package in (orca_beam, pipelines):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(info.name)
        names.append(info.name)
from orca_beam.core.annotations import load_mapping
print(load_mapping().file_column)
print(" ".join(sorted(names)))
"""


def test_non_editable_build_holds_every_module(tmp_path):
    target = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
         str(REPO)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    workdir = tmp_path / "opt-orca-beam"  # the image's WORKDIR: configs/ beside, no sources
    shutil.copytree(REPO / "configs", workdir / "configs")
    done = subprocess.run([sys.executable, "-c", IMPORT_ALL, str(target)], cwd=workdir,
                          env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin",
                               "TF_CPP_MIN_LOG_LEVEL": "3"},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    config_column, modules = done.stdout.split("\n")[-3:-1]
    assert config_column == "wav_filename"
    expected = {p.relative_to(REPO).with_suffix("").as_posix().replace("/", ".")
                for folder in ("orca_beam", "pipelines") for p in (REPO / folder).rglob("*.py")
                if p.name != "__init__.py"}
    assert expected <= set(modules.split())
