"""Corpus scale: wall time and peak memory of the stages around decoding and inference, at three
corpus sizes, on this machine in one run:

    python -m benchmarks.scale --json benchmarks/results/scale-2core.json

Per size (sources, rows), a synthetic corpus: ``sources`` tiny WAV files (0.1 s, 16 kHz, distinct
bytes) and a YAMNet stand-in version folder that already holds them: ``rows`` embedding rows in
the real schema (1024-d vectors, thumbnails) in 256 MB shards and a committed manifest whose
entries carry each file's real size, modification time and CRC32C, written with the product's
own manifest code, as a completed run would have left it. Then, each stage a fresh process
under GNU ``time`` (peak RSS):

* ``plan``: ``python -m pipelines.extract ... --plan``;
* ``projector``: ``python -m pipelines.projector`` (every current row considered, 100,000 points
  kept);
* ``noop``: the same extraction again: nothing to decode, no model call, projector kept;
* ``new_1pct``: 1 % new files added, then the extraction: exactly those embedded, manifest
  rewritten, projector rebuilt from every current row (the extract entry point's projector
  stage).

Last, ``plan`` over a manifest of ``--plan_entries`` entries (default 1,000,000) of which the
largest corpus's files are the matched ones (the rest are reported deleted).
Every process runs ``--runner=DirectRunner`` as a user types it (the extraction runs on
FnApiRunner; before the fixed-cost change, ``--plan`` first tried Prism offline).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SIZES = ((1_000, 20_000), (10_000, 200_000), (100_000, 2_000_000))
RATE_HZ = 16_000
FILE_S = 0.1
ROWS_PER_TABLE = 4096
ROWS_PER_SHARD = 49_152  # 12 tables: about 250 MB of yamnet rows


def write_wavs(folder: Path, count: int, start: int = 0) -> list[Path]:
    """``count`` distinct 0.1 s mono 16-bit WAV files ``f<n>.wav``; returns their paths."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(start)
    samples = int(RATE_HZ * FILE_S)
    paths = []
    for n in range(start, start + count):
        path = folder / f"f{n:07d}.wav"
        sf.write(path, rng.uniform(-0.3, 0.3, samples).astype(np.float32), RATE_HZ,
                 subtype="PCM_16")
        paths.append(path)
    return paths


def yamnet_folder(output: Path, handle: Path) -> tuple[str, object]:
    """(version folder, OutputVersion) the extraction will use for the YAMNet stand-in."""
    from orca_beam.core.registry import get_model_spec
    from orca_beam.extract.versions import output_version
    from orca_beam.models.loading import model_version

    version = output_version(get_model_spec("yamnet"), model_version(str(handle)), channel=None)
    return version.folder(str(output)), version


