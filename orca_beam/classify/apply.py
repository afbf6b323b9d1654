"""Applying a classifier to every current row of a version, in Beam (any runner): the scores as
a derived table (:mod:`orca_beam.store.derived`), the rows at or above each class's threshold
(``detections.parquet`` / ``.csv``) and those merged into events (``events.csv``).

The stages:

1. The version's entries, grouped by row shard (as the store's reader does), each shard with the
   sources its commit names there.
2. A shard the scores folder already has parts for (same classifier) is read from them; any
   other shard is read row group by row group (key columns and ``embedding``, read ahead in a
   thread) and scored in RunInference with
   :class:`~orca_beam.classify.handler.LinearClassifierHandler`. Each row group's scores (every
   row of it) are appended to the shard's part as they come; only the detections among the rows
   of current sources go on.
3. Per class, the current rows at or above the threshold are detections. They are grouped by
   class and stream (an HLS folder; a file's rows by source), sorted by time, and merged into
   events: a detection starting at most ``event_gap_s`` after the event's end joins it.
4. The three detection files are written as runner-chosen shards and joined into one file each
   (:func:`concatenate`); the commit names the parts (new and kept), and parts no longer named
   are deleted.

Memory: a worker holds two row groups (one read ahead), or the detections of one class in one
stream or file; the commit gathers one (shard, part) pair per shard and bundle (measured: peak
RSS 348 MiB at 1M rows and at 10M).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

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
from orca_beam.core.prefetch import prefetched
from orca_beam.store.derived import commit_derived, iter_part_batches, part_path, plan_derived
from orca_beam.store.reader import ReadEntries
from orca_beam.store.schema import UTC_TIMESTAMP
from orca_beam.store.version import VERSION_NAME, read_json
from orca_beam.tags import NAMESPACE

KEY_COLUMNS = ["source", "stream", "start_s", "end_s", "start_utc"]
UTC_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Row groups read ahead in a background thread while the previous one is scored and written
#: (Parquet reading releases the GIL): reading overlaps the rest, on a second core.
READ_AHEAD = 2
#: Default --event_gap_s: detections of one class in one stream at most this far apart
#: (seconds, from one's end to the next's start) are one event.
DEFAULT_EVENT_GAP_S = 5.0
#: Where the detection files' shards are written before :func:`concatenate` joins them.
WRITING_DIR = "_writing"
#: Class-and-stream groups of detections per Parquet row group of detections.parquet (memory:
#: that many groups' records).
GROUPS_PER_TABLE = 256
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
        model = LinearClassifier.from_dict(json.loads(data.decode()))
        target = read_json(f"{version.rstrip('/')}/{VERSION_NAME}")
        refuse_another_version(classifier_path, model, target["version_id"],
                               f"{target['label']} in {version}")
        return ApplySettings(classifier_path, hashlib.sha256(data).hexdigest(),
                             tuple(model.classes), tuple(float(t) for t in model.thresholds),
                             version, output.rstrip("/"), event_gap_s)

    def derived_settings(self) -> dict:
        """What the scores' commit records about how they were made."""
        return {"classifier": self.classifier_path, "classes": list(self.classes),
                "thresholds": dict(zip(self.classes, self.thresholds, strict=True))}


def refuse_another_version(path: str, model: LinearClassifier, version_id: str, what: str
                           ) -> None:
    """UsageError (one line) when the classifier at ``path`` was trained on an embedding version
    other than ``version_id`` (``what``: that version, for the message)."""
    trained_on = model.meta.get("embedding", {})
    if trained_on.get("version_id") != version_id:
        raise UsageError(
            f"{path} was trained on embedding version {trained_on.get('version_id')} "
            f"({trained_on.get('model_version')}), not {version_id} ({what}): train it on "
            "these rows")


