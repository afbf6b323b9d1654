"""The whole agile-modelling loop on the real recordings (BirdNET rows of the call catalogue and
the hydrophone excerpts), with a person's verdicts given by mouse clicks in headless Chromium:
search with one clip, review, export, train, apply, review the margin set, export, retrain.
The verdicts are the catalogue's own call types (labels.tsv), so the person is always right."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from pipelines import classify, search
from tests.browser import chromium_page

pytestmark = pytest.mark.e2e
CALL = "S19"  # the catalogue's largest call type: 13 clips


def truth(orca_calls: Path) -> dict[str, str]:
    """Catalogue file name -> call type."""
    with open(orca_calls / "catalog" / "labels.tsv", newline="") as handle:
        return {r["wav_filename"]: r["call_type"]
                for r in csv.DictReader(handle, delimiter="\t")}


def review_by_clicks(page_dir: Path, calls: dict[str, str], profile: Path) -> list[dict]:
    """Opens the review page, clicks yes on each window of a CALL clip and no on the others,
    clicks Export labels; the exported rows."""
    with chromium_page((page_dir / "index.html").as_uri(), profile) as page:
        page.wait_for("document.querySelectorAll('.hit').length > 0")
        sources = page.evaluate("[...document.querySelectorAll('.source')].map(e => e.textContent)")
        for n, source in enumerate(sources, 1):
            verdict = "yes" if calls.get(Path(source).name) == CALL else "no"
            page.click(f"#hit-{n} button.verdict[data-v='{verdict}']")
        counts = page.evaluate("document.getElementById('counts').textContent")
        assert counts == f"{len(sources)} hits, {len(sources)} reviewed, 0 to go"
        page.click("#export")
        exported = page.wait_for("document.getElementById('exported').textContent")
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert [r["source"] for r in rows] == sources
    return rows


def write_rows(rows: list[dict], path: Path) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_loop_in_chromium_search_review_train_apply_review_retrain(birdnet_catalogue_run, orca_calls, tmp_path):
    output, _ = birdnet_catalogue_run
    calls = truth(orca_calls)
    clip = orca_calls / "catalog" / sorted(n for n, c in calls.items() if c == CALL)[0]
    version = [f"--embeddings={output}", "--model=birdnet"]
    # 1-3: search with one clip, verdicts clicked on its review page, export
    found = search.run([*version, f"--query={clip}", f"--output={tmp_path / 'search'}",
                        "--top_k=20", "--min_gap_s=0", f"--label={CALL}", "--context_s=1"])
    assert found["hits"] == 20
    first = review_by_clicks(tmp_path / "search" / "review", calls, tmp_path / "p1")
    assert {r["label"] for r in first} == {CALL}
    yes = sum(r["verdict"] == "yes" for r in first)
    assert 2 <= yes < 20
    labels1 = write_rows(first, tmp_path / "labels1.csv")
    # 4-5: train, apply
    m1 = classify.run(["train", *version, f"--label_table={labels1}",
                       f"--output={tmp_path / 'clf1'}"])
    assert m1["labels"]["windows"] == 20 and m1["classes"][CALL]["positives"] == yes
    applied = classify.run(["apply", f"--classifier={tmp_path / 'clf1' / 'classifier.json'}",
                            *version, f"--output={tmp_path / 'scores'}"])
    assert applied["rows_scored"] == 168
    # 6: the margin set, none of it labelled already, verdicts clicked, export
    margin = classify.run(["review", f"--scores={tmp_path / 'scores'}", f"--class={CALL}",
                           "--select=margin", "--n=10", f"--output={tmp_path / 'round2'}",
                           "--context_s=1"])
    assert margin["hits"] == 10 and margin["review"]["missing"] == 0
    second = review_by_clicks(tmp_path / "round2" / "review", calls, tmp_path / "p2")
    seen = {(r["source"], float(r["start_s"])) for r in first}
    assert not seen & {(r["source"], float(r["start_s"])) for r in second}
    labels2 = write_rows(second, tmp_path / "labels2.csv")
    # 7: retrain on both exports; the first round's labels cross-validated on the same folds
    m2 = classify.run(["train", *version, f"--label_table={labels1}",
                       f"--label_table={labels2}", f"--output={tmp_path / 'clf2'}",
                       f"--baseline={tmp_path / 'clf1' / 'classifier.json'}"])
    assert m2["labels"]["windows"] == 30
    ap1 = m1["classes"][CALL]["average_precision"]
    ap2 = m2["classes"][CALL]["average_precision"]
    ap2_base = m2["baseline"]["classes"][CALL]["average_precision"]
    print(f"\n{CALL}: round 1 cross-validated AP {ap1:.3f} (20 labels, {yes} yes); round 2 "
          f"{ap2:.3f} (30 labels); round 1's labels on round 2's folds {ap2_base:.3f}")
    assert ap2 >= ap2_base
