"""The seed-faithful notebook on YAMNet: TensorFlow 2.17 + tensorflow-io, file by file.

What a notebook from before this project does: read each file, resample the whole of it with
``tfio.audio.resample`` to the model's 16 kHz, and call the model once, eagerly, on the whole
waveform (YAMNet's interface: ``scores, embeddings, log_mel = model(waveform)``), keeping
``embeddings.numpy()``. No warm-up call, no batching, no packing.

Runs in its own virtual environment (tensorflow-io's last release, 0.37.1, loads its ops only
under TensorFlow 2.17; the project's environment has TensorFlow 2.21):

    python3.11 -m venv /work/nbenv && /work/nbenv/bin/pip install "tensorflow==2.17.*" \\
        "tensorflow-io==0.37.*" "tensorflow-hub==0.16.*" "tf_keras==2.17.*" "setuptools<82" \\
        soundfile numpy
    /work/nbenv/bin/python benchmarks/peers/seed_notebook.py --list FILES.txt \\
        --model_handle SAVEDMODEL_DIR [--npz OUT.npz]

Reads one audio path per line of ``--list`` (soundfile; several channels are averaged to mono);
``--model_handle`` is a SavedModel folder opened with ``tensorflow_hub.load``. Prints one JSON
object: files, audio seconds, embedding rows ("frames"), files with none, the loop's wall seconds
(read + resample + call + ``.numpy()`` over every file), the seconds from the process's start
(its start time in /proc) to the model loaded ("import_and_load_s"), the seconds spent writing
``--npz`` and the whole process's age at the end ("process_s"; the boot time in /proc is in
whole seconds, so both ages are good to about 1 s: the driver's wall seconds around the
subprocess are the figure to compare). ``--npz``: each file's embeddings [n, 1024] float32,
keyed by its index in the list.
"""

import argparse
import json
import time

from process_age import process_age_s

RATE_HZ = 16000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--list", required=True)
    parser.add_argument("--model_handle", required=True)
    parser.add_argument("--npz")
    args = parser.parse_args()
    with open(args.list) as handle:
        files = [line.strip() for line in handle if line.strip()]
    import numpy as np
    import soundfile as sf
    import tensorflow as tf
    import tensorflow_hub as hub
    import tensorflow_io as tfio

    model = hub.load(args.model_handle)
    import_and_load_s = process_age_s()
    started = time.perf_counter()
    found, audio_s = [], 0.0
    for path in files:
        samples, rate = sf.read(path, dtype="float32", always_2d=True)
        audio_s += len(samples) / rate
        waveform = tf.constant(samples.mean(axis=1))
        if rate != RATE_HZ:
            waveform = tfio.audio.resample(waveform, rate_in=rate, rate_out=RATE_HZ)
        _scores, embeddings, _log_mel = model(waveform)
        found.append(embeddings.numpy())
    loop_s = time.perf_counter() - started
    save_s = 0.0
    if args.npz:
        saving = time.perf_counter()
        np.savez(args.npz, **{str(index): rows for index, rows in enumerate(found)})
        save_s = time.perf_counter() - saving
    process_s = process_age_s()
    print(json.dumps({
        "files": len(files), "audio_s": round(audio_s, 3),
        "frames": sum(len(rows) for rows in found),
        "files_with_no_frame": sum(1 for rows in found if not len(rows)),
        "loop_s": round(loop_s, 3), "import_and_load_s": round(import_and_load_s, 3),
        "npz_s": round(save_s, 3), "process_s": round(process_s, 3),
        "loop_audio_s_per_s": round(audio_s / loop_s, 2),
        "process_audio_s_per_s": round(audio_s / process_s, 2),
        "versions": {"tensorflow": tf.__version__, "tensorflow_io": tfio.__version__,
                     "tensorflow_hub": hub.__version__}}))


if __name__ == "__main__":
    main()
