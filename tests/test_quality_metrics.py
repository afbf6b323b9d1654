"""The quality benchmark's measures on vectors whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.quality import chance, knn_accuracy, measure, with_enough


def clusters(seed: int = 0, per: int = 6, dim: int = 16):
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[:3] * 10
    vectors = np.concatenate([c + rng.normal(0, 0.3, (per, dim)) for c in centres])
    labels = [name for name in "abc" for _ in range(per)]
    return vectors.astype(np.float32), labels


def test_separated_clusters_score_at_the_top():
    vectors, labels = clusters()
    scores = measure(vectors, labels, labels)
    assert scores["knn1_call_type"] == scores["knn5_call_type"] == 1.0
    assert scores["probe_macro_f1_call_type"] == 1.0
    assert scores["silhouette_call_type"] > 0.9


def test_random_vectors_score_near_chance():
    rng = np.random.default_rng(1)
    labels = [name for name in "abcd" for _ in range(25)]
    vectors = rng.normal(size=(100, 32)).astype(np.float32)
    scores = measure(vectors, labels, labels)
    assert scores["knn1_call_type"] < 0.45 and abs(scores["silhouette_call_type"]) < 0.1
    assert chance(labels, labels) == {"call_type": 0.25, "pod": 0.25}


def test_knn_is_leave_one_out_and_ties_go_to_the_nearest():
    # 1-D points on a line (cosine needs direction: use angles on a circle)
    angles = np.array([0.0, 0.1, 0.2, 1.5, 1.6])
    vectors = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    labels = ["a", "a", "b", "b", "b"]
    # point 0's nearest other point is 1 ("a"); point 2's nearest is 1 ("a"): wrong
    assert knn_accuracy(vectors, labels, 1) == pytest.approx(4 / 5)
    # 2-NN of point 0 are 1 ("a") and 2 ("b"): a tie, given to the nearest, "a"
    assert knn_accuracy(vectors[:3], labels[:3], 2) == pytest.approx(2 / 3)


def test_only_labels_held_by_two_items_count():
    assert with_enough(["a", "b", "a", "", "c", "c"]).tolist() == [0, 2, 4, 5]
