"""Incremental, versioned re-extraction on DirectRunner over real catalogue clips (YAMNet stand-in):
re-runs skip unchanged files, new and changed files are embedded, deleted ones reported, a new
model writes a new version, and a killed run leaves nothing a later run takes as finished."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orca_beam.store.manifest import read_manifest
from orca_beam.store.reader import current_rows
from orca_beam.store.version import COMMIT_NAME
from pipelines import extract

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[1]
FIRST = ["S01-J,L-1.wav", "S02i-J-1.wav", "S03-J-1.wav", "S04-J-1.wav", "BCS07-J01pod-1.wav",
         "S02ii-J-1.wav"]
ADDED = ["S05-J-1.wav", "S06-J-1.wav"]
CHANGED = "S03-J-1.wav"
REPLACEMENT = "S02iii-L-1.wav"  # its bytes are written over CHANGED


def args(audio: Path, output: Path, handle: Path, *extra: str) -> list[str]:
    # --pack_s=0.5: one piece per model call, so a file's values do not depend on which files
    # shared its call (see test_gcs_pipeline), and runs can be compared byte for byte
    return ["--runner=DirectRunner", f"--input={audio}/*.wav", f"--output={output}",
            "--model=yamnet", f"--model_handle=yamnet={handle}", "--pack_s=0.5", *extra]


def inferences(summary: dict) -> int:
    """RunInference's own count of elements sent to the model (Beam metrics)."""
    return summary["counters"].get("orca_beam.yamnet:num_inferences", 0)


