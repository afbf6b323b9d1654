"""pipelines.report over HLS folders with known damage across two UTC days: coverage.csv's
every cell against the seconds known from how the folders were made; coverage.png; SeaStats
datapoints that pass the API's own field rules, with coverage equal to coverage.csv's and call
events from a real BirdNET classifier applied to the folders' rows."""

from __future__ import annotations

import csv
import json
import math
from datetime import UTC, datetime
from urllib.parse import urlparse

import numpy as np
import pytest
import soundfile as sf

from orca_beam.core.hls import PLAYLIST_NAME, parse_playlist
from orca_beam.reports.coverage import entry_cells, hour_spans
from orca_beam.testing.hls_fixtures import write_hls_folder

NODE = "rpi_bush_point"
#: Folder A: 60 s from 23:59:35 on 1 October (PDT lines): live001 missing, live004 corrupt.
A_S = int(datetime(2021, 10, 1, 23, 59, 35, tzinfo=UTC).timestamp())
#: Folder B: 30 s from 01:00 on 2 October (no PDT lines): a 3 s timestamp jump at 12 s.
B_S = int(datetime(2021, 10, 2, 1, 0, 0, tzinfo=UTC).timestamp())
RANGE = ["--start=2021-10-01T00:00:00Z", "--end=2021-10-03T00:00:00Z"]
TOLERANCE_S = 0.1


def test_hour_spans_split_at_hours_and_midnight():
    start = datetime(2021, 10, 1, 23, 59, 55, tzinfo=UTC)
    assert list(hour_spans(start, 10.0)) == [("2021-10-01", 23, 5.0), ("2021-10-02", 0, 5.0)]
    assert list(hour_spans(None, 4.0)) == [("unknown", -1, 4.0)]
    assert sum(s for *_, s in hour_spans(start, 7300.0)) == pytest.approx(7300.0)
    entry = {"source": f"x/{NODE}/hls/1/live000.ts", "stream": f"x/{NODE}/hls/1/",
             "status": "embedded", "duration_s": 10.0, "start_utc": start,
             "time_source": "program_date_time",
             "gaps": [{"start_utc": start, "duration_s": 7.0, "cause": "c"}]}
    cells = list(entry_cells(entry, "m", ["m"], True))
    assert {key for key, _ in cells} == {(NODE, "2021-10-01", 23), (NODE, "2021-10-02", 0)}


@pytest.fixture(scope="module")
def damaged_days(orca_calls, standin_dir, tmp_path_factory):
    """The two folders, embedded with BirdNET (real) and the VGGish stand-in."""
    from pipelines import extract

    samples, rate = sf.read(str(orca_calls / "hydrophone" / "210825-1925_L-highlight.wav"),
                            dtype="float32", always_2d=True)
    audio = np.tile(samples[:, :1], (6, 1))
    base = tmp_path_factory.mktemp("report_hls")
    root = base / NODE / "hls"
    a = write_hls_folder(audio[:48000 * 60], root / str(A_S),
                         first_pdt=datetime.fromtimestamp(A_S, UTC))
    (a / "live001.ts").unlink()
    (a / "live004.ts").write_bytes(b"\x47" + bytes(187) + b"not a transport stream" * 100)
    b = write_hls_folder(audio[:48000 * 30], root / str(B_S), date_times=False,
                         jump_at_s=12.0, jump_s=3.0)
    output = base / "out"
    summary = extract.run(["--runner=DirectRunner", f"--input={root}/", *RANGE,
                           f"--output={output}", "--model=birdnet", "--model=vggish",
                           f"--model_handle=vggish={standin_dir / 'vggish'}",
                           "--projector_point=none"])
    return {"base": base, "output": output, "a": a, "b": b, "summary": summary}


def _segments(folder):
    return parse_playlist((folder / PLAYLIST_NAME).read_text())


def expected_days(damaged_days) -> dict:
    """coverage.csv's rows as the folders were made (no pipeline code): A's segments at their
    PDT lines, 10 s each but live001 (missing: a 10 s gap) and live004 (corrupt); B's 30 s of
    audio on 2 October with one 3 s gap."""
    a_segments = _segments(damaged_days["a"])
    b_segments = _segments(damaged_days["b"])
    # 60 s of AAC: six segments of about 10 s and the encoder's last 0.021 s in a seventh
    assert [s.name for s in a_segments] == [f"live00{i}.ts" for i in range(7)]
    read = [s for s in a_segments if s.name not in ("live001.ts", "live004.ts")]
    on = {day: sum(s.program_date_time.strftime("%Y-%m-%d") == day for s in read)
          for day in ("2021-10-01", "2021-10-02")}
    day1 = {"embedded": on["2021-10-01"], "audio": 15.0, "gap_s": 10.0, "gaps": 1,
            "unreadable": 0, "pdt": 15.0, "folder": 0.0}
    day2 = {"embedded": on["2021-10-02"] + len(b_segments), "audio": 25.0 + 30.0,
            "gap_s": 3.0, "gaps": 1, "unreadable": 1, "pdt": 25.0, "folder": 30.0}
    return {"2021-10-01": day1, "2021-10-02": day2}


