"""Training: labelled windows -> a :class:`LinearClassifier`, its cross-validated metrics and
its thresholds, written as ``classifier.json`` and ``metrics.json``.

Cross-validation: ``folds``-fold, every window of one source in one fold, each label set's
sources spread evenly over the folds (:func:`~orca_beam.classify.metrics.group_folds`). Each
fold's model is fitted on the other folds with the same settings (normalisation estimated on
them too); its scores on the held-out fold are the out-of-fold scores. Metrics per class are
computed on the out-of-fold scores of the windows with an explicit label for that class (weight
1: weak negatives are not labels): average precision, ROC-AUC, and F1 at the suggested
threshold. The suggested threshold of a class is the out-of-fold score threshold of best F1
(:func:`~orca_beam.classify.metrics.best_f1_threshold`); its F1 is therefore optimistic, and is
reported as chosen that way.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass

import numpy as np
from apache_beam.io.filesystems import FileSystems

from orca_beam.classify.examples import Examples, LabelSettings, gather_examples
from orca_beam.classify.linear import LinearClassifier, fit_logistic, normalization
from orca_beam.classify.metrics import (
    average_precision,
    best_f1_threshold,
    f1_at,
    group_folds,
    roc_auc,
)
from orca_beam.store.version import VERSION_NAME, read_json, utc_now

LOG = logging.getLogger(__name__)
CLASSIFIER_NAME = "classifier.json"
METRICS_NAME = "metrics.json"
#: A class's threshold when it cannot be measured (positives in fewer than 2 sources).
DEFAULT_THRESHOLD = 0.5
THRESHOLD_RULE = ("per class with positives in at least 2 sources, the out-of-fold score "
                  "threshold of best F1 over the windows labelled for that class (midway between "
                  "the lowest score called positive and the next below); 0.5 for the others")


@dataclass(frozen=True)
class FitSettings:
    """How the model is fitted: input normalisation (one of ``linear.NORMALIZE``), the L2
    penalty, the number of cross-validation folds and the seed of the fold assignment."""

    normalize: str = "standard"
    l2: float = 1e-2
    folds: int = 5
    seed: int = 0


def fit(vectors: np.ndarray, targets: np.ndarray, weights: np.ndarray, settings: FitSettings
        ) -> tuple[np.ndarray, np.ndarray, bool, np.ndarray, np.ndarray]:
    """(weights [C, D], bias [C], l2_normalize, center [D], scale [D]) fitted on these windows."""
    l2_normalize, center, scale = normalization(vectors, settings.normalize)
    x = np.asarray(vectors, np.float64)
    if l2_normalize:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    w, b = fit_logistic((x - center) / scale, targets, weights, settings.l2)
    return w, b, l2_normalize, center, scale


def out_of_fold_scores(examples: Examples, settings: FitSettings,
                       trained_on: Examples | None = None) -> np.ndarray:
    """Scores [N, C] of each window of ``examples`` by the model fitted without its fold. With
    ``trained_on`` (another set of labels, e.g. the previous round's), each fold's model is
    fitted on those windows instead, leaving out every source of the held-out fold: the same
    folds and held-out windows, so the two label sets' metrics compare like for like (NaN for a
    class ``trained_on`` lacks)."""
    folds = group_folds([k[0] for k in examples.keys], examples.strata, settings.folds,
                        settings.seed)
    train = trained_on or examples
    train_sources = np.array([k[0] for k in train.keys], dtype=object)
    columns = [train.classes.index(c) if c in train.classes else -1 for c in examples.classes]
    scores = np.full(examples.targets.shape, np.nan)
    for fold in range(settings.folds):
        held = folds == fold
        if not held.any() or held.all():
            continue
        held_sources = {k[0] for k, h in zip(examples.keys, held, strict=True) if h}
        fitted = ~np.isin(train_sources, list(held_sources))
        if not fitted.any():
            continue
        w, b, l2n, center, scale = fit(train.vectors[fitted], train.targets[fitted],
                                       train.weights[fitted], settings)
        model = LinearClassifier(train.classes, w, b, center, scale, l2n,
                                 np.full(len(train.classes), 0.5))
        predicted = model.scores(examples.vectors[held])
        for c, at in enumerate(columns):
            if at >= 0:
                scores[held, c] = predicted[:, at]
    return scores


def class_metrics(examples: Examples, scores: np.ndarray) -> tuple[dict, np.ndarray]:
    """Per class: windows, positives (and the sources holding them), average precision, ROC-AUC,
    the suggested threshold and F1 there, over the explicitly labelled windows; plus the
    thresholds [C]."""
    per_class, thresholds = {}, []
    sources = np.array([k[0] for k in examples.keys], dtype=object)
    for i, name in enumerate(examples.classes):
        labelled = (examples.weights[:, i] >= 1.0) & ~np.isnan(scores[:, i])
        y, s = examples.targets[labelled, i], scores[labelled, i]
        positive_sources = len(set(sources[examples.targets[:, i] > 0]))
        threshold = (best_f1_threshold(y, s, DEFAULT_THRESHOLD) if positive_sources >= 2
                     else DEFAULT_THRESHOLD)
        thresholds.append(threshold)
        per_class[name] = {
            "windows": int(labelled.sum()), "positives": int(y.sum()),
            "positive_sources": positive_sources,
            "average_precision": average_precision(y, s), "roc_auc": roc_auc(y, s),
            "threshold": threshold, "f1_at_threshold": f1_at(y, s, threshold) if len(y) else None,
        }
    return per_class, np.asarray(thresholds)


def macro(per_class: dict, key: str) -> float | None:
    """The mean of ``key`` over the classes it can be measured on (None if none): those with
    positives in at least two sources, so that every held-out positive had another source's
    positives to learn from."""
    values = [m[key] for m in per_class.values()
              if m[key] is not None and m["positive_sources"] >= 2]
    return float(np.mean(values)) if values else None


def train(folder: str, labels: LabelSettings, settings: FitSettings, output: str,
          baseline: LabelSettings | None = None) -> dict:
    """Trains on version ``folder``'s rows labelled by ``labels``; writes
    ``<output>/classifier.json`` and ``<output>/metrics.json``; returns the metrics document.
    ``baseline``: an earlier round's labels, cross-validated on the same folds and held-out
    windows (``metrics["baseline"]``), so that a round's gain is measured like for like."""
    started = time.time()
    examples = gather_examples(folder, labels)
    gathered_s = time.time() - started
    LOG.info("%d windows (%d classes) gathered in %.1f s", len(examples.keys),
             len(examples.classes), gathered_s)
    scores = out_of_fold_scores(examples, settings)
    per_class, thresholds = class_metrics(examples, scores)
    compared = None
    if baseline is not None:
        earlier = gather_examples(folder, baseline)
        base_class, _ = class_metrics(examples, out_of_fold_scores(examples, settings, earlier))
        compared = {"tables": list(baseline.tables), "windows": len(earlier.keys),
                    "classes": {c: {"average_precision": m["average_precision"],
                                    "roc_auc": m["roc_auc"]} for c, m in base_class.items()},
                    "macro": {"average_precision": macro(base_class, "average_precision"),
                              "roc_auc": macro(base_class, "roc_auc")},
                    "how": "models fitted on the baseline's labels, on the same folds, scored "
                           "on the same held-out windows as this model's"}
    w, b, l2n, center, scale = fit(examples.vectors, examples.targets, examples.weights, settings)
    version = read_json(f"{folder.rstrip('/')}/{VERSION_NAME}")
    metrics = {
        "classes": per_class,
        "macro": {"average_precision": macro(per_class, "average_precision"),
                  "roc_auc": macro(per_class, "roc_auc"),
                  "f1_at_threshold": macro(per_class, "f1_at_threshold")},
        "cross_validation": f"{settings.folds}-fold, sources grouped, stratified by label set",
        "macro_over": "classes with positives in at least 2 sources "
                      f"({sum(m['positive_sources'] >= 2 for m in per_class.values())} of "
                      f"{len(per_class)})",
        "threshold_rule": THRESHOLD_RULE,
        "labels": examples.counts,
        **({"baseline": compared} if compared else {}),
        "wall_s": {"gather": round(gathered_s, 3), "total": round(time.time() - started, 3)},
    }
    meta = {
        "embedding": {"model": version["model"], "version_id": version["version_id"],
                      "model_version": version["label"], "standin": version.get("standin"),
                      "folder": folder, "dim": int(examples.vectors.shape[1])},
        "labels": {"tables": list(labels.tables), "column": labels.column, "digest": examples.digest,
                   **{k: v for k, v in examples.counts.items() if k != "unmatched_sample"}},
        "settings": {**asdict(settings), **{k: v for k, v in asdict(labels).items()
                                            if k not in ("tables", "column")}},
        "threshold_rule": THRESHOLD_RULE,
        "metrics": {"macro": metrics["macro"],
                    "average_precision": {c: m["average_precision"]
                                          for c, m in per_class.items()}},
        "trained_at": utc_now(),
    }
    classifier = LinearClassifier(examples.classes, w, b, center, scale, l2n, thresholds, meta)
    out = output.rstrip("/")
    classifier.save(f"{out}/{CLASSIFIER_NAME}")
    metrics["wall_s"]["total"] = round(time.time() - started, 3)
    with FileSystems.create(f"{out}/{METRICS_NAME}") as handle:
        handle.write(json.dumps(metrics, indent=2).encode())
    return metrics
