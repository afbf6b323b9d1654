"""Segments mode end to end on DirectRunner: an Orcaml-format annotations.tsv over the real
hydrophone recordings, all three stand-ins, every reject reason, negatives and the projector."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from orca_beam import embed_file
from orca_beam.core.audio import load_audio
from orca_beam.core.framing import num_frames
from orca_beam.core.registry import get_model_spec
from pipelines import extract

pytestmark = pytest.mark.e2e
MODELS = ("vggish", "yamnet", "humpback")
HEADER = ["dataset", "wav_filename", "start_time_s", "duration_s", "location", "date",
          "pst_or_master_tape_identifier"]
HARO = ["Haro Strait, Washington", "2017-07-05", "OS_7_05"]
ROWS = [  # (row, expected status, reason) + the row as written
    (1, "embedded", "", ["podcast_round1", "someCalls.wav", "2.500", "3.1", *HARO]),
    (2, "embedded", "", ["podcast_round1", "someCalls.wav", "10.0", "0.2", *HARO]),  # 0.2 s call
    (3, "embedded", "", ["podcast_round1", "someCalls.wav", "20.25", "5.5", *HARO]),
    (4, "rejected", "outside_file", ["podcast_round1", "someCalls.wav", "32.0", "4.0", *HARO]),
    (5, "rejected", "zero_duration", ["podcast_round1", "someCalls.wav", "0.0", "0.0", *HARO]),
    (6, "embedded", "", ["podcast_round2", "210825-1925_L-highlight.wav", "0.3", "1.5",
                         "Orcasound Lab", "1629919500", "210825"]),  # near the start: padded
    (7, "no_call", "", ["podcast_round2", "someCallsPlus7db.wav", "0.0", "0.0", *HARO]),
    (8, "rejected", "file_missing", ["podcast_round2", "missing_file.wav", "1.0", "1.0",
                                     "Dabob Bay, Seattle, Washington", "1960-10-28", "60012"]),
    (9, "rejected", "path_outside_root", ["podcast_round2", "../catalog/S01-J,L-1.wav", "0.1",
                                          "0.5", "Dabob Bay", "1960-10-28", "S01"]),
]
NEGATIVES = 2


def write_annotations(path: Path) -> None:
    lines = ["\t".join(HEADER)] + ["\t".join(row) for *_, row in ROWS]
    path.write_text("\n".join(lines) + "\n")


def window_waveform(path: Path, rate: int, start_sample: int, num_samples: int) -> np.ndarray:
    """The file's audio over [start, start + n) at ``rate``, zeros outside the file."""
    audio = load_audio(str(path), rate)
    out = np.zeros(num_samples, np.float32)
    lo, hi = max(0, start_sample), min(len(audio), start_sample + num_samples)
    if lo < hi:
        out[lo - start_sample:hi - start_sample] = audio[lo:hi]
    return out


def direct_frames(waveform: np.ndarray, model: str, handle: Path) -> np.ndarray:
    """Frame embeddings of one direct model call on ``waveform`` (already at the model rate)."""
    buffer = io.BytesIO()
    sf.write(buffer, waveform, get_model_spec(model).sample_rate_hz, format="WAV",
             subtype="FLOAT")
    return embed_file(buffer.getvalue(), model, str(handle)).embeddings


@pytest.fixture(scope="module")
def segment_run(standin_dir, orca_calls, tmp_path_factory):
    work = tmp_path_factory.mktemp("segments")
    write_annotations(work / "annotations.tsv")
    output = work / "out"
    summary = extract.run([
        "--runner=DirectRunner", f"--input={orca_calls / 'hydrophone'}",
        f"--annotations={work / 'annotations.tsv'}", f"--output={output}",
        f"--negatives={NEGATIVES}", "--progress_interval_s=1",
        *[f"--model_handle={m}={standin_dir / m}" for m in MODELS]])
    return output, summary


