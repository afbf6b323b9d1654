"""HLS folders through the pipeline, on folders written here by PyAV's own HLS muxer from a real
recording: windows across segment joins equal the stream embedded as one WAV file; start_utc from
the playlist's date-times or the folder's name plus durations; one outcome per segment, a row per
gap, no window across a gap; spans of any size and a re-run over a grown folder give the rows of
one pass."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from orca_beam.core.hls import PLAYLIST_NAME, decode_segments, order_segments, parse_playlist
from orca_beam.store.reader import current_rows
from orca_beam.store.version import latest_version_folder
from orca_beam.testing.hls_fixtures import write_hls_folder
from pipelines import extract

pytestmark = pytest.mark.e2e
MODELS = ["vggish", "yamnet", "humpback"]
FOLDER_S = 1_633_046_400  # 2021-10-01T00:00:00Z
PDT_DELAY_S = 2.5  # the first audio 2.5 s after the folder's name (as on Orcasound's nodes)
RANGE = ["--start=2021-10-01T00:00:00Z", "--end=2021-10-01T01:00:00Z"]
#: Windows of two spans joined against one pass: the AAC decoder restarted in a span's
#: look-behind continues with another noise-generator state (measured 1.25e-3).
SPAN_JOIN_RTOL = 3e-3


def handles(standin_dir: Path, models=MODELS) -> list[str]:
    return [f"--model={m}" for m in models] + [
        f"--model_handle={m}={standin_dir / m}" for m in models]


def run(args: list[str], output: Path, standin_dir: Path, models=MODELS) -> dict:
    return extract.run([*args, f"--output={output}", "--projector_point=none",
                        *handles(standin_dir, models)])


def rows(output: Path, model: str):
    """(table of the current rows, {start_s: embedding})."""
    table = current_rows(latest_version_folder(str(output), model))
    vectors = np.asarray(table.column("embedding").combine_chunks().flatten(), np.float32)
    vectors = vectors.reshape(table.num_rows, -1)
    return table, dict(zip(table.column("start_s").to_pylist(), vectors, strict=True))


def outcomes(output: Path) -> list[dict]:
    return [json.loads(line) for path in sorted((output / "outcomes").glob("*/*.jsonl"))
            for line in path.read_text().splitlines()]


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


@pytest.fixture(scope="module")
def audio(orca_calls) -> np.ndarray:
    """60 s of a real hydrophone recording, 48 kHz mono."""
    samples, rate = sf.read(str(orca_calls / "hydrophone" / "210825-1925_L-highlight.wav"),
                            dtype="float32", always_2d=True)
    assert rate == 48000
    return np.tile(samples[:, :1], (6, 1))[:48000 * 60]


@pytest.fixture(scope="module")
def clean(audio, standin_dir, tmp_path_factory):
    """A folder with date-times, embedded as a stream (one span, and 10 s spans), and the same
    stream decoded to one WAV file and embedded as a file."""
    base = tmp_path_factory.mktemp("hls_clean")
    folder = write_hls_folder(audio, base / "hls" / str(FOLDER_S),
                              first_pdt=datetime.fromtimestamp(FOLDER_S + PDT_DELAY_S, UTC))
    segments = order_segments(parse_playlist((folder / PLAYLIST_NAME).read_text()),
                              [p.name for p in folder.glob("*.ts")])
    stream = np.concatenate([d.samples for d in decode_segments(
        (s, (folder / s.name).read_bytes()) for s in segments)])
    (base / "wav").mkdir()
    sf.write(str(base / "wav" / "stream.wav"), stream, 48000, subtype="FLOAT")
    run([f"--input={base / 'wav' / 'stream.wav'}"], base / "wav_out", standin_dir)
    one = run([f"--input={base / 'hls'}/", *RANGE], base / "one_span", standin_dir)
    spans = run([f"--input={base / 'hls'}/", *RANGE, "--span_s=10"], base / "spans",
                standin_dir)
    return {"base": base, "folder": folder, "segments": segments, "samples": len(stream),
            "one": one, "spans": spans}


@pytest.mark.parametrize("model", MODELS)
def test_windows_across_joins_equal_the_stream_as_one_wav(clean, model):
    base = clean["base"]
    _, wav = rows(base / "wav_out", model)
    table, stream = rows(base / "one_span", model)
    assert set(stream) <= set(wav)
    # full windows only: the WAV's zero-padded tail window is not a stream row
    assert len(stream) >= len(wav) - 1
    assert max(relative(stream[k], wav[k]) for k in stream) <= 1e-5
    # the windows cross the joins: some start in one segment and end in the next
    starts = np.array(table.column("start_s").to_pylist())
    ends = np.array(table.column("end_s").to_pylist())
    joins = np.cumsum([s.duration_s for s in clean["segments"]])[:-1]
    assert any(((starts < j) & (ends > j)).any() for j in joins)


@pytest.mark.parametrize("model", MODELS)
def test_each_row_belongs_to_the_segment_its_window_ends_in_with_utc(clean, model):
    table, _ = rows(clean["base"] / "one_span", model)
    segments = clean["segments"]
    starts_s = np.concatenate([[0.0], np.cumsum([s.duration_s for s in segments])])
    for row in table.select(["source", "start_s", "end_s", "stream", "start_utc",
                             "time_source"]).to_pylist():
        index = int(np.searchsorted(starts_s, row["end_s"] - 1e-9, "right") - 1)
        assert row["source"].endswith("/" + segments[index].name)
        assert row["stream"].endswith(f"/{FOLDER_S}/")
        assert row["time_source"] == "program_date_time"
        # the owner's date-time in the playlist plus the offset from its start, to 1 ms
        owner_pdt = segments[index].program_date_time.timestamp()
        assert abs(owner_pdt - (FOLDER_S + PDT_DELAY_S + starts_s[index])) <= 1e-3
        expected = owner_pdt + row["start_s"] - starts_s[index]
        assert abs(row["start_utc"].timestamp() - expected) <= 1e-3


def test_spans_of_any_size_give_the_rows_of_one_pass(clean):
    assert clean["spans"]["models"] == clean["one"]["models"]
    for model in MODELS:
        one_table, one = rows(clean["base"] / "one_span", model)
        spans_table, spans = rows(clean["base"] / "spans", model)
        assert sorted(one) == sorted(spans)
        assert one_table.column("source").to_pylist() == spans_table.sort_by(
            "start_s").column("source").to_pylist() or sorted(
            one_table.column("source").to_pylist()) == sorted(
            spans_table.column("source").to_pylist())
        assert max(relative(spans[k], one[k]) for k in one) <= SPAN_JOIN_RTOL
    found = outcomes(clean["base"] / "spans")
    assert {o["status"] for o in found} == {"embedded"}
    assert len(found) == len(clean["segments"]) * len(MODELS)


def test_growing_folder_reembeds_only_the_new_span(clean, standin_dir, tmp_path):
    """A live folder gains segments: the re-run embeds only them, and the rows of both runs are
    those of one pass over the grown folder."""
    source, live = clean["folder"], tmp_path / "hls" / str(FOLDER_S)
    live.mkdir(parents=True)
    lines = (source / PLAYLIST_NAME).read_text().splitlines()
    cut = [i for i, line in enumerate(lines) if line == "live003.ts"][0]
    for name in ("live000.ts", "live001.ts", "live002.ts", "live003.ts"):
        shutil.copy2(source / name, live / name)
    (live / PLAYLIST_NAME).write_text("\n".join(lines[:cut + 1]) + "\n")
    first = run([f"--input={tmp_path / 'hls'}/", *RANGE], tmp_path / "out", standin_dir)
    for path in source.glob("live*.ts"):
        if not (live / path.name).exists():
            shutil.copy2(path, live / path.name)
    shutil.copy2(source / PLAYLIST_NAME, live / PLAYLIST_NAME)
    planned = run([f"--input={tmp_path / 'hls'}/", *RANGE, "--plan"], tmp_path / "out",
                  standin_dir)["plan"]
    second = run([f"--input={tmp_path / 'hls'}/", *RANGE], tmp_path / "out", standin_dir)
    total = len(clean["segments"])
    for model in MODELS:
        plan = second["versions"][model]["plan"]
        assert (plan["unchanged"], plan["new"]) == (4, total - 4)
        assert (planned[model]["unchanged"], planned[model]["new"]) == (4, total - 4)
        assert first["models"][model]["embedded"] == 4
        assert second["models"][model]["embedded"] == total - 4
        _, grown = rows(tmp_path / "out", model)
        _, one = rows(clean["base"] / "one_span", model)
        assert sorted(grown) == sorted(one)
        assert max(relative(grown[k], one[k]) for k in one) <= SPAN_JOIN_RTOL


@pytest.fixture(scope="module")
def damaged(audio, standin_dir, tmp_path_factory):
    """An older stereo folder (no date-times) with a timestamp jump, an empty segment, a missing
    one, a corrupt one, one not in the playlist and a 0.085 s last segment."""
    base = tmp_path_factory.mktemp("hls_damaged")
    stereo = np.concatenate([audio, audio[::-1]], axis=1)
    # 57.085 s of audio, stamped over 60.085 s (the 3 s jump): the last segment is 0.085 s
    stereo = stereo[:48000 * 57 + 3200]
    folder = write_hls_folder(stereo, base / "hls" / str(FOLDER_S), date_times=False,
                              jump_at_s=12.0, jump_s=3.0)
    playlist = parse_playlist((folder / PLAYLIST_NAME).read_text())
    (folder / "live003.ts").unlink()
    (folder / "live002.ts").write_bytes(b"")  # an upload that never completed: empty
    (folder / "live005.ts").write_bytes(b"\x47" + bytes(187) + b"not a transport stream" * 100)
    lines = [line for line in (folder / PLAYLIST_NAME).read_text().splitlines()]
    at = lines.index("live004.ts")
    del lines[at - 1:at + 1]  # live004.ts is in the folder but not in the playlist
    (folder / PLAYLIST_NAME).write_text("\n".join(lines) + "\n")
    summary = run([f"--input={base / 'hls'}/", *RANGE], base / "out", standin_dir)
    return {"base": base, "folder": folder, "playlist": playlist, "summary": summary}


def test_one_outcome_per_segment_and_a_row_per_gap(damaged):
    found = outcomes(damaged["base"] / "out")
    by_source: dict[str, set] = {}
    for outcome in found:
        if outcome["model"]:
            by_source.setdefault(outcome["source"].rsplit("/", 1)[-1], set()).add(
                outcome["status"])
    assert by_source["live000.ts"] == {"embedded"}
    assert by_source["live002.ts"] == {"empty"}
    assert by_source["live004.ts"] == {"not_in_playlist"}
    assert by_source["live005.ts"] == {"unreadable"}
    assert "live003.ts" not in by_source
    assert by_source["live006.ts"] == {"embedded"}
    short = [s for s in damaged["playlist"] if s.name == "live006.ts"][0]
    assert short.duration_s == pytest.approx(0.085, abs=0.01)
    for outcome in found:
        if outcome["model"]:
            assert outcome["channels"] == (None if outcome["status"] in ("unreadable", "empty")
                                           else 2)
            assert outcome["stream"].endswith(f"/{FOLDER_S}/")
    unreadable = [o for o in found if o["status"] == "unreadable"]
    assert all(o["error"] for o in unreadable)
    gaps = sorted((o for o in found if o["status"] == "gap"), key=lambda o: o["source"])
    assert [g["source"].rsplit("/", 1)[-1] for g in gaps] == ["live001.ts", "live003.ts"]
    jump, missing = gaps
    assert jump["duration_s"] == pytest.approx(3.0, abs=0.001)
    assert "MPEG-TS timestamps jump" in jump["error"]
    # the audio stopped 12 s into the stream (inside live001.ts): the gap starts there
    jump_start = datetime.fromisoformat(jump["start_utc"]).timestamp()
    assert jump_start == pytest.approx(FOLDER_S + 12.0, abs=0.05)
    assert "missing from the folder" in missing["error"]
    assert missing["start_utc"] is not None and missing["duration_s"] > 9
    assert damaged["summary"]["streams"]["gaps"] == 2


def test_no_window_spans_a_gap_and_later_audio_keeps_its_time(damaged):
    playlist = damaged["playlist"]
    starts = np.concatenate([[0.0], np.cumsum([s.duration_s for s in playlist])])
    missing = [(starts[i], starts[i + 1]) for i, s in enumerate(playlist)
               if s.name in ("live002.ts", "live003.ts", "live005.ts")]
    jump_at = 12.0 + 0.0  # the audio after the jump is stamped 3 s later
    for model in MODELS:
        table, _ = rows(damaged["base"] / "out", model)
        for row in table.select(["source", "start_s", "end_s", "start_utc",
                                 "time_source"]).to_pylist():
            for lo, hi in missing:
                # the playlist's EXTINF rounds the audio's length (by 2.2e-5 s here): a
                # zero-padded window before a gap ends at the last decoded sample
                assert row["end_s"] <= lo + 1e-4 or row["start_s"] >= hi - 1e-4
            assert not (row["start_s"] < jump_at + 3.0 - 0.05 and row["end_s"] > jump_at + 0.05)
            assert row["time_source"] == "folder_plus_durations"
            # the folder's name plus the real durations: the time of each row is its offset
            assert abs(row["start_utc"].timestamp() - (FOLDER_S + row["start_s"])) <= 1e-3


@pytest.fixture(scope="module")
def holed(clean, standin_dir, tmp_path_factory):
    """The clean folder with live002.ts missing (listed in the playlist, never uploaded),
    embedded in one span and in 10 s spans; the true stream times of the runs around the gap
    from decoding the segments independently of the pipeline."""
    base = tmp_path_factory.mktemp("hls_holed")
    folder = base / "hls" / str(FOLDER_S)
    shutil.copytree(clean["folder"], folder)
    (folder / "live002.ts").unlink()
    segments = {s.name: s for s in clean["segments"]}
    before = list(decode_segments((segments[name], (folder / name).read_bytes())
                                  for name in ("live000.ts", "live001.ts")))
    after = list(decode_segments((segments[name], (folder / name).read_bytes())
                                 for name in ("live003.ts", "live004.ts", "live005.ts")))
    origin = before[0].first_pts_s
    first_after = after[0].first_pts_s - origin
    runs = [(0.0, sum(len(d.samples) for d in before) / 48000),
            (first_after, first_after + sum(len(d.samples) for d in after) / 48000)]
    one = run([f"--input={base / 'hls'}/", *RANGE], base / "one_span", standin_dir)
    spans = run([f"--input={base / 'hls'}/", *RANGE, "--span_s=10"], base / "spans",
                standin_dir)
    playlist = parse_playlist((folder / PLAYLIST_NAME).read_text())
    return {"base": base, "runs": runs, "one": one, "spans": spans,
            "live003_utc_s": next(s.program_date_time.timestamp() for s in playlist
                                  if s.name == "live003.ts")}


@pytest.mark.parametrize("model", MODELS)
def test_rows_start_at_the_first_audio_after_a_gap_and_cover_both_runs(holed, model):
    """The first row after a missing segment starts at the first audio after it (its UTC time
    is the segment's own to 1 ms); the rows before the gap cover every second up to it (the
    last window zero-padded, its row ending where the audio does); the rows after it cover
    every second from it (up to the partial hop at the end of the audio so far)."""
    spec_hop_s = {"vggish": 0.96, "yamnet": 0.48, "humpback": 3.84}[model]
    table, _ = rows(holed["base"] / "one_span", model)
    found = sorted(table.select(["source", "start_s", "end_s", "start_utc"]).to_pylist(),
                   key=lambda r: r["start_s"])
    (run_lo, gap_lo), (gap_hi, end) = holed["runs"]
    assert gap_hi - gap_lo > 9.9  # a whole segment is missing
    later = [r for r in found if r["start_s"] >= gap_lo]
    first = later[0]
    assert first["source"].endswith("/live003.ts")
    assert first["start_s"] == pytest.approx(gap_hi, abs=1e-3)
    assert first["start_utc"].timestamp() == pytest.approx(holed["live003_utc_s"], abs=1e-3)
    earlier = [r for r in found if r["start_s"] < gap_lo]
    # the resampler's last sample: within one sample at the model's rate (10 kHz: 1e-4 s)
    assert earlier[-1]["end_s"] == pytest.approx(gap_lo, abs=1e-4)
    assert all(r["end_s"] <= gap_lo + 1e-4 for r in earlier)

    def uncovered(rows_, lo, hi):
        """Seconds of [lo, hi) that no row's [start_s, end_s) covers (1 ms steps)."""
        grid = np.arange(lo, hi, 1e-3)
        hit = np.zeros(len(grid), bool)
        for r in rows_:
            hit |= (grid >= r["start_s"] - 1e-6) & (grid < r["end_s"] + 1e-6)
        return float((~hit).sum()) * 1e-3

    assert uncovered(earlier, run_lo, gap_lo - 1e-3) == 0.0
    assert uncovered(later, gap_hi + 1e-3, end - spec_hop_s) == 0.0
    # spans of 10 s own the same windows: the same rows, from the same segments
    table, _ = rows(holed["base"] / "spans", model)
    assert sorted((r["source"], round(r["start_s"], 6), round(r["end_s"], 6))
                  for r in table.select(["source", "start_s", "end_s"]).to_pylist()) == sorted(
        (r["source"], round(r["start_s"], 6), round(r["end_s"], 6)) for r in found)