@pytest.fixture(scope="module")
def report(damaged_days):
    from pipelines import report

    out = damaged_days["base"] / "report"
    summary = report.run([f"--embeddings={damaged_days['output']}", f"--output={out}",
                          "--model=birdnet", "--model=vggish", "--runner=DirectRunner"])
    with open(out / "coverage.csv") as handle:
        rows = list(csv.DictReader(handle))
    return {"out": out, "summary": summary, "rows": rows}


@pytest.mark.e2e
def test_coverage_csv_equals_the_known_seconds_in_every_cell(damaged_days, report):
    rows = report["rows"]
    assert [(r["node"], r["day"]) for r in rows] == [(NODE, "2021-10-01"), (NODE, "2021-10-02")]
    assert list(rows[0]) == [
        "node", "day", "embedded_s_birdnet", "embedded_s_vggish", "failed_birdnet",
        "failed_vggish", "embedded", "not_in_playlist", "unreadable", "empty", "failed",
        "too_short", "s_program_date_time", "s_folder_plus_durations", "s_file_name", "s_none",
        "gap_s", "gaps"]
    for row in rows:
        want = expected_days(damaged_days)[row["day"]]
        for model in ("birdnet", "vggish"):
            assert float(row[f"embedded_s_{model}"]) == pytest.approx(want["audio"],
                                                                      abs=TOLERANCE_S)
            assert int(row[f"failed_{model}"]) == want["unreadable"]
        assert float(row["gap_s"]) == pytest.approx(want["gap_s"], abs=TOLERANCE_S)
        assert int(row["gaps"]) == want["gaps"]
        assert int(row["embedded"]) == want["embedded"]
        assert int(row["unreadable"]) == want["unreadable"]
        for name in ("not_in_playlist", "empty", "failed", "too_short"):
            assert int(row[name]) == 0
        assert float(row["s_program_date_time"]) == pytest.approx(want["pdt"], abs=TOLERANCE_S)
        assert float(row["s_folder_plus_durations"]) == pytest.approx(want["folder"],
                                                                      abs=TOLERANCE_S)
        assert float(row["s_file_name"]) == float(row["s_none"]) == 0.0
    assert report["summary"]["nodes"] == 1 and report["summary"]["days"] == 2
    clusters = json.loads((report["out"] / "clusters.json").read_text())
    assert sorted(clusters) == ["birdnet", "vggish"]
    assert clusters["birdnet"]["points"] > 0 and clusters["vggish"]["points"] > 0


def test_an_hour_mixes_audio_gap_and_failure_by_their_shares():
    from orca_beam.reports.coverage import cell_fields
    from orca_beam.reports.coverage_plot import AUDIO_RGB, FAILED_RGB, GAP_RGB, hour_grid

    fields = cell_fields(["m"])
    values = dict.fromkeys(fields, 0.0)
    # half the hour audio in 180 segments of 10 s, a quarter gap, 90 failed segments
    values.update({"embedded_s_m": 1800.0, "embedded": 180, "gap_s": 900.0, "failed_m": 90})
    cells = {("n", "2024-10-01", 5): tuple(values[f] for f in fields)}
    grid = hour_grid(cells, "n", ["2024-10-01", "2024-10-02"], ["m"])
    np.testing.assert_allclose(grid[5, 0], 0.5 * AUDIO_RGB + 0.25 * GAP_RGB + 0.25 * FAILED_RGB)
    assert (grid[:, 1] == 1.0).all() and (grid[4, 0] == 1.0).all()  # no audio: white


@pytest.mark.e2e
def test_coverage_png_has_a_panel_per_node(report):
    from PIL import Image

    image = Image.open(report["out"] / "coverage.png")
    assert image.format == "PNG" and image.width >= 600 and image.height >= 250


# -- SeaStats -------------------------------------------------------------------------------------

def _valid(kind: str, value) -> bool:
    """The SeaStats API's type checks (src/validation/typeValidation.js)."""
    if kind == "null":
        return value is None
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool) and \
            math.isfinite(value)
    if kind == "nonEmptyString":
        return isinstance(value, str) and len(value) > 0
    if kind == "emptyString":
        return value == ""
    if kind == "urlString":
        return isinstance(value, str) and bool(urlparse(value).scheme and urlparse(value).netloc)
    if kind == "dateString":
        try:
            return len(str(value)) == 10 and bool(datetime.fromisoformat(value))
        except (TypeError, ValueError):
            return False
    if kind == "dateTimeString":
        try:
            return len(str(value)) > 22 and bool(datetime.fromisoformat(value))
        except (TypeError, ValueError):
            return False
    raise AssertionError(kind)


