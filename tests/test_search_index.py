"""The search index (one USearch file per row shard): its hits equal exact search's; a re-run
indexes only the new shard and its rows are found; a deleted source's rows are never returned."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from orca_beam.store.reader import current_rows
from orca_beam.store.version import latest_version_folder
from pipelines import extract, search

pytestmark = pytest.mark.e2e


def hits(folder) -> list[tuple]:
    return [(r["query"], r["source"], r["start_s"])
            for r in pq.read_table(folder / "results.parquet").to_pylist()]


def test_index_hits_equal_exact_search(birdnet_catalogue_run, tmp_path):
    output, _ = birdnet_catalogue_run
    built = search.run(["build-index", f"--embeddings={output}", "--model=birdnet"])
    folder = latest_version_folder(str(output), "birdnet")
    assert built["built"] + built["kept"] >= 1
    again = search.run(["build-index", f"--embeddings={output}", "--model=birdnet"])
    assert again["built"] == 0 and again["kept"] == built["built"] + built["kept"]
    table = current_rows(folder, ["source", "start_s"]).to_pylist()
    queries = [f"--query_row={r['source']}@{r['start_s']}" for r in table[::40]]
    common = [f"--embeddings={output}", "--model=birdnet", "--top_k=10", *queries,
              "--no-review"]
    exact = search.run([*common, f"--output={tmp_path / 'exact'}"])
    indexed = search.run([*common, "--index", f"--output={tmp_path / 'index'}"])
    assert indexed["shards_scanned_exactly"] == 0
    assert hits(tmp_path / "index") == hits(tmp_path / "exact")  # recall@10 = 1 here
    assert exact["hits"] == indexed["hits"] == 10 * len(queries)


def test_a_rerun_indexes_the_new_shard_and_a_deleted_source_is_never_a_hit(orca_calls,
                                                                           tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    calls = orca_calls / "hydrophone"
    (audio / "a.wav").symlink_to(calls / "someCalls.wav")
    (audio / "b.wav").symlink_to(calls / "210825-1925_L-highlight.wav")
    out = tmp_path / "out"
    args = [f"--input={audio}/*.wav", f"--output={out}", "--model=birdnet",
            "--projector_point=none"]
    index = ["build-index", f"--embeddings={out}", "--model=birdnet"]
    extract.run(args)
    assert search.run(index)["built"] == 1
    (audio / "c.wav").symlink_to(calls / "someCallsPlus7db.wav")  # the same calls, louder
    extract.run(args)
    second = search.run(index)
    assert (second["built"], second["kept"]) == (1, 1)  # only the new shard
    query = [f"--embeddings={out}", "--model=birdnet", f"--query_row={audio / 'a.wav'}@6.0",
             "--top_k=3", "--no-review", "--index"]
    search.run([*query, f"--output={tmp_path / 's1'}"])
    first_hit = hits(tmp_path / "s1")[0]
    assert first_hit[1] == str(audio / "c.wav") and first_hit[2] == 6.0
    (audio / "c.wav").unlink()
    extract.run(args)  # c.wav is deleted from the version; its shard and index stay on disk
    search.run(index)
    search.run([*query, f"--output={tmp_path / 's2'}"])
    assert all(source != str(audio / "c.wav") for _, source, _ in hits(tmp_path / "s2"))
    search.run([*query[:-1], f"--output={tmp_path / 's3'}"])  # exact, the Beam scan
    assert hits(tmp_path / "s2") == hits(tmp_path / "s3") and hits(tmp_path / "s2")
