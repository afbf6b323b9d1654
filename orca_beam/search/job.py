"""The exact search as Beam stages: a version's current rows (through the store reader, only
the key columns and the embedding) are scored against every query in batched matrix products,
the best candidates of each query are kept in a bounded combiner, and the last step
de-duplicates them in time and writes the results.

Memory: one record batch of rows per worker, plus :func:`~orca_beam.search.topk.candidates_needed`
hits per query; never the corpus.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from orca_beam.core import s3
from orca_beam.search.queries import Query
from orca_beam.search.scores import combined, pooled_scores
from orca_beam.search.topk import TopCandidates, deduplicated
from orca_beam.store.reader import ReadCurrentRows, embedding_matrix
from orca_beam.store.schema import UTC_TIMESTAMP
from orca_beam.tags import NAMESPACE

#: The columns search reads: the keys of a hit and the embedding.
SEARCH_COLUMNS = ["source", "stream", "start_s", "end_s", "start_utc", "embedding"]
RESULTS_SCHEMA = pa.schema([
    ("query", pa.string()), ("rank", pa.int32()), ("score", pa.float64()),
    ("source", pa.string()), ("stream", pa.string()), ("start_s", pa.float64()),
    ("end_s", pa.float64()), ("start_utc", UTC_TIMESTAMP), ("model_version", pa.string()),
    ("clip", pa.string())])


@dataclass(frozen=True)
class SearchSettings:
    """What one search asks: ``score`` (cosine, dot or euclidean), ``pool`` (max or mean over a
    query's windows), ``combine`` (None, max or mean: one more list over every query),
    ``top_k`` hits per query, ``min_gap_s`` (temporal de-duplication, seconds), ``candidates``
    (best raw hits kept per query), the filters ``start_utc_us`` / ``end_utc_us``
    (microseconds since the epoch, UTC; rows of unknown time are left out when set),
    ``stream`` (an fnmatch pattern) and ``source`` (an fnmatch pattern)."""

    score: str
    pool: str
    combine: str | None
    top_k: int
    min_gap_s: float
    candidates: int
    start_utc_us: int | None = None
    end_utc_us: int | None = None
    stream: str | None = None
    source: str | None = None


def filter_rows(batch: pa.RecordBatch | pa.Table, settings: SearchSettings) -> pa.Table:
    """The rows of ``batch`` that pass the time and stream filters (the source filter is the
    reader's)."""
    table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    mask = None

    def both(a, b):
        return b if a is None else pc.and_(a, b)

    if settings.start_utc_us is not None or settings.end_utc_us is not None:
        utc = table.column("start_utc").cast(pa.int64())
    if settings.start_utc_us is not None:
        mask = both(mask, pc.fill_null(pc.greater_equal(utc, settings.start_utc_us), False))
    if settings.end_utc_us is not None:
        mask = both(mask, pc.fill_null(pc.less(utc, settings.end_utc_us), False))
    if settings.stream is not None:
        streams = table.column("stream").to_pylist()
        mask = both(mask, pa.array([s is not None and fnmatch.fnmatchcase(s, settings.stream)
                                    for s in streams]))
    return table if mask is None else table.filter(mask)


def result_lists(queries: Sequence[Query], combine: str | None
                 ) -> tuple[list[str], list[tuple]]:
    """(name, excluded regions) of every result list, in order: one per query, then with
    ``combine`` and several queries the ``combined:<how>`` list, which excludes every query's
    regions."""
    names = [q.name for q in queries]
    excluded = [q.excluded for q in queries]
    if combine is not None and len(queries) > 1:
        names.append(f"combined:{combine}")
        excluded.append(tuple(region for q in queries for region in q.excluded))
    return names, excluded


def score_table(table: pa.Table, vectors: Sequence[np.ndarray], settings: SearchSettings
                ) -> np.ndarray:
    """Scores [lists, N] of a table's rows: one row per query window set (pooled as
    ``settings.pool``), plus the combined list's when ``settings.combine`` applies."""
    scores = pooled_scores(vectors, embedding_matrix(table), settings.score, settings.pool)
    if settings.combine is not None and len(vectors) > 1:
        scores = np.vstack([scores, combined(scores, settings.combine)[None, :]])
    return scores


def top_hits(table: pa.Table, scores: np.ndarray, count: int) -> Iterator[tuple[int, list]]:
    """(list index, its ``count`` best hits of ``table``, unordered) for every row of
    ``scores`` [lists, N]; only those rows of the table become Python values."""
    keep = min(count, table.num_rows)
    tops = [np.argpartition(-row_scores, keep - 1)[:keep] if keep < len(row_scores)
            else np.arange(len(row_scores)) for row_scores in scores]
    needed = np.unique(np.concatenate(tops))
    keys = table.select(["source", "stream", "start_s", "end_s"]).take(needed).to_pydict()
    keys["start_utc"] = table.column("start_utc").take(needed).cast(pa.int64()).to_pylist()
    where = {int(row): n for n, row in enumerate(needed)}
    for query, (row_scores, top) in enumerate(zip(scores, tops, strict=True)):
        hits = []
        for i in top.tolist():
            n = where[i]
            hits.append((float(row_scores[i]), keys["source"][n], keys["stream"][n],
                         keys["start_s"][n], keys["end_s"][n], keys["start_utc"][n]))
        yield query, hits


class _ScoreFn(beam.DoFn):
    """Record batches of rows -> (query index, that batch's best hits) for every query, and
    ("scanned", "searched") row counts on the ``counts`` output."""

    def __init__(self, queries: Sequence[Query], settings: SearchSettings):
        self.vectors = [q.vectors for q in queries]
        self.settings = settings
        self.scanned = Metrics.counter(NAMESPACE, "search_rows_scanned")

    def setup(self):
        s3.install()

    def process(self, batch) -> Iterator:
        settings = self.settings
        self.scanned.inc(batch.num_rows)
        table = filter_rows(batch, settings)
        yield beam.pvalue.TaggedOutput("counts", (batch.num_rows, table.num_rows))
        if not table.num_rows:
            return
        yield from top_hits(table, score_table(table, self.vectors, settings),
                            settings.candidates)


def _sum_counts(counts) -> tuple[int, int]:
    scanned = searched = 0
    for a, b in counts:
        scanned += a
        searched += b
    return scanned, searched


def clip_of(source: str, start_s: float, end_s: float) -> str:
    """``SOURCE#t=START,END`` (seconds, as in the projector's metadata)."""
    return f"{source}#t={start_s:.3f},{end_s:.3f}"


def results_table(names: Sequence[str], excluded: Sequence[tuple], candidates: dict,
                  settings: SearchSettings, model_version: str) -> pa.Table:
    """The results: per query (in order), its de-duplicated top k, ranked from 1."""
    columns: dict[str, list] = {name: [] for name in RESULTS_SCHEMA.names}
    for index, name in enumerate(names):
        hits = deduplicated(candidates.get(index, []), settings.top_k, settings.min_gap_s,
                            excluded[index])
        for rank, (score, source, stream, start, end, utc) in enumerate(hits, 1):
            for key, value in (("query", name), ("rank", rank), ("score", score),
                               ("source", source), ("stream", stream), ("start_s", start),
                               ("end_s", end), ("start_utc", utc),
                               ("model_version", model_version),
                               ("clip", clip_of(source, start, end))):
                columns[key].append(value)
    arrays = [pa.array(columns[f.name], pa.int64() if f.name == "start_utc" else f.type)
              for f in RESULTS_SCHEMA]
    arrays[RESULTS_SCHEMA.get_field_index("start_utc")] = arrays[
        RESULTS_SCHEMA.get_field_index("start_utc")].cast(UTC_TIMESTAMP)
    return pa.Table.from_arrays(arrays, schema=RESULTS_SCHEMA)


def write_results(table: pa.Table, output: str, summary: dict) -> None:
    """``results.parquet``, ``results.csv`` (start_utc as ISO 8601) and
    ``search_summary.json`` in ``output`` (local, gs:// or s3://)."""
    out = output.rstrip("/")
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    with FileSystems.create(f"{out}/results.parquet") as handle:
        handle.write(buffer.getvalue())
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(table.column_names)
    for row in table.to_pylist():
        if row["start_utc"] is not None:
            row["start_utc"] = row["start_utc"].isoformat()
        writer.writerow(["" if v is None else v for v in row.values()])
    with FileSystems.create(f"{out}/results.csv") as handle:
        handle.write(text.getvalue().encode())
    with FileSystems.create(f"{out}/search_summary.json") as handle:
        handle.write(json.dumps(summary, indent=2).encode())


class _WriteFn(beam.DoFn):
    def __init__(self, names, excluded, settings, model_version, output, started_s, extra):
        self.names, self.excluded = list(names), list(excluded)
        self.settings, self.model_version = settings, model_version
        self.output, self.started_s, self.extra = output, started_s, extra

    def setup(self):
        s3.install()

    def process(self, _, candidates, counts):
        table = results_table(self.names, self.excluded, dict(candidates), self.settings,
                              self.model_version)
        scanned, searched = counts
        wall_s = time.time() - self.started_s
        summary = {**self.extra, "queries": len(self.names), "hits": table.num_rows,
                   "rows_scanned": scanned, "rows_searched": searched,
                   "candidates_per_query": self.settings.candidates,
                   "wall_s": round(wall_s, 3),
                   "rows_per_s": round(scanned / wall_s, 1) if wall_s > 0 else None}
        write_results(table, self.output, summary)
        yield summary


class ExactSearch(beam.PTransform):
    """A version folder -> the search summary (one dict), after writing the results of
    ``queries`` under ``output``. ``started_s``: the run's start (time.time()), for the wall
    time; ``extra``: fields copied into the summary."""

    def __init__(self, folder: str, queries: Sequence[Query], settings: SearchSettings, *,
                 model_version: str, output: str, started_s: float, extra: dict | None = None):
        super().__init__()
        self.folder, self.queries, self.settings = folder, list(queries), settings
        self.model_version, self.output = model_version, output
        self.started_s, self.extra = started_s, extra or {}

    def expand(self, pbegin):
        names, excluded = result_lists(self.queries, self.settings.combine)
        scored = (pbegin
                  | "ReadRows" >> ReadCurrentRows(self.folder, columns=SEARCH_COLUMNS,
                                                  sources=self.settings.source)
                  | "Score" >> beam.ParDo(_ScoreFn(self.queries, self.settings))
                  .with_outputs("counts", main="hits"))
        best = scored.hits | "BestPerQuery" >> beam.CombinePerKey(
            TopCandidates(self.settings.candidates))
        counts = scored.counts | "CountRows" >> beam.CombineGlobally(_sum_counts)
        return (pbegin
                | "Once" >> beam.Create([None])
                | "Write" >> beam.ParDo(
                    _WriteFn(names, excluded, self.settings, self.model_version, self.output,
                             self.started_s, self.extra),
                    beam.pvalue.AsList(best), beam.pvalue.AsSingleton(counts)))
