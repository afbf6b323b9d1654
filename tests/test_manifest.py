"""The manifest's storage and decisions without a model: the change-detection rule, old
single-JSON versions read as they are, bounded Parquet shards, the plan as a Beam join."""

from __future__ import annotations

import json
from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from orca_beam.extract.plan import (
    DELETED_TAG,
    PLAN_TAG,
    WORK_TAG,
    PlanSources,
    SummarisePlan,
    carried_tag,
)
from orca_beam.sources.files import MatchFiles
from orca_beam.store.fingerprint import COMPARED_CONTENT, COMPARED_METADATA, crc32c_fingerprint
from orca_beam.store.manifest import (
    ManifestEntry,
    decide,
    entries_table,
    iter_entries,
    version_state,
)
from orca_beam.store.reader import ReadEntries, current_rows
from orca_beam.store.schema import embedding_table
from orca_beam.store.sinks import WriteParquetShards


def entry(size=10, mtime=100.0, print_="crc32c:AAAAAA==", status="embedded") -> dict:
    return ManifestEntry("/a.wav", size, print_, status, 3, ["s"], "r", mtime_s=mtime).to_dict()


class Content:
    """A content() callable that counts its calls."""

    def __init__(self, value: str):
        self.value, self.calls = value, 0

    def __call__(self) -> str:
        self.calls += 1
        return self.value


def test_same_size_and_mtime_is_unchanged_without_reading():
    content = Content("crc32c:other")
    decision = decide(entry(), 10, 100.0, content=content)
    assert (decision.kind, decision.compared, content.calls) == ("unchanged", COMPARED_METADATA, 0)


def test_a_touched_file_is_hashed_and_unchanged_when_its_bytes_are():
    content = Content("crc32c:AAAAAA==")
    decision = decide(entry(), 10, 200.0, content=content)
    assert (decision.kind, decision.compared, content.calls) == ("unchanged", COMPARED_CONTENT, 1)
    changed = decide(entry(), 10, 200.0, content=Content("crc32c:BBBBBB=="))
    assert (changed.kind, changed.fingerprint) == ("changed", "crc32c:BBBBBB==")


def test_other_size_is_changed_without_reading_and_verify_always_reads():
    content = Content("x")
    assert decide(entry(), 11, 100.0, content=content).kind == "changed" and content.calls == 0
    verified = decide(entry(), 10, 100.0, verify_content=True, content=Content("crc32c:CC=="))
    assert verified.kind == "changed" and verified.compared == COMPARED_CONTENT


def test_new_retry_force_and_an_entry_without_mtime():
    assert decide(None, 10, 1.0).kind == "new"
    assert decide(entry(status="failed"), 10, 100.0).kind == "retry"
    assert decide(entry(), 10, 100.0, force=True).kind == "changed"
    legacy = entry(mtime=None)  # versions written before mtimes were kept: content compared
    content = Content("crc32c:AAAAAA==")
    assert decide(legacy, 10, 100.0, content=content).kind == "unchanged" and content.calls == 1


def write_rows(path: Path, sources: list[str], rows_each: int = 3) -> None:
    tables = [embedding_table(source=s, channel=-1, start_s=np.arange(rows_each) * 0.48,
                              end_s=np.arange(rows_each) * 0.48 + 0.975, model="yamnet",
                              model_version="h@sha256:x", standin=True,
                              embeddings=np.ones((rows_each, 4), np.float32),
                              thumbnails=np.zeros((rows_each, 32, 32), np.uint8))
              for s in sources]
    import pyarrow as pa

    pq.write_table(pa.concat_tables(tables), path)


