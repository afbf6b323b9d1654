"""Applying a classifier to every current row of a version, in Beam (any runner): the scores as
a derived table (:mod:`orca_beam.store.derived`), the rows at or above each class's threshold
(``detections.parquet`` / ``.csv``) and those merged into events (``events.csv``).

The stages:

1. The version's entries, grouped by row shard (as the store's reader does), each shard with the
   sources its commit names there.
2. A shard the scores folder already has a part for (same classifier) is read from that part; any
   other shard is read row group by row group (key columns and ``embedding``) and scored in
   RunInference with :class:`~orca_beam.classify.handler.LinearClassifierHandler`. Its scores
   (every row of the shard) become its part; only the rows of current sources go on.
3. Per class, the current rows at or above the threshold are detections. They are grouped by
   class and stream (an HLS folder; a file's rows by source), sorted by time, and merged into
   events: a detection starting at most ``event_gap_s`` after the event's end joins it.
4. The commit names the parts (new and kept); parts no longer named are deleted.

Memory: a worker holds one row group, one shard's scores (for its part: key columns and one
float per class and row, without the embeddings), or the detections of one class in one stream
or file; the commit gathers one (shard, part) pair per row shard.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

from orca_beam.classify.handler import LinearClassifierHandler
from orca_beam.classify.linear import LinearClassifier
from orca_beam.core import s3
from orca_beam.core.errors import UsageError
from orca_beam.core.orcasite import bout_url
from orca_beam.store.derived import commit_derived, part_path, plan_derived
from orca_beam.store.reader import ReadEntries, keep_sources
from orca_beam.store.schema import UTC_TIMESTAMP
from orca_beam.store.version import VERSION_NAME, read_json
from orca_beam.tags import NAMESPACE

KEY_COLUMNS = ["source", "stream", "start_s", "end_s", "start_utc"]
#: Default --event_gap_s: detections of one class in one stream at most this far apart
#: (seconds, from one's end to the next's start) are one event.
DEFAULT_EVENT_GAP_S = 5.0
DETECTION_COLUMNS = ["class", "score", "source", "stream", "start_s", "end_s", "start_utc",
                     "review_url"]
DETECTION_SCHEMA = pa.schema([
    ("class", pa.string()), ("score", pa.float64()), ("source", pa.string()),
    ("stream", pa.string()), ("start_s", pa.float64()), ("end_s", pa.float64()),
    ("start_utc", UTC_TIMESTAMP), ("review_url", pa.string())])
EVENT_COLUMNS = ["class", "stream", "start_utc", "end_utc", "start_s", "end_s", "detections",
                 "max_score", "mean_score", "first_source", "last_source", "review_url"]


def scores_schema() -> pa.Schema:
    """A part's columns: the row's key columns and ``scores`` (one float32 per class, in the
    classifier's order)."""
    return pa.schema([("source", pa.string()), ("stream", pa.string()),
                      ("start_s", pa.float64()), ("end_s", pa.float64()),
                      ("start_utc", UTC_TIMESTAMP), ("scores", pa.list_(pa.float32()))])


@dataclass(frozen=True)
class ApplySettings:
    """One application: the classifier file, its SHA-256, classes and thresholds, the version
    folder, the scores folder, and the event merging gap (seconds)."""

    classifier_path: str
    classifier_sha256: str
    classes: tuple[str, ...]
    thresholds: tuple[float, ...]
    version: str
    output: str
    event_gap_s: float = DEFAULT_EVENT_GAP_S

    @staticmethod
    def of(classifier_path: str, version: str, output: str,
           event_gap_s: float = DEFAULT_EVENT_GAP_S) -> ApplySettings:
        """The settings of applying classifier.json at ``classifier_path`` to version folder
        ``version``. UsageError (one line) when it was trained on another embedding version."""
        with FileSystems.open(classifier_path) as handle:
            data = handle.read()
        model = LinearClassifier.load(classifier_path)
        trained_on = model.meta.get("embedding", {})
        target = read_json(f"{version.rstrip('/')}/{VERSION_NAME}")
        if trained_on.get("version_id") != target["version_id"]:
            raise UsageError(
                f"{classifier_path} was trained on embedding version "
                f"{trained_on.get('version_id')} ({trained_on.get('model_version')}), not "
                f"{target['version_id']} ({target['label']}) in {version}: train it on these rows")
        return ApplySettings(classifier_path, hashlib.sha256(data).hexdigest(),
                             tuple(model.classes), tuple(float(t) for t in model.thresholds),
                             version, output.rstrip("/"), event_gap_s)

    def derived_settings(self) -> dict:
        """What the scores' commit records about how they were made."""
        return {"classifier": self.classifier_path, "classes": list(self.classes),
                "thresholds": dict(zip(self.classes, self.thresholds, strict=True))}


class _ShardFn(beam.DoFn):
    """(row shard, its current sources) -> a kept part's current score tables (main output), or
    (shard, record batch of every row with a ``current`` column) to score (``to_score``)."""

    def __init__(self, kept: dict[str, str], to_score: set[str]):
        self.kept, self.to_score = kept, to_score
        self.shards_kept = Metrics.counter(NAMESPACE, "score_shards_kept")
        self.rows_kept = Metrics.counter(NAMESPACE, "score_rows_kept")

    def setup(self):
        s3.install()

    def process(self, keyed):
        shard, sources = keyed
        sources = set(sources)
        if shard in self.kept:
            self.shards_kept.inc()
            with FileSystems.open(self.kept[shard]) as handle:
                parquet = pq.ParquetFile(handle)
                for group in range(parquet.num_row_groups):
                    table = keep_sources(parquet.read_row_group(group), sources)
                    self.rows_kept.inc(table.num_rows)
                    if table.num_rows:
                        yield table
        elif shard in self.to_score:
            current = pa.array(sorted(sources), pa.string())
            with FileSystems.open(shard) as handle:
                parquet = pq.ParquetFile(handle)
                for group in range(parquet.num_row_groups):
                    table = parquet.read_row_group(group, columns=[*KEY_COLUMNS, "embedding"])
                    table = table.append_column(
                        "current", pc.is_in(table.column("source"), value_set=current))
                    for records in table.combine_chunks().to_batches():
                        yield beam.pvalue.TaggedOutput("to_score", (shard, records))


def _score_table(keyed) -> tuple[str, pa.Table]:
    shard, result = keyed
    records, scores = result.example, result.inference
    table = pa.Table.from_batches([records]).select([*KEY_COLUMNS, "current"])
    flat = pa.array(np.ascontiguousarray(scores, np.float32).ravel())
    offsets = pa.array(np.arange(0, len(flat) + 1, scores.shape[1], dtype=np.int32))
    return shard, table.append_column("scores", pa.ListArray.from_arrays(offsets, flat))


class _WritePartFn(beam.DoFn):
    """(row shard, its score tables) -> writes its part; yields (shard, part path)."""

    def __init__(self, settings: ApplySettings):
        self.settings = settings
        self.shards = Metrics.counter(NAMESPACE, "score_shards_scored")
        self.rows = Metrics.counter(NAMESPACE, "score_rows_scored")

    def setup(self):
        s3.install()

    def process(self, keyed) -> Iterator[tuple[str, str]]:
        shard, tables = keyed
        path = part_path(self.settings.output, self.settings.classifier_sha256, shard)
        schema = scores_schema()
        rows = 0
        with FileSystems.create(path) as handle, pq.ParquetWriter(handle, schema) as writer:
            for table in tables:
                writer.write_table(table.drop_columns(["current"]).cast(schema))
                rows += table.num_rows
        self.shards.inc()
        self.rows.inc(rows)
        yield shard, path


def _current_rows(keyed) -> Iterator[pa.Table]:
    _, table = keyed
    table = table.filter(table.column("current"))
    if table.num_rows:
        yield table.drop_columns(["current"])


def _detections(table: pa.Table, settings: ApplySettings) -> Iterator[tuple[tuple, dict]]:
    """((class, stream or source), detection dict) for every row and class at or above the
    class's threshold."""
    column = table.column("scores").combine_chunks()
    scores = np.asarray(column.flatten(), np.float32).reshape(len(column), -1)
    rows, classes = np.nonzero(scores >= np.asarray(settings.thresholds, np.float32))
    if not len(rows):
        return
    keys = table.select(KEY_COLUMNS).take(pa.array(rows)).to_pylist()
    for key, row, c in zip(keys, rows, classes, strict=True):
        name = settings.classes[c]
        detection = {"class": name, "score": float(scores[row, c]), **key,
                     "review_url": bout_url(key["stream"], key["start_utc"])}
        yield (name, key["stream"] or key["source"]), detection


def merge_events(detections: list[dict], gap_s: float) -> list[dict]:
    """Detections of one class in one stream or file -> events: sorted by ``start_s``, a detection
    starting at most ``gap_s`` seconds after the current event's end joins it (UTC times from
    the rows: the event ends at its last-ending detection's ``start_utc`` plus its length)."""
    events: list[dict] = []
    current: dict | None = None
    for d in sorted(detections, key=lambda d: (d["start_s"], d["end_s"])):
        if current is not None and d["start_s"] <= current["end_s"] + gap_s:
            current["detections"] += 1
            current["scores"].append(d["score"])
            current["last_source"] = d["source"]
            if d["end_s"] > current["end_s"]:
                current["end_s"] = d["end_s"]
                current["end_utc"] = _end_utc(d)
            continue
        current = {"class": d["class"], "stream": d["stream"] or d["source"],
                   "start_utc": d["start_utc"], "end_utc": _end_utc(d),
                   "start_s": d["start_s"], "end_s": d["end_s"], "detections": 1,
                   "scores": [d["score"]], "first_source": d["source"],
                   "last_source": d["source"], "review_url": d["review_url"]}
        events.append(current)
    for event in events:
        scores = event.pop("scores")
        event["max_score"], event["mean_score"] = max(scores), float(np.mean(scores))
    return events


def _end_utc(detection: dict):
    start = detection["start_utc"]
    return None if start is None else start + timedelta(
        seconds=detection["end_s"] - detection["start_s"])


class _GroupFn(beam.DoFn):
    """(class, stream) and its detections -> the detections in time order (main output) and the
    events (``events``)."""

    def __init__(self, gap_s: float):
        self.gap_s = gap_s
        self.detections = Metrics.counter(NAMESPACE, "detections")
        self.events = Metrics.counter(NAMESPACE, "events")

    def process(self, keyed):
        _, detections = keyed
        detections = sorted(detections, key=lambda d: (d["start_s"], d["end_s"]))
        self.detections.inc(len(detections))
        Metrics.counter(NAMESPACE, f"detections_{detections[0]['class']}").inc(len(detections))
        yield from detections
        events = merge_events(detections, self.gap_s)
        self.events.inc(len(events))
        for event in events:
            yield beam.pvalue.TaggedOutput("events", event)


def csv_line(record: dict, columns: list[str]) -> str:
    """One CSV line (no newline) of ``record``'s ``columns``; datetimes as ISO 8601 UTC."""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(
        ["" if record[c] is None else record[c].isoformat() if hasattr(record[c], "isoformat")
         else record[c] for c in columns])
    return out.getvalue()


def _commit(pairs: list[tuple[str, str]], settings: ApplySettings, kept: dict[str, str]) -> dict:
    parts = {**kept, **dict(pairs)}
    run = {"shards_scored": len(pairs), "shards_kept": len(kept)}
    deleted = commit_derived(settings.output, settings.version, settings.classifier_sha256,
                             settings.derived_settings(), parts, run)
    return {**run, "parts": len(parts), "parts_deleted": len(deleted)}


class ScoreVersion(beam.PTransform):
    """pbegin -> (nothing useful): scores every current row of ``settings.version`` into the
    derived table at ``settings.output`` (new row shards only), and writes detections.parquet,
    detections.csv and events.csv there (module doc)."""

    def __init__(self, settings: ApplySettings):
        super().__init__()
        self.settings = settings
        self.to_score, self.kept = plan_derived(settings.output, settings.version,
                                                settings.classifier_sha256)

    def expand(self, pbegin):
        settings = self.settings
        out = settings.output
        shards = (pbegin
                  | "ReadEntries" >> ReadEntries(settings.version)
                  | "ShardsOfEntries" >> beam.FlatMap(
                      lambda e: [(s, e["source"]) for s in e["shards"] or []])
                  | "SourcesPerShard" >> beam.GroupByKey()
                  | "ReadShards" >> beam.ParDo(_ShardFn(self.kept, set(self.to_score)))
                  .with_outputs("to_score", main="kept"))
        scored = (shards.to_score
                  | "Score" >> RunInference(KeyedModelHandler(
                      LinearClassifierHandler(settings.classifier_path)))
                  | "ScoreTables" >> beam.Map(_score_table))
        parts = (scored
                 | "ByShard" >> beam.GroupByKey()
                 | "WriteParts" >> beam.ParDo(_WritePartFn(settings)))
        _ = (parts
             | "AllParts" >> beam.combiners.ToList()  # one pair per row shard
             | "Commit" >> beam.Map(_commit, settings, self.kept))
        current = ((shards.kept, scored | "CurrentRows" >> beam.FlatMap(_current_rows))
                   | "Rows" >> beam.Flatten())
        grouped = (current
                   | "Detections" >> beam.FlatMap(_detections, settings)
                   | "ByClassAndStream" >> beam.GroupByKey()
                   | "InTimeOrder" >> beam.ParDo(_GroupFn(settings.event_gap_s))
                   .with_outputs("events", main="detections"))
        _ = (grouped.detections
             | "DetectionsParquet" >> beam.io.WriteToParquet(
                 f"{out}/detections.parquet", DETECTION_SCHEMA, num_shards=1,
                 shard_name_template=""))
        _ = (grouped.detections
             | "DetectionLines" >> beam.Map(csv_line, DETECTION_COLUMNS)
             | "DetectionsCsv" >> beam.io.WriteToText(
                 f"{out}/detections.csv", num_shards=1, shard_name_template="",
                 header=",".join(DETECTION_COLUMNS)))
        _ = (grouped.events
             | "EventLines" >> beam.Map(csv_line, EVENT_COLUMNS)
             | "EventsCsv" >> beam.io.WriteToText(
                 f"{out}/events.csv", num_shards=1, shard_name_template="",
                 header=",".join(EVENT_COLUMNS)))