def test_every_row_has_its_outcome_and_the_summary_counts_them(segment_run):
    output, summary = segment_run
    outcomes = [json.loads(line) for path in sorted((output / "segments").glob("*/*.jsonl"))
                for line in path.read_text().splitlines()]
    by_row = {o["row"]: o for o in outcomes if o["kind"] == "call"}
    assert sorted(by_row) == [r for r, *_ in ROWS]
    for row, status, reason, _ in ROWS:
        assert (by_row[row]["status"], by_row[row]["reason"]) == (status, reason), row
    assert by_row[9]["source"] == ""  # never resolved, never read
    rejected = [json.loads(line) for path in (output / "segments_rejected").glob("*/*.jsonl")
                for line in path.read_text().splitlines()]
    assert sorted(o["row"] for o in rejected) == [4, 5, 8, 9]
    assert summary["annotation_rows"] == 9
    assert summary["rows_by_status"] == {"embedded": 4, "no_call": 1, "rejected": 4}
    assert summary["rejected_by_reason"] == {"file_missing": 1, "outside_file": 1,
                                             "path_outside_root": 1, "zero_duration": 1}
    # two negatives in each of the three readable files, the call-free one included
    negatives = [o for o in outcomes if o["kind"] == "negative"]
    assert summary["negatives_embedded"] == len(negatives) == 3 * NEGATIVES
    assert {o["wav_filename"] for o in negatives} == {
        "someCalls.wav", "210825-1925_L-highlight.wav", "someCallsPlus7db.wav"}
    # the job wrote the summary; the launcher added only its Beam counters
    written = json.loads((output / "summary.json").read_text())
    assert written == {k: v for k, v in summary.items() if k != "counters"}


@pytest.mark.parametrize("model", MODELS)
def test_pooled_vectors_are_the_mean_of_the_frames_of_the_centred_window(
        segment_run, model, standin_dir, orca_calls):
    output, _ = segment_run
    spec = get_model_spec(model)
    rate = spec.sample_rate_hz
    table = pq.read_table(output / model).to_pylist()
    assert len(table) == 4 + 3 * NEGATIVES
    assert {r["segment_id"] for r in table if r["kind"] == "call"} == {
        "row:1", "row:2", "row:3", "row:6"}
    written = {tuple(row) for *_, row in ROWS}
    for record in table:
        start, end = record["segment_start_s"], record["segment_end_s"]
        assert (record["start_s"], record["end_s"]) == (start, end)
        frames = max(1, num_frames(spec, round((end - start) * rate)))
        assert record["frames"] == frames and record["frame_index"] == -1
        needed = (frames - 1) * spec.hop_samples + spec.window_samples
        window_start = round(record["window_start_s"] * rate)
        assert round(record["window_end_s"] * rate) - window_start == needed
        assert abs(window_start + needed / 2 - (start + end) / 2 * rate) <= 0.5  # centred
        path = Path(record["source"])
        assert path.parent == orca_calls / "hydrophone"
        padded = max(0, -window_start) + max(
            0, window_start + needed - len(load_audio(str(path), rate)))
        assert record["zero_padded_s"] == pytest.approx(padded / rate)
        expected = direct_frames(window_waveform(path, rate, window_start, needed), model,
                                 standin_dir / model)
        assert expected.shape[0] == frames
        # packed with other segments vs alone: float32 sums blocked by batch size differ in
        # the last digits, most visibly on elements far below the vector's largest
        np.testing.assert_allclose(record["embedding"], expected.mean(axis=0), rtol=1e-5,
                                   atol=1e-5 * np.abs(expected).max())
        assert record["standin"] is True and record["model_version"].endswith("+standin")
        values = [record[c] for c in HEADER]
        if record["kind"] == "call":
            assert tuple(values) in written  # every annotation column carried unchanged
        else:
            assert record["start_time_s"] == record["duration_s"] == ""
            assert values[1] == path.name
    row6 = next(r for r in table if r["segment_id"] == "row:6")
    if model == "humpback":  # 3.9 s window centred on 1.05 s: 0.906 s of zeros before the file
        assert row6["zero_padded_s"] == pytest.approx(0.9062)


