"""The classifier's training: metrics against scikit-learn, the fit against scikit-learn's
logistic regression, classifier.json scored with numpy alone, labels joined to real BirdNET rows
(by file and by window, verdicts and weights), and the train command on the catalogue."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from orca_beam.classify.linear import LinearClassifier, fit_logistic, normalization
from orca_beam.classify.metrics import (
    average_precision,
    best_f1_threshold,
    f1_at,
    group_folds,
    roc_auc,
)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_average_precision_and_roc_auc_equal_scikit_learn_with_ties(seed):
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(seed)
    y = rng.random(300) < 0.2
    s = np.round(rng.random(300) + 0.5 * y, 1)  # rounded: many ties
    assert average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert average_precision(np.zeros(5), np.arange(5)) is None
    assert roc_auc(np.ones(5), np.arange(5)) is None


def test_best_f1_threshold_is_the_best_of_every_cut():
    rng = np.random.default_rng(3)
    y = rng.random(200) < 0.3
    s = rng.random(200) + 0.4 * y
    threshold = best_f1_threshold(y, s)
    best = max(f1_at(y, s, t) for t in np.unique(s))
    assert f1_at(y, s, threshold) == pytest.approx(best)
    called = s >= threshold
    assert not np.any(np.isclose(s, threshold))  # between two scores, not on one
    assert called.sum() == np.sum(s > threshold)


def test_group_folds_keep_a_source_in_one_fold_and_spread_each_label():
    groups = [f"file{i // 3}" for i in range(90)]  # 30 sources, 3 windows each
    strata = ["A" if i // 3 < 10 else "B" for i in range(90)]
    folds = group_folds(groups, strata, 5, seed=1)
    for g in set(groups):
        assert len({folds[i] for i in range(90) if groups[i] == g}) == 1
    for stratum in "AB":
        per_fold = np.bincount([folds[i] for i in range(0, 90, 3) if strata[i] == stratum],
                               minlength=5)
        assert per_fold.max() - per_fold.min() <= 1


@pytest.mark.parametrize("n", [80, 400])  # fewer and more windows than dimensions
def test_fit_equals_scikit_learn_logistic_regression(n):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(n)
    d, classes, l2 = 120, 3, 0.05
    z = rng.standard_normal((n, d))
    y = (z[:, :classes] + 0.8 * rng.standard_normal((n, classes)) > 0.7).astype(float)
    w = np.where(rng.random((n, classes)) < 0.2, 0.05, 1.0)
    weights, bias = fit_logistic(z, y, w, l2, gtol=1e-10)
    for c in range(classes):
        # sklearn minimises C * sum(w * loss) + |coef|^2 / 2: ours times 1 / (n * l2)
        ref = LogisticRegression(C=1 / (n * l2), tol=1e-10, max_iter=10_000).fit(
            z, y[:, c], sample_weight=w[:, c])
        np.testing.assert_allclose(weights[c], ref.coef_[0], atol=2e-4)
        assert bias[c] == pytest.approx(ref.intercept_[0], abs=2e-4)
        ours = 1 / (1 + np.exp(-(z @ weights[c] + bias[c])))
        np.testing.assert_allclose(ours, ref.predict_proba(z)[:, 1], atol=1e-5)


@pytest.mark.parametrize("kind", ["none", "l2", "standard", "l2+standard"])
def test_classifier_json_scores_with_numpy_alone(tmp_path, kind):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((50, 16)).astype(np.float32) * 3 + 1
    l2n, center, scale = normalization(x, kind)
    model = LinearClassifier(["a", "b"], rng.standard_normal((2, 16)), rng.standard_normal(2),
                             center, scale, l2n, np.array([0.4, 0.6]), {"note": "kept"})
    model.save(str(tmp_path / "classifier.json"))
    # the README's snippet: json and numpy only
    with open(tmp_path / "classifier.json") as handle:
        clf = json.load(handle)
    v = x.astype(np.float64)
    if clf["l2_normalize"]:
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
    v = (v - np.array(clf["center"])) / np.array(clf["scale"])
    p = 1 / (1 + np.exp(-(v @ np.array(clf["weights"]).T + np.array(clf["bias"]))))
    np.testing.assert_allclose(p, model.scores(x), atol=1e-12)
    again = LinearClassifier.load(str(tmp_path / "classifier.json"))
    np.testing.assert_array_equal(again.weights, model.weights)
    assert again.meta == {"note": "kept"} and clf["thresholds"] == {"a": 0.4, "b": 0.6}


# -- labels joined to real BirdNET rows ---------------------------------------------------------

@pytest.fixture(scope="module")
def catalogue(birdnet_catalogue_run):
    from orca_beam.store.reader import current_rows
    from orca_beam.store.version import version_folder

    output, _ = birdnet_catalogue_run
    folder = version_folder(str(output), "birdnet", None)
    rows = current_rows(folder, ["source", "start_s", "end_s", "embedding"]).to_pylist()
    return output, folder, rows


def _write_csv(path, rows, columns):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(rows)
    return str(path)


def test_window_labels_verdicts_and_weights(catalogue, tmp_path):
    from orca_beam.classify.examples import LabelSettings, gather_examples

    _, folder, rows = catalogue
    by_source: dict[str, list[dict]] = {}
    for row in rows:
        by_source.setdefault(row["source"], []).append(row)
    multi = next(s for s, r in by_source.items() if len(r) > 1)  # a clip of two windows
    singles = sorted(s for s, r in by_source.items() if len(r) == 1)
    a, b, c, d, e = singles[:5]
    first, second = sorted(by_source[multi], key=lambda r: r["start_s"])[:2]
    table = _write_csv(tmp_path / "labels.csv", [
        [a, by_source[a][0]["start_s"], by_source[a][0]["end_s"], "X", "yes"],
        [b, by_source[b][0]["start_s"], by_source[b][0]["end_s"], "Y", "yes"],
        [c, by_source[c][0]["start_s"], by_source[c][0]["end_s"], "X", "no"],
        [d, by_source[d][0]["start_s"], by_source[d][0]["end_s"], "X", "unsure"],
        [e, "", "", "noise", "yes"],                        # whole source, the negative label
        # an annotation of any length: the row whose centre lies in it
        [multi, second["start_s"] - 0.2, second["end_s"] + 1.0, "Y", "yes"],
        ["/nowhere.wav", 0.0, 3.0, "X", "yes"],             # matches no row
    ], ["source", "start_s", "end_s", "label", "verdict"])
    examples = gather_examples(folder, LabelSettings((table,), "label", negative_label="noise",
                                                     weak_negatives=4, weak_weight=0.05))
    assert examples.classes == ["X", "Y"]
    keys = {k: i for i, k in enumerate(examples.keys)}
    row = {s: keys[(s, by_source[s][0]["start_s"], by_source[s][0]["end_s"])]
           for s in (a, b, c, e)}
    assert examples.targets[row[a]].tolist() == [1, 0]
    assert examples.weights[row[a]].tolist() == [1, 1]    # labelled X: a full negative of Y
    assert examples.targets[row[c]].tolist() == [0, 0]
    assert examples.weights[row[c]].tolist() == pytest.approx([1, 0.05])  # no X: weak for Y
    assert examples.weights[row[e]].tolist() == [1, 1]    # the negative label
    assert examples.targets[row[e]].tolist() == [0, 0]
    assert not any(k[0] == d for k in examples.keys[:examples.counts["windows"]])  # unsure only
    matched = [k for k in examples.keys[:examples.counts["windows"]] if k[0] == multi]
    assert matched == [(multi, second["start_s"], second["end_s"])]
    counts = examples.counts
    assert counts["windows"] == 5 and counts["positives"] == {"X": 1, "Y": 2}
    assert counts["unmatched_labels"] == 1 and counts["unmatched_sample"] == ["/nowhere.wav@0.0"]
    weak = examples.keys[counts["windows"]:]
    assert len(weak) == counts["weak_negatives"] == 4
    labelled_sources = {a, b, c, d, e, multi}
    assert not any(k[0] in labelled_sources for k in weak)
    assert examples.weights[counts["windows"]:].tolist() == [[pytest.approx(0.05)] * 2] * 4
    vector = np.asarray(by_source[a][0]["embedding"], np.float32)
    np.testing.assert_array_equal(examples.vectors[row[a]], vector)


@pytest.mark.e2e
def test_train_on_the_catalogue_by_file(catalogue, orca_calls, tmp_path):
    from pipelines import classify

    output, folder, rows = catalogue
    metrics = classify.run(["train", f"--embeddings={output}", "--model=birdnet",
                            f"--label_table={orca_calls / 'catalog' / 'labels.tsv'}",
                            "--label_column=call_type", f"--output={tmp_path / 'clf'}"])
    labelled = sum(1 for r in rows if "/catalog/" in r["source"])
    assert metrics["labels"]["windows"] == labelled
    assert metrics["labels"]["weak_negatives"] == len(rows) - labelled  # the 3 excerpts' rows
    with open(tmp_path / "clf" / "classifier.json") as handle:
        clf = json.load(handle)
    with open(f"{folder}/_version.json") as handle:
        info = json.load(handle)
    assert clf["embedding"]["version_id"] == info["version_id"]
    assert clf["embedding"]["model_version"] == info["label"]
    assert len(clf["weights"]) == len(clf["classes"]) and len(clf["weights"][0]) == 1024
    assert set(clf["thresholds"]) == set(clf["classes"]) == set(metrics["classes"])
    assert len(clf["labels"]["digest"]) == 64
    per_class = metrics["classes"]
    s19 = per_class["S19"]  # 13 clips: the largest class
    assert s19["positives"] == 13 and s19["windows"] == labelled
    # cross-validated ranking well above chance (a positive's rate among the windows)
    evaluable = [m for m in per_class.values() if m["average_precision"] is not None
                 and m["positive_sources"] >= 2]
    chance = np.mean([m["positives"] / m["windows"] for m in evaluable])
    assert metrics["macro"]["average_precision"] > 10 * chance
    assert 0.5 < metrics["macro"]["roc_auc"] <= 1.0
