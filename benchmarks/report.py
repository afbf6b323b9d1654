"""The report at corpus scale: wall time and peak memory of ``pipelines.report`` over synthetic
archives of 10,000 and 100,000 HLS segments, on this machine in one run:

    python -m benchmarks.report --json benchmarks/results/report-2core.json

Per size, a committed YAMNet stand-in version written with the product's own manifest code, as
a completed run over Orcasound's archive would leave it: three nodes, 10 s segments in 6-hour
folders from 2024-10-01 on, each node online some hours of the day and offline on some days;
1 in 200 segments missing (its gap held by the next entry, as the extraction records it) and 1
in 400 unreadable. One 128-d row per segment (the overview's sample reads rows; the coverage
reads only the manifest). Then ``pipelines.report`` in a fresh process under GNU ``time`` (peak
RSS), ``--runner=DirectRunner`` as a user types it. The bound in the same run: a plain scan of
the same manifest entries with pyarrow (every entry shard read, nothing summed).

The coverage.csv of the largest size is checked against the generator's own totals (seconds of
audio per node and day, gaps, unreadable segments).
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from benchmarks.scale import REPO, timed

SIZES = (10_000, 100_000)
NODES = ("rpi_bush_point", "rpi_orcasound_lab", "rpi_north_sjc")
SEGMENT_S = 10.0
FOLDER_SEGMENTS = 2160  # 6 hours
DIM = 128
ENTRIES_PER_SHARD = 50_000
START = datetime(2024, 10, 1, tzinfo=UTC)


def online(node: int, moment: datetime) -> bool:
    """Whether a node records at a moment: node 1 is offline on days 3-5, node 2 records only
    from 06 to 18 UTC, and every node loses hour 12 on day 2."""
    day = (moment - START).days
    if node == 1 and 3 <= day <= 5:
        return False
    if node == 2 and not 6 <= moment.hour < 18:
        return False
    return not (day == 2 and moment.hour == 12)


def segments(count: int):
    """``count`` segments round-robin over the nodes: (node, folder start, index, start, status,
    gap_s) in time order per node; a missing segment is not yielded but its gap is on the next."""
    rng = np.random.default_rng(7)
    made, at = 0, [START] * len(NODES)
    folder = [START] * len(NODES)
    index = [0] * len(NODES)
    pending = [0.0] * len(NODES)
    while made < count:
        for n in range(len(NODES)):
            if made >= count:
                break
            while not online(n, at[n]):
                at[n] += timedelta(hours=1)
                folder[n], index[n], pending[n] = at[n], 0, 0.0
            if index[n] >= FOLDER_SEGMENTS:
                folder[n], index[n] = at[n], 0
            draw = rng.random()
            start = at[n]
            at[n] += timedelta(seconds=SEGMENT_S)
            index[n] += 1
            if draw < 1 / 200:  # missing: its gap goes on the next present segment
                pending[n] += SEGMENT_S
                continue
            status = "unreadable" if draw < 1 / 200 + 1 / 400 else "embedded"
            yield NODES[n], folder[n], index[n] - 1, start, status, pending[n]
            pending[n] = 0.0
            made += 1


def build(base: Path, count: int) -> tuple[Path, dict]:
    """The synthetic version under ``base/out``; returns (output, the generator's totals per
    (node, day): audio seconds, gap seconds, gaps, unreadable)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from benchmarks.scale import yamnet_folder
    from orca_beam.core.hls import FOLDER_PLUS_DURATIONS
    from orca_beam.store.manifest import (
        ENTRIES_DIR,
        ManifestEntry,
        combine_keys,
        commit,
        commit_record,
        entries_table,
        entry_key,
    )
    from orca_beam.store.schema import embedding_schema
    from orca_beam.testing.standins.build import ensure_standins

    output = base / "out"
    folder, version = yamnet_folder(output, Path(ensure_standins()) / "yamnet")
    Path(folder, ENTRIES_DIR).mkdir(parents=True, exist_ok=True)
    run_id = "20261201T000000Z-report"
    label = f"{version.handle}@sha256:{version.content_sha256[:16]}+standin"
    rng = np.random.default_rng(3)
    totals: dict[tuple[str, str], dict] = {}
    entry_paths, row_paths, keys, entries, rows = [], [], [], [], []

    def flush() -> None:
        shard = f"{folder}/rows-{run_id}-{len(row_paths):05d}-of-99999.parquet"
        vectors = rng.standard_normal((len(rows), DIM)).astype(np.float32)
        table = pa.Table.from_pylist([{**r, "embedding": v.tolist()} for r, v in
                                      zip(rows, vectors, strict=True)], embedding_schema(DIM))
        pq.write_table(table, shard)
        row_paths.append(shard)
        for entry in entries:
            entry["shards"] = [shard] if entry["embeddings"] else []
            keys.append(entry_key(entry))
        path = f"{folder}/{ENTRIES_DIR}/entries-{run_id}-{len(entry_paths):05d}.parquet"
        pq.write_table(entries_table(entries), path)
        entry_paths.append(path)
        entries.clear()
        rows.clear()

    thumb = bytes(1024)
    for node, started, index, start, status, gap_s in segments(count):
        stream = f"s3://audio-orcasound-net/{node}/hls/{int(started.timestamp())}/"
        source = f"{stream}live{index:04d}.ts"
        embedded = status == "embedded"
        gaps = [{"start_utc": start - timedelta(seconds=gap_s), "duration_s": gap_s,
                 "cause": "missing from the folder"}] if gap_s else []
        entries.append(ManifestEntry(
            source, 200_000, "etag:x", status, 1 if embedded else 0, [], run_id,
            SEGMENT_S if embedded else None, mtime_s=1.0, compared="new", stream=stream,
            start_utc=start, time_source=FOLDER_PLUS_DURATIONS, gaps=gaps).to_dict())
        if embedded:
            rows.append({"source": source, "channel": -1, "start_s": index * SEGMENT_S,
                         "end_s": index * SEGMENT_S + 0.975, "stream": stream,
                         "start_utc": start, "time_source": FOLDER_PLUS_DURATIONS,
                         "model": "yamnet", "model_version": label, "standin": True,
                         "thumbnail": thumb})
        # the generator's own totals (segments here never cross midnight: 10 s from :00)
        day = start.strftime("%Y-%m-%d")
        total = totals.setdefault((node, day), {"audio_s": 0.0, "gap_s": 0.0, "gaps": 0,
                                                 "unreadable": 0})
        total["audio_s"] += SEGMENT_S if embedded else 0.0
        total["unreadable"] += status == "unreadable"
        if gap_s:
            gap_day = (start - timedelta(seconds=gap_s)).strftime("%Y-%m-%d")
            gap_total = totals.setdefault((node, gap_day), {"audio_s": 0.0, "gap_s": 0.0,
                                                             "gaps": 0, "unreadable": 0})
            gap_total["gap_s"] += gap_s
            gap_total["gaps"] += 1
        if len(entries) >= ENTRIES_PER_SHARD:
            flush()
    if entries:
        flush()
    record = commit_record(folder, version, run_id, entry_shards=entry_paths,
                           row_shards=row_paths, entries=len(keys),
                           rows_digest=combine_keys(keys),
                           plan={"new": len(keys), "deleted_sample": []})
    commit(folder, record)
    return output, totals


