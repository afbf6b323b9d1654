"""The pipeline against the seed-faithful notebook, whole process against whole process:

    .venv/bin/python -m benchmarks.seed_notebook --nbenv /work/nbenv \\
        --json benchmarks/results/seed-notebook-2core.json [--copies 4] [--long_s 600] [--repeats 2]

(b) notebook: ``peers/seed_notebook.py`` in its own environment (``--nbenv``: TensorFlow 2.17 +
    tensorflow-io 0.37, see that file's docstring for the install command): per file, read,
    ``tfio.audio.resample`` to 16 kHz, one eager call of YAMNet on the whole waveform;
(c) pipeline: ``python -m pipelines.extract --runner=DirectRunner --model=yamnet`` in a
    subprocess (``speed.run_pipeline``; projector off), a fresh output folder each run.

Both are timed from the outside, as a user sees them: the wall seconds of the whole subprocess
(interpreter start, imports, model load, every file, writing the result) measured here around it,
and its peak RSS from GNU ``time -f %M``. The two alternate, (b) then (c) on even repeats and (c)
then (b) on odd ones, so the machine's drift over minutes falls on both. The headline
``pipeline_x_notebook`` is (b)'s best wall seconds over (c)'s best: how many times faster the
pipeline's whole process is.

Inputs (nothing is copied into the repository; work files go under ``--work``): the real
recordings in ../shared/data/orca-calls (``speed.real_files``: the catalogue clips and the
hydrophone excerpts), linked ``--copies`` times under other names (``speed.short_set``), plus one
``--long_s`` file made by concatenating them at 44.1 kHz (``speed.make_long_file``; 0: none). Both
sides get exactly the same file list. The model is the YAMNet stand-in SavedModel built by
``orca_beam.testing.standins.build.ensure_standins`` (random weights, the published interface;
``"standin": true`` in the JSON) unless ``--model_handle`` gives another folder.

Frames: per file, the embedding rows the pipeline wrote against the rows of the notebook's one
call. They match when both resamplers give the same 16 kHz sample count (the pipeline cuts and
packs on the model's hop grid and keeps the whole-file frame count); soxr and tfio may round a
file's length differently, which can move a file across a frame boundary. Totals, the number of
files that differ, and the cosine similarity of the rows of the files that match are reported
(the resamplers differ, so the rows are close, not equal).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from benchmarks.speed import make_long_file, pipeline_rows, real_files, run_pipeline, short_set

REPO = Path(__file__).resolve().parents[1]
MODEL = "yamnet"
PEER = REPO / "benchmarks" / "peers" / "seed_notebook.py"


def standin_handle() -> str:
    """The YAMNet stand-in SavedModel folder (built once into the cache by ``ensure_standins``,
    called in a subprocess so that this driver never imports TensorFlow)."""
    done = subprocess.run(
        [sys.executable, "-c", "from orca_beam.testing.standins.build import ensure_standins; "
         "print(ensure_standins())"], cwd=REPO, capture_output=True, text=True, check=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    return str(Path(done.stdout.strip().splitlines()[-1]) / MODEL)


def run_notebook(python: str, listing: Path, handle: str, work: Path) -> tuple[dict, Path]:
    """(b) once: the notebook peer over the files of ``listing`` in a fresh process of
    ``python`` under GNU ``time``. Returns its JSON plus ``process_wall_s`` (wall seconds around
    the subprocess, measured here) and ``peak_rss_mib`` (MiB), and the path of its .npz (each
    file's embeddings [n, 1024], keyed by list index)."""
    stamp = time.monotonic_ns()
    stored, rss_file = work / f"notebook-{stamp}.npz", work / f"rss-notebook-{stamp}"
    started = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%M", "-o", str(rss_file), python, str(PEER), "--list",
         str(listing), "--model_handle", handle, "--npz", str(stored)],
        cwd=work, capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    process_wall_s = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"notebook failed: {done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = process_wall_s
    result["peak_rss_mib"] = int(rss_file.read_text().split()[-1]) / 1024
    return result, stored


def run_extract(inputs: list[str], handle: str, work: Path, tag: str) -> tuple[dict, Path]:
    """(c) once: ``pipelines.extract`` on DirectRunner over ``inputs`` into a fresh output folder
    (``speed.run_pipeline``). Returns the figures kept (wall seconds of the whole process and of
    the Beam pipeline, model load seconds, audio seconds, peak RSS in MiB, files and rows
    written) and the output folder."""
    output = work / f"out-{tag}-{time.monotonic_ns()}"
    summary = run_pipeline([MODEL], {MODEL: handle}, inputs, output)
    counters = summary.get("counters", {})
    return {"process_wall_s": summary["process_wall_s"],
            "pipeline_wall_s": summary.get("wall_s"),
            "model_load_s": (summary.get("model_load_s") or {}).get(MODEL),
            "audio_s": summary.get("audio_s"), "peak_rss_mib": summary["peak_rss_mib"],
            "model_calls": counters.get(f"orca_beam.{MODEL}:model_calls"),
            "model_s": counters.get(f"orca_beam.{MODEL}:model_ms", 0) / 1000,
            "output": str(output)}, output


