"""The classifier, measured (tables in benchmarks/README.md, JSON in benchmarks/results/):

    python -m benchmarks.classify quality --json benchmarks/results/classify-quality.json
    python -m benchmarks.classify loop --json benchmarks/results/classify-loop-2core.json
    python -m benchmarks.classify detection --json benchmarks/results/classify-detection.json

* ``quality``: on the 136 labelled catalogue clips, the classifier's 5-fold cross-validated
  average precision per call type, its macro-F1 at the chosen thresholds and the argmax macro-F1
  (comparable to the quality table's probe), for BirdNET V2.4 rows (the real model) with each
  input normalisation, beside a log-mel baseline through the same classifier.
* ``loop``: ``train`` wall time at 1k and 10k labelled 1024-d windows; ``apply`` at 1M and 10M
  synthetic 128-d rows against a plain scan of the same embedding column in the same run, with
  peak RSS (GNU time) of both; a re-run that finds nothing new.
* ``detection``: a long recording built here from the real hydrophone background with catalogue
  calls mixed in at known times and SNRs; a classifier trained on other clips of those call types;
  recall and precision of the mixed-in calls per type and SNR from ``events.csv``, with each
  event's time error.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RECORDINGS = REPO.parent / "shared" / "data" / "orca-calls"
LOOP_TRAIN_SIZES = (1_000, 10_000)
LOOP_APPLY_SIZES = (1_000_000, 10_000_000)
APPLY_DIM = 128
CLASSES = 5


def machine() -> dict:
    """Where the numbers come from."""
    import os

    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "machine": platform.machine()}


# -- loop cost ----------------------------------------------------------------------------------

def window_labels(folder: str, count: int, path: Path, seed: int = 0) -> Path:
    """A window-keyed label table of ``count`` random rows of the version, each given one of
    CLASSES random classes (yes verdicts)."""
    from orca_beam.store.reader import current_rows

    table = current_rows(folder, ["source", "start_s", "end_s"])
    rng = np.random.default_rng(seed)
    chosen = rng.choice(table.num_rows, size=count, replace=False)
    rows = table.take(chosen).to_pylist()
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["source", "start_s", "end_s", "label", "verdict"])
        for row in rows:
            writer.writerow([row["source"], row["start_s"], row["end_s"],
                             f"c{rng.integers(CLASSES)}", "yes"])
    return path


def train_cost(work: Path) -> list[dict]:
    """``train`` (the command, under GNU time) at each LOOP_TRAIN_SIZES labelled windows of a
    1024-d version of distinct random rows."""
    from benchmarks.scale import synthetic_version, timed

    base = work / "train"
    folder, _, _ = synthetic_version(base, 2 * max(LOOP_TRAIN_SIZES), files=200, distinct=True)
    out = []
    for count in LOOP_TRAIN_SIZES:
        labels = window_labels(folder, count, base / f"labels{count}.csv")
        run = timed([sys.executable, "-m", "pipelines.classify", "train",
                     f"--embeddings={base / 'out'}", "--model=yamnet",
                     f"--label_table={labels}", f"--output={base / f'clf{count}'}"],
                    base / f"train{count}.log")
        metrics = json.loads((base / f"clf{count}" / "metrics.json").read_text())
        out.append({"labelled_windows": count, "dim": 1024, "classes": CLASSES,
                    "weak_negatives": metrics["labels"]["weak_negatives"],
                    "command_wall_s": run["wall_s"], "peak_rss_mib": run["peak_rss_mib"],
                    "train_wall_s": metrics["wall_s"]})
        print(json.dumps(out[-1]), flush=True)
    return out


def classifier_for(folder: str, base: Path) -> Path:
    """A classifier trained on 1,000 labelled windows of the version, its thresholds raised to
    the 99.9th percentile of its scores on the first row shard (about 0.1 % of rows detected
    per class, so that the run measures scoring, not writing detections)."""
    from orca_beam.classify.linear import LinearClassifier
    from orca_beam.store.manifest import version_state
    from orca_beam.store.reader import embedding_matrix, read_current_rows_of_shard
    from pipelines import classify

    base.mkdir(parents=True, exist_ok=True)
    labels = window_labels(folder, 1000, base / "labels.csv")
    out = base.parent / "clf"
    classify.run(["train", f"--embeddings={base.parent / 'out'}", "--model=yamnet",
                  f"--label_table={labels}", f"--output={out}", "--weak_negatives=0"])
    model = LinearClassifier.load(str(out / "classifier.json"))
    first = version_state(folder)["row_shards"][0]
    sample = embedding_matrix(read_current_rows_of_shard(first, None, ["embedding"]))
    model.thresholds = np.quantile(model.scores(sample), 0.999, axis=0)
    model.save(str(out / "classifier.json"))
    return out / "classifier.json"


def apply_cost(work: Path, sizes: tuple[int, ...]) -> list[dict]:
    """Per size: a plain scan of the embedding column, then ``apply`` (FnApiRunner) and its
    re-run, each under GNU time."""
    from benchmarks.scale import synthetic_version, timed
    from benchmarks.search import SCAN
    from orca_beam.store.manifest import version_state

    out = []
    for rows in sizes:
        base = work / f"rows{rows}"
        folder, _, written = synthetic_version(base, rows, dim=APPLY_DIM)
        write_s = written["write_s"]
        classifier = classifier_for(folder, base / "labels")
        shards = version_state(folder)["row_shards"]
        scan = timed([sys.executable, "-c", SCAN, *shards], base / "scan.log")
        scan.update(json.loads(scan.pop("tail")[-1]))
        command = [sys.executable, "-m", "pipelines.classify", "apply",
                   f"--classifier={classifier}", f"--embeddings={base / 'out'}",
                   "--model=yamnet", f"--output={base / 'scores'}", "--runner=FnApiRunner"]
        apply_run = timed(command, base / "apply.log")
        summary = json.loads((base / "scores" / "apply_summary.json").read_text())
        rerun = timed(command, base / "rerun.log")
        again = json.loads((base / "scores" / "apply_summary.json").read_text())
        scan_rate = rows / scan["wall_s"]
        apply_rate = summary["rows_scored"] / apply_run["wall_s"]
        out.append({
            "rows": rows, "dim": APPLY_DIM, "classes": CLASSES, "row_shards": len(shards),
            "bytes_on_disk": written["bytes_on_disk"], "write_s": round(write_s, 1),
            "scan": scan,
            "apply": {"wall_s": apply_run["wall_s"], "peak_rss_mib": apply_run["peak_rss_mib"],
                      "job_wall_s": summary["wall_s"], "rows_scored": summary["rows_scored"],
                      "detections": summary["detections"], "events": summary["events"]},
            "rerun": {"wall_s": rerun["wall_s"], "peak_rss_mib": rerun["peak_rss_mib"],
                      "rows_scored": again["rows_scored"], "rows_kept": again["rows_kept"]},
            "scan_rows_per_s": round(scan_rate), "apply_rows_per_s": round(apply_rate),
            "apply_of_scan": round(apply_rate / scan_rate, 3)})
        print(json.dumps(out[-1]), flush=True)
        subprocess.run(["rm", "-rf", str(base)], check=True)
    return out


# -- quality on the catalogue --------------------------------------------------------------------

def argmax_macro_f1(examples, scores: np.ndarray, evaluable: list[str]) -> float:
    """Macro-F1 over the ``evaluable`` classes of calling each window the class it scores
    highest (the windows hold one call type each), as the quality table's probe is scored."""
    truth = np.argmax(examples.targets, axis=1)
    keep = examples.targets.sum(axis=1) == 1
    called = np.argmax(np.nan_to_num(scores, nan=-1.0), axis=1)
    f1 = []
    for name in evaluable:
        c = examples.classes.index(name)
        tp = int(np.sum(keep & (called == c) & (truth == c)))
        denominator = int(np.sum(keep & (called == c))) + int(np.sum(keep & (truth == c)))
        f1.append(2 * tp / denominator if denominator else 0.0)
    return float(np.mean(f1))


