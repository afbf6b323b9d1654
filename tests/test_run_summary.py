"""The run summary is the job's: combiners over the outcome rows write summary.json from inside
the pipeline (so a template run writes one too), and the job removes every outcome file it did
not write, so stale shards of an earlier run never mix with the new ones."""

from __future__ import annotations

import json
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from orca_beam.extract.summary import MAX_PRINTED, SourceTally, SummariseOutcomes
from orca_beam.records import Outcome
from orca_beam.testing.demo_audio import write_demo
from pipelines import extract


def outcome(source, model, status, rows=0, **kw):
    return Outcome(source, model, status, rows, kw.pop("duration_s", 1.0), 16000, 1, **kw)


def test_the_combiner_counts_what_a_plain_count_over_the_rows_gives():
    outcomes = [outcome(f"f{i:03d}", m, "failed" if i % 7 == 0 else "embedded", 3)
                for i in range(60) for m in ("vggish", "yamnet")]
    gaps = [outcome("s/live002.ts", "", "gap", duration_s=10.0, stream="s/",
                    start_utc="2021-10-01T00:00:20+00:00", error="segment missing")]
    tallies = [SourceTally(f"f{i:03d}", 1.0, i % 7 == 0, i % 2 == 0) for i in range(60)]
    with TestPipeline() as p:
        combined = ((p | beam.Create(outcomes + gaps + tallies, reshuffle=True))
                    | beam.CombineGlobally(SummariseOutcomes(["vggish", "yamnet"], True)))
        failed = [o for o in outcomes if o.status == "failed"]
        expected = {
            "files_decoded": 60, "files_failed": 9, "audio_s": 60.0,
            "models": {m: {"files": 60, "embedded": 51, "too_short": 0, "failed": 9,
                           "embeddings": 153, "not_in_playlist": 0, "unreadable": 0,
                           "empty": 0} for m in ("vggish", "yamnet")},
            "failed": sorted(({"source": o.source, "model": o.model, "error_class": "",
                               "error": ""} for o in failed),
                             key=lambda f: (f["source"], f["model"]))[:MAX_PRINTED],
            "failed_count": 18,
            "labels": {"sources_labelled": 30, "sources_without_label": 30,
                       "without_label": [f"f{i:03d}" for i in range(1, 60, 2)][:MAX_PRINTED]},
            "streams": {"folders": 1, "gaps": 1, "gap_s": 10.0, "gap_list": [
                {"source": "s/live002.ts", "start_utc": "2021-10-01T00:00:20+00:00",
                 "duration_s": 10.0, "cause": "segment missing"}]},
        }
        assert_that(combined, equal_to([expected]))


@pytest.mark.e2e
def test_the_job_writes_the_summary_and_removes_stale_outcome_files(standin_dir, tmp_path):
    write_demo(tmp_path / "audio")
    output = tmp_path / "out"
    stale = [output / "outcomes" / "outcomes-00001-of-00003.jsonl",  # the old flat layout
             output / "outcomes" / "20200101T000000Z-abcdef" / "outcomes-00000-of-00002.jsonl",
             output / "errors" / "20200101T000000Z-abcdef" / "errors-00000-of-00001.jsonl"]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"source": "old.wav", "model": "yamnet"}) + "\n")
    returned = extract.run(["--runner=DirectRunner", f"--input={tmp_path / 'audio'}/*.wav",
                            f"--output={output}", "--model=yamnet",
                            f"--model_handle=yamnet={standin_dir / 'yamnet'}",
                            "--projector_point=none"])
    written = json.loads((output / "summary.json").read_text())
    assert written == {k: v for k, v in returned.items() if k != "counters"}
    assert not any(path.exists() for path in stale)
    assert [p.name for p in (output / "outcomes").iterdir()] == [written["run_id"]]
    rows = [json.loads(line) for path in (output / "outcomes" / written["run_id"]).iterdir()
            for line in path.read_text().splitlines()]
    assert sorted(Path(r["source"]).name for r in rows) == sorted(
        p.name for p in (tmp_path / "audio").glob("*.wav"))
    assert written["files_matched"] == written["models"]["yamnet"]["embedded"] == 4
    assert written["models"]["yamnet"]["embeddings"] == sum(r["embeddings"] for r in rows)
    assert abs(written["audio_s"] - sum(r["duration_s"] for r in rows)) < 1e-6