def write_version(folder: str, version, files: list[Path], rows: int,
                  extra_entries: int = 0, distinct: bool = False, dim: int = 1024) -> dict:
    """A committed version holding ``files`` (real size, mtime, CRC32C) with ``rows`` synthetic
    rows of ``dim``-d vectors spread over them, plus ``extra_entries`` entries of files that do
    not exist (``distinct``: every row its own random vector, else 4096 vectors repeated);
    returns what was written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from orca_beam.core.statuses import NO_TIME
    from orca_beam.store.fingerprint import crc32c_fingerprint
    from orca_beam.store.manifest import (
        ENTRIES_DIR,
        ManifestEntry,
        combine_keys,
        commit,
        commit_record,
        entries_table,
        entry_key,
    )
    from orca_beam.store.schema import UTC_TIMESTAMP, embedding_schema

    Path(folder, ENTRIES_DIR).mkdir(parents=True, exist_ok=True)
    run_id = "20261201T000000Z-synthe"
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((ROWS_PER_TABLE, dim)).astype(np.float32)
    flat = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim)
    thumbs = pa.array([bytes(t) for t in rng.integers(0, 255, (ROWS_PER_TABLE, 32, 32),
                                                     dtype=np.uint8)], pa.binary(1024))
    per_file = np.full(len(files), rows // len(files))
    per_file[: rows % len(files)] += 1
    source_of_row = np.repeat(np.arange(len(files)), per_file)
    index_in_file = np.arange(rows) - np.repeat(np.cumsum(per_file) - per_file, per_file)
    names = np.array([str(p) for p in files], dtype=object)
    shards_of_file: dict[int, set[str]] = {}
    shard_count = -(-rows // ROWS_PER_SHARD)
    label = f"{version.handle}@sha256:{version.content_sha256[:16]}+standin"
    for shard in range(shard_count):
        path = f"{folder}/rows-{run_id}-{shard:05d}-of-{shard_count:05d}.parquet"
        writer = pq.ParquetWriter(path, embedding_schema(dim), compression="none")
        for start in range(shard * ROWS_PER_SHARD, min(rows, (shard + 1) * ROWS_PER_SHARD),
                           ROWS_PER_TABLE):
            stop = min(rows, start + ROWS_PER_TABLE, (shard + 1) * ROWS_PER_SHARD)
            count = stop - start
            begin = index_in_file[start:stop] * 0.48
            writer.write_table(pa.Table.from_arrays([
                pa.array(names[source_of_row[start:stop]], pa.string()),
                pa.array(np.full(count, -1, np.int32)),
                pa.array(begin), pa.array(begin + 0.975),
                pa.nulls(count, pa.string()), pa.nulls(count, UTC_TIMESTAMP),
                pa.array([NO_TIME] * count, pa.string()),
                pa.array(["yamnet"] * count, pa.string()),
                pa.array([label] * count, pa.string()),
                pa.array(np.ones(count, bool)),
                flat.slice(0, count) if not distinct else pa.FixedSizeListArray.from_arrays(
                    pa.array(rng.standard_normal(count * dim).astype(np.float32)), dim),
                thumbs.slice(0, count)], schema=embedding_schema(dim)))
            for index in np.unique(source_of_row[start:stop]):
                shards_of_file.setdefault(int(index), set()).add(path)
        writer.close()
    entry_paths, keys, batch = [], [], []

    def flush() -> None:
        path = f"{folder}/{ENTRIES_DIR}/entries-{run_id}-{len(entry_paths):05d}.parquet"
        pq.write_table(entries_table(batch), path)
        entry_paths.append(path)
        batch.clear()

    for n, file in enumerate(files):
        stat = file.stat()
        entry = ManifestEntry(str(file), stat.st_size, crc32c_fingerprint(file.read_bytes()),
                              "embedded", int(per_file[n]), sorted(shards_of_file[n]), run_id,
                              FILE_S, mtime_s=stat.st_mtime, compared="new").to_dict()
        keys.append(entry_key(entry))
        batch.append(entry)
        if len(batch) == 200_000:
            flush()
    for n in range(extra_entries):
        entry = ManifestEntry(f"{files[0].parent}/gone/g{n:07d}.wav", 3200, "crc32c:AAAAAA==",
                              "embedded", 0, [], run_id, FILE_S, mtime_s=1.0,
                              compared="new").to_dict()
        keys.append(entry_key(entry))
        batch.append(entry)
        if len(batch) == 200_000:
            flush()
    if batch:
        flush()
    referenced = sorted({s for shards in shards_of_file.values() for s in shards})
    record = commit_record(folder, version, run_id, entry_shards=entry_paths,
                           row_shards=referenced, entries=len(keys),
                           rows_digest=combine_keys(keys),
                           plan={"new": len(files), "deleted_sample": []})
    commit(folder, record)
    return {"row_shards": len(referenced), "entry_shards": len(entry_paths),
            "bytes_on_disk": sum(os.path.getsize(p) for p in referenced)}


def synthetic_version(base: Path, rows: int, *, files: int = 1000, dim: int = 1024,
                      distinct: bool = False) -> tuple[str, list[Path], dict]:
    """A committed YAMNet stand-in version of ``rows`` synthetic ``dim``-d rows over ``files``
    WAV files under ``base`` (``base/out`` is the extraction output): (version folder, the
    files, what :func:`write_version` wrote plus ``write_s``)."""
    from orca_beam.testing.standins.build import ensure_standins

    paths = write_wavs(base / "audio", files)
    folder, version = yamnet_folder(base / "out", Path(ensure_standins()) / "yamnet")
    started = time.perf_counter()
    written = write_version(folder, version, paths, rows, distinct=distinct, dim=dim)
    return folder, paths, {**written, "write_s": round(time.perf_counter() - started, 1)}


def timed(command: list[str], log: Path) -> dict:
    """Runs ``command`` under GNU time; wall seconds, peak RSS in MiB, exit status, last lines."""
    rss = log.with_suffix(".rss")
    started = time.perf_counter()
    with open(log, "wb") as out:
        done = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(rss), *command], cwd=REPO,
                              stdout=out, stderr=subprocess.STDOUT,
                              env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    wall = time.perf_counter() - started
    text = log.read_text(errors="replace")
    if done.returncode != 0:
        raise RuntimeError(f"{command} failed ({done.returncode}):\n{text[-4000:]}")
    return {"wall_s": round(wall, 2),
            "peak_rss_mib": round(int(rss.read_text().split()[-1]) / 1024, 1),
            "tail": text.strip().splitlines()[-6:]}


def extract_command(audio: Path, output: Path, handle: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pipelines.extract", "--runner=DirectRunner",
            f"--input={audio}/*.wav", f"--output={output}", "--model=yamnet",
            f"--model_handle=yamnet={handle}", "--progress_interval_s=30", *extra]


def run_size(sources: int, rows: int, work: Path, handle: Path) -> list[dict]:
    """The four stages on one synthetic corpus; one result dict per stage."""
    audio, output = work / "audio", work / "out"
    started = time.perf_counter()
    files = write_wavs(audio, sources)
    folder, version = yamnet_folder(output, handle)
    written = write_version(folder, version, files, rows)
    built_s = round(time.perf_counter() - started, 1)
    print(f"{sources} sources, {rows} rows: corpus built in {built_s} s "
          f"({written['bytes_on_disk'] / 2**30:.2f} GiB of rows)", flush=True)
    results = []

    def stage(name: str, command: list[str], **facts) -> dict:
        result = {"sources": sources, "rows": rows, "stage": name, **facts,
                  **timed(command, work / f"{name}.log")}
        print(f"  {name}: {result['wall_s']} s, {result['peak_rss_mib']} MiB", flush=True)
        results.append(result)
        return result

    stage("plan", extract_command(audio, output, handle, "--plan"))
    stage("projector", [sys.executable, "-m", "pipelines.projector", f"--embeddings={output}",
                        f"--output={output}/projector"])
    noop = stage("noop", extract_command(audio, output, handle))
    summary = json.loads((output / "summary.json").read_text())
    noop.update(nothing_changed=summary["nothing_changed"],
                files_decoded=summary["counters"].get("orca_beam:files_decoded", 0),
                content_checked=summary["counters"].get("orca_beam:files_content_checked", 0),
                projector_kept=summary["counters"].get("orca_beam:projector_kept_yamnet", 0))
    added = max(1, sources // 100)
    write_wavs(audio, added, start=sources)
    new = stage("new_1pct", extract_command(audio, output, handle), new_files=added)
    summary = json.loads((output / "summary.json").read_text())
    new.update(embedded=summary["models"]["yamnet"]["embedded"],
               plan=summary["versions"]["yamnet"]["plan"],
               projector_written=summary["counters"].get(
                   "orca_beam:projector_written_yamnet", 0))
    return results


def run_big_plan(entries: int, work: Path, handle: Path, matched: int) -> dict:
    """``--plan`` over a manifest of ``entries`` entries, ``matched`` of them existing files."""
    audio, output = work / "audio", work / "out"
    files = write_wavs(audio, matched)
    folder, version = yamnet_folder(output, handle)
    write_version(folder, version, files, matched, extra_entries=entries - matched)
    result = timed(extract_command(audio, output, handle, "--plan"), work / "plan.log")
    plan = json.loads((output / "plan.json").read_text())["yamnet"]
    return {"sources": matched, "manifest_entries": entries, "stage": "plan_1M_entries",
            "unchanged": plan["unchanged"], "deleted": plan["deleted"], **result}


def table(results: list[dict]) -> str:
    """A Markdown table of the results."""
    lines = ["| sources | rows | manifest entries | stage | wall s | peak RSS MiB | notes |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        notes = []
        if r["stage"] == "noop":
            notes.append(f"decoded {r['files_decoded']}, content read {r['content_checked']}, "
                         f"projector kept {r['projector_kept']}")
        if r["stage"] == "new_1pct":
            notes.append(f"{r['new_files']} new, embedded {r['embedded']}, projector rebuilt "
                         f"{r['projector_written']}")
        if r["stage"] == "plan_1M_entries":
            notes.append(f"unchanged {r['unchanged']}, deleted {r['deleted']}")
        lines.append(f"| {r['sources']:,} | {r.get('rows', r['sources']):,} | "
                     f"{r.get('manifest_entries', r['sources']):,} | {r['stage']} | "
                     f"{r['wall_s']} | {r['peak_rss_mib']} | {'; '.join(notes)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=None, help="Write the results here.")
    parser.add_argument("--sizes", default=",".join(f"{s}:{r}" for s, r in SIZES),
                        help="Comma-separated SOURCES:ROWS corpus sizes.")
    parser.add_argument("--plan_entries", type=int, default=1_000_000,
                        help="Manifest entries of the last --plan measurement (0: skip).")
    parser.add_argument("--work", default=None, help="Scratch folder (default: a temp dir).")
    args = parser.parse_args()
    from orca_beam.testing.standins.build import ensure_standins

    handle = ensure_standins() / "yamnet"
    sizes = [tuple(int(v) for v in item.split(":")) for item in args.sizes.split(",")]
    results = []
    root = Path(args.work or tempfile.mkdtemp(prefix="orca-scale-"))
    for sources, rows in sizes:
        work = root / f"s{sources}"
        shutil.rmtree(work, ignore_errors=True)
        results += run_size(sources, rows, work, handle)
        shutil.rmtree(work, ignore_errors=True)
    if args.plan_entries:
        work = root / "plan"
        shutil.rmtree(work, ignore_errors=True)
        matched = max(s for s, _ in sizes)
        results.append(run_big_plan(args.plan_entries, work, handle, matched))
        print(f"  plan over {args.plan_entries} entries: {results[-1]['wall_s']} s, "
              f"{results[-1]['peak_rss_mib']} MiB", flush=True)
        shutil.rmtree(work, ignore_errors=True)
    print(table(results))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "python": platform.python_version()},
            "model": "yamnet stand-in (random weights)", "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
