"""pipelines.search: exact search in Beam equals a numpy top-k over every current row (all three
scores, with filters); temporal de-duplication from bounded candidates equals de-duplicating the
whole corpus; a query embedded with another model version is refused with one line, exit 2."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from orca_beam.search.scores import score_matrix
from orca_beam.search.topk import best, candidates_needed, deduplicated
from orca_beam.store.reader import current_rows
from orca_beam.store.version import latest_version_folder
from pipelines import search

ROOT = Path(__file__).resolve().parents[1]


def oracle_scores(queries: np.ndarray, rows: np.ndarray, score: str) -> np.ndarray:
    """Scores written out one pair at a time (independent of score_matrix's algebra)."""
    out = np.zeros((len(queries), len(rows)))
    for i, q in enumerate(queries.astype(np.float64)):
        for j, r in enumerate(rows.astype(np.float64)):
            if score == "dot":
                out[i, j] = float(np.sum(q * r))
            elif score == "cosine":
                out[i, j] = float(np.sum(q * r) / (np.sqrt(np.sum(q * q)) * np.sqrt(np.sum(r * r))))
            else:
                out[i, j] = -float(np.sqrt(np.sum((q - r) ** 2)))
    return out


@pytest.mark.parametrize("score", ["cosine", "dot", "euclidean"])
def test_score_matrix_equals_pairwise_scores(score):
    rng = np.random.default_rng(1)
    queries, rows = rng.standard_normal((3, 16)), rng.standard_normal((40, 16))
    np.testing.assert_allclose(score_matrix(queries, rows, score),
                               oracle_scores(queries, rows, score), rtol=1e-4, atol=1e-4)


def greedy_dedup(hits, k, min_gap_s):
    """Greedy de-duplication over every hit, written plainly: best first, a hit is dropped when
    a kept hit of its group starts less than min_gap_s away."""
    kept = []
    for hit in sorted(hits, key=lambda h: (-h[0], h[1], h[3])):
        group = hit[2] or hit[1]
        if any((other[2] or other[1]) == group and abs(other[3] - hit[3]) < min_gap_s
               for other in kept):
            continue
        kept.append(hit)
    return kept[:k]


@pytest.mark.parametrize("min_gap_s", [0.0, 2.0, 10.0, 60.0])
def test_dedup_of_bounded_candidates_equals_dedup_of_every_hit(min_gap_s):
    """Scores that rise and fall smoothly in time (as neighbouring windows do), in 5 files:
    keeping candidates_needed best raw hits, then de-duplicating, gives the hits of the plain
    greedy rule over all 5 x 2000 rows."""
    rng = np.random.default_rng(7)
    hop_s, k = 0.48, 10
    hits = []
    for f in range(5):
        walk = np.convolve(rng.standard_normal(2000), np.ones(25) / 25, mode="same")
        hits += [(float(s), f"file{f}.wav", None, i * hop_s, i * hop_s + 0.975, None)
                 for i, s in enumerate(walk)]
    need = candidates_needed(k, min_gap_s, hop_s)
    got = deduplicated(best(hits, need), k, min_gap_s)
    assert got == greedy_dedup(hits, k, min_gap_s)
    assert len(got) == k
    if min_gap_s:
        assert need == k * (2 * int(np.ceil(min_gap_s / hop_s)) + 4)


@pytest.fixture(scope="module")
def birdnet_rows(birdnet_catalogue_run):
    """The BirdNET rows of the 136 catalogue calls and 3 hydrophone excerpts, as numpy."""
    output, _ = birdnet_catalogue_run
    folder = latest_version_folder(str(output), "birdnet")
    table = current_rows(folder, ["source", "stream", "start_s", "end_s", "start_utc",
                                  "embedding"])
    vectors = np.asarray(table.column("embedding").combine_chunks().flatten(), np.float32)
    return output, table.to_pydict(), vectors.reshape(table.num_rows, -1)


def numpy_top_k(rows, vectors, query, score, k, keep, exclude):
    """(source, start_s, score) of the k best rows by a plain numpy sort over every row."""
    scores = oracle_scores(query[None, :], vectors, score)[0] if len(vectors) < 2000 else \
        score_matrix(query[None, :], vectors, score)[0]
    order = sorted((i for i in range(len(scores)) if keep(i) and not exclude(i)),
                   key=lambda i: (-scores[i], rows["source"][i], rows["start_s"][i]))
    return [(rows["source"][i], rows["start_s"][i], scores[i]) for i in order[:k]]


@pytest.mark.e2e
@pytest.mark.parametrize("score", ["cosine", "dot", "euclidean"])
def test_exact_search_equals_numpy_top_k_with_filters(birdnet_rows, tmp_path, score):
    output, rows, vectors = birdnet_rows
    catalog = sorted({s for s in rows["source"] if "/catalog/" in s})
    query_source = catalog[3]
    i = rows["source"].index(query_source)
    query_row = f"{query_source}@{rows['start_s'][i]}"
    summary = search.run([
        f"--embeddings={output}", "--model=birdnet", f"--output={tmp_path}",
        f"--query_row={query_row}", "--top_k=7", f"--score={score}", "--min_gap_s=0",
        "--source=*/catalog/*"])
    got = pq.read_table(tmp_path / "results.parquet").to_pylist()
    expected = numpy_top_k(rows, vectors, vectors[i], score, 7,
                           keep=lambda j: "/catalog/" in rows["source"][j],
                           exclude=lambda j: j == i)
    assert [(r["source"], r["start_s"]) for r in got] == [(s, t) for s, t, _ in expected]
    np.testing.assert_allclose([r["score"] for r in got], [s for _, _, s in expected],
                               rtol=1e-4, atol=1e-4)
    assert [r["rank"] for r in got] == list(range(1, 8))
    assert all(r["query"] == query_row for r in got)
    assert summary["rows_scanned"] == sum("/catalog/" in s for s in rows["source"])
    assert summary["hits"] == 7 and summary["queries"] == 1
    csv_lines = (tmp_path / "results.csv").read_text().splitlines()
    assert csv_lines[0].split(",")[:4] == ["query", "rank", "score", "source"]
    assert len(csv_lines) == 8


@pytest.fixture(scope="module")
def timed_store(orca_calls, tmp_path_factory):
    """The three hydrophone excerpts under names that carry a recording time (an hour apart),
    embedded with BirdNET: rows with start_utc."""
    from pipelines import extract

    base = tmp_path_factory.mktemp("timed")
    (base / "audio").mkdir()
    for hour, wav in enumerate(sorted((orca_calls / "hydrophone").glob("*.wav"))):
        (base / "audio" / f"2021-10-01_0{hour}-00-00_{wav.name}").symlink_to(wav)
    extract.run([f"--input={base / 'audio'}/*.wav", f"--output={base / 'out'}",
                 "--model=birdnet", "--file_time_format=%Y-%m-%d_%H-%M-%S",
                 "--projector_point=none"])
    folder = latest_version_folder(str(base / "out"), "birdnet")
    table = current_rows(folder, ["source", "stream", "start_s", "end_s", "start_utc",
                                  "embedding"])
    vectors = np.asarray(table.column("embedding").combine_chunks().flatten(), np.float32)
    return base, table.to_pydict(), vectors.reshape(table.num_rows, -1)


@pytest.mark.e2e
def test_clip_query_time_filter_and_default_dedup(timed_store, tmp_path):
    """A 6 s clip of one file as the query (embedded again with BirdNET: two windows, scored
    by the better), rows kept only from 01:00 UTC on, near-duplicates within the default 10 s
    dropped: the hits equal the greedy rule over a numpy scan of the rows in range, and none
    lies in or within 10 s of the query clip."""
    base, rows, vectors = timed_store
    sources = sorted(set(rows["source"]))
    clip_file = sources[1]  # recorded at 01:00
    summary = search.run([
        f"--embeddings={base / 'out'}", "--model=birdnet", f"--output={tmp_path}",
        f"--query={clip_file}#t=3,9", "--top_k=3", "--start=2021-10-01T01:00:00Z",
        "--end=2021-10-01T03:00:00+00:00"])
    got = pq.read_table(tmp_path / "results.parquet").to_pylist()
    from orca_beam.search.queries import clip_query
    from orca_beam.store.version import VersionInfo
    version = VersionInfo.read(latest_version_folder(str(base / "out"), "birdnet"))
    query = clip_query(f"{clip_file}#t=3,9", version)
    assert query.vectors.shape == (2, 1024)  # 6 s: two 3 s BirdNET windows
    scores = oracle_scores(query.vectors, vectors, "cosine").max(axis=0)
    lo = datetime(2021, 10, 1, 1, tzinfo=UTC)
    in_range = [j for j in range(len(scores)) if rows["start_utc"][j] is not None
                and rows["start_utc"][j] >= lo]
    hits = [(scores[j], rows["source"][j], rows["stream"][j], rows["start_s"][j],
             rows["end_s"][j], None) for j in in_range
            if not (rows["source"][j] == clip_file and 3 - 10 <= rows["start_s"][j] < 9 + 10)]
    expected = greedy_dedup(hits, 3, search.DEFAULT_MIN_GAP_S)
    assert len(expected) == 3
    assert [(r["source"], r["start_s"]) for r in got] == [(h[1], h[3]) for h in expected]
    np.testing.assert_allclose([r["score"] for r in got], [h[0] for h in expected], atol=1e-4)
    for r in got:  # the UTC time is the file name's plus the offset
        hour = sources.index(r["source"])
        assert r["start_utc"].timestamp() == pytest.approx(
            datetime(2021, 10, 1, hour, tzinfo=UTC).timestamp() + r["start_s"], abs=1e-3)
    assert summary["min_gap_s"] == 10.0
    assert summary["rows_searched"] == len(in_range) < summary["rows_scanned"]


@pytest.mark.e2e
def test_query_from_another_model_version_is_refused(standin_dir, orca_calls, tmp_path):
    from pipelines import extract

    wav = orca_calls / "hydrophone" / "210825-1925_L-highlight.wav"
    extract.run([f"--input={wav}", f"--output={tmp_path / 'out'}", "--model=yamnet",
                 f"--model_handle=yamnet={standin_dir / 'yamnet'}", "--projector_point=none"])
    other = tmp_path / "other_yamnet"
    shutil.copytree(standin_dir / "yamnet", other)
    (other / "assets").mkdir(exist_ok=True)
    (other / "assets" / "changed.txt").write_text("another model version\n")
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.search", f"--embeddings={tmp_path / 'out'}",
         "--model=yamnet", f"--output={tmp_path / 'search'}", f"--query={wav}#t=0,2",
         f"--model_handle={other}"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "content sha256" in errors[0], done.stderr[-2000:]
    assert not (tmp_path / "search" / "results.parquet").exists()


@pytest.mark.e2e
def test_several_queries_each_get_a_list_and_one_combined(birdnet_rows, tmp_path):
    """Two stored rows and a table of clips (the review export's columns: only verdict yes):
    one list per query, and --combine max ranks rows by their best score over the queries."""
    output, rows, vectors = birdnet_rows
    catalog = [j for j, s in enumerate(rows["source"]) if "/catalog/" in s]
    a, b, c = catalog[0], catalog[40], catalog[90]
    table = tmp_path / "clips.csv"
    with table.open("w", newline="") as handle:  # catalogue names hold commas: quoted
        writer = csv.writer(handle)
        writer.writerow(["source", "start_s", "end_s", "start_utc", "label", "verdict"])
        writer.writerow([rows["source"][c], 0, 3, "", "S1", "yes"])
        writer.writerow([rows["source"][a], 0, 3, "", "S1", "no"])
    out = tmp_path / "search"
    summary = search.run([
        f"--embeddings={output}", "--model=birdnet", f"--output={out}", "--top_k=4",
        f"--query_row={rows['source'][a]}@{rows['start_s'][a]}",
        f"--query_row={rows['source'][b]}@{rows['start_s'][b]}",
        f"--queries_from={table}", "--combine=max", "--min_gap_s=0"])
    got = pq.read_table(out / "results.parquet").to_pylist()
    names = list(dict.fromkeys(r["query"] for r in got))
    assert len(names) == 4 and names[-1] == "combined:max" and summary["queries"] == 4
    assert sum(r["query"] == names[2] for r in got) == 4  # the yes row of the table
    from orca_beam.search.queries import clip_query
    from orca_beam.store.version import VersionInfo
    version = VersionInfo.read(latest_version_folder(str(output), "birdnet"))
    clip = clip_query(f"{rows['source'][c]}#t=0,3", version).vectors  # one window
    scores = oracle_scores(np.vstack([vectors[[a, b]], clip]), vectors, "cosine").max(axis=0)
    order = sorted((j for j in range(len(scores)) if j not in (a, b)),
                   key=lambda j: (-scores[j], rows["source"][j], rows["start_s"][j]))
    combined_hits = [(r["source"], r["start_s"]) for r in got if r["query"] == "combined:max"]
    # the clip query's own file is excluded from the combined list too
    expected = [(rows["source"][j], rows["start_s"][j]) for j in order
                if rows["source"][j] != rows["source"][c]]
    assert combined_hits == expected[:4]
