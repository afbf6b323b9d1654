"""Applying a classifier: events merged by the stated gap, orcasite links, scores equal to numpy
over classifier.json, detections equal to the rows at or above the thresholds, re-runs that
score nothing new, a classifier of another version refused, and an HLS folder in the S3
emulator growing between nightly runs."""

from __future__ import annotations

import csv
import json
import sys
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow.parquet as pq
import pytest

from orca_beam.classify.apply import merge_events
from orca_beam.core.orcasite import bout_url, feed_slug, node_of_stream


def _detection(start_s, end_s, score=0.9, utc0=datetime(2024, 10, 1, tzinfo=UTC)):
    return {"class": "S01", "score": score, "source": f"seg{int(start_s // 10)}",
            "stream": "s3://b/rpi_orcasound_lab/hls/1/", "start_s": start_s, "end_s": end_s,
            "start_utc": utc0 + timedelta(seconds=start_s), "review_url": ""}


def test_events_merge_detections_at_most_the_gap_apart():
    detections = [_detection(s, s + 3.0, score=0.5 + s / 100) for s in (0, 3, 6, 14, 20.0001)]
    events = merge_events(list(reversed(detections)), gap_s=5.0)
    # 0-9 and 14-17 are 5 s apart: one event; 20.0001 starts 3.0001 s after 17: joins too
    assert [(e["start_s"], e["end_s"], e["detections"]) for e in events] == [(0, 23.0001, 5)]
    events = merge_events(detections, gap_s=4.999)
    assert [(e["start_s"], e["end_s"], e["detections"]) for e in events] == [
        (0, 9.0, 3), (14, 23.0001, 2)]
    first = events[0]
    assert first["start_utc"] == datetime(2024, 10, 1, tzinfo=UTC)
    assert first["end_utc"] == datetime(2024, 10, 1, 0, 0, 9, tzinfo=UTC)
    assert first["max_score"] == pytest.approx(0.56) and first["first_source"] == "seg0"
    assert first["mean_score"] == pytest.approx(np.mean([0.5, 0.53, 0.56]))
    assert [e["detections"] for e in merge_events(detections, gap_s=0)] == [3, 1, 1]


def test_bout_links_as_orcasound_tools_write_them():
    # pods-ai's get_best_timestamp.py: orcasound-lab 2023_08_18_00_59_50 PDT
    url = bout_url("s3://audio-orcasound-net/rpi_orcasound_lab/hls/1692345600/",
                   datetime(2023, 8, 18, 7, 59, 50, tzinfo=UTC))
    assert url == ("https://live.orcasound.net/bouts/new/orcasound-lab"
                   "?time=2023-08-18T07%3A59%3A50.000Z")
    assert feed_slug("rpi_north_sjc") == "north-sjc" and feed_slug("das_possession_bar") is None
    assert node_of_stream("data/rpi_bush_point/hls/1700000000") == "rpi_bush_point"
    assert node_of_stream("data/recordings/") is None
    assert bout_url(None, datetime.now(UTC)) == "" and bout_url("x/rpi_a/hls/1/", None) == ""


# -- the BirdNET catalogue ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(birdnet_catalogue_run, orca_calls, tmp_path_factory):
    from pipelines import classify

    output, _ = birdnet_catalogue_run
    clf = tmp_path_factory.mktemp("clf")
    classify.run(["train", f"--embeddings={output}", "--model=birdnet",
                  f"--label_table={orca_calls / 'catalog' / 'labels.tsv'}",
                  "--label_column=call_type", f"--output={clf}"])
    return output, clf / "classifier.json"


def numpy_scores(classifier_path, x):
    """The README's snippet."""
    with open(classifier_path) as handle:
        clf = json.load(handle)
    x = x / np.linalg.norm(x, axis=1, keepdims=True) if clf["l2_normalize"] else x
    z = (x - np.array(clf["center"])) / np.array(clf["scale"])
    return clf, 1 / (1 + np.exp(-(z @ np.array(clf["weights"]).T + np.array(clf["bias"]))))