def compare_frames(files: list[Path], notebook_npz: Path, written: dict[str, np.ndarray]
                   ) -> dict:
    """Per file (by absolute path), the pipeline's embedding rows against the notebook's: totals,
    files that differ in row count (with up to 10 examples: path, notebook rows, pipeline rows),
    files the pipeline wrote nothing for, and the cosine similarity (min and median over rows)
    of the files whose counts match."""
    stored = np.load(notebook_npz)
    ours = {os.path.abspath(source): rows for source, rows in written.items()}
    differ, examples, missing, cosines = 0, [], 0, []
    notebook_total = pipeline_total = 0
    for index, path in enumerate(files):
        want = stored[str(index)]
        got = ours.get(os.path.abspath(path))
        notebook_total += len(want)
        if got is None:
            missing += 1
            got = np.zeros((0, want.shape[1]), np.float32)
        pipeline_total += len(got)
        if len(got) != len(want):
            differ += 1
            if len(examples) < 10:
                examples.append([str(path), len(want), len(got)])
        elif len(want):
            a, b = want.astype(np.float64), got.astype(np.float64)
            norms = np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)
            cosines.append((a * b).sum(axis=1) / norms)
    cosine = np.concatenate(cosines) if cosines else np.zeros(0)
    return {"files": len(files), "notebook_frames": notebook_total,
            "pipeline_rows": pipeline_total, "files_differing": differ,
            "differing_examples": examples, "files_missing_in_pipeline": missing,
            "sources_written_not_listed": len(set(ours) - {os.path.abspath(p) for p in files}),
            "cosine_min": float(cosine.min()) if cosine.size else None,
            "cosine_median": float(np.median(cosine)) if cosine.size else None}


def summarise(runs: list[dict]) -> dict:
    """Best (minimum), median and all of the runs' whole-process wall seconds, and the largest
    peak RSS (MiB)."""
    walls = [r["process_wall_s"] for r in runs]
    return {"best_process_wall_s": min(walls), "median_process_wall_s": statistics.median(walls),
            "all_process_wall_s": walls, "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
            "all_peak_rss_mib": [r["peak_rss_mib"] for r in runs], "runs": runs}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nbenv", type=Path, required=True,
                        help="The notebook's virtual environment (its bin/python is used).")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--copies", type=int, default=4,
                        help="Links to each real recording (default 4: 556 files).")
    parser.add_argument("--long_s", type=float, default=600.0,
                        help="Seconds of the one concatenated long file (default 600; 0: none).")
    parser.add_argument("--repeats", type=int, default=2,
                        help="Runs of each side, alternating (default 2).")
    parser.add_argument("--recordings", type=Path,
                        default=REPO.parent / "shared" / "data" / "orca-calls")
    parser.add_argument("--model_handle", default=None,
                        help="A YAMNet-interface SavedModel folder (default: the stand-in).")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "orca-seednb")
    args = parser.parse_args(argv)
    python = str(args.nbenv / "bin" / "python")
    handle = args.model_handle or standin_handle()
    standin = (Path(handle) / "assets" / "orca_beam_standin.json").exists()
    args.work.mkdir(parents=True, exist_ok=True)
    recordings = real_files(args.recordings)
    files = short_set(recordings, args.copies, args.work)
    inputs = [f"{args.work}/short/c{k}/*.wav" for k in range(args.copies)]
    if args.long_s > 0:
        long = make_long_file(recordings, args.long_s, args.work / f"long-{int(args.long_s)}s.wav")
        files.append(long)
        inputs.append(str(long))
    listing = args.work / "notebook-files.txt"
    listing.write_text("\n".join(str(p) for p in files) + "\n")
    audio_s = sum(sf.info(str(f)).duration for f in files)
    notebook_runs, pipeline_runs, order = [], [], []
    last_npz = last_output = None
    for repeat in range(args.repeats):
        sides = ("notebook", "pipeline") if repeat % 2 == 0 else ("pipeline", "notebook")
        order.append(list(sides))
        for side in sides:
            print(f"[repeat {repeat}] {side} ...", flush=True)
            if side == "notebook":
                run, last_npz = run_notebook(python, listing, handle, args.work)
                notebook_runs.append(run)
            else:
                run, last_output = run_extract(inputs, handle, args.work, str(repeat))
                pipeline_runs.append(run)
            print(f"[repeat {repeat}] {side}: {run['process_wall_s']:.2f} s, "
                  f"{run['peak_rss_mib']:.0f} MiB", flush=True)
    notebook, extract = summarise(notebook_runs), summarise(pipeline_runs)
    result = {
        "standin": standin, "model": MODEL, "model_handle": handle,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "inputs": {"files": len(files), "copies": args.copies,
                   "distinct_recordings": len(recordings), "long_s": args.long_s,
                   "audio_s": round(audio_s, 3)},
        "timing": "whole process, measured by the driver around each subprocess (interpreter "
                  "start to exit); peak RSS from GNU time -f %M",
        "repeats": args.repeats, "order": order,
        "notebook": notebook, "pipeline": extract,
        "pipeline_x_notebook": notebook["best_process_wall_s"] / extract["best_process_wall_s"],
        "pipeline_x_notebook_median": (notebook["median_process_wall_s"]
                                       / extract["median_process_wall_s"]),
        "notebook_audio_s_per_s": audio_s / notebook["best_process_wall_s"],
        "pipeline_audio_s_per_s": audio_s / extract["best_process_wall_s"],
        "frames": compare_frames(files, last_npz, pipeline_rows(last_output, MODEL)),
    }
    print(json.dumps(result, indent=1), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
