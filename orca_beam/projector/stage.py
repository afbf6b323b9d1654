"""The projector export as a Beam stage, in memory bounded by the points kept (``max_points``),
never by the rows: the steps of ``export.py`` spread over workers.

Input: a version's current manifest entries (file mode) or the names of row shards whose every
row is current (segments mode). The point sample is chosen from the key columns alone; only the
chosen rows' vectors, thumbnails and metadata are read, written to part files by the workers
that read them, then merged by point index. When
the rows' digest and the settings equal those of the files already in the output folder, nothing
past the digest is done.
"""

from __future__ import annotations

import logging

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from orca_beam.projector.export import (
    BLOCK_POINTS,
    assemble,
    assign_indices,
    export_settings,
    is_up_to_date,
    make_point,
    merge_candidates,
    parts_dir,
    read_chosen_rows,
    read_key_columns,
    scan_keys,
    write_part,
)
from orca_beam.store.digest import rows_digest

LOG = logging.getLogger(__name__)


class _ScanShardFn(beam.DoFn):
    def __init__(self, point: str, seed: int):
        self.point = point
        self.seed = seed

    def process(self, shard_sources, state):
        if not state["rebuild"]:
            return
        shard, sources = shard_sources
        keys = read_key_columns(shard, None if sources is None else set(sources))
        yield from scan_keys(keys, shard, self.point, self.seed)


class _WritePartsFn(beam.DoFn):
    """Points -> part files of up to BLOCK_POINTS points each (a bundle's buffer), so points
    go to storage where they are made and are never shuffled."""

    def __init__(self, out_dir: str, l2_normalize: bool):
        self.out_dir = out_dir
        self.l2_normalize = l2_normalize

    def start_bundle(self):
        self.buffer = []
        self.parts = None

    def _flush(self):
        descriptor = write_part(self.parts, self.buffer, l2_normalize=self.l2_normalize)
        self.buffer = []
        return descriptor

    def process(self, point, state):
        self.parts = parts_dir(self.out_dir, state["digest"])
        self.buffer.append(point)
        if len(self.buffer) >= BLOCK_POINTS:
            yield self._flush()

    def finish_bundle(self):
        if self.buffer:
            yield WindowedValue(self._flush(), GlobalWindow().max_timestamp(), [GlobalWindow()])


class ExportProjector(beam.PTransform):
    """One model's current rows -> its Embedding Projector files in ``out_dir``.

    Input: manifest entries (ENTRY_SCHEMA dicts, from ``store.reader.ReadEntries`` or a run's
    commit: the rows of each entry's source in each of its shards are current). Output:
    the summary dict (one element); ``{"skipped": True, ...}`` when the files already match
    these rows and settings, ``{"points": 0}`` when there are no rows."""

    def __init__(self, out_dir: str, name: str, export_kwargs: dict):
        super().__init__()
        self.out_dir = out_dir.rstrip("/")
        self.name = name
        self.kwargs = dict(export_kwargs)
        self.labels = self.kwargs.get("labels")
        self.settings = export_settings(**self.kwargs)

    def expand(self, items):
        out_dir, name, settings, labels = self.out_dir, self.name, self.settings, self.labels
        point, kwargs = settings["point"], self.kwargs
        digest = rows_digest(items, "ProjectorRows")
        per_shard = (items
                     | "ShardOfEachSource" >> beam.FlatMap(
                         lambda e: [(s, e["source"]) for s in e["shards"] or []]
                         if e["embeddings"] else [])
                     | "SourcesPerShard" >> beam.GroupByKey())

        def decide(digest_hex: str) -> dict:
            current = is_up_to_date(out_dir, digest_hex, settings)
            if current:
                LOG.info("projector %s: rows unchanged since the files in %s were written; "
                         "not rebuilt", name, out_dir)
            return {"digest": digest_hex, "rebuild": not current}

        state = beam.pvalue.AsSingleton(digest | "IsUpToDate" >> beam.Map(decide))
        candidates = per_shard | "ScanKeyColumns" >> beam.ParDo(
            _ScanShardFn(point, settings["seed"]), state)
        if point != "frame":
            candidates = (candidates | "KeyByPoint" >> beam.Map(lambda c: (c.group, c))
                          | "RowsOfPoint" >> beam.GroupByKey()
                          | "MergeRows" >> beam.MapTuple(merge_candidates))
        total = candidates | "CountPoints" >> beam.combiners.Count.Globally()
        chosen = candidates | "SmallestHashes" >> beam.combiners.Top.Smallest(
            settings["max_points"])
        rows = (chosen
                | "AssignIndices" >> beam.FlatMap(assign_indices)
                | "ChosenRowsPerShard" >> beam.GroupByKey()
                | "ReadChosenRows" >> beam.FlatMapTuple(
                    lambda shard, wanted: read_chosen_rows(shard, wanted,
                                                           settings["extra_columns"])))
        if point == "frame":
            points = rows | "FramePoints" >> beam.MapTuple(
                lambda i, row: make_point(i, [row], labels))
        else:
            points = (rows | "RowsPerPoint" >> beam.GroupByKey()
                      | "PooledPoints" >> beam.MapTuple(make_point, labels=labels))
        parts = points | "WriteParts" >> beam.ParDo(
            _WritePartsFn(out_dir, settings["l2_normalize"]), state)

        def finish(_, parts, total, state):
            if not state["rebuild"]:
                beam.metrics.Metrics.counter("orca_beam", f"projector_kept_{name}").inc()
                return {"name": name, "skipped": True, "rows_digest": state["digest"]}
            if not parts or not sum(p["kept"] for p in parts):
                LOG.warning("%s: no embeddings, no projector files", name)
                return {"name": name, "points": 0}
            summary = assemble(
                out_dir, parts_dir(out_dir, state["digest"]), parts, name, point=point,
                sampled_from=total if total > settings["max_points"] else None,
                l2_normalize=settings["l2_normalize"], tensor_format=kwargs.get(
                    "tensor_format", "tsv"), base_url=kwargs.get("base_url"),
                rows_digest=state["digest"], settings=settings)
            if summary["sampled_from"]:
                LOG.warning("%s: %d points over the projector's limit; kept a seeded sample of "
                            "%d", name, total, summary["points"])
            beam.metrics.Metrics.counter("orca_beam", f"projector_written_{name}").inc()
            LOG.info("projector %s: %d points x %d written to %s", name, summary["points"],
                     summary["dimension"], out_dir)
            return summary

        return (items.pipeline | "ProjectorPoint" >> beam.Create([None])
                | "JoinParts" >> beam.Map(finish, beam.pvalue.AsList(parts),
                                           beam.pvalue.AsSingleton(total), state))