def test_a_version_written_before_the_sharded_form_reads_as_it_is(tmp_path):
    """The single _manifest.json of the previous release: entries, state and current rows."""
    folder = tmp_path / "yamnet" / "v1"
    folder.mkdir(parents=True)
    old, new = folder / "rows-a-00000-of-00001.parquet", folder / "rows-b-00000-of-00001.parquet"
    write_rows(old, ["/x.wav", "/y.wav"])
    write_rows(new, ["/y.wav"], rows_each=2)  # /y.wav changed in run b: its old rows are stale
    manifest = {"version": {"model": "yamnet"}, "written_at": "2026-11-01T00:00:00+00:00",
                "runs": [{"run_id": "a"}, {"run_id": "b"}], "entries": {
                    "/x.wav": {"source": "/x.wav", "size_bytes": 5, "fingerprint": "crc32c:x",
                               "status": "embedded", "embeddings": 3, "shards": [str(old)],
                               "run_id": "a", "duration_s": 2.0, "error_class": "",
                               "error": ""},
                    "/y.wav": {"source": "/y.wav", "size_bytes": 6, "fingerprint": "crc32c:y",
                               "status": "embedded", "embeddings": 2, "shards": [str(new)],
                               "run_id": "b", "duration_s": 1.5, "error_class": "",
                               "error": ""}}}
    (folder / "_manifest.json").write_text(json.dumps(manifest))
    entries = sorted(iter_entries(str(folder)), key=lambda e: e["source"])
    assert [e["source"] for e in entries] == ["/x.wav", "/y.wav"]
    assert entries[0]["mtime_s"] is None and entries[0]["compared"] == ""
    state = version_state(str(folder))
    assert state["form"] == "legacy" and state["entries"] == 2 and len(state["runs"]) == 2
    rows = current_rows(str(folder))
    assert sorted(rows.column("source").to_pylist()) == ["/x.wav"] * 3 + ["/y.wav"] * 2
    with TestPipeline() as p:
        read = p | ReadEntries(str(folder)) | beam.Map(lambda e: (e["source"], e["embeddings"]))
        assert_that(read, equal_to([("/x.wav", 3), ("/y.wav", 2)]))


def test_plan_joins_files_and_entries_by_source(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    for name in ("same.wav", "touched.wav", "grown.wav", "new.wav"):
        (audio / name).write_bytes(b"abc")
    (audio / "grown.wav").write_bytes(b"abcd")
    stat = {name: (audio / name).stat() for name in ("same.wav", "touched.wav", "grown.wav")}
    print_ = crc32c_fingerprint(b"abc")

    def old(name, mtime=None):
        return ManifestEntry(str(audio / name), 3, print_, "embedded", 1, [], "r",
                             mtime_s=mtime if mtime is not None else stat[name].st_mtime
                             ).to_dict()

    previous = [old("same.wav"), old("touched.wav", mtime=1.0), old("grown.wav"),
                ManifestEntry(str(audio / "gone.wav"), 3, print_, "embedded", 1, [], "r",
                              mtime_s=1.0).to_dict()]
    with TestPipeline() as p:
        planned = {"files": p | MatchFiles([f"{audio}/*.wav"]),
                   "yamnet": p | "Previous" >> beam.Create(previous)} | PlanSources(["yamnet"])
        work = planned[WORK_TAG] | "WorkNames" >> beam.Map(
            lambda w: (Path(w.path).name, w.models, w.compared))
        assert_that(work, equal_to([("grown.wav", ("yamnet",), "size+mtime"),
                                    ("new.wav", ("yamnet",), "new")]), label="Work")
        carried = planned[carried_tag("yamnet")] | "CarriedNames" >> beam.Map(
            lambda entry: (Path(entry["source"]).name, entry["compared"]))
        assert_that(carried, equal_to([("same.wav", "size+mtime"),
                                       ("touched.wav", "crc32c_content")]), label="Carried")
        summary = ({PLAN_TAG: planned[PLAN_TAG], DELETED_TAG: planned[DELETED_TAG]}
                   | SummarisePlan())
        assert_that(summary, equal_to([{"yamnet": {
            "new": 1, "changed": 1, "retry": 0, "unchanged": 2, "deleted": 1,
            "deleted_sample": [str(audio / "gone.wav")]}}]), label="Plan")


@pytest.mark.parametrize("max_bytes", [30_000])
def test_parquet_shards_stay_under_the_bound(tmp_path, max_bytes):
    tables = [entries_table([ManifestEntry(f"/f{n:05d}_{i}.wav", 1, "crc32c:x", "embedded", 1,
                                           [f"rows-{n}"], "r", error="e" * 200).to_dict()
                             for i in range(50)]) for n in range(40)]
    one_table = max(t.nbytes for t in tables)
    with TestPipeline() as p:
        _ = p | beam.Create(tables) | WriteParquetShards(str(tmp_path / "entries"),
                                                         tables[0].schema, max_bytes=max_bytes)
    shards = sorted(tmp_path.glob("entries-*.parquet"))
    assert len(shards) > 1
    assert all(s.stat().st_size <= max_bytes + 2 * one_table for s in shards)
    assert sum(pq.read_metadata(s).num_rows for s in shards) == 40 * 50