def measure_examples(examples, normalize: str) -> dict:
    """The classifier's cross-validated figures on these examples with this normalisation."""
    from orca_beam.classify.train import FitSettings, class_metrics, macro, out_of_fold_scores

    started = time.perf_counter()
    scores = out_of_fold_scores(examples, FitSettings(normalize=normalize))
    per_class, _ = class_metrics(examples, scores)
    evaluable = [c for c, m in per_class.items() if m["positive_sources"] >= 2]
    return {"normalize": normalize, "classes_measured": len(evaluable),
            "windows": len(examples.keys),
            "macro_average_precision": round(macro(per_class, "average_precision"), 4),
            "macro_roc_auc": round(macro(per_class, "roc_auc"), 4),
            "macro_f1_at_threshold": round(macro(per_class, "f1_at_threshold"), 4),
            "argmax_macro_f1": round(argmax_macro_f1(examples, scores, evaluable), 4),
            "cv_wall_s": round(time.perf_counter() - started, 2),
            "average_precision": {c: round(per_class[c]["average_precision"], 4)
                                  for c in evaluable}}


def quality(recordings: Path, work: Path) -> dict:
    """BirdNET V2.4 rows of the catalogue (one real extraction) and the log-mel baseline, each
    through the classifier's cross-validation with every normalisation."""
    from benchmarks.quality import log_mel_features, read_catalogue
    from orca_beam.classify.examples import Examples, LabelSettings, gather_examples
    from orca_beam.store.version import version_folder
    from pipelines import extract

    labels = recordings / "catalog" / "labels.tsv"
    extract.run(["--runner=DirectRunner", f"--input={recordings / 'catalog'}/*.wav",
                 f"--output={work / 'out'}", "--model=birdnet", "--projector_point=none"])
    folder = version_folder(str(work / "out"), "birdnet", None)
    birdnet = gather_examples(folder, LabelSettings((str(labels),), "call_type",
                                                    weak_negatives=0))
    clips = [c for c in read_catalogue(recordings) if c["call_type"]]
    classes = sorted({c["call_type"] for c in clips})
    vectors = np.stack([log_mel_features(c["path"]) for c in clips])
    targets = np.array([[float(c["call_type"] == k) for k in classes] for c in clips],
                       np.float32)
    log_mel = Examples(classes, vectors, targets, np.ones_like(targets),
                       [(c["path"], 0.0, 0.0) for c in clips],
                       [c["call_type"] for c in clips], {}, "")
    probe = json.loads((REPO / "benchmarks" / "results" / "quality-catalogue.json").read_text())
    probes = {row["name"]: row["probe_macro_f1_call_type"]
              for row in probe["every_clip_embedded"]}
    rows = []
    for name, examples, kind in (("birdnet", birdnet, "real, BirdNET V2.4 rows"),
                                 ("log-mel mean+std", log_mel, "non-learned baseline, per clip")):
        for normalize in ("standard", "none", "l2", "l2+standard"):
            rows.append({"name": name, "kind": kind, **measure_examples(examples, normalize),
                         "quality_probe_macro_f1": probes.get(name)})
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "average_precision"}),
                  flush=True)
    return {"recordings": str(recordings), "clips": len(clips), "results": rows}