class _ShardFn(beam.DoFn):
    """(row shard, its current sources) -> the detections of a kept shard's current scores (main
    output), or ((shard, row group), record batch of every row with a ``current`` column) to
    score (``to_score``). Only detections leave the stage: on a batch runner whatever crosses a
    stage boundary is held until the next stage runs."""

    def __init__(self, kept: dict[str, list[str]], to_score: set[str], settings: ApplySettings):
        self.kept, self.to_score, self.settings = kept, to_score, settings
        self.shards_kept = Metrics.counter(NAMESPACE, "score_shards_kept")
        self.rows_kept = Metrics.counter(NAMESPACE, "score_rows_kept")

    def setup(self):
        s3.install()

    def process(self, keyed):
        shard, sources = keyed
        sources = set(sources)
        if shard in self.kept:
            self.shards_kept.inc()
            for records in iter_part_batches(self.kept[shard], sources):
                self.rows_kept.inc(records.num_rows)
                yield from _detections(pa.Table.from_batches([records]), self.settings)
        elif shard in self.to_score:
            for group, records in prefetched(lambda: _row_groups(shard, sources), READ_AHEAD):
                yield beam.pvalue.TaggedOutput("to_score", ((shard, group), records))


def _row_groups(shard: str, sources: set[str]) -> Iterator[tuple[int, pa.RecordBatch]]:
    """(index, record batch of the key columns, ``embedding`` and ``current``: whether the row's
    source is one the commit names here) of each row group of a row shard. Runs in the read-ahead
    thread (Parquet and Arrow compute release the GIL). Batches of 4 row groups were measured no
    faster (5.2 s for 3M rows either way) and held more memory (425 against 345 MiB)."""
    current = pa.array(sorted(sources), pa.string())
    with FileSystems.open(shard) as handle:
        parquet = pq.ParquetFile(handle)
        for group in range(parquet.num_row_groups):
            table = parquet.read_row_group(group, columns=[*KEY_COLUMNS, "embedding"])
            table = table.append_column(
                "current", pc.is_in(table.column("source"), value_set=current))
            for records in table.combine_chunks().to_batches():
                yield group, records


class _ScoredFn(beam.DoFn):
    """((shard, row group), PredictionResult) -> appends the rows' key columns and scores to the
    shard's part (one part per shard and bundle: the row groups of a shard arrive one after
    another) and yields the detections of its current rows; each part's (shard, path) goes to
    ``parts`` when it is opened (a bundle that fails is retried whole, and its outputs with
    it)."""

    def __init__(self, settings: ApplySettings):
        self.settings = settings
        self.rows = Metrics.counter(NAMESPACE, "score_rows_scored")
        self.part = None

    def setup(self):
        s3.install()

    def start_bundle(self):
        self.part = None

    def _close(self) -> None:
        if self.part is not None:
            _, handle, writer = self.part
            writer.close()
            handle.close()
            self.part = None

    def process(self, keyed):
        (shard, group), result = keyed
        records, scores = result.example, result.inference
        if self.part is None or self.part[0] != shard:
            self._close()
            path = part_path(self.settings.output, self.settings.classifier_sha256, shard,
                             group)
            handle = FileSystems.create(path)
            # no dictionary pages: 3x faster to write (0.14 s against 0.47 s per 1M rows)
            self.part = (shard, handle, pq.ParquetWriter(handle, scores_schema(),
                                                         use_dictionary=False))
            yield beam.pvalue.TaggedOutput("parts", (shard, path))
        keys = pa.Table.from_batches([records]).select(KEY_COLUMNS)
        flat = pa.array(np.ascontiguousarray(scores, np.float32).ravel())
        offsets = pa.array(np.arange(0, len(flat) + 1, scores.shape[1], dtype=np.int32))
        self.part[2].write_table(
            keys.append_column("scores", pa.ListArray.from_arrays(offsets, flat))
            .cast(scores_schema()))
        self.rows.inc(records.num_rows)
        current = np.asarray(records.column(records.schema.get_field_index("current")))
        yield from _detections_of(keys, scores, current, self.settings)

    def finish_bundle(self):
        self._close()

    def teardown(self):
        self._close()


