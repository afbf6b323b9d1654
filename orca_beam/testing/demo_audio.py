"""A few synthetic recordings for a first run anywhere, offline: tones, a frequency sweep and
noise, as 48 kHz mono WAV files of a few seconds each (nobody's real audio).

    python -m orca_beam.testing.demo_audio demo/     # writes demo/*.wav and demo/labels.csv

``labels.csv`` labels each file by what it holds (``file,kind``: call, tone, sweep, noise), keyed
by file as ``--label_table`` is, for a first run of the classifier.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf

RATE_HZ = 48_000


def demo_signals(seed: int = 0) -> dict[str, np.ndarray]:
    """name -> float32 samples at 48 kHz: a 2 kHz tone (4 s), a 500 Hz-8 kHz sweep (6 s),
    pink-ish noise (5 s) and a tone under noise with a call-like up-sweep (9 s)."""
    rng = np.random.default_rng(seed)

    def t(seconds: float) -> np.ndarray:
        return np.arange(int(seconds * RATE_HZ)) / RATE_HZ

    sweep_t = t(6.0)
    sweep = np.sin(2 * np.pi * (500 * sweep_t + (8000 - 500) / (2 * 6.0) * sweep_t ** 2))
    white = rng.standard_normal(int(5.0 * RATE_HZ))
    noise = np.cumsum(white) * 0.002
    noise = noise - np.convolve(noise, np.ones(4801) / 4801, mode="same")
    mixed_t = t(9.0)
    call = np.where((mixed_t > 3) & (mixed_t < 4.5),
                    np.sin(2 * np.pi * (1500 * mixed_t + 600 * (mixed_t - 3) ** 2)), 0.0)
    mixed = 0.3 * call + 0.05 * rng.standard_normal(len(mixed_t))
    signals = {"tone_2khz": 0.5 * np.sin(2 * np.pi * 2000 * t(4.0)), "sweep": 0.5 * sweep,
               "noise": noise / np.max(np.abs(noise)) * 0.5, "call_in_noise": mixed}
    return {name: np.asarray(samples, np.float32) for name, samples in signals.items()}


#: What each demo file holds (labels.csv).
DEMO_KINDS = {"tone_2khz": "tone", "sweep": "sweep", "noise": "noise", "call_in_noise": "call"}


def write_demo(folder: Path, seed: int = 0) -> list[Path]:
    """Writes the demo signals as ``<folder>/<name>.wav`` (16-bit PCM) and ``labels.csv``
    (``file,kind``); returns the WAV paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, samples in demo_signals(seed).items():
        path = folder / f"{name}.wav"
        sf.write(str(path), samples, RATE_HZ, subtype="PCM_16")
        paths.append(path)
    (folder / "labels.csv").write_text(
        "file,kind\n" + "".join(f"{name}.wav,{kind}\n" for name, kind in DEMO_KINDS.items()))
    return paths


def main(argv: list[str] | None = None) -> None:
    """The command line: ``python -m orca_beam.testing.demo_audio FOLDER``."""
    parser = argparse.ArgumentParser(prog="python -m orca_beam.testing.demo_audio",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="Folder to write the WAV files into.")
    args = parser.parse_args(argv)
    for path in write_demo(args.folder):
        print(path)


if __name__ == "__main__":
    main()