def projector_files(output: Path, folder: Path | None = None) -> dict[str, bytes]:
    """The projector files; the summary without its rows digest (it names the run's shards)."""
    folder = folder or output / "projector" / "yamnet"
    files = {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
    summary = json.loads(files["projector_summary.json"])
    assert len(summary.pop("rows_digest")) == 16
    files["projector_summary.json"] = json.dumps(summary, sort_keys=True).encode()
    return files


def assert_same_projector(got: dict[str, bytes], expected: dict[str, bytes]) -> None:
    """The same projector files, byte for byte."""
    assert got.keys() == expected.keys()
    for name in expected:
        assert got[name] == expected[name], name


def version_folders(output: Path) -> list[Path]:
    return sorted(p.parent for p in (output / "yamnet").glob(f"*/{COMMIT_NAME}"))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def audio(orca_calls, tmp_path) -> Path:
    folder = tmp_path / "audio"
    folder.mkdir()
    for name in FIRST:
        shutil.copy(orca_calls / "catalog" / name, folder / name)
    return folder


def test_reruns_do_only_the_work_that_changed(audio, orca_calls, standin_dir, tmp_path):
    output = tmp_path / "out"
    handle = standin_dir / "yamnet"
    first = extract.run(args(audio, output, handle))
    assert first["models"]["yamnet"]["embedded"] == 6 and inferences(first) > 0
    assert first["versions"]["yamnet"]["plan"]["new"] == 6
    [folder] = version_folders(output)
    manifest = read_manifest(str(folder))
    assert sorted(Path(s).name for s in manifest["entries"]) == sorted(FIRST)
    entry = manifest["entries"][str(audio / FIRST[0])]
    assert entry["size_bytes"] == (audio / FIRST[0]).stat().st_size
    assert entry["fingerprint"].startswith("crc32c:") and entry["status"] == "embedded"
    assert all(Path(shard).parent == folder for shard in entry["shards"])
    projector_first = projector_files(output)

    assert entry["compared"] == "new" and entry["mtime_s"] == (audio / FIRST[0]).stat().st_mtime

    # same inputs, same model: nothing decoded, no inference, projector files not rebuilt
    mtimes = {p.name: p.stat().st_mtime_ns for p in (output / "projector" / "yamnet").iterdir()}
    again = extract.run(args(audio, output, handle))
    assert inferences(again) == 0 and "orca_beam:files_decoded" not in again["counters"]
    assert again["counters"]["orca_beam:projector_kept_yamnet"] == 1
    assert "orca_beam:files_content_checked" not in again["counters"]  # size+mtime only
    assert again["nothing_changed"] and again["files_matched"] == 6
    assert again["versions"]["yamnet"]["plan"] == {
        "new": 0, "changed": 0, "retry": 0, "unchanged": 6, "deleted": 0}
    assert projector_files(output) == projector_first
    assert mtimes == {p.name: p.stat().st_mtime_ns
                      for p in (output / "projector" / "yamnet").iterdir()}
    assert {e["compared"] for e in read_manifest(str(folder))["entries"].values()} == {
        "size+mtime"}

    # two new files and one changed: the plan says so, then exactly three are embedded
    for name in ADDED:
        shutil.copy(orca_calls / "catalog" / name, audio / name)
    shutil.copy(orca_calls / "catalog" / REPLACEMENT, audio / CHANGED)
    planned = extract.run([*args(audio, output, handle), "--plan"])["plan"]["yamnet"]
    assert (planned["new"], planned["changed"], planned["unchanged"]) == (2, 1, 5)
    third = extract.run(args(audio, output, handle))
    assert third["models"]["yamnet"]["embedded"] == 3
    assert third["counters"]["orca_beam:files_decoded"] == 3
    assert third["versions"]["yamnet"]["plan"] == {
        "new": 2, "changed": 1, "retry": 0, "unchanged": 5, "deleted": 0}
    table = current_rows(read_manifest(str(folder)))
    assert sorted({Path(s).name for s in table.column("source").to_pylist()}) == sorted(
        FIRST + ADDED)
    scratch = extract.run(args(audio, tmp_path / "scratch", handle))
    assert scratch["models"]["yamnet"]["embeddings"] == table.num_rows
    assert_same_projector(projector_files(output), projector_files(tmp_path / "scratch"))

    # a deleted file is reported and its rows leave the version
    (audio / FIRST[1]).unlink()
    fourth = extract.run(args(audio, output, handle))
    assert inferences(fourth) == 0
    assert fourth["versions"]["yamnet"]["deleted_sources"] == [str(audio / FIRST[1])]
    assert str(audio / FIRST[1]) not in read_manifest(str(folder))["entries"]
    metadata = (output / "projector" / "yamnet" / "metadata.tsv").read_text()
    assert FIRST[1] not in metadata and FIRST[0] in metadata

    # --force re-embeds everything in the same version
    forced = extract.run([*args(audio, output, handle), "--force"])
    assert forced["models"]["yamnet"]["embedded"] == 7 and version_folders(output) == [folder]

    # the stand-alone projector entry point rebuilds the same files from the version's rows
    from pipelines import projector

    projector.run(["--embeddings", str(output), "--output", str(tmp_path / "again")])
    rebuilt = projector_files(output, tmp_path / "again" / "yamnet")
    assert rebuilt == projector_files(output)


def test_a_changed_model_writes_a_new_version_and_leaves_the_old_one(
        audio, standin_dir, tmp_path):
    from orca_beam.testing.standins.build import DEFAULT_SEED, build_standin

    output = tmp_path / "out"
    extract.run(args(audio, output, standin_dir / "yamnet"))
    [old] = version_folders(output)
    before = snapshot(old)
    reseeded = tmp_path / "yamnet-reseeded"
    build_standin("yamnet", reseeded, seed=DEFAULT_SEED + 100)
    summary = extract.run(args(audio, output, reseeded))
    assert summary["models"]["yamnet"]["embedded"] == 6 and inferences(summary) > 0
    folders = version_folders(output)
    assert len(folders) == 2 and old in folders
    assert snapshot(old) == before  # the old version is untouched
    new = next(f for f in folders if f != old)
    label = read_manifest(str(new))["version"]["label"]
    assert label.startswith(f"{reseeded}@sha256:") and label.endswith("+standin")
    # a changed framing parameter is a new version too
    hop = extract.run([*args(audio, output, standin_dir / "yamnet"), "--channel=0"])
    assert hop["models"]["yamnet"]["embedded"] == 6
    assert len(version_folders(output)) == 3 and snapshot(old) == before


def test_a_killed_run_leaves_nothing_taken_as_finished(audio, orca_calls, standin_dir,
                                                       tmp_path):
    for name in ADDED + ["S07-J-1.wav", "S07-J-2.wav"]:
        shutil.copy(orca_calls / "catalog" / name, audio / name)
    output = tmp_path / "out"
    handle = standin_dir / "yamnet"
    log = tmp_path / "killed.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipelines.extract", *args(audio, output, handle),
             "--pack_s=2", "--progress_interval_s=0"], cwd=REPO, stdout=out,
            stderr=subprocess.STDOUT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    deadline = time.monotonic() + 240
    while "embeddings: yamnet=" not in log.read_text(errors="replace"):
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "the run never reached inference"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert not list(output.glob(f"yamnet/*/{COMMIT_NAME}"))  # nothing claims to be finished
    # a shard a dying run finalised but never listed is not read, and the next run deletes it
    folder = next((output / "yamnet").iterdir())
    orphan = folder / "rows-20000101T000000Z-dead00-00000-of-00001.parquet"
    orphan.write_bytes(b"PAR1 partial")

    resumed = extract.run(args(audio, output, handle))
    assert resumed["models"]["yamnet"]["embedded"] == 10
    assert not orphan.exists()
    clean = extract.run(args(audio, tmp_path / "clean", handle))
    assert_same_projector(projector_files(output), projector_files(tmp_path / "clean"))
    resumed_rows = current_rows(read_manifest(str(folder))).sort_by(
        [("source", "ascending"), ("start_s", "ascending")])
    clean_rows = current_rows(read_manifest(str(version_folders(tmp_path / "clean")[0]))).sort_by(
        [("source", "ascending"), ("start_s", "ascending")])
    assert resumed_rows.equals(clean_rows)
    assert clean["models"]["yamnet"]["embeddings"] == resumed_rows.num_rows
    assert json.loads((output / "summary.json").read_text())["run_id"] == resumed["run_id"]


