"""The named PTransforms that wire the stages, top to bottom:

(``incremental.MatchFiles`` -> ``incremental.PlanSources`` ->) ``DecodeAndFrame`` ->
``EmbedWithModel`` (one per model) -> ``WriteEmbeddings`` and ``AccountOutcomes`` ->
``WriteOutcomes`` (-> ``incremental.WriteManifest`` -> ``projector.stage.ExportProjector``).

Decoding and framing are one DoFn on purpose: each file is decoded and resampled in bounded blocks
and cut into pieces as the blocks arrive. Splitting the two across a Beam boundary would need a
per-file GroupByKey holding the whole file in memory.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import PredictionResult, RunInference
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from orca_beam.core.framing import (
    Piece,
    Place,
    frame_times_s,
)
from orca_beam.core.registry import ModelSpec
from orca_beam.models.inference import OrcaModelHandler
from orca_beam.progress import Progress
from orca_beam.records import Failure
from orca_beam.store.schema import embedding_schema, embedding_table
from orca_beam.store.sinks import WriteParquetShards
from orca_beam.tags import NAMESPACE

LOG = logging.getLogger(__name__)
#: Embedding rows gathered into one table (one Parquet row group) before it is written.
TABLE_ROWS = 4096






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
                                       piece.file_samples, piece.shift_samples)
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
    mode writes ``segments-*`` in ``segment_schema``. ``in_process``: the sink's light write
    (``sinks.write_files``)."""

    def __init__(self, folder: str, spec: ModelSpec, *, schema=None,
                 file_prefix: str = "embeddings", in_process: bool = False):
        super().__init__()
        self.in_process = in_process
        self.prefix = folder.rstrip("/") + f"/{file_prefix}"
        self.schema = schema if schema is not None else embedding_schema(spec.embedding_dim)

    def expand(self, tables):
        return tables | "WriteParquet" >> WriteParquetShards(self.prefix, self.schema,
                                                             in_process=self.in_process)








