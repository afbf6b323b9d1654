"""End to end on DirectRunner: real recordings, all three stand-ins, and every bad-input outcome."""

from __future__ import annotations

import io
import json
import shutil
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

MODELS = ("vggish", "yamnet", "humpback")
pytestmark = pytest.mark.e2e


def handles(standin_dir: Path) -> list[str]:
    return [f"--model_handle={m}={standin_dir / m}" for m in MODELS]


def read_rows(output: Path, model: str) -> dict[str, dict[str, np.ndarray]]:
    table = pq.read_table(output / model).to_pydict()
    by_source: dict[str, list[int]] = {}
    for i, source in enumerate(table["source"]):
        by_source.setdefault(source, []).append(i)
    out = {}
    for source, rows in by_source.items():
        rows.sort(key=lambda i: table["start_s"][i])
        out[source] = {
            "start_s": np.array([table["start_s"][i] for i in rows]),
            "end_s": np.array([table["end_s"][i] for i in rows]),
            "embedding": np.array([table["embedding"][i] for i in rows], np.float32),
            "model_version": {table["model_version"][i] for i in rows},
            "standin": {table["standin"][i] for i in rows},
            "channel": {table["channel"][i] for i in rows},
        }
    return out


@pytest.fixture(scope="module")
def real_run(standin_dir, orca_calls, tmp_path_factory):
    catalog = sorted((orca_calls / "catalog").glob("*.wav"))[::12]  # 12 clips, all rates
    output = tmp_path_factory.mktemp("real_output")
    summary = extract.run([
        "--runner=DirectRunner", f"--input={orca_calls / 'hydrophone'}/*.wav",
        *[f"--input={c}" for c in catalog], f"--output={output}",
        "--chunk_s=5", "--pack_s=20", "--progress_interval_s=1", *handles(standin_dir),
    ])
    sources = sorted(str(p) for p in (orca_calls / "hydrophone").glob("*.wav")) + [
        str(c) for c in catalog]
    return output, summary, sources


def test_real_recordings_row_counts_follow_the_frame_formulas(real_run):
    output, summary, sources = real_run
    assert summary["files_matched"] == len(sources) == 15
    for model in MODELS:
        spec = get_model_spec(model)
        rows = read_rows(output, model)
        counts = summary["models"][model]
        assert counts["embedded"] + counts["too_short"] + counts["failed"] == len(sources)
        assert counts["failed"] == 0
        for source in sources:
            n = len(load_audio(source, spec.sample_rate_hz))
            expected = num_frames(spec, n)
            got = rows.get(source, {"start_s": np.zeros(0)})
            assert len(got["start_s"]) == expected, (model, source)
            if expected == 0:
                continue
            # contiguous grid from 0, ends within the file
            np.testing.assert_allclose(got["start_s"], np.arange(expected) * spec.hop_s,
                                       atol=1e-9)
            assert got["end_s"].max() <= n / spec.sample_rate_hz + 1e-9
            assert np.all(got["end_s"] > got["start_s"])
            assert np.all(got["start_s"][1:] <= got["end_s"][:-1])  # no gaps
            assert got["embedding"].shape == (expected, spec.embedding_dim)
            assert np.isfinite(got["embedding"]).all()
            assert got["standin"] == {True} and got["channel"] == {-1}
            (version,) = got["model_version"]
            assert version.endswith("+standin") and "@sha256:" in version
        assert counts["embeddings"] == sum(len(r["start_s"]) for r in rows.values())


@pytest.mark.parametrize("model", MODELS)
def test_pipeline_numbers_equal_one_call_outside_beam(real_run, standin_dir, model):
    output, _, sources = real_run
    rows = read_rows(output, model)
    for source in sources[:4]:  # the three 11-34 s hydrophone files (chunked at 5 s) + one clip
        direct = embed_file(source, model, str(standin_dir / model), chunk_s=3600)
        got = rows.get(source)
        if direct.embeddings.shape[0] == 0:
            assert got is None
            continue
        assert got["embedding"].shape == direct.embeddings.shape
        np.testing.assert_allclose(got["start_s"], direct.start_s)
        np.testing.assert_allclose(got["end_s"], direct.end_s)
        scale = np.abs(direct.embeddings).max()
        # vggish/yamnet: same values (float tolerance); humpback: PCEN warm-up tolerance 1e-3
        tolerance = 1e-3 if model == "humpback" else 1e-5
        assert np.abs(got["embedding"] - direct.embeddings).max() <= tolerance * scale


