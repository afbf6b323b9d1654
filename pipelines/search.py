"""Search by example over a version's stored rows:

    python -m pipelines.search --embeddings out/ --model birdnet --query call.wav#t=1.5,3.0 \
        --output search/

Queries: ``--query FILE[#t=START,END]`` (embedded with the rows' own model version, refused
with exit status 2 when the model differs), ``--query_row SOURCE@START_S`` (a stored row),
``--queries_from TABLE.csv``. Every current row of the version is scored exactly (Beam; any
runner); each query gets its ``--top_k`` hits, de-duplicated in time (``--min_gap_s``), in
``results.parquet`` / ``results.csv``, with ``search_summary.json``. Beam flags (``--runner``,
...) pass through.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from orca_beam.core.errors import UsageError
from orca_beam.core.hls import parse_datetime
from orca_beam.core.registry import MODELS
from orca_beam.review.page import DEFAULT_CONTEXT_S, write_review
from orca_beam.search.index import INDEX_DIR, BuildIndex, index_search
from orca_beam.search.job import (
    ExactSearch,
    SearchSettings,
    result_lists,
    results_table,
    write_results,
)
from orca_beam.search.queries import clip_query, row_query, table_queries
from orca_beam.search.scores import SCORES
from orca_beam.search.topk import candidates_needed, rows_excluded
from orca_beam.store.version import VersionInfo, version_folder
from pipelines.cli import beam_options, counter_totals, run_command

LOG = logging.getLogger("orca_beam.search")
#: Default --min_gap_s: hits of one stream or file closer than this are one call (seconds).
DEFAULT_MIN_GAP_S = 10.0


def parser() -> argparse.ArgumentParser:
    """The search flags (Beam's own pass through)."""
    p = argparse.ArgumentParser(prog="python -m pipelines.search", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--embeddings", required=True,
                   help="An extraction's --output folder (local, gs:// or s3://).")
    p.add_argument("--model", required=True, choices=sorted(MODELS), help="The rows' model.")
    p.add_argument("--version", default=None,
                   help="A version id under <embeddings>/<model>/ (default: the latest).")
    p.add_argument("--output", required=True, help="Folder for the results (local, gs://, s3://).")
    p.add_argument("--query", action="append", default=[], metavar="FILE[#t=START,END]",
                   help="An audio clip (seconds within FILE). Repeatable.")
    p.add_argument("--query_row", action="append", default=[], metavar="SOURCE@START_S",
                   help="A stored row as the query. Repeatable.")
    p.add_argument("--queries_from", default=None, metavar="TABLE.csv",
                   help="A CSV of clips: source[, start_s, end_s, query]; with a verdict "
                        "column (the review page's export), the rows marked yes.")
    p.add_argument("--model_handle", default=None,
                   help="Where to load the rows' model from to embed query clips (default: "
                        "the handle in the version's _version.json).")
    p.add_argument("--top_k", type=int, default=10, help="Hits per query (default 10).")
    p.add_argument("--score", choices=SCORES, default="cosine",
                   help="cosine (default), dot, or euclidean (the score is minus the distance).")
    p.add_argument("--pool", choices=["max", "mean"], default="max",
                   help="A clip longer than one window has one vector per window: score a row "
                        "by the best window (max, default) or by the windows' mean vector.")
    p.add_argument("--combine", choices=["max", "mean"], default=None,
                   help="With several queries, also one combined list: each row's max or mean "
                        "score over the queries.")
    p.add_argument("--min_gap_s", type=float, default=DEFAULT_MIN_GAP_S,
                   help="Of two hits closer than this (seconds) in one stream or file, keep the "
                        f"better (default {DEFAULT_MIN_GAP_S:g}; 0: no de-duplication).")
    p.add_argument("--start", default=None, help="Only rows from this UTC time (ISO 8601 with a "
                                                 "zone, as in extraction).")
    p.add_argument("--end", default=None, help="Only rows before this UTC time.")
    p.add_argument("--stream", default=None, help="Only rows whose stream matches this glob.")
    p.add_argument("--source", default=None, help="Only rows whose source matches this glob.")
    p.add_argument("--index", action="store_true",
                   help="Answer from the version's search index (python -m pipelines.search "
                        "build-index) in this process instead of a Beam scan; hits are re-scored "
                        "exactly, shards not indexed yet are scanned.")
    p.add_argument("--index_candidates", type=int, default=None,
                   help="--index: neighbours asked of each shard's index per query window "
                        "(default: 4 x the candidates per query, at least 100).")
    p.add_argument("--review", action=argparse.BooleanOptionalAction, default=True,
                   help="Write <output>/review/index.html: every hit with its spectrogram, its "
                        "audio and verdict buttons (default; --no-review skips it).")
    p.add_argument("--label", default=None,
                   help="The label the review page's export gives its rows (default: the "
                        "query), e.g. the call type, for python -m pipelines.classify train.")
    p.add_argument("--context_s", type=float, default=DEFAULT_CONTEXT_S,
                   help=f"Seconds of audio each side of a hit on the review page (default "
                        f"{DEFAULT_CONTEXT_S:g}).")
    return p


def _utc_us(text: str | None, flag: str) -> int | None:
    if text is None:
        return None
    try:
        return round(parse_datetime(text).timestamp() * 1e6)
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from None


def build_index(argv: list[str]) -> dict:
    """``build-index --embeddings OUT --model NAME [--version ID]``: an index file for every
    row shard of the version that has none (a Beam job); returns the totals."""
    p = argparse.ArgumentParser(prog="python -m pipelines.search build-index")
    p.add_argument("--embeddings", required=True)
    p.add_argument("--model", required=True, choices=sorted(MODELS))
    p.add_argument("--version", default=None)
    options, beam_args = p.parse_known_args(argv)
    pipeline = beam.Pipeline(options=beam_options(beam_args))
    folder = version_folder(options.embeddings, options.model, options.version)
    _ = pipeline | "BuildIndex" >> BuildIndex(folder)
    result = pipeline.run()
    result.wait_until_finish()
    names = {"index_shards_built": "built", "index_shards_kept": "kept",
             "index_rows_indexed": "rows_indexed"}
    counts = counter_totals(result, names.__contains__)
    totals = {short: counts.get(name, 0) for name, short in names.items()}
    print(f"index: {folder}/{INDEX_DIR}/: {totals['built']} shards indexed "
          f"({totals['rows_indexed']} rows), {totals['kept']} already indexed")
    return {"folder": folder, **totals}


def run(argv: list[str] | None = None) -> dict:
    """Runs one search (or, with ``build-index`` first, builds the index); returns its summary
    (also written as search_summary.json)."""
    started = time.time()
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["build-index"]:
        return build_index(argv[1:])
    options, beam_args = parser().parse_known_args(argv)
    if not (options.query or options.query_row or options.queries_from):
        raise UsageError("give at least one --query, --query_row or --queries_from")
    if options.top_k < 1:
        raise UsageError("--top_k must be >= 1")
    if options.min_gap_s < 0:
        raise UsageError("--min_gap_s must be >= 0")
    options_ = beam_options(beam_args)
    folder = version_folder(options.embeddings, options.model, options.version)
    version = VersionInfo.read(folder)
    queries = [clip_query(text, version, options.model_handle) for text in options.query]
    queries += [row_query(text, version) for text in options.query_row]
    if options.queries_from:
        queries += table_queries(options.queries_from, version, options.model_handle)
    settings = SearchSettings(
        score=options.score, pool=options.pool, combine=options.combine, top_k=options.top_k,
        min_gap_s=options.min_gap_s,
        candidates=candidates_needed(options.top_k, options.min_gap_s, version.spec.hop_s)
        + rows_excluded([r for q in queries for r in q.excluded], options.min_gap_s,
                        version.spec.hop_s),
        start_utc_us=_utc_us(options.start, "--start"), end_utc_us=_utc_us(options.end, "--end"),
        stream=options.stream, source=options.source)
    LOG.info("%d queries against %s (%s, %s)", len(queries), folder, settings.score,
             version.label)
    extra = {"version": folder, "model_version": version.label, "score": settings.score,
             "pool": settings.pool, "combine": settings.combine, "top_k": settings.top_k,
             "min_gap_s": settings.min_gap_s, "index": options.index}
    if options.index:
        ann = options.index_candidates or max(100, 4 * settings.candidates)
        candidates, counts = index_search(folder, queries, settings, ann)
        names, excluded = result_lists(queries, settings.combine)
        table = results_table(names, excluded, candidates, settings, version.label)
        wall_s = time.time() - started
        write_results(table, options.output, {
            **extra, **counts, "index_candidates": ann, "queries": len(names),
            "hits": table.num_rows, "rows_scanned": counts["rows_rescored"],
            "rows_searched": counts["rows_rescored"], "wall_s": round(wall_s, 3)})
    else:
        pipeline = beam.Pipeline(options=options_)
        _ = pipeline | "Search" >> ExactSearch(folder, queries, settings,
                                               model_version=version.label,
                                               output=options.output, started_s=started,
                                               extra=extra)
        pipeline.run().wait_until_finish()
    out = options.output.rstrip("/")
    with FileSystems.open(f"{out}/search_summary.json") as handle:
        summary = json.loads(handle.read().decode())
    if options.review:
        with FileSystems.open(f"{out}/results.parquet") as handle:
            hits = pq.read_table(handle).to_pylist()  # top_k per query: small
        if options.label:
            hits = [{**hit, "label": options.label} for hit in hits]
        review = write_review(hits, f"{out}/review", context_s=options.context_s,
                              title=f"{options.model} search: {len(queries)} queries")
        summary["review"] = review
        with FileSystems.create(f"{out}/search_summary.json") as handle:
            handle.write(json.dumps(summary, indent=2).encode())
        print(f"review page: {out}/review/index.html ({review['clips']} clips, "
              f"{review['missing']} without audio)")
    print(f"search: {summary['queries']} queries, {summary['rows_scanned']} rows scanned "
          f"({summary['rows_searched']} after filters), {summary['hits']} hits in "
          f"{summary['wall_s']:.1f} s; results: {out}/results.csv")
    return summary


def main() -> None:
    """The command line: a UsageError is one line on stderr and exit status 2."""
    run_command(run)


if __name__ == "__main__":
    main()
