"""The report's overview over the real BirdNET catalogue run: clusters.json's AMI/ARI against the
call types (KMeans's equal to scikit-learn's own over the stored rows), the map's sample, and
index.html in headless Chromium (the pictures load, a click on a point plays its clip)."""

from __future__ import annotations

import csv
import json
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from orca_beam.reports.overview import NOISE, agreement, map_2d
from tests.browser import chromium_page


def test_agreement_is_one_for_the_labels_themselves_and_leaves_unlabelled_out():
    labels = ["a", "a", "b", "b", "", None]
    perfect = agreement(labels, np.array([3, 3, 7, 7, 0, 1]))
    assert (perfect["ami"], perfect["ari"], perfect["points"]) == (1.0, 1.0, 4)
    split = agreement(labels, np.array([NOISE, 3, 7, 7, 0, 1]))
    assert split["noise_share"] == 0.25 and split["ari"] < 1.0
    assert agreement(["a", "a"], np.array([0, 1]))["ami"] is None  # one label: no score


def test_map_is_two_dimensional_and_seeded():
    vectors = np.random.default_rng(0).normal(size=(40, 16)).astype(np.float32)
    first, method = map_2d(vectors, 42)
    again, _ = map_2d(vectors, 42)
    assert first.shape == (40, 2) and method in ("umap", "pca")
    np.testing.assert_allclose(first, again)


@pytest.fixture(scope="module")
def catalogue_report(birdnet_catalogue_run, orca_calls, tmp_path_factory):
    from pipelines import report

    output, _ = birdnet_catalogue_run
    out = tmp_path_factory.mktemp("catalogue_report")
    summary = report.run([f"--embeddings={output}", f"--output={out}", "--model=birdnet",
                          f"--label_table={orca_calls / 'catalog' / 'labels.tsv'}",
                          "--label_column=call_type", "--clips=40", "--runner=DirectRunner"])
    return out, summary


@pytest.mark.e2e
def test_clusters_json_scores_birdnet_against_the_call_types(catalogue_report,
                                                            birdnet_catalogue_run, orca_calls):
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score

    from orca_beam.store.reader import current_rows, embedding_matrix
    from orca_beam.store.version import version_folder

    out, summary = catalogue_report
    clusters = json.loads((out / "clusters.json").read_text())["birdnet"]
    assert clusters["points"] == 168 == summary["overview"]["birdnet"]
    assert clusters["label_column"] == "call_type"
    # the oracle: scikit-learn's KMeans over the stored rows in the sample's order
    output, _ = birdnet_catalogue_run
    rows = current_rows(version_folder(str(output), "birdnet", None),
                        ["source", "start_s", "end_s", "embedding"])
    order = sorted(range(rows.num_rows), key=lambda i: (
        rows.column("source")[i].as_py(), rows.column("start_s")[i].as_py(),
        rows.column("end_s")[i].as_py()))
    x = embedding_matrix(rows).astype(np.float64)[order]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    with open(orca_calls / "catalog" / "labels.tsv") as handle:
        table = {r["wav_filename"]: r["call_type"] for r in csv.DictReader(handle,
                                                                           delimiter="\t")}
    names = [rows.column("source")[i].as_py().rsplit("/", 1)[-1] for i in order]
    keep = [n for n, name in enumerate(names) if table.get(name)]
    truth = [table[names[n]] for n in keep]
    kinds = len(set(truth))
    # 140 rows of the 168 are from the 136 labelled clips (the rest: the hydrophone excerpts)
    assert clusters["kmeans"]["clusters"] == kinds and len(keep) == 140
    found = KMeans(n_clusters=kinds, n_init=10, random_state=0).fit_predict(x)[keep]
    assert clusters["kmeans"]["agreement"]["ami"] == pytest.approx(
        adjusted_mutual_info_score(truth, found), abs=1e-4)
    assert clusters["kmeans"]["agreement"]["ari"] == pytest.approx(
        adjusted_rand_score(truth, found), abs=1e-4)
    hdbscan = clusters["hdbscan"]
    assert hdbscan["agreement"]["points"] == 140
    assert -1 <= hdbscan["agreement"]["ari"] <= 1 and 0 <= hdbscan["noise_share"] <= 1
    from PIL import Image

    picture = Image.open(out / "overview.png")
    assert picture.width >= 4 * 300  # four colourings side by side


@pytest.mark.e2e
def test_report_page_loads_its_pictures_and_a_click_plays_a_clip(catalogue_report, tmp_path):
    out, _ = catalogue_report
    handler = partial(SimpleHTTPRequestHandler, directory=str(out))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/index.html"
        with chromium_page(url, tmp_path / "profile") as page:
            page.wait_for("document.readyState === 'complete' && "
                          "document.getElementById('coverage').complete && "
                          "document.getElementById('overview').complete")
            sizes = page.evaluate("['coverage', 'overview'].map(i => "
                                  "document.getElementById(i).naturalWidth)")
            assert all(width > 300 for width in sizes)
            assert page.evaluate("document.querySelectorAll('circle.pt').length") == 168
            assert page.evaluate("document.querySelectorAll('circle.clip').length") >= 40
            page.click("circle.clip", 3)
            page.wait_for("!document.getElementById('player').paused && "
                          "document.getElementById('player').currentTime > 0")
            playing = page.evaluate("document.getElementById('playing').textContent")
            assert ".wav @ " in playing
            duration = page.evaluate("document.getElementById('player').duration")
            src = page.evaluate("document.getElementById('player').getAttribute('src')")
            import soundfile as sf

            info = sf.info(str(out / src))
            # the row's window and 0.5 s either side, clipped to its file
            assert duration == pytest.approx(info.frames / info.samplerate, abs=0.01)
            assert 0.5 < duration <= 4.0 + 1e-6
    finally:
        server.shutdown()