# -- detection on a recording with known answers -----------------------------------------------

RATE = 48_000
#: The quiet stretches of 210825-1925_L-highlight.wav (seconds; -63 to -65 dB in 0.8-8 kHz
#: against -44 to -52 dB for its calls): A for the training background, B for the test's.
BACKGROUND_A_S = (2.0, 5.5)
BACKGROUND_B_S = (8.5, 11.5)
DETECTION_TYPES = ("S19", "S22", "S44")  # the catalogue's three largest call types
HELD_OUT = {"S19": 4, "S22": 3, "S44": 3}  # clips of each type mixed in, never trained on
SNRS_DB = (0.0, 6.0, 12.0)
SPACING_S = 12.0


def tiled(piece: np.ndarray, seconds: float, fade_s: float = 0.25) -> np.ndarray:
    """``piece`` repeated with raised-cosine cross-fades to ``seconds`` of audio."""
    fade = int(fade_s * RATE)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, fade, dtype=np.float32))
    out = piece.copy()
    while len(out) < seconds * RATE:
        out[-fade:] = out[-fade:] * ramp[::-1] + piece[:fade] * ramp
        out = np.concatenate([out, piece[fade:]])
    return out[:int(seconds * RATE)]


def rms(x: np.ndarray) -> float:
    """Root mean square."""
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def build_recording(recordings: Path, work: Path) -> tuple[Path, Path, list[dict], Path]:
    """(test recording, training background, the mixed-in calls, training labels): the calls of
    HELD_OUT clips mixed into background B at each SNR, SPACING_S apart with a random offset;
    the labels are the catalogue's without the held-out clips, plus the background as
    ``noise``. SNR: the clip's RMS (DC removed) against the background's over the clip's span."""
    import soundfile as sf
    import soxr

    from benchmarks.quality import read_catalogue

    source, rate = sf.read(str(recordings / "hydrophone" / "210825-1925_L-highlight.wav"),
                           dtype="float32")
    assert rate == RATE
    clips = read_catalogue(recordings)
    rng = np.random.default_rng(7)
    held = {t: sorted(c["path"] for c in clips if c["call_type"] == t)[:HELD_OUT[t]]
            for t in DETECTION_TYPES}
    plan = [(t, path, snr) for t in DETECTION_TYPES for path in held[t] for snr in SNRS_DB]
    order = rng.permutation(len(plan))
    length_s = SPACING_S * (len(plan) + 1)
    b = source[int(BACKGROUND_B_S[0] * RATE):int(BACKGROUND_B_S[1] * RATE)]
    mix = tiled(b, length_s)
    truth = []
    for slot, k in enumerate(order):
        call_type, path, snr = plan[k]
        clip, clip_rate = sf.read(path, dtype="float32", always_2d=True)
        clip = soxr.resample(clip[:, 0] - clip[:, 0].mean(), clip_rate, RATE).astype(np.float32)
        start = int((SPACING_S * (slot + 0.5) + rng.uniform(0, 3)) * RATE)
        span = mix[start:start + len(clip)]
        gain = 10 ** (snr / 20) * rms(span) / rms(clip)
        mix[start:start + len(clip)] += gain * clip
        truth.append({"call_type": call_type, "clip": Path(path).name, "snr_db": snr,
                      "start_s": start / RATE, "end_s": (start + len(clip)) / RATE})
    test = work / "recording" / "mixed.wav"
    test.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(test), mix, RATE, subtype="FLOAT")
    background = work / "recording" / "background.wav"
    a = source[int(BACKGROUND_A_S[0] * RATE):int(BACKGROUND_A_S[1] * RATE)]
    sf.write(str(background), tiled(a, 60.0), RATE, subtype="FLOAT")
    labels = work / "labels.tsv"
    mixed = {Path(p).name for paths in held.values() for p in paths}
    with open(labels, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["wav_filename", "call_type"])
        writer.writerows([Path(c["path"]).name, c["call_type"]] for c in clips
                         if c["call_type"] and Path(c["path"]).name not in mixed)
        writer.writerow([background.name, "noise"])
    return test, background, sorted(truth, key=lambda t: t["start_s"]), labels