#: The API's datapoint validators (src/validation/inputValidation.js), as docs/reports.md lists.
VALIDATORS = {
    "callRate": {"species": ["nonEmptyString"], "callType": ["nonEmptyString"],
                 "date": ["dateString"], "value": ["null", "number"]},
    "callEvent": {"species": ["nonEmptyString"], "callType": ["nonEmptyString"],
                  "startDateTime": ["dateTimeString"], "endDateTime": ["dateTimeString"],
                  "callCount": ["null", "number"],
                  "audioUrl": ["null", "emptyString", "urlString"]},
    "recordingCoverage": {"date": ["dateString"], "value": ["null", "number"]},
}


def validate(points: list) -> None:
    assert isinstance(points, list)
    for point in points:
        assert point["dataPointType"] in VALIDATORS, point
        for name, kinds in VALIDATORS[point["dataPointType"]].items():
            assert name in point, (name, point)
            assert any(_valid(kind, point[name]) for kind in kinds), (name, point)


@pytest.mark.e2e
def test_seastats_datapoints_validate_and_carry_coverage_and_call_events(
        damaged_days, report, birdnet_catalogue_run, orca_calls, tmp_path):
    from pipelines import classify
    from pipelines import report as report_cli

    catalogue, _ = birdnet_catalogue_run
    classify.run(["train", f"--embeddings={catalogue}", "--model=birdnet",
                  f"--label_table={orca_calls / 'catalog' / 'labels.tsv'}",
                  "--label_column=call_type", f"--output={tmp_path / 'clf'}"])
    scores = tmp_path / "scores"
    classify.run(["apply", f"--classifier={tmp_path / 'clf' / 'classifier.json'}",
                  f"--embeddings={damaged_days['output']}", "--model=birdnet",
                  f"--output={scores}", "--threshold=0.0", "--runner=DirectRunner"])
    slugs = tmp_path / "slugs.csv"
    slugs.write_text(f"node,slug\n{NODE},bush-point-test\n")
    out = tmp_path / "report"
    summary = report_cli.run([f"--embeddings={damaged_days['output']}", f"--output={out}",
                              "--model=birdnet", f"--scores={scores}",
                              f"--seastats={tmp_path / 'seastats'}", f"--node_slugs={slugs}",
                              "--runner=DirectRunner"])
    points = json.loads((tmp_path / "seastats" / "bush-point-test.json").read_text())
    validate(points)
    assert summary["seastats"] == {"bush-point-test": len(points)}
    with open(out / "coverage.csv") as handle:
        rows = {r["day"]: r for r in csv.DictReader(handle)}
    coverage = {p["date"]: p["value"] for p in points if p["dataPointType"] == "recordingCoverage"}
    assert set(coverage) == set(rows) == {"2021-10-01", "2021-10-02"}
    for day, value in coverage.items():
        assert value * 86400 == pytest.approx(float(rows[day]["embedded_s_birdnet"]), abs=1e-6)
    with open(scores / "events.csv") as handle:
        events = list(csv.DictReader(handle))
    calls = [p for p in points if p["dataPointType"] == "callEvent"]
    assert len(calls) == len(events) > 0
    for call in calls:
        assert call["audioUrl"].startswith("https://live.orcasound.net/bouts/new/bush-point-test"
                                           "?time=")
        assert call["startDateTime"].endswith("Z") and call["callCount"] >= 1
    rates = [p for p in points if p["dataPointType"] == "callRate"]
    classes = {e["class"] for e in events}
    assert {p["callType"] for p in rates} == classes
    assert len(rates) == 2 * len(classes)
    detections = sum(int(e["detections"]) for e in events)
    hours = {day: float(r["embedded_s_birdnet"]) / 3600 for day, r in rows.items()}
    assert sum(p["value"] * hours[p["date"]] for p in rates) == pytest.approx(detections)
    # detections per hour and class beside each hour's audio, against detections.parquet
    import pyarrow.parquet as pq

    stored = pq.read_table(scores / "detections.parquet", columns=["class", "start_utc"])
    with open(out / "detections_hourly.csv") as handle:
        hourly = list(csv.DictReader(handle))
    assert sum(int(h["detections"]) for h in hourly) == stored.num_rows == detections
    for name in classes:
        want = sum(c == name for c in stored.column("class").to_pylist())
        assert sum(int(h["detections"]) for h in hourly if h["class"] == name) == want
    # every hour with audio is listed per class, with its seconds (00 UTC on 2 October: A's
    # 25 s; 01 UTC: B's 30 s)
    audio = {(h["day"], int(h["hour"])): float(h["audio_s"]) for h in hourly}
    assert audio[("2021-10-02", 0)] == pytest.approx(25.0, abs=TOLERANCE_S)
    assert audio[("2021-10-02", 1)] == pytest.approx(30.0, abs=TOLERANCE_S)
    assert len(hourly) == len(audio) * len(classes)