def _detections(table: pa.Table, settings: ApplySettings
                ) -> Iterator[tuple[tuple, list[tuple]]]:
    """:func:`_detections_of` every row of a score table (a part's rows)."""
    column = table.column("scores").combine_chunks()
    scores = np.asarray(column.flatten(), np.float32).reshape(len(column), -1)
    yield from _detections_of(table, scores, None, settings)


def _detections_of(keys: pa.Table, scores: np.ndarray, current: np.ndarray | None,
                   settings: ApplySettings) -> Iterator[tuple[tuple, list[tuple]]]:
    """The detections among rows with key columns ``keys``, scores [rows, C] and (None: all)
    ``current`` mask, as ((class, stream or source), [(score, source, stream, start_s, end_s,
    start_utc as UTC microseconds), ...]): one element per key and batch (Beam's cost is per
    element: 80 us a detection, measured, when each was one), of plain tuples (a batch runner
    holds every detection until it groups them)."""
    over = np.asarray(scores, np.float32) >= np.asarray(settings.thresholds, np.float32)
    if current is not None:
        over &= current[:, None]
    rows, classes = np.nonzero(over)
    if not len(rows):
        return
    found = keys.select(KEY_COLUMNS).take(pa.array(rows))
    # start_utc as integer microseconds: a datetime pickles to about 4x the bytes
    columns = [found.column(c).to_pylist() for c in KEY_COLUMNS[:-1]]
    columns.append(found.column("start_utc").cast(pa.int64()).to_pylist())
    grouped: dict[tuple, list[tuple]] = {}
    for values, row, c in zip(zip(*columns, strict=True), rows, classes, strict=True):
        source, stream = values[0], values[1]
        grouped.setdefault((settings.classes[c], stream or source), []).append(
            (float(scores[row, c]), *values))
    yield from grouped.items()


def detection_dict(name: str, value: tuple) -> dict:
    """A detection's record (DETECTION_COLUMNS) from its class and grouped tuple."""
    score, source, stream, start_s, end_s, start_us = value
    start_utc = None if start_us is None else UTC_EPOCH + timedelta(microseconds=start_us)
    return {"class": name, "score": score, "source": source, "stream": stream,
            "start_s": start_s, "end_s": end_s, "start_utc": start_utc,
            "review_url": bout_url(stream, start_utc)}


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
    """(class, stream) and its lists of detections -> the detections in time order, as one list
    of records (main output) and one block of CSV lines (``csv``), and the events' block of CSV
    lines (``events``): one element each per class and stream, not one per detection."""

    def __init__(self, gap_s: float):
        self.gap_s = gap_s
        self.detections = Metrics.counter(NAMESPACE, "detections")
        self.events = Metrics.counter(NAMESPACE, "events")

    def process(self, keyed):
        (name, _), lists = keyed
        detections = sorted((detection_dict(name, v) for values in lists for v in values),
                            key=lambda d: (d["start_s"], d["end_s"]))
        self.detections.inc(len(detections))
        Metrics.counter(NAMESPACE, f"detections_{name}").inc(len(detections))
        yield detections
        yield beam.pvalue.TaggedOutput(
            "csv", "\n".join(csv_line(d, DETECTION_COLUMNS) for d in detections))
        events = merge_events(detections, self.gap_s)
        self.events.inc(len(events))
        yield beam.pvalue.TaggedOutput(
            "events", "\n".join(csv_line(e, EVENT_COLUMNS) for e in events))


def _detection_table(groups: list[list[dict]]) -> pa.Table:
    """Some groups' detections as one table (one Parquet row group)."""
    return pa.Table.from_pylist([d for group in groups for d in group], schema=DETECTION_SCHEMA)


def csv_line(record: dict, columns: list[str]) -> str:
    """One CSV line (no newline) of ``record``'s ``columns``; datetimes as ISO 8601 UTC."""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(
        ["" if record[c] is None else record[c].isoformat() if hasattr(record[c], "isoformat")
         else record[c] for c in columns])
    return out.getvalue()


