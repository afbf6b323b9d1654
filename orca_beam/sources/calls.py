"""Segments mode: annotation rows -> one pooled embedding per call (and per sampled negative).

``CutSegments`` -> ``EmbedWithModel`` (the same RunInference stage as file mode, with
``SegmentRowsFn`` turning each result into rows) -> ``WriteEmbeddings`` (``segments-*``);
``AccountSegments`` gives every annotation row and negative exactly one
:class:`~orca_beam.records.SegmentOutcome`.

Each file is decoded once (one streaming pass, every model rate) for all of its segments; only the
model windows of its segments are kept in memory, never the whole file.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import PredictionResult

from orca_beam.core import s3
from orca_beam.core.annotations import (
    CALL,
    EMBEDDED,
    FAILED,
    FILE_MISSING,
    NEGATIVE,
    PATH_OUTSIDE_ROOT,
    REJECTED,
    UNREADABLE_AUDIO,
    AnnotationRow,
    ColumnMapping,
    RowDecision,
    Segment,
    SegmentWindow,
    decide_rows,
    file_level_columns,
    plan_window,
    resolve_under_root,
    sample_negatives,
    zero_padded_samples,
)
from orca_beam.core.audio import AudioError, iter_resampled_blocks, probe_audio
from orca_beam.core.framing import Piece
from orca_beam.core.registry import ModelSpec
from orca_beam.features.thumbnails import join_in_time
from orca_beam.records import SegmentOutcome
from orca_beam.store.schema import annotation_field_names, segment_schema, segment_table
from orca_beam.tags import NAMESPACE

LOG = logging.getLogger(__name__)
OUTCOMES_TAG = "outcomes"
PLANNED_TAG = "planned"
POOLINGS = ("mean", "max", "frames")


@dataclass(frozen=True)
class SegmentTag:
    """Carried on a segment's Piece through inference: the segment and the window the model saw."""

    segment: Segment
    window_start_s: float
    window_end_s: float
    zero_padded_s: float

    @property
    def segment_id(self) -> str:
        """The segment's id (``row:<n>`` or ``neg:<file>:<k>``)."""
        return self.segment.segment_id


def group_by_file(rows: Sequence[AnnotationRow]) -> list[tuple[str, list[AnnotationRow]]]:
    """(file name, its rows) in first-seen order: the elements ``CutSegments`` takes."""
    groups: dict[str, list[AnnotationRow]] = {}
    for row in rows:
        groups.setdefault(row.file, []).append(row)
    return list(groups.items())


def _outcome(decision: RowDecision, source: str, duration_s: float | None,
             frames: dict | None = None) -> SegmentOutcome:
    row = decision.row
    end = None if row.start_s is None or row.duration_s is None else row.start_s + row.duration_s
    return SegmentOutcome(row.segment_id, row.row, CALL, row.file, source, decision.status,
                          decision.reason, decision.detail, row.start_s, end, duration_s, frames)


