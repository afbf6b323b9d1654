"""The best hits of each query in bounded memory, and temporal de-duplication.

A hit is a plain tuple ``(score, source, stream, start_s, end_s, start_utc_us)``
(``start_utc_us``: microseconds since the epoch, UTC; None when unknown). Its *group* is its
``stream`` (an HLS folder) or, for a file, its ``source``: two hits of one group closer than
``min_gap_s`` seconds (by ``start_s``) are near-duplicates, and only the better one is kept
(greedy, best first: a hit is dropped when a better *kept* hit of its group starts within
``min_gap_s`` of it).

Exact with bounded memory: de-duplication only ever drops a hit for a better kept one, so the
first ``k`` kept hits are decided by the hits scoring at least the k-th kept score. Each kept hit
drops at most the rows of its group within ``min_gap_s`` of it, so those hits number at most
:func:`candidates_needed` ``(k, min_gap_s, hop_s)``; keeping that many best raw scores per query
(:class:`TopCandidates`) and de-duplicating them at the end gives the same hits as
de-duplicating the whole corpus.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Sequence

import apache_beam as beam

Hit = tuple


def candidates_needed(k: int, min_gap_s: float, hop_s: float) -> int:
    """How many best raw hits per query make the de-duplicated top ``k`` exact: ``k`` without
    de-duplication, else ``k`` times the most rows of one group within ``min_gap_s`` seconds of
    a hit (rows every ``hop_s`` seconds, both sides, plus the extra windows at the edges of runs
    between HLS gaps)."""
    if min_gap_s <= 0:
        return k
    return k * (2 * math.ceil(min_gap_s / hop_s) + 4)


def rows_excluded(regions: Sequence[tuple[str, float, float]], min_gap_s: float,
                  hop_s: float) -> int:
    """The most rows that :func:`deduplicated`'s ``excluded`` regions (group, start_s, end_s)
    can drop (rows every ``hop_s`` seconds): candidates to keep on top of
    :func:`candidates_needed`, so that the query's own rows never take a hit's place."""
    return sum(math.ceil((max(hi - lo, 0.0) + 2 * min_gap_s) / hop_s) + 2
               for _, lo, hi in regions)


def _order(hit: Hit) -> tuple:
    """Sort key, best first: score descending, then source and start (ties are deterministic)."""
    return (-hit[0], hit[1], hit[3])


def best(hits: Iterable[Hit], count: int) -> list[Hit]:
    """The ``count`` best hits, best first."""
    return heapq.nsmallest(count, hits, key=_order)


def group_of(hit: Hit) -> str:
    """A hit's de-duplication group: its stream, else its source."""
    return hit[2] or hit[1]


def deduplicated(hits: Iterable[Hit], k: int, min_gap_s: float,
                 excluded: Sequence[tuple[str, float, float]] = ()) -> list[Hit]:
    """The first ``k`` hits kept, best first, when a hit is dropped for a better kept one of its
    group starting less than ``min_gap_s`` seconds away. ``excluded``: (group, start_s, end_s)
    regions that count as kept before any hit (the query's own rows: a query row never finds
    itself, nor, with ``min_gap_s``, its neighbours)."""
    kept: list[Hit] = []
    regions: dict[str, list[tuple[float, float]]] = {}  # group -> excluded [start, end)
    starts: dict[str, list[float]] = {}  # group -> starts of the kept hits
    for group, start, end in excluded:
        regions.setdefault(group, []).append((start, end))
    for hit in sorted(hits, key=_order):
        if len(kept) >= k:
            break
        group, start = group_of(hit), hit[3]
        if any(lo - min_gap_s <= start < max(hi, lo + 1e-9) + min_gap_s
               for lo, hi in regions.get(group, ())):
            continue
        if min_gap_s > 0 and any(abs(start - other) < min_gap_s
                                 for other in starts.get(group, ())):
            continue
        kept.append(hit)
        starts.setdefault(group, []).append(start)
    return kept


class TopCandidates(beam.CombineFn):
    """Per query: the ``count`` best hits seen (memory: ``count`` hits per query and worker,
    whatever the corpus). Inputs are lists of hits; the output is the best ``count``, best
    first."""

    def __init__(self, count: int):
        self.count = count

    def create_accumulator(self) -> list[Hit]:
        return []

    def add_input(self, accumulator: list[Hit], hits: list[Hit]) -> list[Hit]:
        return best([*accumulator, *hits], self.count)

    def merge_accumulators(self, accumulators: Iterable[list[Hit]]) -> list[Hit]:
        return best([hit for accumulator in accumulators for hit in accumulator], self.count)

    def extract_output(self, accumulator: list[Hit]) -> list[Hit]:
        return best(accumulator, self.count)
