"""The stand-ins load through tensorflow_hub.load and behave like the real models at the interface."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub

from orca_beam.core.errors import UsageError
from orca_beam.core.framing import num_frames, num_units
from orca_beam.core.registry import get_model_spec
from orca_beam.models.loading import load_model, model_version

LENGTHS_S = [0.2, 0.96, 1.0, 10.0, 61.3]


@pytest.fixture(scope="module")
def models(standin_dir):
    return {name: hub.load(str(standin_dir / name)) for name in ("vggish", "yamnet", "humpback")}


def noise(n: int) -> np.ndarray:
    return np.random.default_rng(n).uniform(-0.3, 0.3, n).astype(np.float32)


@pytest.mark.parametrize("seconds", LENGTHS_S)
def test_vggish_interface(models, seconds):
    n = int(round(seconds * 16000))
    out = models["vggish"](noise(n))
    assert out.dtype == tf.float32
    assert out.shape == (max(0, (n - 15600) // 15360 + 1), 128)
    assert out.shape[0] == num_frames(get_model_spec("vggish"), n)
    assert np.isfinite(out.numpy()).all()
    assert len(models["vggish"].signatures) == 0


@pytest.mark.parametrize("seconds", LENGTHS_S)
def test_yamnet_interface(models, seconds):
    n = int(round(seconds * 16000))
    scores, embeddings, log_mel = models["yamnet"](noise(n))
    p = 1 + int(np.ceil(max(0, n - 15600) / 7680))
    assert scores.shape == (p, 521) and embeddings.shape == (p, 1024)
    assert log_mel.shape == (96 + 48 * (p - 1), 64)
    assert p == num_frames(get_model_spec("yamnet"), n)
    assert float(tf.reduce_min(embeddings)) >= 0.0
    assert 0.0 <= float(tf.reduce_min(scores)) and float(tf.reduce_max(scores)) <= 1.0


def test_yamnet_class_map(models):
    path = models["yamnet"].class_map_path().numpy().decode()
    lines = open(path).read().splitlines()
    assert lines[0] == "index,mid,display_name" and len(lines) == 522


@pytest.mark.parametrize("seconds", LENGTHS_S)
def test_humpback_front_end_and_features(models, seconds):
    n = int(round(seconds * 10000))
    pcen = models["humpback"].front_end(noise(n)[None, :, None])
    frames = 0 if n < 1024 else 1 + (n - 1024) // 300
    assert pcen.shape == (1, frames, 64)
    assert frames == num_units(get_model_spec("humpback"), n)
    windows = max(1, -(-frames // 128))
    assert windows == num_frames(get_model_spec("humpback"), n) or frames == 0
    features = models["humpback"].features(np.zeros((windows, 128, 64), np.float32))
    assert features.shape == (windows, 2048) and float(tf.reduce_min(features)) >= 0
    assert models["humpback"].logits(np.zeros((2, 128, 64), np.float32)).shape == (2, 1)


@pytest.mark.parametrize("n,step,windows", [(39123, 10000, 0), (39124, 10000, 1),
                                            (49023, 10000, 1), (49024, 10000, 2),
                                            (100000, 3920, 16)])
def test_humpback_score_signature(models, n, step, windows):
    score = models["humpback"].signatures["score"]
    out = score(waveform=tf.constant(noise(n)[None, :, None]),
                context_step_samples=tf.constant(step, tf.int64))
    assert out["scores"].shape == (1, windows, 1)
    with pytest.raises(TypeError):
        score(tf.constant(noise(n)[None, :, None]), tf.constant(step, tf.int64))


def test_humpback_metadata_and_root_call(models):
    meta = models["humpback"].signatures["metadata"]()
    assert int(meta["input_sample_rate"]) == 10000
    assert int(meta["context_width_samples"]) == 39124
    assert [c.decode() for c in meta["class_names"].numpy()] == ["Mn"]
    assert models["humpback"](np.zeros((3, 39124, 1), np.float32)).shape == (3, 1)


def test_stand_ins_are_marked_and_versioned(standin_dir):
    report = json.loads((standin_dir / "BUILD_REPORT.json").read_text())
    params = {r["model"]: r["parameters"] for r in report}
    assert params == {"vggish": 72_141_184, "yamnet": 3_751_369, "humpback": 23_530_561}
    for name in ("vggish", "yamnet", "humpback"):
        version = model_version(str(standin_dir / name))
        assert version.standin and version.label.endswith("+standin")
        assert len(version.content_sha256) == 64


def test_tfhub_cache_dir_serves_a_url_handle_offline(standin_dir, tmp_path):
    url = "https://tfhub.dev/google/yamnet/1"
    cached = tmp_path / hashlib.sha1(url.encode()).hexdigest()
    shutil.copytree(standin_dir / "yamnet", cached)
    code = ("from orca_beam.models.loading import load_model\n"
            f"m, v = load_model({url!r})\n"
            "import numpy as np\n"
            "print(m(np.zeros(15600, 'float32'))[1].shape[0], v.label)")
    env = dict(os.environ, TFHUB_CACHE_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-2:] == ["1", f"{url}@sha256:"
                                        f"{model_version(str(cached)).content_sha256[:16]}+standin"]


def test_missing_local_handle_is_a_clear_error(tmp_path):
    # a model-handle mistake is a UsageError: one line and exit status 2 on the command line
    with pytest.raises(UsageError, match="not a SavedModel directory"):
        load_model(str(tmp_path))
