"""How well scores rank labels: average precision, ROC-AUC, F1 at a threshold, the threshold of
best F1, and the folds of a cross-validation. Pure numpy; ``y`` holds 0/1 labels and ``s``
scores (higher = more likely positive), one per window.
"""

from __future__ import annotations

import numpy as np


def _ranked(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True and false positives at each distinct score, highest first, and those scores."""
    order = np.argsort(-s, kind="stable")
    y, s = np.asarray(y, np.float64)[order], np.asarray(s, np.float64)[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[last]
    fps = (last + 1) - tps
    return tps, fps, s[last]


def average_precision(y: np.ndarray, s: np.ndarray) -> float | None:
    """Average precision: the mean over recall steps of the precision there (ties at one score
    count as one step, as scikit-learn's ``average_precision_score``); None with no positive."""
    y = np.asarray(y)
    if not len(y) or not y.sum():
        return None
    tps, fps, _ = _ranked(y, s)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_auc(y: np.ndarray, s: np.ndarray) -> float | None:
    """Area under the ROC curve: the chance that a random positive scores above a random
    negative (a tie counts half); None without both a positive and a negative."""
    y = np.asarray(y).astype(bool)
    positives, negatives = int(y.sum()), int((~y).sum())
    if not positives or not negatives:
        return None
    order = np.argsort(s, kind="stable")
    ranks = np.empty(len(s), np.float64)
    sorted_s = np.asarray(s, np.float64)[order]
    # average rank (1-based) of each run of equal scores
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_s)) + 1]
    ends = np.r_[starts[1:], len(s)]
    for a, b in zip(starts, ends, strict=True):
        ranks[order[a:b]] = (a + b + 1) / 2
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def f1_at(y: np.ndarray, s: np.ndarray, threshold: float) -> float:
    """F1 of calling every window with score >= ``threshold`` positive (0 with no positive)."""
    y = np.asarray(y).astype(bool)
    called = np.asarray(s) >= threshold
    tp = int((called & y).sum())
    denominator = int(called.sum()) + int(y.sum())
    return 2 * tp / denominator if denominator else 0.0


def best_f1_threshold(y: np.ndarray, s: np.ndarray, default: float = 0.5) -> float:
    """The score threshold of the highest F1 (calling ``score >= threshold`` positive): the
    midpoint between the lowest called score and the next score below it, so it separates the
    same windows on new data; ``default`` with no positive."""
    y = np.asarray(y)
    if not len(y) or not y.sum():
        return default
    tps, fps, scores = _ranked(y, s)
    f1 = 2 * tps / (tps + fps + tps[-1])
    best = int(np.argmax(f1))
    below = scores[best + 1] if best + 1 < len(scores) else scores[best] - 1.0
    return float((scores[best] + below) / 2)


def group_folds(groups: list[str], strata: list[str], k: int, seed: int = 0) -> np.ndarray:
    """The fold (0..k-1) of each window for a k-fold cross-validation in which every window of
    one group (a source) is in the same fold, and each stratum's groups (sources with the same
    labels) are spread evenly over the folds: within a stratum, groups in a seeded random order
    go to the folds round-robin, starting where the previous stratum stopped."""
    rng = np.random.default_rng(seed)
    stratum_of: dict[str, str] = {}
    for group, stratum in zip(groups, strata, strict=True):
        stratum_of.setdefault(group, stratum)
    by_stratum: dict[str, list[str]] = {}
    for group, stratum in stratum_of.items():
        by_stratum.setdefault(stratum, []).append(group)
    fold_of, at = {}, 0
    for stratum in sorted(by_stratum):
        members = sorted(by_stratum[stratum])
        for i in rng.permutation(len(members)):
            fold_of[members[i]] = at % k
            at += 1
    return np.array([fold_of[g] for g in groups], np.int64)