class _CutSegmentsFn(beam.DoFn):
    def __init__(self, specs: Sequence[ModelSpec], mapping: ColumnMapping, root: str,
                 channel: int | None, negatives: int, negative_s: float, seed: int):
        self.specs = list(specs)
        self.mapping = mapping
        self.root = root
        self.channel = channel
        self.negatives = negatives
        self.negative_s = negative_s
        self.seed = seed
        self.rejected = Metrics.counter(NAMESPACE, "segments_rejected")
        self.planned = Metrics.counter(NAMESPACE, "segments_planned")

    def setup(self):
        s3.install()

    def _reject_all(self, rows, source, reason, detail):
        self.rejected.inc(len(rows))
        for row in rows:
            yield beam.pvalue.TaggedOutput(OUTCOMES_TAG, _outcome(
                RowDecision(row, REJECTED, reason, detail), source, None))

    def process(self, element):
        name, rows = element
        path = resolve_under_root(self.root, name)
        if path is None:
            yield from self._reject_all(rows, "", PATH_OUTSIDE_ROOT,
                                        f"{name!r} is absolute or leaves the audio root; not read")
            return
        if not FileSystems.exists(path):
            yield from self._reject_all(rows, path, FILE_MISSING, f"{path} does not exist")
            return
        try:
            info = probe_audio(path, name=path)
        except AudioError as exc:
            yield from self._reject_all(rows, path, UNREADABLE_AUDIO,
                                        f"{type(exc).__name__}: {exc.detail}")
            return
        duration = info.duration_s
        decisions = decide_rows(rows, duration)
        segments = [Segment(d.row.segment_id, CALL, path, d.row.start_s,
                            d.row.start_s + d.row.duration_s, d.row.columns, d.row.row)
                    for d in decisions if d.status == EMBEDDED]
        calls = [(r.start_s, r.start_s + r.duration_s) for r in rows
                 if r.start_s is not None and r.duration_s]
        clear_s = max(spec.window_s for spec in self.specs)
        negative_columns = file_level_columns(rows, self.mapping)
        for k, (start, end) in enumerate(sample_negatives(
                calls, duration, self.negatives, self.negative_s, clear_s, self.seed, name)):
            segments.append(Segment(f"neg:{name}:{k}", NEGATIVE, path, start, end,
                                    negative_columns))
        try:
            windows, file_samples = self._cut(path, segments)
        except AudioError as exc:
            yield from self._reject_all(rows, path, UNREADABLE_AUDIO,
                                        f"{type(exc).__name__}: {exc.detail}")
            return
        for decision in decisions:
            if decision.status != EMBEDDED:
                if decision.status == REJECTED:
                    self.rejected.inc()
                yield beam.pvalue.TaggedOutput(OUTCOMES_TAG, _outcome(decision, path, duration))
        channel = -1 if self.channel is None else self.channel
        for segment in segments:
            frames = {}
            for spec in self.specs:
                window, samples = windows[(segment.segment_id, spec.name)]
                rate = spec.sample_rate_hz
                padded = zero_padded_samples(window, file_samples[rate])
                tag = SegmentTag(segment, window.start_sample / rate,
                                 (window.start_sample + window.num_samples) / rate, padded / rate)
                frames[spec.name] = window.num_frames
                yield beam.pvalue.TaggedOutput(spec.name, Piece(
                    path, spec.name, channel, 0, window.num_frames, window.start_sample, 0,
                    samples, file_samples[rate], True, tag))
            self.planned.inc()
            yield beam.pvalue.TaggedOutput(PLANNED_TAG, SegmentOutcome(
                segment.segment_id, segment.row, segment.kind, name, path, EMBEDDED, "", "",
                segment.start_s, segment.end_s, duration, frames))

    def _cut(self, path: str, segments: list[Segment]
             ) -> tuple[dict[tuple[str, str], tuple[SegmentWindow, np.ndarray]], dict[int, int]]:
        """Decodes ``path`` once and copies each segment's model windows out of the stream.
        Returns {(segment_id, model): (window, samples)} and {rate: decoded samples}."""
        windows = {}
        by_rate: dict[int, list[tuple[SegmentWindow, np.ndarray]]] = {}
        for segment in segments:
            for spec in self.specs:
                window = plan_window(spec, segment.start_s, segment.end_s)
                buffer = np.zeros(window.num_samples, np.float32)
                windows[(segment.segment_id, spec.name)] = (window, buffer)
                by_rate.setdefault(spec.sample_rate_hz, []).append((window, buffer))
        position = dict.fromkeys((spec.sample_rate_hz for spec in self.specs), 0)
        if not segments:
            return windows, position
        for blocks in iter_resampled_blocks(path, list(position), channel=self.channel,
                                            name=path):
            for rate, block in blocks.items():
                begin, end = position[rate], position[rate] + len(block)
                for window, buffer in by_rate.get(rate, []):
                    lo = max(begin, window.start_sample)
                    hi = min(end, window.start_sample + window.num_samples)
                    if lo < hi:
                        buffer[lo - window.start_sample:hi - window.start_sample] = \
                            block[lo - begin:hi - begin]
                position[rate] = end
        return windows, position


class CutSegments(beam.PTransform):
    """(file name, [AnnotationRow]) -> tagged outputs: one PCollection of Pieces per model name
    (one Piece per segment, ``tag`` = SegmentTag), ``planned`` (SegmentOutcome per segment sent to
    the models) and ``outcomes`` (final SegmentOutcome of rows that are rejected or ``no_call``)."""

    def __init__(self, specs: Sequence[ModelSpec], mapping: ColumnMapping, root: str, *,
                 channel: int | None = None, negatives: int = 0, negative_s: float = 3.0,
                 seed: int = 0):
        super().__init__()
        self.fn = _CutSegmentsFn(specs, mapping, root, channel, negatives, negative_s, seed)
        self.names = [spec.name for spec in specs]

    def expand(self, groups):
        return (groups | "SpreadFiles" >> beam.Reshuffle()
                | "DecodeAndCut" >> beam.ParDo(self.fn).with_outputs(
                    OUTCOMES_TAG, PLANNED_TAG, *self.names))