def detection(recordings: Path, work: Path) -> dict:
    """Train on the catalogue without the held-out clips (BirdNET rows, the real model), apply to
    the mixed recording, and score events.csv against the mixed-in calls."""
    from pipelines import classify, extract

    test, background, truth, labels = build_recording(recordings, work)
    out = work / "out"
    extract.run(["--runner=DirectRunner", f"--input={recordings / 'catalog'}/*.wav",
                 f"--input={test}", f"--input={background}", f"--output={out}",
                 "--model=birdnet", "--projector_point=none"])
    metrics = classify.run(["train", f"--embeddings={out}", "--model=birdnet",
                            f"--label_table={labels}", "--label_column=call_type",
                            "--negative_label=noise", "--weak_negatives=0",
                            f"--output={work / 'clf'}"])
    classify.run(["apply", f"--classifier={work / 'clf' / 'classifier.json'}",
                  f"--embeddings={out}", "--model=birdnet", f"--output={work / 'scores'}"])
    with open(work / "scores" / "events.csv", newline="") as handle:
        events = [e for e in csv.DictReader(handle) if e["stream"] == str(test)]
    per = []
    for call_type in DETECTION_TYPES:
        mine = [e for e in events if e["class"] == call_type]
        calls = [t for t in truth if t["call_type"] == call_type]
        hit_events = set()
        for snr in SNRS_DB:
            found, errors = 0, []
            for call in (t for t in calls if t["snr_db"] == snr):
                overlapping = [i for i, e in enumerate(mine)
                               if float(e["start_s"]) < call["end_s"]
                               and float(e["end_s"]) > call["start_s"]]
                if overlapping:
                    found += 1
                    hit_events.update(overlapping)
                    errors.append(round(float(mine[overlapping[0]]["start_s"])
                                        - call["start_s"], 3))
            total = sum(1 for t in calls if t["snr_db"] == snr)
            per.append({"call_type": call_type, "snr_db": snr, "calls": total,
                        "found": found, "recall": round(found / total, 3),
                        "start_error_s": errors})
        precision = len(hit_events) / len(mine) if mine else None
        for row in per[-len(SNRS_DB):]:
            row["events_of_type"] = len(mine)
            row["precision_of_type"] = None if precision is None else round(precision, 3)
    return {"recording_s": round(sf_duration(test), 1), "mixed_calls": len(truth),
            "thresholds": {t: round(metrics["classes"][t]["threshold"], 4)
                           for t in DETECTION_TYPES},
            "training_windows": metrics["labels"]["windows"],
            "snr_definition": "RMS of the clip (DC removed) over RMS of the background it is "
                              "mixed into, over the clip's span",
            "background": "210825-1925_L-highlight.wav, its quiet stretches (training: "
                          f"{BACKGROUND_A_S} s, test: {BACKGROUND_B_S} s) tiled with 0.25 s "
                          "cross-fades",
            "per_type_and_snr": per, "truth": truth}


def sf_duration(path: Path) -> float:
    """Seconds of audio in a file."""
    import soundfile as sf

    return sf.info(str(path)).duration


def main(argv: list[str] | None = None) -> None:
    """The command line (module doc)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["quality", "loop", "detection"])
    parser.add_argument("--recordings", type=Path, default=RECORDINGS)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(LOOP_APPLY_SIZES),
                        help="loop: apply's row counts.")
    parser.add_argument("--work", type=Path, default=None, help="Scratch folder.")
    parser.add_argument("--json", type=Path, default=None)
    options = parser.parse_args(argv)
    import tempfile

    work = options.work or Path(tempfile.mkdtemp(prefix=f"classify-{options.what}-"))
    work.mkdir(parents=True, exist_ok=True)
    if options.what == "loop":
        result = {"machine": machine(), "train": train_cost(work),
                  "apply": apply_cost(work, tuple(options.sizes))}
    elif options.what == "quality":
        result = {"machine": machine(), **quality(options.recordings, work)}
    else:
        result = {"machine": machine(), **detection(options.recordings, work)}
    text = json.dumps(result, indent=2)
    if options.json:
        options.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
