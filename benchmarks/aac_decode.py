"""AAC decoding speed on one core: an HLS folder's segments decoded as one stream and resampled.

    python -m benchmarks.aac_decode --json benchmarks/results/aac-decode-1core.json

Writes a folder of 10 s AAC segments (FFmpeg's HLS muxer inside PyAV, as Orcasound's nodes) from
the real hydrophone recordings repeated to ``--minutes``, then, pinned to one CPU, times
(1) ``hls.decode_segments`` alone (one AAC decoder across the segments) and (2) the same plus
soxr "HQ" resampling to 16 kHz, as the pipeline does for VGGish/YAMNet. Audio seconds per wall
second, median of ``--repeats``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from orca_beam.core.hls import PLAYLIST_NAME, order_segments, parse_playlist

REPO = Path(__file__).resolve().parents[1]


def make_folder(recordings: Path, minutes: float, work: Path) -> Path:
    """The HLS folder of ``minutes`` of the hydrophone recordings at 48 kHz (made once)."""
    from orca_beam.core.audio import load_audio
    from orca_beam.testing.hls_fixtures import write_hls_folder

    folder = work / f"hls-{int(minutes * 60)}s" / "1633046400"
    if (folder / PLAYLIST_NAME).exists():
        return folder
    base = np.concatenate([load_audio(str(f), 48000)
                           for f in sorted((recordings / "hydrophone").glob("*.wav"))])
    total = int(minutes * 60 * 48000)
    samples = np.tile(base, total // len(base) + 1)[:total, None]
    return write_hls_folder(samples, folder, date_times=False)


def timed_pass(items, resample_to_hz: int | None) -> tuple[float, int]:
    """(wall seconds, samples decoded) of one decode of every segment."""
    import soxr

    from orca_beam.core.audio import RESAMPLE_QUALITY
    from orca_beam.core.hls import decode_segments

    stream = (soxr.ResampleStream(48000, resample_to_hz, 1, dtype="float32",
                                  quality=RESAMPLE_QUALITY) if resample_to_hz else None)
    started, samples = time.perf_counter(), 0
    for decoded in decode_segments(items):
        samples += len(decoded.samples)
        if stream is not None:
            stream.resample_chunk(decoded.samples.mean(axis=1, dtype=np.float32))
    return time.perf_counter() - started, samples


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=Path,
                        default=REPO.parent / "shared" / "data" / "orca-calls")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "orca-bench")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    folder = make_folder(args.recordings, args.minutes, args.work)
    segments = order_segments(parse_playlist((folder / PLAYLIST_NAME).read_text()),
                              [p.name for p in folder.iterdir()])
    items = [(segment, (folder / segment.name).read_bytes()) for segment in segments]
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    result = {"segments": len(segments), "machine": {"cpus_used": 1,
                                                     "python": platform.python_version()}}
    for key, rate in (("decode", None), ("decode_resample_16k", 16000)):
        timed_pass(items, rate)  # warm-up
        runs = [timed_pass(items, rate) for _ in range(args.repeats)]
        audio_s = runs[0][1] / 48000
        result[key] = {"audio_s": round(audio_s, 1), "pass_s": [round(r[0], 4) for r in runs],
                       "audio_s_per_s": round(audio_s / statistics.median(r[0] for r in runs))}
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