def test_segment_numbers_past_999_keep_the_stream_in_order(clean, standin_dir, tmp_path):
    """live1000.ts follows live999.ts (a folder of more than 1,000 segments): the same stream
    under the numbers 997.. gives the same rows, each owned by the renamed segment."""
    folder = tmp_path / "hls" / str(FOLDER_S)
    folder.mkdir(parents=True)
    renamed = {s.name: f"live{997 + k}.ts" for k, s in enumerate(clean["segments"])}
    for old, new in renamed.items():
        shutil.copy2(clean["folder"] / old, folder / new)
    text = (clean["folder"] / PLAYLIST_NAME).read_text()
    (folder / PLAYLIST_NAME).write_text("\n".join(
        renamed.get(line, line) for line in text.splitlines()) + "\n")
    run([f"--input={tmp_path / 'hls'}/", *RANGE], tmp_path / "out", standin_dir, ["yamnet"])
    table, got = rows(tmp_path / "out", "yamnet")
    one_table, one = rows(clean["base"] / "one_span", "yamnet")
    assert sorted(got) == sorted(one)
    assert max(relative(got[k], one[k]) for k in one) <= 1e-6
    owners = dict(zip(table.column("start_s").to_pylist(), table.column("source").to_pylist(),
                      strict=True))
    for start, source in zip(one_table.column("start_s").to_pylist(),
                             one_table.column("source").to_pylist(), strict=True):
        assert owners[start].rsplit("/", 1)[-1] == renamed[source.rsplit("/", 1)[-1]]
    assert {"live999.ts", "live1000.ts"} <= {s.rsplit("/", 1)[-1] for s in owners.values()}