@pytest.mark.e2e
def test_apply_scores_equal_numpy_and_detections_are_the_rows_over_threshold(trained, tmp_path):
    from orca_beam.store.derived import derived_rows
    from orca_beam.store.reader import current_rows, embedding_matrix
    from orca_beam.store.version import version_folder
    from pipelines import classify

    output, classifier = trained
    scores_dir = tmp_path / "scores"
    args = ["apply", f"--classifier={classifier}", f"--embeddings={output}", "--model=birdnet",
            f"--output={scores_dir}", "--runner=DirectRunner"]
    first = classify.run(args)
    rows = current_rows(version_folder(str(output), "birdnet", None),
                        ["source", "start_s", "embedding"])
    clf, expected = numpy_scores(classifier, embedding_matrix(rows).astype(np.float64))
    stored = derived_rows(str(scores_dir))
    assert stored.num_rows == rows.num_rows == first["rows_scored"] == 168
    got = {(r["source"], r["start_s"]): r["scores"] for r in stored.to_pylist()}
    for i, key in enumerate(zip(rows.column("source").to_pylist(),
                                rows.column("start_s").to_pylist(), strict=True)):
        np.testing.assert_allclose(got[key], expected[i], atol=1e-6)
    thresholds = np.array([clf["thresholds"][c] for c in clf["classes"]])
    over = np.argwhere(expected >= thresholds)
    with open(scores_dir / "detections.csv", newline="") as handle:
        detections = list(csv.DictReader(handle))
    assert len(detections) == len(over) == first["detections"]
    assert sorted((d["source"], float(d["start_s"]), d["class"]) for d in detections) == sorted(
        (rows.column("source")[int(i)].as_py(), rows.column("start_s")[int(i)].as_py(),
         clf["classes"][int(c)]) for i, c in over)
    table = pq.read_table(scores_dir / "detections.parquet")
    assert table.num_rows == len(over) and table.column_names[:2] == ["class", "score"]
    with open(scores_dir / "events.csv", newline="") as handle:
        events = list(csv.DictReader(handle))
    # oracle: per class and file, a detection starting more than 5 s (the default gap) after
    # the latest end so far starts a new event
    spans: dict[tuple, list] = {}
    for d in detections:
        spans.setdefault((d["class"], d["source"]), []).append(
            (float(d["start_s"]), float(d["end_s"])))
    expected_events = 0
    for found in spans.values():
        end = -np.inf
        for start, stop in sorted(found):
            expected_events += start > end + 5.0
            end = max(end, stop)
    assert len(events) == expected_events == first["events"]
    assert expected_events > len(spans)  # the long excerpts give several events
    again = classify.run(args)
    assert (again["rows_scored"], again["rows_kept"], again["shards_kept"]) == (0, 168, 1)
    assert again["detections"] == first["detections"]
    # another classifier (here: other thresholds) re-scores every shard; the old part goes
    doc = json.loads(classifier.read_text())
    doc["thresholds"] = dict.fromkeys(doc["classes"], 0.99)
    retrained = tmp_path / "retrained.json"
    retrained.write_text(json.dumps(doc))
    old_parts = sorted(p.name for p in scores_dir.glob("part-*"))
    third = classify.run([a if not a.startswith("--classifier=") else f"--classifier={retrained}"
                          for a in args])
    assert (third["rows_scored"], third["rows_kept"]) == (168, 0)
    parts = sorted(p.name for p in scores_dir.glob("part-*"))
    assert len(parts) == len(old_parts) == 1 and parts != old_parts
    assert third["detections"] == int((expected >= 0.99).sum())


@pytest.mark.e2e
def test_a_classifier_of_another_version_is_refused_in_one_line(trained, tmp_path, capsys,
                                                                monkeypatch):
    from pipelines import classify

    output, classifier = trained
    doc = json.loads(classifier.read_text())
    doc["embedding"]["version_id"] = "0123456789abcdef-01234567"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(doc))
    monkeypatch.setattr(sys, "argv", ["classify", "apply", f"--classifier={other}",
                                      f"--embeddings={output}", "--model=birdnet",
                                      f"--output={tmp_path / 'scores'}"])
    with pytest.raises(SystemExit) as stopped:
        classify.main()
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "0123456789abcdef-01234567" in err[0]
    assert not (tmp_path / "scores").exists()


@pytest.mark.e2e
def test_extract_with_a_classifier_embeds_and_scores_in_one_command(trained, orca_calls,
                                                                   tmp_path):
    """The nightly form: pipelines.extract --classifier scores what the run leaves current; a
    run that embeds nothing new scores nothing new; another version's classifier is refused
    before anything runs."""
    import shutil

    from pipelines import extract

    output, classifier = trained
    out = tmp_path / "out"
    shutil.copytree(output, out)  # the fixture's version, as last night left it
    args = ["--runner=DirectRunner", f"--input={orca_calls / 'catalog'}/*.wav",
            f"--input={orca_calls / 'hydrophone'}/*.wav", f"--output={out}", "--model=birdnet",
            f"--classifier={classifier}"]
    first = extract.run(args)
    assert first["versions"]["birdnet"]["plan"]["unchanged"] == 139
    assert first["classify"]["rows_scored"] == 168
    assert (out / "scores" / "birdnet" / "events.csv").exists()
    again = extract.run(args)
    assert (again["classify"]["rows_scored"], again["classify"]["rows_kept"]) == (0, 168)
    assert again["classify"]["detections"] == first["classify"]["detections"]
    doc = json.loads(classifier.read_text())
    doc["embedding"]["version_id"] = "fedcba9876543210-76543210"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(doc))
    from orca_beam.core.errors import UsageError

    with pytest.raises(UsageError, match="fedcba9876543210-76543210"):
        extract.run([a if not a.startswith("--classifier=") else f"--classifier={other}"
                     for a in args])