def test_projector_has_one_point_per_segment_with_the_annotation_columns(segment_run):
    output, _ = segment_run
    for model in MODELS:
        folder = output / "projector" / model
        rows = list(csv.DictReader(io.StringIO((folder / "metadata.tsv").read_text()),
                                   delimiter="\t"))
        assert len(rows) == 4 + 3 * NEGATIVES
        assert set(HEADER) | {"segment_id", "kind", "frames"} <= set(rows[0])
        calls = {r["segment_id"]: r for r in rows if r["kind"] == "call"}
        assert calls["row:1"]["location"] == "Haro Strait, Washington"
        assert calls["row:1"]["start_time_s"] == "2.500"
        assert calls["row:6"]["date"] == "1629919500"
        tensors = (folder / "tensors.tsv").read_text().splitlines()
        assert len(tensors) == len(rows)
        assert len(tensors[0].split("\t")) == get_model_spec(model).embedding_dim


def test_keep_all_frames_writes_every_frame_with_its_segment(
        segment_run, standin_dir, orca_calls, tmp_path):
    _, _ = segment_run
    write_annotations(tmp_path / "annotations.tsv")
    extract.run([
        "--runner=DirectRunner", f"--input={orca_calls / 'hydrophone'}",
        f"--annotations={tmp_path / 'annotations.tsv'}", f"--output={tmp_path / 'out'}",
        "--model=yamnet", "--pooling=frames", "--projector_point=segment",
        f"--model_handle=yamnet={standin_dir / 'yamnet'}"])
    spec = get_model_spec("yamnet")
    rows = pq.read_table(tmp_path / "out" / "yamnet").to_pylist()
    row1 = sorted((r for r in rows if r["segment_id"] == "row:1"), key=lambda r: r["frame_index"])
    assert [r["frame_index"] for r in row1] == list(range(row1[0]["frames"]))
    window_start = round(row1[0]["window_start_s"] * spec.sample_rate_hz)
    for r in row1:
        assert r["start_s"] == pytest.approx(row1[0]["window_start_s"] + r["frame_index"] * 0.48)
        assert r["end_s"] - r["start_s"] == pytest.approx(0.975)
    needed = (len(row1) - 1) * spec.hop_samples + spec.window_samples
    expected = direct_frames(window_waveform(orca_calls / "hydrophone" / "someCalls.wav",
                                             spec.sample_rate_hz, window_start, needed),
                             "yamnet", standin_dir / "yamnet")
    np.testing.assert_allclose([r["embedding"] for r in row1], expected, rtol=1e-5, atol=1e-6)
    metadata = (tmp_path / "out" / "projector" / "yamnet" / "metadata.tsv").read_text()
    assert len(metadata.splitlines()) == 1 + 4  # header + one point per call segment


def test_a_second_run_replaces_the_first_runs_rows(standin_dir, orca_calls, tmp_path):
    """Calls mode commits like the stream extraction: after two runs over the same annotations
    the version holds one current row per call (and negative), on disk as well."""
    from orca_beam.store.reader import current_rows
    from orca_beam.store.version import latest_version_folder

    write_annotations(tmp_path / "annotations.tsv")
    args = ["--runner=DirectRunner", f"--input={orca_calls / 'hydrophone'}",
            f"--annotations={tmp_path / 'annotations.tsv'}", f"--output={tmp_path / 'out'}",
            f"--negatives={NEGATIVES}", "--model=yamnet", "--projector_point=none",
            f"--model_handle=yamnet={standin_dir / 'yamnet'}"]
    first = extract.run(args)
    second = extract.run(args)
    assert first["run_id"] != second["run_id"]
    folder = latest_version_folder(str(tmp_path / "out"), "yamnet")
    current = current_rows(folder).to_pylist()
    embedded = sum(1 for *_, row in [r for r in ROWS if r[1] == "embedded"])
    assert len(current) == embedded + 3 * NEGATIVES
    assert len({row["segment_id"] for row in current}) == len(current)
    on_disk = pq.read_table(tmp_path / "out" / "yamnet").to_pylist()
    assert sorted(r["segment_id"] for r in on_disk) == sorted(r["segment_id"] for r in current)
    assert len(list((tmp_path / "out" / "segments").iterdir())) == 1  # this run's outcomes only