def scan_s(output: Path) -> float:
    """Seconds to read every entry shard of the version with pyarrow (the bound)."""
    import pyarrow.parquet as pq

    started = time.perf_counter()
    for path in sorted(output.glob("yamnet/*/_manifest/entries-*.parquet")):
        pq.read_table(path)
    return round(time.perf_counter() - started, 3)


def check(report: Path, totals: dict) -> dict:
    """coverage.csv against the generator's totals: the largest differences."""
    with open(report / "coverage.csv") as handle:
        rows = {(r["node"], r["day"]): r for r in csv.DictReader(handle)}
    assert set(rows) == set(totals), (sorted(rows)[:3], sorted(totals)[:3])
    worst = {"audio_s": 0.0, "gap_s": 0.0, "gaps": 0, "unreadable": 0}
    for key, want in totals.items():
        got = rows[key]
        worst["audio_s"] = max(worst["audio_s"],
                               abs(float(got["embedded_s_yamnet"]) - want["audio_s"]))
        worst["gap_s"] = max(worst["gap_s"], abs(float(got["gap_s"]) - want["gap_s"]))
        worst["gaps"] = max(worst["gaps"], abs(int(got["gaps"]) - want["gaps"]))
        worst["unreadable"] = max(worst["unreadable"],
                                  abs(int(got["unreadable"]) - want["unreadable"]))
    return {"node_days": len(rows), "max_abs_difference": worst}


def main() -> None:
    """Builds each size, runs the report under GNU time, writes the JSON."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--json", required=True)
    p.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    p.add_argument("--keep", default=None, help="Copy the largest report folder here.")
    args = p.parse_args()
    results = []
    for count in args.sizes:
        work = Path(tempfile.mkdtemp(prefix=f"report-{count}-"))
        try:
            started = time.perf_counter()
            output, totals = build(work, count)
            built_s = round(time.perf_counter() - started, 1)
            report = work / "report"
            run = timed([sys.executable, "-m", "pipelines.report", f"--embeddings={output}",
                         f"--output={report}", "--clips=0", "--runner=DirectRunner"], work / "report.log")
            result = {"sources": count, "built_s": built_s, **run,
                      "entries_scan_s": scan_s(output), "check": check(report, totals)}
            print(json.dumps({k: v for k, v in result.items() if k != "tail"}), flush=True)
            results.append(result)
            if args.keep and count == max(args.sizes):
                shutil.copytree(report, args.keep, dirs_exist_ok=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    small, large = results[0], results[-1]
    doc = {"machine": {"cpus": len(__import__("os").sched_getaffinity(0)),
                       "python": platform.python_version()},
           "command": "python -m benchmarks.report --json " + args.json,
           "results": results,
           "peak_growth": round(large["peak_rss_mib"] / small["peak_rss_mib"] - 1, 4)}
    Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    print(f"peak RSS {small['peak_rss_mib']} -> {large['peak_rss_mib']} MiB "
          f"({100 * doc['peak_growth']:+.1f} %)")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
