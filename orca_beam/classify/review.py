"""Which scored windows of one class a person should listen to next, chosen in Beam over the
scores' derived table:

* ``top``: the ``n`` highest scores (what the detector is surest of: its precision);
* ``margin``: the ``n`` scores nearest the class's threshold (where a verdict moves the
  classifier most: active learning's uncertainty sampling);
* ``bins``: ``n`` windows drawn at random from each score quantile bin, with the bin edges at
  the 0.5, 0.75 and 0.875 quantiles of the class's scores (perch-hoplite's call-density bins):
  the verdicts estimate the precision per bin, and with each bin's row count the number of
  calls (``review_summary.json`` holds the counts).

Rows already labelled (in the classifier's own label tables, or ``--exclude``) are never
chosen. The quantiles come from a uniform sample of ``QUANTILE_SAMPLE`` scores (each row a
random key; the smallest keys kept), so every stage holds at most ``n`` rows per bin or the
sample, one record batch at a time.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import apache_beam as beam
import numpy as np
import pyarrow as pa

from orca_beam.classify.examples import LabelledWindows
from orca_beam.store.derived import ReadDerivedRows

SELECTIONS = ("top", "margin", "bins")
#: perch-hoplite's call-density bin edges, as score quantiles.
BIN_QUANTILES = (0.5, 0.75, 0.875)
#: Scores sampled to place the bin edges.
QUANTILE_SAMPLE = 10_000
KEY_COLUMNS = ["source", "stream", "start_s", "end_s", "start_utc"]


@dataclass(frozen=True)
class Selection:
    """What to choose: the class (its position in the scores), its threshold, the rule, how
    many (per bin for ``bins``), the label tables whose rows are left out, and a seed."""

    name: str
    column: int
    threshold: float
    select: str
    n: int
    labelled_tables: tuple[str, ...] = ()
    label_column: str = "label"
    seed: int = 0


class _BatchFn(beam.DoFn):
    """A score batch -> its rows not yet labelled, as (keys table, class scores, random keys)."""

    def __init__(self, selection: Selection):
        self.selection = selection

    def setup(self):
        self.labelled = LabelledWindows(self.selection.labelled_tables,
                                        self.selection.label_column)

    def process(self, records: pa.RecordBatch) -> Iterator[tuple]:
        table = pa.Table.from_batches([records])
        column = table.column("scores").combine_chunks()
        scores = np.asarray(column.flatten(), np.float32).reshape(len(column), -1)
        scores = scores[:, self.selection.column].astype(np.float64)
        sources = table.column("source").to_pylist()
        starts = np.asarray(table.column("start_s"), np.float64)
        ends = np.asarray(table.column("end_s"), np.float64)
        keep = ~self.labelled.mask(sources, starts, ends)
        if not keep.any():
            return
        seed = zlib.crc32(f"{self.selection.seed}|{sources[0]}|{starts[0]!r}".encode())
        draws = np.random.default_rng(seed).random(len(sources))
        rows = np.flatnonzero(keep)
        yield table.select(KEY_COLUMNS).take(pa.array(rows)), scores[rows], draws[rows]


def _best(part: tuple, n: int, key: np.ndarray) -> Iterator[tuple[float, dict]]:
    """The ``n`` rows of a batch with the largest ``key``, as (key, hit dict)."""
    table, scores, _ = part
    chosen = np.argsort(-key, kind="stable")[:n]
    rows = table.take(pa.array(chosen)).to_pylist()
    for i, row in zip(chosen, rows, strict=True):
        yield float(key[i]), {**row, "score": float(scores[i])}


def _ranked_key(part: tuple, selection: Selection) -> np.ndarray:
    _, scores, _ = part
    if selection.select == "top":
        return scores
    return -np.abs(scores - selection.threshold)


def _sample(part: tuple, size: int) -> Iterator[tuple[float, float]]:
    _, scores, draws = part
    for i in np.argsort(draws)[:size]:
        yield -float(draws[i]), float(scores[i])


def bin_of(scores: np.ndarray, edges: list[float]) -> np.ndarray:
    """The bin (0 = lowest) of each score given the inner bin edges (ascending); a score equal to
    an edge is in the bin above it."""
    return np.searchsorted(np.asarray(edges), scores, side="right")


def _binned(part: tuple, edges: list[float], n: int) -> Iterator:
    table, scores, draws = part
    bins = bin_of(scores, edges)
    for b in np.unique(bins):
        members = np.flatnonzero(bins == b)
        yield beam.pvalue.TaggedOutput("counts", (int(b), len(members)))
        chosen = members[np.argsort(draws[members])[:n]]
        for i, row in zip(chosen, table.take(pa.array(chosen)).to_pylist(), strict=True):
            yield int(b), (-float(draws[i]), {**row, "score": float(scores[i]), "bin": int(b)})


def _edges(sample: list[tuple[float, float]]) -> list[float]:
    scores = np.array([s for _, s in sample], np.float64)
    return [] if not len(scores) else [float(q) for q in np.quantile(scores, BIN_QUANTILES)]


def _ranked_hits(best: list[tuple[float, dict]], selection: Selection) -> tuple[list, dict]:
    hits = []
    for rank, (_, hit) in enumerate(best, 1):
        hits.append({**hit, "rank": rank, "label": selection.name,
                     "query": f"{selection.name} {selection.select}"})
    return hits, {"select": selection.select, "n": selection.n, "class": selection.name,
                  "threshold": selection.threshold}


def _bin_hits(per_bin: list, counts: dict, edges: list[float], selection: Selection
              ) -> tuple[list, dict]:
    bounds = [-np.inf, *edges, np.inf]
    hits, bins = [], []
    drawn = dict(per_bin)
    for b in range(len(bounds) - 1):
        lo, hi = bounds[b], bounds[b + 1]
        chosen = [hit for _, hit in drawn.get(b, [])]
        bins.append({"bin": b, "score_from": None if b == 0 else float(lo),
                     "score_to": None if b == len(bounds) - 2 else float(hi),
                     "rows": int(counts.get(b, 0)), "shown": len(chosen)})
        where = (f"< {hi:.4g}" if b == 0 else f">= {lo:.4g}" if b == len(bounds) - 2
                 else f"[{lo:.4g}, {hi:.4g})")
        for hit in sorted(chosen, key=lambda h: -h["score"]):
            hits.append({**hit, "rank": len(hits) + 1, "label": selection.name,
                         "query": f"{selection.name} bin {b} {where}"})
    return hits, {"select": "bins", "n_per_bin": selection.n, "class": selection.name,
                  "threshold": selection.threshold, "bin_quantiles": list(BIN_QUANTILES),
                  "bins": bins}


class SelectForReview(beam.PTransform):
    """pbegin -> one element: (the chosen hits, in page order, as dicts with ``rank``,
    ``score``, the key columns, ``label`` (the class) and ``query`` (the rule, and the bin);
    what was chosen how: for ``bins`` the edges and each bin's row count)."""

    def __init__(self, scores_folder: str, selection: Selection):
        super().__init__()
        self.scores_folder, self.selection = scores_folder, selection

    def expand(self, pbegin):
        selection = self.selection
        parts = (pbegin
                 | "ReadScores" >> ReadDerivedRows(self.scores_folder, [*KEY_COLUMNS, "scores"])
                 | "NotLabelled" >> beam.ParDo(_BatchFn(selection)))
        if selection.select in ("top", "margin"):
            return (parts
                    | "BestOfBatch" >> beam.FlatMap(
                        lambda part: _best(part, selection.n, _ranked_key(part, selection)))
                    | "Best" >> beam.combiners.Top.Of(selection.n, key=lambda kv: kv[0])
                    | "Hits" >> beam.Map(_ranked_hits, selection))
        edges = (parts
                 | "SampleOfBatch" >> beam.FlatMap(_sample, QUANTILE_SAMPLE)
                 | "Sample" >> beam.combiners.Top.Of(QUANTILE_SAMPLE, key=lambda kv: kv[0])
                 | "Edges" >> beam.Map(_edges))
        binned = (parts
                  | "Bin" >> beam.FlatMap(_binned, beam.pvalue.AsSingleton(edges), selection.n)
                  .with_outputs("counts", main="hits"))
        counts = binned.counts | "RowsPerBin" >> beam.CombinePerKey(sum)
        return (binned.hits
                | "DrawPerBin" >> beam.combiners.Top.PerKey(selection.n, key=lambda kv: kv[0])
                | "Bins" >> beam.combiners.ToList()  # one list per bin: 4
                | "Hits" >> beam.Map(_bin_hits, beam.pvalue.AsDict(counts),
                                     beam.pvalue.AsSingleton(edges), selection))

