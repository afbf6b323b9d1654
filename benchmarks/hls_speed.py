"""Speed and memory of the HLS source: a model (YAMNet by default) over a stitched HLS folder of
real recordings (AAC in MPEG-TS, 10 s segments, written by FFmpeg's HLS muxer inside PyAV), as
one continuous stream (``--start/--end``), against the interface ceiling measured in the same
run (before and after each pipeline run), and beside it the same segments embedded as separate
files (``--input folder/*.ts``). Folders of two sizes give the peak RSS of each (GNU ``time``).

    python -m benchmarks.hls_speed --json benchmarks/results/2core-hls-yamnet.json

With stand-in models (the default here: no TF Hub access) the output says so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from benchmarks.speed import DirectCalls, make_long_file, pipeline, real_files
from orca_beam.testing.hls_fixtures import write_hls_folder

FOLDER_S = 1_633_046_400  # 2021-10-01T00:00:00Z
RANGE = ["--start=2021-10-01T00:00:00Z", "--end=2021-10-02T00:00:00Z"]


def hls_folder(files: list[Path], seconds: float, root: Path) -> Path:
    """``<root>/hls/<FOLDER_S>/``: ``seconds`` of the recordings (48 kHz mono, one after another,
    repeated) as 10 s AAC segments; made once per size."""
    from orca_beam.core.audio import load_audio

    folder = root / "hls" / str(FOLDER_S)
    if (folder / "live.m3u8").exists():
        return folder
    base = np.concatenate([load_audio(str(f), 48000) for f in files])
    samples = np.tile(base, int(np.ceil(seconds * 48000 / len(base))))[:int(seconds * 48000)]
    write_hls_folder(samples[:, None], folder,
                     first_pdt=datetime.fromtimestamp(FOLDER_S + 2.5, UTC))
    return folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recordings", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared" / "data"
                        / "orca-calls")
    parser.add_argument("--model", default="yamnet")
    parser.add_argument("--model_handle", default=None)
    parser.add_argument("--minutes", type=float, action="append", default=None,
                        help="Folder sizes (default 30 and 60 minutes).")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "orca-hls")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    handle = args.model_handle
    if handle is None:
        from orca_beam.testing.standins.build import ensure_standins

        handle = str(ensure_standins() / args.model)
    args.work.mkdir(parents=True, exist_ok=True)
    files = real_files(args.recordings)
    sizes = sorted(args.minutes or [30.0, 60.0])
    folders = {m: hls_folder(files, m * 60, args.work / f"{int(m)}min") for m in sizes}
    ceiling_audio = make_long_file(files, 600.0, args.work / "ceiling-600s.wav")
    result = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version()},
              "model": args.model, "runs": {}}
    direct = DirectCalls(args.model, handle, [files[0]], [], ceiling_audio, 3, args.work)
    try:
        result["standin"] = direct.result["standin"]
        result["version"] = direct.result["version"]
        for minutes, folder in folders.items():
            segments = len(list(folder.glob("live*.ts")))
            key = f"{int(minutes)}min"
            print(f"[{key}] {segments} segments as one stream ...", flush=True)
            stream = pipeline(args.model, handle, [f"{folder.parent}/"], args.repeats,
                              args.work, direct, extra=RANGE)
            print(f"[{key}] the same segments as separate files ...", flush=True)
            separate = pipeline(args.model, handle, [f"{folder}/live*.ts"], args.repeats,
                                args.work, direct)
            result["runs"][key] = {"segments": segments, "stream": stream,
                                   "separate_files": separate}
            print(json.dumps({key: {k: {f: v[f] for f in ("audio_s", "audio_s_per_s",
                                                          "of_ceiling", "peak_rss_mib")}
                                    for k, v in (("stream", stream),
                                                 ("separate_files", separate))}},
                             indent=1), flush=True)
    finally:
        direct.close()
    print(table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")


def table(result: dict) -> str:
    """A Markdown table of the runs."""
    lines = ["| folder | input | audio s | audio s/s | of ceiling | whole process s/s | "
             "peak RSS MiB |", "|---|---|---|---|---|---|---|"]
    for key, run in result["runs"].items():
        for name, label in (("stream", "one stream"), ("separate_files", "separate files")):
            r = run[name]
            lines.append(f"| {key} ({run['segments']} segments) | {label} | {r['audio_s']:.0f} | "
                         f"{r['audio_s_per_s']:.0f} | {100 * r['of_ceiling']:.0f} % | "
                         f"{r['process_audio_s_per_s']:.0f} | {r['peak_rss_mib']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
