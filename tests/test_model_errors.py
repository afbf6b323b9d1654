"""A model handle that cannot be fetched stops the run with one line and exit status 2."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[1]
HANDLE = "https://tfhub.dev/google/yamnet/1"


def test_an_unreachable_hub_handle_is_one_line_and_exit_status_2(tmp_path):
    sf.write(tmp_path / "a.wav", np.zeros(16000, np.float32), 16000)
    cache = tmp_path / "empty-hub-cache"
    # a proxy on a closed loopback port: unreachable whether or not this machine is online
    env = dict(os.environ, TFHUB_CACHE_DIR=str(cache), HTTPS_PROXY="http://127.0.0.1:9",
               HTTP_PROXY="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9",
               http_proxy="http://127.0.0.1:9", TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.extract", "--runner=DirectRunner",
         f"--input={tmp_path}/*.wav", f"--output={tmp_path}/out", "--model=yamnet"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    [line] = [x for x in done.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith(f"error: model yamnet: {HANDLE} cannot be fetched (URLError: ")
    assert str(cache / hashlib.sha1(HANDLE.encode()).hexdigest()) in line
    assert "TFHUB_CACHE_DIR" in line and "--model_handle yamnet=DIR" in line
    assert not (tmp_path / "out").exists()


def test_every_model_handle_mistake_is_one_line_and_exit_status_2(tmp_path):
    """A wrong SavedModel folder and a wrong .tflite file give the same kind of answer: one
    line naming the handle, exit status 2, no traceback."""
    sf.write(tmp_path / "a.wav", np.zeros(16000, np.float32), 16000)
    (tmp_path / "not_a_model").mkdir()
    (tmp_path / "not_a_model" / "README").write_text("no saved_model.pb here")
    cases = {"yamnet": (tmp_path / "not_a_model", "is not a SavedModel directory"),
             "birdnet": (tmp_path / "wrong.tflite", "does not exist")}
    for model, (handle, says) in cases.items():
        done = subprocess.run(
            [sys.executable, "-m", "pipelines.extract", "--runner=DirectRunner",
             f"--input={tmp_path}/*.wav", f"--output={tmp_path}/out", f"--model={model}",
             f"--model_handle={model}={handle}"],
            cwd=REPO, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), capture_output=True,
            text=True, timeout=120)
        assert done.returncode == 2, (model, done.stderr[-3000:])
        assert "Traceback" not in done.stderr, (model, done.stderr[-3000:])
        [line] = [x for x in done.stderr.splitlines() if x.startswith("error:")]
        assert str(handle) in line and says in line, line