def pool(embeddings: np.ndarray, pooling: str) -> np.ndarray:
    """[n, dim] frame embeddings -> [1, dim] (mean or max over frames) or unchanged (frames)."""
    if pooling == "mean":
        return embeddings.mean(axis=0, keepdims=True, dtype=np.float64).astype(np.float32)
    if pooling == "max":
        return embeddings.max(axis=0, keepdims=True)
    if pooling == "frames":
        return embeddings
    raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")


class SegmentRowsFn(beam.DoFn):
    """RunInference results of segment Pieces -> pyarrow Tables in :func:`segment_schema` (main
    output) and ((segment_id, model), frames) on ``counts``."""

    def __init__(self, spec: ModelSpec, pooling: str, annotation_columns: list[str]):
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.spec = spec
        self.pooling = pooling
        self.annotation_columns = list(annotation_columns)
        self.field_names = annotation_field_names(self.annotation_columns)
        self.schema = segment_schema(spec.embedding_dim, self.annotation_columns)
        self.rows = Metrics.counter(NAMESPACE, f"segments_{spec.name}")

    def process(self, result: PredictionResult):
        piece: Piece = result.example
        tag: SegmentTag = piece.tag
        segment = tag.segment
        embeddings, thumbnails = result.inference
        version = result.model_id or ""
        vectors = pool(embeddings, self.pooling)
        count = embeddings.shape[0]
        if self.pooling == "frames":
            images = thumbnails
            starts = tag.window_start_s + np.arange(count) * self.spec.hop_s
            spans = [(float(s), float(s) + self.spec.window_s) for s in starts]
            indices = list(range(count))
        else:
            images = join_in_time(list(thumbnails))[None]
            spans = [(segment.start_s, segment.end_s)]
            indices = [-1]
        rows = []
        for (start, end), index in zip(spans, indices, strict=True):
            row = {
                "source": segment.source, "channel": piece.channel,
                "segment_id": segment.segment_id, "kind": segment.kind, "start_s": start,
                "end_s": end, "segment_start_s": segment.start_s, "segment_end_s": segment.end_s,
                "frame_index": index, "frames": count, "pooling": self.pooling,
                "window_start_s": tag.window_start_s, "window_end_s": tag.window_end_s,
                "zero_padded_s": tag.zero_padded_s, "model": self.spec.name,
                "model_version": version, "standin": version.endswith("+standin")}
            for column, field_name in zip(self.annotation_columns, self.field_names, strict=True):
                row[field_name] = segment.columns.get(column, "")
            rows.append(row)
        self.rows.inc()
        yield segment_table(self.schema, rows, vectors, images)
        yield beam.pvalue.TaggedOutput("counts", ((segment.segment_id, self.spec.name), count))


class _SettleSegmentFn(beam.DoFn):
    def __init__(self, models: Sequence[str]):
        self.models = list(models)

    def process(self, keyed):
        _, grouped = keyed
        planned: list[SegmentOutcome] = list(grouped["planned"])
        if not planned:
            return
        plan = planned[0]
        counts = dict(grouped["counts"])
        failures = list(grouped["failures"])
        frames = {m: counts.get(m, 0) for m in self.models}
        if failures:
            first = failures[0]
            yield SegmentOutcome(**{**plan.to_dict(), "status": FAILED, "frames": frames,
                                    "reason": f"inference_{first.model}",
                                    "detail": f"{first.error_class}: {first.error}"})
        elif frames != plan.frames:
            yield SegmentOutcome(**{**plan.to_dict(), "status": FAILED, "frames": frames,
                                    "reason": "row_count_mismatch",
                                    "detail": f"expected frames {plan.frames}"})
        else:
            yield plan


class AccountSegments(beam.PTransform):
    """Joins ``planned`` SegmentOutcomes, ``counts`` (((segment_id, model), frames)) and
    ``failures`` (Failure with segment_id) into the final outcome of every planned segment,
    flattened with the already final ``outcomes`` (rejected, no_call)."""

    def __init__(self, models: Sequence[str]):
        super().__init__()
        self.models = list(models)

    def expand(self, inputs):
        keyed = {
            "planned": inputs["planned"] | "KeyPlanned" >> beam.Map(lambda o: (o.segment_id, o)),
            "counts": inputs["counts"] | "KeyCounts" >> beam.Map(
                lambda kv: (kv[0][0], (kv[0][1], kv[1]))),
            "failures": inputs["failures"] | "KeyFailures" >> beam.Map(
                lambda f: (f.segment_id, f)),
        }
        settled = (keyed | "JoinBySegment" >> beam.CoGroupByKey()
                   | "DecideOutcome" >> beam.ParDo(_SettleSegmentFn(self.models)))
        return (settled, inputs["outcomes"]) | "AllSegmentOutcomes" >> beam.Flatten()