def _commit(pairs: list[tuple[str, str]], settings: ApplySettings,
            kept: dict[str, list[str]]) -> dict:
    parts = {shard: list(paths) for shard, paths in kept.items()}
    for shard, path in pairs:
        parts.setdefault(shard, []).append(path)
    run = {"shards_scored": len({shard for shard, _ in pairs}), "shards_kept": len(kept),
           "parts_written": len(pairs)}
    deleted = commit_derived(settings.output, settings.version, settings.classifier_sha256,
                             settings.derived_settings(), parts, run)
    return {**run, "parts": sum(len(p) for p in parts.values()), "parts_deleted": len(deleted)}


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
                  | "ReadShards" >> beam.ParDo(_ShardFn(self.kept, set(self.to_score), settings))
                  .with_outputs("to_score", main="kept"))
        scored = (shards.to_score
                  | "Score" >> RunInference(KeyedModelHandler(
                      LinearClassifierHandler(settings.classifier_path)))
                  | "WriteParts" >> beam.ParDo(_ScoredFn(settings)).with_outputs(
                      "parts", main="detections"))
        _ = (scored.parts
             | "AllParts" >> beam.combiners.ToList()  # one pair per row group
             | "Commit" >> beam.Map(_commit, settings, self.kept))
        grouped = ((shards.kept, scored.detections)
                   | "Detections" >> beam.Flatten()
                   | "ByClassAndStream" >> beam.GroupByKey()
                   | "InTimeOrder" >> beam.ParDo(_GroupFn(settings.event_gap_s))
                   .with_outputs("csv", "events", main="detections"))
        written = {}
        written["parquet"] = (
            grouped.detections
            | "GroupsOfGroups" >> beam.BatchElements(min_batch_size=GROUPS_PER_TABLE,
                                                     max_batch_size=GROUPS_PER_TABLE)
            | "DetectionTables" >> beam.Map(_detection_table)
            | "DetectionsParquet" >> beam.io.WriteToParquetBatched(
                f"{out}/{WRITING_DIR}/detections", DETECTION_SCHEMA,
                file_name_suffix=".parquet"))
        written["csv"] = (grouped.csv | "DetectionsCsv" >> beam.io.WriteToText(
            f"{out}/{WRITING_DIR}/detections", file_name_suffix=".csv"))
        written["events"] = (grouped.events | "EventsCsv" >> beam.io.WriteToText(
            f"{out}/{WRITING_DIR}/events", file_name_suffix=".csv"))
        for kind, target, header in (
                ("parquet", "detections.parquet", None),
                ("csv", "detections.csv", ",".join(DETECTION_COLUMNS)),
                ("events", "events.csv", ",".join(EVENT_COLUMNS))):
            _ = (written[kind]
                 | f"{kind}Shards" >> beam.combiners.ToList()  # file names: a few per worker
                 | f"{kind}One" >> beam.Map(concatenate, f"{out}/{target}", header))


def concatenate(shards: list[str], target: str, header: str | None) -> str:
    """Writes the shards a sink wrote (runner-chosen count: no grouping of their records first)
    as one file ``target``, then deletes them: CSV bytes copied after one ``header`` line,
    Parquet row group by row group (``header`` None; no shards: an empty table). Memory: one
    row group or 1 MB."""
    shards = sorted(shards)
    if header is None:
        with FileSystems.create(target) as handle, pq.ParquetWriter(
                handle, DETECTION_SCHEMA) as writer:
            if not shards:
                writer.write_table(DETECTION_SCHEMA.empty_table())
            for shard in shards:
                with FileSystems.open(shard) as source:
                    parquet = pq.ParquetFile(source)
                    for group in range(parquet.num_row_groups):
                        writer.write_table(parquet.read_row_group(group))
    else:
        with FileSystems.create(target) as handle:
            handle.write((header + "\n").encode())
            for shard in shards:
                with FileSystems.open(shard) as source:
                    while chunk := source.read(1 << 20):
                        handle.write(chunk)
    if shards:
        FileSystems.delete(shards)
    return target