def test_summary_file_and_outcomes_are_written(real_run):
    output, summary, sources = real_run
    written = json.loads((output / "summary.json").read_text())
    assert written["files_matched"] == 15 and written["audio_s"] > 78
    assert written["audio_s_per_wall_s"] > 0
    import pandas as pd  # the rows are readable with no project code

    frame = pd.read_parquet(output / "yamnet")
    assert list(frame.columns) == ["source", "channel", "start_s", "end_s", "stream",
                                   "start_utc", "time_source", "model", "model_version",
                                   "standin", "embedding", "thumbnail"]
    # plain files carry no clock (no --file_time_format)
    assert frame["start_utc"].isna().all() and set(frame["time_source"]) == {"none"}
    assert frame["stream"].isna().all()
    assert frame["embedding"].iloc[0].dtype == np.float32
    assert len(frame) == summary["models"]["yamnet"]["embeddings"]
    outcomes = [json.loads(line) for f in (output / "outcomes").glob("*/*.jsonl")
                for line in f.read_text().splitlines()]
    assert len(outcomes) == 15 * 3
    assert {(o["source"], o["model"]) for o in outcomes} == {(s, m) for s in sources
                                                             for m in MODELS}


def _wav(samples: np.ndarray, rate: int, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def test_bad_inputs_each_get_their_outcome_and_never_stop_the_run(standin_dir, orca_calls,
                                                                  tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = sorted((orca_calls / "catalog").glob("S0*.wav"))[:2]
    for clip in good:
        shutil.copy(clip, folder / clip.name)
    rng = np.random.default_rng(3)
    tone = (0.3 * np.sin(2 * np.pi * 800 * np.arange(96000 * 3) / 96000)).astype(np.float32)
    (folder / "empty.wav").write_bytes(b"")
    whole = _wav(tone[:48000 * 2], 48000)
    (folder / "truncated.wav").write_bytes(whole[: len(whole) // 2])
    (folder / "random_bytes.wav").write_bytes(rng.bytes(20000))
    (folder / "notes.txt").write_text("not audio\tat all\n" * 20)
    (folder / "short_0.1s.wav").write_bytes(_wav(tone[:1600] * 0.5, 16000))
    nan = tone[:32000].copy()
    nan[1000] = np.nan
    (folder / "nan_float.wav").write_bytes(_wav(nan, 16000, "FLOAT"))
    three = np.stack([tone, tone * 0.5, tone * 0.25], axis=1)
    (folder / "three_channel_96k.wav").write_bytes(_wav(three, 96000, "PCM_24"))
    output = tmp_path / "out"
    summary = extract.run(["--runner=DirectRunner", f"--input={folder}/*", f"--output={output}",
                           *handles(standin_dir)])
    outcomes = {(Path(o["source"]).name, o["model"]): o for f in (output / "outcomes").glob("*/*")
                for o in map(json.loads, f.read_text().splitlines())}
    assert summary["files_matched"] == 9 and len(outcomes) == 27
    expected_failures = {"empty.wav": "EmptyAudioError", "truncated.wav": "TruncatedAudioError",
                         "random_bytes.wav": "UnsupportedAudioError",
                         "notes.txt": "UnsupportedAudioError",
                         "nan_float.wav": "NonFiniteAudioError"}
    for name, error_class in expected_failures.items():
        for model in MODELS:
            outcome = outcomes[(name, model)]
            assert (outcome["status"], outcome["error_class"]) == ("failed", error_class), outcome
            assert outcome["error"]
    for model in MODELS:
        for clip in good:
            assert outcomes[(clip.name, model)]["status"] in ("embedded", "too_short")
        three_ch = outcomes[("three_channel_96k.wav", model)]
        assert three_ch["status"] == "embedded" and three_ch["channels"] == 3
        assert three_ch["sample_rate_hz"] == 96000
        spec = get_model_spec(model)
        assert three_ch["embeddings"] == num_frames(spec, 3 * spec.sample_rate_hz)
    short = {m: outcomes[("short_0.1s.wav", m)] for m in MODELS}
    assert short["vggish"]["status"] == "too_short" and short["humpback"]["status"] == "too_short"
    assert short["yamnet"]["status"] == "embedded" and short["yamnet"]["embeddings"] == 1
    for model in MODELS:
        counts = summary["models"][model]
        assert counts["embedded"] + counts["too_short"] + counts["failed"] == 9
        assert counts["failed"] == 5
    errors = [json.loads(line) for f in (output / "errors").glob("*/*")
              for line in f.read_text().splitlines()]
    assert len(errors) == 15 and summary["files_failed"] == 5
