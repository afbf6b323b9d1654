"""Speed and memory per model, side by side, on this machine in one run:

(a) ceiling: the model called through its published interface (vggish/yamnet: 60 s of audio per
    call; humpback: ``features`` on full batches of 32 PCEN windows);
(b) notebook: per file, decode + resample the whole file, then one call of the model;
(c) pipeline: ``python -m pipelines.extract`` on DirectRunner, end to end, in a subprocess.

    python -m benchmarks.speed --json benchmarks/results/2core-standins.json

Inputs: the real recordings in ../shared/data/orca-calls (many short files) and long files made
by concatenating them (default 10 min and 2 h). Figures are audio seconds per wall second, medians
over ``--repeats``; (c) also gives its peak RSS and the share of computed patches that were kept.
With stand-in models (the default here: no TF Hub access) the output says so.
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
MODELS = ("yamnet", "vggish", "humpback")
LONG_RATE_HZ = 44100


def real_files(root: Path) -> list[Path]:
    """Every WAV of the shared recordings (catalog + hydrophone), sorted."""
    return sorted(root.glob("catalog/*.wav")) + sorted(root.glob("hydrophone/*.wav"))


def make_long_file(files: list[Path], seconds: float, path: Path) -> Path:
    """A 16-bit mono WAV at 44.1 kHz of ``seconds``: the recordings one after another, repeated."""
    from orca_beam.audio import load_audio

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


def ceiling(model: str, handle: str, audio: np.ndarray, repeats: int) -> dict:
    """(a): the published interface on full-size calls; audio s/s."""
    import tensorflow as tf

    from orca_beam.embed import cached_model
    from orca_beam.models.registry import get_model_spec

    spec = get_model_spec(model)
    loaded, version = cached_model(handle)
    if spec.interface == "humpback":
        pcen = loaded.front_end(tf.constant(audio[None, :spec.sample_rate_hz * 130, None]))
        pcen = pcen.numpy()[0]
        windows = np.stack([pcen[i * 128:(i + 1) * 128] for i in range(32)])
        batch = tf.constant(windows)
        loaded.features(batch)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            loaded.features(batch).numpy()
            times.append(time.perf_counter() - started)
        return {"audio_s_per_s": median_rate(32 * spec.hop_s, times), "call": "features [32,128,64]",
                "version": version.label}
    waveform = tf.constant(audio[:60 * spec.sample_rate_hz])
    loaded(waveform)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        out = loaded(waveform)
        (out if spec.interface == "vggish" else out[1]).numpy()
        times.append(time.perf_counter() - started)
    return {"audio_s_per_s": median_rate(60.0, times), "call": "model(60 s waveform)",
            "version": version.label}


def notebook(model: str, handle: str, files: list[Path], repeats: int) -> dict:
    """(b): per file, load_audio (decode + resample) and one call of the model on the whole file."""
    import tensorflow as tf

    from orca_beam.audio import load_audio
    from orca_beam.embed import cached_model
    from orca_beam.models.registry import get_model_spec

    spec = get_model_spec(model)
    loaded, _ = cached_model(handle)
    audio_s = sum(sf.info(str(f)).duration for f in files)

    def one(path: Path) -> None:
        waveform = load_audio(str(path), spec.sample_rate_hz)
        if spec.interface == "humpback":
            pcen = loaded.front_end(tf.constant(waveform[None, :, None])).numpy()[0]
            count = max(1, -(-max(0, pcen.shape[0] - 128) // 128) + 1)
            padded = np.zeros((count * 128, 64), np.float32)
            padded[:pcen.shape[0]] = pcen[:count * 128]
            loaded.features(tf.constant(padded.reshape(count, 128, 64))).numpy()
        else:
            out = loaded(tf.constant(waveform))
            (out if spec.interface == "vggish" else out[1]).numpy()

    one(files[0])
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        for path in files:
            one(path)
        times.append(time.perf_counter() - started)
    return {"audio_s_per_s": median_rate(audio_s, times), "audio_s": round(audio_s, 1)}


def pipeline(model: str, handle: str, inputs: list[str], repeats: int, work: Path) -> dict:
    """(c): the extraction job end to end on DirectRunner in a subprocess: audio s/s over the
    pipeline's wall time (model loading by the workers included), the process's wall time and
    peak RSS, and the share of computed patches kept."""
    runs = []
    for repeat in range(repeats):
        output = work / f"out-{model}-{repeat}-{time.monotonic_ns()}"
        command = [sys.executable, "-m", "pipelines.extract", "--runner=DirectRunner",
                   *[f"--input={i}" for i in inputs], f"--output={output}", f"--model={model}",
                   f"--model_handle={model}={handle}", "--projector_point=none"]
        # peak RSS from GNU time, which forks the job from its own small process: the job's
        # ru_maxrss seen from here would start at this (model-holding) process's size
        rss_file = work / f"rss-{time.monotonic_ns()}"
        started = time.perf_counter()
        done = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(rss_file), *command],
                              cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        if done.returncode != 0:
            raise RuntimeError(f"pipeline failed: {done.stderr.decode(errors='replace')[-2000:]}")
        peak_kib = int(rss_file.read_text().split()[-1])
        summary = json.loads((output / "summary.json").read_text())
        counters = summary["counters"]
        computed = counters.get(f"orca_beam.{model}:frames_computed", 0)
        kept = counters.get(f"orca_beam.{model}:frames_kept", 0)
        runs.append({"pipeline_wall_s": summary["wall_s"],
                     "process_wall_s": time.perf_counter() - started,
                     "audio_s": summary["audio_s"], "peak_rss_mib": peak_kib / 1024,
                     "kept_share": kept / computed if computed else None,
                     "model_calls": counters.get(f"orca_beam.{model}:model_calls", 0)})
    audio_s = runs[0]["audio_s"]
    return {"audio_s_per_s": median_rate(audio_s, [r["pipeline_wall_s"] for r in runs]),
            "process_audio_s_per_s": median_rate(audio_s, [r["process_wall_s"] for r in runs]),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
            "kept_share": runs[0]["kept_share"], "model_calls": runs[0]["model_calls"],
            "audio_s": audio_s, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=Path,
                        default=REPO.parent / "shared" / "data" / "orca-calls")
    parser.add_argument("--model", action="append", choices=MODELS, default=None)
    parser.add_argument("--model_handle", action="append", default=[], metavar="NAME=HANDLE",
                        help="Default: the stand-ins, built once into the cache.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--long_s", type=float, action="append", default=None,
                        help="Lengths of the concatenated long files (default 600 and 7200).")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "orca-bench")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    models = args.model or list(MODELS)
    handles = dict(item.split("=", 1) for item in args.model_handle)
    if any(m not in handles for m in models):
        from orca_beam.models.standins.build import ensure_standins

        standins = ensure_standins()
        handles = {m: handles.get(m, str(standins / m)) for m in models}
    args.work.mkdir(parents=True, exist_ok=True)
    files = real_files(args.recordings)
    longs = [make_long_file(files, s, args.work / f"long-{int(s)}s.wav")
             for s in (args.long_s or [600.0, 7200.0])]
    from orca_beam.audio import load_audio

    sample = {rate: load_audio(str(longs[0]), rate) for rate in (16000, 10000)}
    from orca_beam.models.registry import get_model_spec

    result = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version()},
              "inputs": {"short_files": len(files),
                         "short_audio_s": round(sum(sf.info(str(f)).duration for f in files), 1),
                         "long_files_s": [round(sf.info(str(p)).duration) for p in longs]},
              "models": {}}
    for model in models:
        rate = get_model_spec(model).sample_rate_hz
        print(f"[{model}] ceiling ...", flush=True)
        row = {"ceiling": ceiling(model, handles[model], sample[rate], max(5, args.repeats))}
        row["standin"] = row["ceiling"]["version"].endswith("+standin")
        print(f"[{model}] notebook, short files ...", flush=True)
        row["notebook_short"] = notebook(model, handles[model], files, args.repeats)
        print(f"[{model}] pipeline, short files ...", flush=True)
        row["pipeline_short"] = pipeline(model, handles[model],
                                         [f"{args.recordings}/catalog/*.wav",
                                          f"{args.recordings}/hydrophone/*.wav"],
                                         args.repeats, args.work)
        for long in longs:
            key = f"{round(sf.info(str(long)).duration)}s"
            if sf.info(str(long)).duration <= 900:
                print(f"[{model}] notebook, {key} file ...", flush=True)
                row[f"notebook_{key}"] = notebook(model, handles[model], [long], 1)
            print(f"[{model}] pipeline, {key} file ...", flush=True)
            row[f"pipeline_{key}"] = pipeline(model, handles[model], [str(long)], 1, args.work)
        ceiling_rate = row["ceiling"]["audio_s_per_s"]
        for key, value in list(row.items()):
            if key.startswith("pipeline_"):
                value["of_ceiling"] = value["audio_s_per_s"] / ceiling_rate
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
    lines = ["| model | input | ceiling (a) | notebook (b) | pipeline (c) | c/a | c/b | peak RSS "
             "MiB | kept |", "|---|---|---|---|---|---|---|---|---|"]
    for model, row in result["models"].items():
        for key, value in row.items():
            if not key.startswith("pipeline_"):
                continue
            which = key.split("_", 1)[1]
            notebook_row = row.get(f"notebook_{which}")
            kept = value["kept_share"]
            vs_notebook = f"{value['vs_notebook']:.1f}x" if "vs_notebook" in value else "-"
            lines.append(
                f"| {model} | {which} | {row['ceiling']['audio_s_per_s']:.0f} | "
                f"{notebook_row['audio_s_per_s']:.0f} | " if notebook_row else
                f"| {model} | {which} | {row['ceiling']['audio_s_per_s']:.0f} | - | ")
            lines[-1] += (f"{value['audio_s_per_s']:.0f} | {value['of_ceiling']:.0%} | "
                          f"{vs_notebook} | "
                          f"{value['peak_rss_mib']:.0f} | "
                          f"{'-' if kept is None else f'{kept:.0%}'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
