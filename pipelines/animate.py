"""A video of a window sliding over one recording: waveform, spectrogram and one panel per model's
embeddings, with the recording's audio in sync (the seed's ``create_embedding_animation``):

    python -m pipelines.animate FILE --model birdnet [--model yamnet ...] --output anim.mp4 \
        [--fps 10] [--window_s 10] [--model_handle yamnet=DIR]

FILE: a local path, gs:// or s3:// URL of any format the pipeline reads. H.264 + AAC in MP4,
written with PyAV; ``ceil(duration x fps)`` frames. See docs/reports.md.
"""

from __future__ import annotations

import argparse
import time

from orca_beam.core.errors import UsageError
from orca_beam.core.registry import MODELS
from orca_beam.models.embed import embed_file
from orca_beam.reports.animation import AnimationSettings, animate
from pipelines.cli import beam_options, run_command


def parser() -> argparse.ArgumentParser:
    """The animation's flags."""
    p = argparse.ArgumentParser(prog="python -m pipelines.animate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="The recording (local, gs:// or s3://).")
    p.add_argument("--model", action="append", required=True, choices=sorted(MODELS),
                   help="A model whose embeddings get a panel (repeatable).")
    p.add_argument("--model_handle", action="append", default=[], metavar="MODEL=HANDLE",
                   help="A model's TF Hub handle or SavedModel folder instead of the registry's.")
    p.add_argument("--output", required=True, help="The .mp4 to write (local).")
    p.add_argument("--fps", type=float, default=10.0, help="Frames per second (default 10).")
    p.add_argument("--window_s", type=float, default=10.0,
                   help="Seconds shown in each frame, centred on the cursor (default 10).")
    return p


def run(argv: list[str] | None = None) -> dict:
    """Embeds FILE with each model and writes the video; returns what was written."""
    started = time.monotonic()
    args, beam_args = parser().parse_known_args(argv)
    beam_options(beam_args)  # the gs:// and s3:// filesystems
    if args.fps <= 0 or args.window_s <= 0:
        raise UsageError("--fps and --window_s must be positive")
    if not args.output.endswith(".mp4"):
        raise UsageError(f"--output {args.output}: the video is an .mp4")
    handles = dict(item.split("=", 1) for item in args.model_handle)
    embeddings = [embed_file(args.file, model, handles.get(model)) for model in args.model]
    summary = animate(args.file, embeddings, args.output,
                      AnimationSettings(fps=args.fps, window_s=args.window_s))
    summary["wall_s"] = round(time.monotonic() - started, 2)
    print(f"animation: {summary['frames']} frames at {summary['fps']:g} frames/s "
          f"({summary['video_s']:.2f} s; the recording {summary['duration_s']:.2f} s), window "
          f"{summary['window_s']:g} s, models {', '.join(summary['models'])}; {args.output} "
          f"({summary['wall_s']:.1f} s)")
    for model, standin in summary["standin"].items():
        if standin:
            print(f"  {model} is a STAND-IN model (random weights): its panel is not a real "
                  "embedding")
    return summary


def main() -> None:
    """Console entry point."""
    run_command(run)


if __name__ == "__main__":
    main()
