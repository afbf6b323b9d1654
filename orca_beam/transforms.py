"""The named PTransforms that wire the stages, top to bottom:

(``incremental.MatchFiles`` -> ``incremental.PlanSources`` ->) ``DecodeAndFrame`` ->
``EmbedWithModel`` (one per model) -> ``WriteEmbeddings`` and ``AccountOutcomes`` ->
``WriteOutcomes`` (-> ``incremental.WriteManifest`` -> ``projector.stage.ExportProjector``).

Decoding and framing are one DoFn on purpose: each file is decoded and resampled in bounded blocks
and cut into pieces as the blocks arrive. Splitting the two across a Beam boundary would need a
per-file GroupByKey holding the whole file in memory.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Sequence

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import PredictionResult, RunInference
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from orca_beam.audio import DECODE_BLOCK_S, AudioError, iter_resampled_blocks, validate_audio
from orca_beam.file_times import FILE_NAME, FileTimeError, file_start_utc
from orca_beam.framing import (
    Chunker,
    Owner,
    Piece,
    Place,
    default_chunk_frames,
    frame_times_s,
    num_frames,
)
from orca_beam.inference import OrcaModelHandler
from orca_beam.models.registry import ModelSpec
from orca_beam.prefetch import DECODE_NICENESS, prefetched
from orca_beam.progress import Progress
from orca_beam.records import Failure, FileRecord, Outcome, SourceState
from orca_beam.statuses import EMBEDDED, EMPTY, FAILED, NOT_IN_PLAYLIST, TOO_SHORT, UNREADABLE
from orca_beam.store.fingerprint import COMPARED_NEW, fingerprint
from orca_beam.store.schema import embedding_schema, embedding_table
from orca_beam.store.sinks import WriteParquetShards
from orca_beam.tags import FAILURES_TAG, FILES_TAG, NAMESPACE, SOURCES_TAG

LOG = logging.getLogger(__name__)
#: Files up to this size are read into memory once; larger ones are streamed (a codec that can
#: fail part-way is read twice: validate, then decode), so memory never holds a whole recording.
IN_MEMORY_MAX_BYTES = 256 * 1024 * 1024
#: Decoded blocks (``audio.DECODE_BLOCK_S`` each) a long file's decoder may run ahead of the
#: model: more than one packed call's worth (60 s), so decoding overlaps the call.
PREFETCH_BLOCKS = 8
#: Embedding rows gathered into one table (one Parquet row group) before it is written.
TABLE_ROWS = 4096


class _DecodeAndFrameFn(beam.DoFn):
    def __init__(self, specs: Sequence[ModelSpec], chunk_s: float, channel: int | None,
                 file_time: tuple[str, str] | None = None, progress_interval_s: float = 30.0):
        self.all_specs = list(specs)
        self.chunk_s = chunk_s
        self.channel = channel
        self.file_time = file_time
        self.progress_interval_s = progress_interval_s
        self.files = Metrics.counter(NAMESPACE, "files_decoded")
        self.failed = Metrics.counter(NAMESPACE, "files_failed_decoding")
        self.audio_ms = Metrics.counter(NAMESPACE, "audio_ms_decoded")

    def setup(self):
        Progress.configure(self.progress_interval_s)

    def process(self, item):
        path, size = item.path, item.size_bytes
        wanted = getattr(item, "models", None)
        specs = [spec for spec in self.all_specs if not wanted or spec.name in wanted]
        try:
            if size <= IN_MEMORY_MAX_BYTES:
                with FileSystems.open(path) as handle:
                    data = handle.read()
            else:
                data = None
            print_ = getattr(item, "fingerprint", "") or fingerprint(path, data)
        except Exception:  # noqa: BLE001 - unreadable: decoding below records the failure
            LOG.exception("could not read %s", path)
            data, print_ = None, ""
        models = tuple(spec.name for spec in specs)
        yield beam.pvalue.TaggedOutput(SOURCES_TAG, SourceState(
            path, size, print_, models, getattr(item, "mtime_s", None),
            getattr(item, "compared", "") or COMPARED_NEW))
        record = dict(size_bytes=size, fingerprint=print_, models=models)
        try:
            if data is not None:
                def open_source():
                    return data
            else:
                def open_source():
                    return FileSystems.open(path)
            place, clock = None, {}
            if self.file_time:
                started = file_start_utc(path, *self.file_time)
                place = Place(None, (Owner(0, path, 0.0, started.timestamp(), FILE_NAME),))
                clock = dict(start_utc=started.isoformat(), time_source=FILE_NAME)
            info = validate_audio(open_source(), channel=self.channel, name=path)
            chunkers = {spec.name: Chunker(
                spec, path, channel=-1 if self.channel is None else self.channel,
                chunk_frames=default_chunk_frames(spec, self.chunk_s)) for spec in specs}
            rates = {spec.sample_rate_hz for spec in specs}
            first_rate = min(rates)
            # a long file is decoded in a low-priority background thread while this one runs
            # the model on its earlier blocks (a short one here: a thread would cost more)
            depth = PREFETCH_BLOCKS if info.duration_s > 2 * DECODE_BLOCK_S else 0
            for blocks in prefetched(lambda: iter_resampled_blocks(
                    open_source(), rates, channel=self.channel, name=path), depth,
                    niceness=DECODE_NICENESS):
                Progress.add(audio_s=len(blocks[first_rate]) / first_rate)
                for spec in specs:
                    for piece in chunkers[spec.name].push(blocks[spec.sample_rate_hz]):
                        piece.place = place
                        yield beam.pvalue.TaggedOutput(spec.name, piece)
            for spec in specs:
                for piece in chunkers[spec.name].finish():
                    piece.place = place
                    yield beam.pvalue.TaggedOutput(spec.name, piece)
        except Exception as exc:  # noqa: BLE001 - one bad file never stops the run: a Failure row
            if not isinstance(exc, AudioError | FileTimeError):
                LOG.exception("unexpected error decoding %s", path)
            self.failed.inc()
            Progress.add(failed=1)
            yield beam.pvalue.TaggedOutput(FAILURES_TAG, Failure(
                path, "", "decode", type(exc).__name__, getattr(exc, "detail", str(exc))))
            yield beam.pvalue.TaggedOutput(FILES_TAG, FileRecord(
                path, None, None, None, -1 if self.channel is None else self.channel, {},
                **record))
            return
        expected = {spec.name: num_frames(spec, chunkers[spec.name].total_samples)
                    for spec in specs}
        self.files.inc()
        self.audio_ms.inc(int(info.duration_s * 1000))
        Progress.add(files=1)
        yield beam.pvalue.TaggedOutput(FILES_TAG, FileRecord(
            path, info.duration_s, info.sample_rate_hz, info.channels,
            -1 if self.channel is None else self.channel, expected, **record, **clock))


class DecodeAndFrame(beam.PTransform):
    """Files to decode (``incremental.WorkItem``: path, size, the models to embed it with;
    or ``MatchedFile``: every model) -> tagged outputs: one PCollection of Pieces per model
    name, ``files`` (FileRecord per file), ``failures`` (Failure per file that could not be
    decoded) and ``sources`` (SourceState per file: size, fingerprint, mtime, models).

    ``file_time``: (``strptime`` format, zone) of the recording time in the file names
    (``--file_time_format`` / ``--file_time_zone``): rows then carry ``start_utc``; a name that
    does not match fails the file (FileTimeError). Each file is read once (files over
    ``IN_MEMORY_MAX_BYTES`` are streamed), fingerprinted
    from those bytes when the plan did not already, decoded once and resampled once per
    distinct model rate, in bounded blocks.
    """

    def __init__(self, specs: Sequence[ModelSpec], *, chunk_s: float = 60.0,
                 channel: int | None = None, file_time: tuple[str, str] | None = None,
                 progress_interval_s: float = 30.0):
        super().__init__()
        self.specs = list(specs)
        self.chunk_s = chunk_s
        self.channel = channel
        self.file_time = file_time
        self.progress_interval_s = progress_interval_s

    def expand(self, files):
        return files | "DecodeResampleCut" >> beam.ParDo(
            _DecodeAndFrameFn(self.specs, self.chunk_s, self.channel, self.file_time,
                              self.progress_interval_s)).with_outputs(
                SOURCES_TAG, FILES_TAG, FAILURES_TAG, *[spec.name for spec in self.specs])


class _ToTableFn(beam.DoFn):
    """Inference results -> embedding rows, gathered into tables of about ``TABLE_ROWS`` rows
    (one Parquet row group each, instead of one per piece)."""

    def __init__(self, spec: ModelSpec, progress_interval_s: float = 30.0):
        self.spec = spec
        self.progress_interval_s = progress_interval_s
        self.rows = Metrics.counter(NAMESPACE, f"embeddings_{spec.name}")

    def setup(self):
        Progress.configure(self.progress_interval_s)

    def start_bundle(self):
        self.pending: list = []
        self.pending_rows = 0

    def _take_pending(self):
        table = pa.concat_tables(self.pending)
        self.pending, self.pending_rows = [], 0
        return table

    def finish_bundle(self):
        if self.pending:
            yield WindowedValue(self._take_pending(), GlobalWindow().max_timestamp(),
                                [GlobalWindow()])

    def process(self, result: PredictionResult):
        piece: Piece = result.example
        embeddings, thumbnails = result.inference
        start_s, end_s = frame_times_s(self.spec, piece.first_frame, embeddings.shape[0],
                                       piece.file_samples)
        version = result.model_id or ""
        count = embeddings.shape[0]
        self.rows.inc(count)
        Progress.add(**{f"emb_{self.spec.name}": count})
        where = dict(source=piece.source)
        if piece.place is not None:
            owners = piece.place.row_owners(piece.first_frame, count)
            where = dict(source=[o.source for o in owners], stream=piece.place.stream,
                         start_utc_s=Place.row_times_utc_s(owners, start_s),
                         time_source=[o.time_source for o in owners])
        self.pending.append(embedding_table(
            channel=piece.channel, start_s=start_s, end_s=end_s,
            model=self.spec.name, model_version=version, standin=version.endswith("+standin"),
            embeddings=embeddings, thumbnails=thumbnails, **where))
        self.pending_rows += count
        if self.pending_rows >= TABLE_ROWS:
            yield self._take_pending()
        per_source = Counter(where["source"]) if piece.place is not None else {piece.source: count}
        for source, rows in per_source.items():
            yield beam.pvalue.TaggedOutput("counts", ((source, self.spec.name), rows))


def _failed_batch_to_failures(model: str):
    def expand(failed) -> Iterable[Failure]:
        batch, exc = failed
        error = exc[1] if isinstance(exc, tuple) else exc
        for piece in batch:
            sources = ([owner.source for owner in piece.place.owners] if piece.place is not None
                       else [piece.source])
            for source in dict.fromkeys(sources):
                yield Failure(source, model, "inference", type(error).__name__, str(error),
                              getattr(piece.tag, "segment_id", ""))
    return expand


class EmbedWithModel(beam.PTransform):
    """Pieces of one model -> RunInference -> tagged outputs: ``tables`` (pyarrow Tables of
    embedding rows), ``counts`` (((source, model), rows)) and ``failures`` (Failure per piece
    whose batch raised). ``to_rows`` replaces the DoFn that turns results into tables and counts
    (segments mode passes ``SegmentRowsFn``). ``expected_sha256``: the model content the
    launcher resolved; a worker that finds other content fails instead of mixing two models in
    one version."""

    def __init__(self, spec: ModelSpec, handle: str, *, pack_s: float, batch_windows: int,
                 to_rows: beam.DoFn | None = None, expected_sha256: str | None = None,
                 progress_interval_s: float = 30.0):
        super().__init__()
        self.spec = spec
        self.handle = handle
        self.expected_sha256 = expected_sha256
        self.pack_s = pack_s
        self.batch_windows = batch_windows
        self.to_rows = to_rows or _ToTableFn(spec, progress_interval_s)

    def expand(self, pieces):
        handler = OrcaModelHandler(self.spec, self.handle, expected_sha256=self.expected_sha256,
                                   pack_s=self.pack_s, batch_windows=self.batch_windows)
        main, dead = pieces | "RunInference" >> RunInference(handler).with_exception_handling()
        tables = main | "ToRows" >> beam.ParDo(self.to_rows).with_outputs(
            "counts", main="tables")
        failures = dead.failed_inferences | "FailedBatches" >> beam.FlatMap(
            _failed_batch_to_failures(self.spec.name))
        return {"tables": tables.tables, "counts": tables.counts, "failures": failures}


class WriteEmbeddings(beam.PTransform):
    """pyarrow Tables of one model -> ``<folder>/<file_prefix>-SSSSS-of-NNNNN.parquet`` shards of
    at most ``sinks.MAX_SHARD_BYTES`` each; the output is the written shard names. ``schema``
    default: :func:`embedding_schema`; segments
    mode writes ``segments-*`` in ``segment_schema``."""

    def __init__(self, folder: str, spec: ModelSpec, *, schema=None,
                 file_prefix: str = "embeddings"):
        super().__init__()
        self.prefix = folder.rstrip("/") + f"/{file_prefix}"
        self.schema = schema if schema is not None else embedding_schema(spec.embedding_dim)

    def expand(self, tables):
        return tables | "WriteParquet" >> WriteParquetShards(self.prefix, self.schema)


class _OutcomesFn(beam.DoFn):
    def __init__(self, models: Sequence[str], labels=None):
        self.models = list(models)
        self.labels = labels

    def process(self, keyed):
        source, grouped = keyed
        records: list[FileRecord] = list(grouped["files"])
        failures: list[Failure] = list(grouped["failures"])
        counts: dict[str, int] = {}
        for model, rows in grouped["counts"]:
            counts[model] = counts.get(model, 0) + rows
        record = records[0] if records else None
        base = dict(duration_s=record.duration_s if record else None,
                    sample_rate_hz=record.sample_rate_hz if record else None,
                    channels=record.channels if record else None,
                    size_bytes=record.size_bytes if record else None,
                    fingerprint=record.fingerprint if record else "")
        if record is not None:
            base.update(stream=record.stream or None, start_utc=record.start_utc,
                        time_source=record.time_source)
        if self.labels is not None:
            base["labels"] = self.labels.as_dict(source)
        segment = record is not None and bool(record.stream)
        models = list(record.models) if record and record.models else self.models
        for model in models:
            failure = next((f for f in failures if f.model in ("", model)), None)
            written = counts.get(model, 0)
            if failure is not None:
                status = UNREADABLE if segment and failure.stage == "decode" else FAILED
                yield Outcome(source, model, status, written, **base,
                              error_class=failure.error_class, error=failure.error)
            elif record is None or record.duration_s is None:
                yield Outcome(source, model, FAILED, written, **base,
                              error_class="MissingRecord", error="file was never decoded")
            elif not segment and record.expected[model] == 0:
                yield Outcome(source, model, TOO_SHORT, 0, **base,
                              error=f"{record.duration_s:.3f} s is shorter than one window")
            elif written != record.expected[model]:
                yield Outcome(source, model, FAILED, written, **base,
                              error_class="RowCountMismatch",
                              error=f"{written} rows written, {record.expected[model]} expected")
            elif segment:
                # a segment owns the windows that end in it; a short one may own none (its
                # audio is in the next segment's windows)
                status = (EMPTY if record.duration_s == 0 else
                          EMBEDDED if record.in_playlist else NOT_IN_PLAYLIST)
                yield Outcome(source, model, status, written, **base)
            else:
                yield Outcome(source, model, EMBEDDED, written, **base)


class AccountOutcomes(beam.PTransform):
    """Joins decode records, row counts and failures into exactly one Outcome per (file, model).

    Input: a dict with ``files`` (FileRecord), ``failures`` (Failure) and ``counts``
    (((source, model), rows)). ``labels``: a LabelTable whose columns each outcome carries.
    """

    def __init__(self, models: Sequence[str], labels=None):
        super().__init__()
        self.models = list(models)
        self.labels = labels

    def expand(self, inputs):
        keyed = {
            "files": inputs["files"] | "KeyFiles" >> beam.Map(lambda r: (r.source, r)),
            "failures": inputs["failures"] | "KeyFailures" >> beam.Map(lambda f: (f.source, f)),
            "counts": inputs["counts"] | "SumRows" >> beam.CombinePerKey(sum)
            | "KeyCounts" >> beam.Map(lambda kv: (kv[0][0], (kv[0][1], kv[1]))),
        }
        return (keyed | "JoinBySource" >> beam.CoGroupByKey()
                | "DecideOutcome" >> beam.ParDo(_OutcomesFn(self.models, self.labels)))


def _is_failed(outcome) -> bool:
    return outcome.status == FAILED


class WriteOutcomes(beam.PTransform):
    """Outcomes (anything with ``to_dict`` and ``status``) -> JSON lines in
    ``<output>/<outcomes_dir>/outcomes-*.jsonl``; those ``is_error`` picks (default: failed) also
    to ``<output>/<errors_dir>/errors-*.jsonl``."""

    def __init__(self, output_dir: str, *, outcomes_dir: str = "outcomes",
                 errors_dir: str = "errors", is_error=_is_failed):
        super().__init__()
        self.output_dir = output_dir.rstrip("/")
        self.outcomes_dir = outcomes_dir
        self.errors_dir = errors_dir
        self.is_error = is_error

    def expand(self, outcomes):
        lines = outcomes | "OutcomeJson" >> beam.Map(lambda o: json.dumps(o.to_dict()))
        written = lines | "WriteOutcomeLines" >> beam.io.WriteToText(
            f"{self.output_dir}/{self.outcomes_dir}/outcomes", file_name_suffix=".jsonl")
        errors = (outcomes | "OnlyErrors" >> beam.Filter(self.is_error)
                  | "ErrorJson" >> beam.Map(lambda o: json.dumps(o.to_dict()))
                  | "WriteErrorLines" >> beam.io.WriteToText(
                      f"{self.output_dir}/{self.errors_dir}/errors", file_name_suffix=".jsonl"))
        return {"outcomes": written, "errors": errors}
