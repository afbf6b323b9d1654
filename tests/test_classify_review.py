"""Choosing windows to review from a classifier's scores (top, margin, bins), against numpy over
every stored score; labelled windows are never chosen again."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from orca_beam.classify.review import BIN_QUANTILES, bin_of

pytestmark = pytest.mark.e2e


def test_bin_of_puts_an_edge_score_in_the_bin_above():
    assert bin_of(np.array([0.1, 0.5, 0.6, 0.9, 0.95]), [0.5, 0.7, 0.9]).tolist() == [
        0, 1, 1, 3, 3]


@pytest.fixture(scope="module")
def scored(birdnet_catalogue_run, orca_calls, tmp_path_factory):
    """A classifier trained on half the catalogue's files (by file), applied to every row."""
    from orca_beam.store.derived import derived_rows
    from pipelines import classify

    output, _ = birdnet_catalogue_run
    base = tmp_path_factory.mktemp("review")
    with open(orca_calls / "catalog" / "labels.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    half = base / "half.tsv"
    with open(half, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["wav_filename", "call_type"])
        writer.writerows([r["wav_filename"], r["call_type"]] for r in rows[::2])
    version = [f"--embeddings={output}", "--model=birdnet"]
    classify.run(["train", *version, f"--label_table={half}", "--label_column=call_type",
                  f"--output={base / 'clf'}"])
    classify.run(["apply", f"--classifier={base / 'clf' / 'classifier.json'}", *version,
                  f"--output={base / 'scores'}"])
    clf = json.loads((base / "clf" / "classifier.json").read_text())
    table = derived_rows(str(base / "scores")).to_pylist()
    labelled = {r["wav_filename"] for r in rows[::2]}
    free = [r for r in table if r["source"].rsplit("/", 1)[-1] not in labelled]
    return base, clf, free


@pytest.mark.parametrize("select", ["top", "margin"])
def test_top_and_margin_equal_numpy_over_the_unlabelled_rows(scored, select):
    from pipelines import classify

    base, clf, free = scored
    c = clf["classes"].index("S19")
    scores = np.array([r["scores"][c] for r in free], np.float64)
    key = scores if select == "top" else -np.abs(scores - clf["thresholds"]["S19"])
    expected = [(free[i]["source"], free[i]["start_s"]) for i in np.argsort(-key)[:7]]
    summary = classify.run(["review", f"--scores={base / 'scores'}", "--class=S19",
                            f"--select={select}", "--n=7", f"--output={base / select}"])
    with open(base / select / "selection.csv", newline="") as handle:
        chosen = [(r["source"], float(r["start_s"])) for r in csv.DictReader(handle)]
    assert chosen == expected and summary["hits"] == 7 and summary["review"]["clips"] == 7


def test_bins_are_score_quantiles_with_their_row_counts(scored):
    from pipelines import classify

    base, clf, free = scored
    c = clf["classes"].index("S12")
    scores = np.array([r["scores"][c] for r in free], np.float64)
    edges = np.quantile(scores, BIN_QUANTILES)  # every row is in the sample: exact
    summary = classify.run(["review", f"--scores={base / 'scores'}", "--class=S12",
                            "--select=bins", "--n=4", f"--output={base / 'bins'}"])
    counts = np.bincount(np.searchsorted(edges, scores, side="right"), minlength=4)
    assert [b["rows"] for b in summary["bins"]] == counts.tolist()
    assert [b["score_from"] for b in summary["bins"][1:]] == pytest.approx(edges.tolist())
    assert [b["shown"] for b in summary["bins"]] == np.minimum(counts, 4).tolist()
    with open(base / "bins" / "selection.csv", newline="") as handle:
        chosen = list(csv.DictReader(handle))
    assert len(chosen) == summary["hits"] == int(np.minimum(counts, 4).sum())
    by_key = {(r["source"], r["start_s"]): r["scores"][c] for r in free}
    for row in chosen:  # each in the bin its query names
        b = int(row["query"].split(" bin ")[1].split()[0])
        score = by_key[(row["source"], float(row["start_s"]))]
        assert bin_of(np.array([score]), edges.tolist())[0] == b