def write_legacy_manifest(folder: Path) -> None:
    """Turns a version folder into the form the previous release wrote: one _manifest.json
    (no mtimes, no commit, no entry shards)."""
    manifest = read_manifest(str(folder))
    entries = {source: {k: e[k] for k in ("source", "size_bytes", "fingerprint", "status",
                                          "embeddings", "shards", "run_id", "duration_s",
                                          "error_class", "error")}
               for source, e in manifest["entries"].items()}
    legacy = {"version": manifest["version"], "written_at": "2026-11-25T15:00:00+00:00",
              "runs": manifest["runs"], "entries": entries}
    shutil.rmtree(folder / "_manifest")
    (folder / COMMIT_NAME).unlink()
    (folder / "_manifest.json").write_text(json.dumps(legacy, indent=1))


def test_a_version_of_the_previous_release_is_read_as_it_is_and_rewritten_by_the_next_run(
        audio, standin_dir, tmp_path):
    from pipelines import projector

    output = tmp_path / "out"
    handle = standin_dir / "yamnet"
    extract.run(args(audio, output, handle))
    expected = projector_files(output)
    [folder] = version_folders(output)
    rows = current_rows(str(folder)).sort_by([("source", "ascending"), ("start_s", "ascending")])
    write_legacy_manifest(folder)
    assert not version_folders(output)  # no commit: only the old single JSON

    projector.run(["--embeddings", str(output), "--output", str(tmp_path / "from_legacy")])
    assert projector_files(output, tmp_path / "from_legacy" / "yamnet") == expected
    planned = extract.run([*args(audio, output, handle), "--plan"])["plan"]["yamnet"]
    assert (planned["unchanged"], planned["new"], planned["changed"]) == (6, 0, 0)

    # the old entries have no mtime: the run compares the bytes once, embeds nothing, and
    # writes the sharded form in place of the JSON
    rerun = extract.run(args(audio, output, handle))
    assert inferences(rerun) == 0 and rerun["counters"]["orca_beam:files_content_checked"] == 6
    assert rerun["versions"]["yamnet"]["plan"]["unchanged"] == 6
    assert version_folders(output) == [folder] and not (folder / "_manifest.json").exists()
    entries = read_manifest(str(folder))["entries"]
    assert {e["compared"] for e in entries.values()} == {"crc32c_content"}
    assert all(e["mtime_s"] == Path(s).stat().st_mtime for s, e in entries.items())
    assert current_rows(str(folder)).sort_by(
        [("source", "ascending"), ("start_s", "ascending")]).equals(rows)
    assert projector_files(output) == expected
