"""gs:// in and out against a real GCS emulator process: recordings, annotations, the stand-in model
and every output live in the emulator's bucket; the outputs must equal a local run's byte for byte
(Parquet row by row) once the run-specific strings (gs:// vs local paths, run ids, wall time) are
made equal.

Both runs use ``--pack_s=0.5``: every model call then holds one piece alone. With the default
packing, which files share a call depends on the order Beam delivers them (it differs between the
gs:// and the local listing), and TensorFlow's CPU kernels block their sums by the call's shape,
so a value could differ in its last bit (seen: 3.6e-7 in 1 of 167 rows).
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines import extract
from tests.test_segments_pipeline import write_annotations

pytestmark = pytest.mark.e2e
CATALOG_CLIPS = ["S01-J,L-1.wav", "S02i-J-1.wav"]


def local_outputs(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def gcs_outputs(gcs, prefix: str) -> dict[str, bytes]:
    return {name[len(prefix) + 1:]: gcs.download(name) for name in gcs.list(prefix + "/")}


def assert_same_outputs(remote: dict[str, object], local: dict[str, object]) -> None:
    """Equal keys, and every file equal (Parquet rows, JSON lines, text, bytes)."""
    assert remote.keys() == local.keys()
    for key, expected in local.items():
        assert remote[key] == expected, key


def normalise(files: dict[str, bytes], replace: dict[str, str]) -> dict[str, object]:
    """Output files keyed by kind, with run-specific strings (paths, wall time) made equal:
    Parquet shards of a model as one row list sorted by (source, start_s), JSON lines sorted,
    everything else as text or bytes."""
    def fix(text: str) -> str:
        for old, new in replace.items():
            text = text.replace(old, new)
        return text

    out: dict[str, object] = {}
    for name, data in files.items():
        # the version folder's id hashes the handle (a gs:// vs a local path), shards the run id
        name = re.sub(r"^(\w+)/[0-9a-f]{16}-[0-9a-f]{8}/", r"\1/VERSION/", name)
        # each run's outcome files sit in a folder named by its run id
        name = re.sub(r"^(outcomes|errors|segments|segments_rejected)/[^/]+/", r"\1/RUN/", name)
        folder, _, base = name.rpartition("/")
        if base == "_version.json":
            version = json.loads(data)
            out[name] = {k: version[k] for k in ("model", "content_sha256", "standin",
                                                   "settings")}
            continue
        if base == "_commit.json":
            commit = json.loads(data)
            out[name] = {"entries": commit["entries"], "plan": commit["runs"][-1]["plan"]}
            continue
        if base == "projector_summary.json":
            summary = json.loads(data)
            assert len(summary.pop("rows_digest")) == 16  # it hashes the run's shard names
            out[name] = summary
            continue
        if folder.endswith("/_manifest"):  # manifest entries: what does not name the run
            entries = pq.read_table(io.BytesIO(data)).to_pylist()
            out.setdefault(f"{folder}/*.parquet", []).extend(
                {"source": fix(e["source"]), **{k: e[k] for k in (
                    "size_bytes", "fingerprint", "status", "embeddings", "duration_s",
                    "compared")}} for e in entries)
            continue
        if base.endswith(".parquet"):
            rows = pq.read_table(io.BytesIO(data)).to_pylist()
            for row in rows:
                for key, value in row.items():
                    if isinstance(value, str):
                        row[key] = fix(value)
            key = f"{folder}/*.parquet"
            out.setdefault(key, []).extend(rows)
        elif base.endswith(".jsonl"):
            key = f"{folder}/*.jsonl"
            out.setdefault(key, []).extend(fix(line) for line in data.decode().splitlines())
        elif base == "summary.json":
            summary = json.loads(fix(data.decode()))
            for volatile in ("wall_s", "audio_s_per_wall_s", "run_id", "counters", "model_load_s"):
                summary.pop(volatile, None)
            summary["versions"] = {m: v.get("plan") if isinstance(v, dict) else None
                                   for m, v in summary["versions"].items()}
            out[name] = summary
        elif base.endswith((".tsv", ".json", ".pbtxt")):
            out[name] = fix(data.decode())
        else:
            out[name] = data
    for value in out.values():
        if isinstance(value, list):
            value.sort(key=lambda r: (r["source"], r.get("start_s", 0), r.get("segment_id", ""))
                       if isinstance(r, dict) else r)
    return out


@pytest.fixture(scope="module")
def bucket_data(gcs_emulator, orca_calls, standin_dir):
    """Uploads the hydrophone recordings, two catalog clips and the YAMNet stand-in."""
    gcs_emulator.upload(orca_calls / "hydrophone", "orca-calls/hydrophone")
    for clip in CATALOG_CLIPS:
        gcs_emulator.upload(orca_calls / "catalog" / clip, f"orca-calls/catalog/{clip}")
    model = gcs_emulator.upload(standin_dir / "yamnet", "models/yamnet")
    return model


def test_file_mode_gs_to_gs_equals_a_local_run(gcs_emulator, bucket_data, orca_calls,
                                                standin_dir, tmp_path):
    gs_root = gcs_emulator.url("orca-calls")
    common = ["--runner=DirectRunner", "--model=yamnet", "--chunk_s=10", "--pack_s=0.5",
              "--projector_tensor_format=bytes"]
    extract.run([*common, f"--input={gs_root}/hydrophone/*.wav",
                 *[f"--input={gs_root}/catalog/{c}" for c in CATALOG_CLIPS],
                 f"--output={gcs_emulator.url('out/files')}",
                 f"--model_handle=yamnet={bucket_data}"])
    extract.run([*common, f"--input={orca_calls}/hydrophone/*.wav",
                 *[f"--input={orca_calls / 'catalog' / c}" for c in CATALOG_CLIPS],
                 f"--output={tmp_path / 'out'}", f"--model_handle=yamnet={standin_dir / 'yamnet'}"])
    remote = gcs_outputs(gcs_emulator, "out/files")
    local = local_outputs(tmp_path / "out")
    same = {gs_root: str(orca_calls), bucket_data: str(standin_dir / "yamnet")}
    remote_n, local_n = normalise(remote, same), normalise(local, {})
    assert len(local_n["yamnet/VERSION/*.parquet"]) == 167
    assert local_n["summary.json"]["files_matched"] == 5
    assert remote["projector/yamnet/sprite.png"] == local["projector/yamnet/sprite.png"]
    assert_same_outputs(remote_n, local_n)


def test_segments_mode_gs_to_gs_equals_a_local_run(gcs_emulator, bucket_data, orca_calls,
                                                    standin_dir, tmp_path):
    write_annotations(tmp_path / "annotations.tsv")
    annotations = gcs_emulator.upload(tmp_path / "annotations.tsv", "orcaml/annotations.tsv")
    config = gcs_emulator.upload(Path(extract.__file__).parents[1] / "configs" / "orcaml.yaml",
                                 "orcaml/orcaml.yaml")
    gs_root = gcs_emulator.url("orca-calls")
    common = ["--runner=DirectRunner", "--model=yamnet", "--negatives=1", "--pack_s=0.5"]
    summary = extract.run([
        *common, f"--input={gs_root}/hydrophone", f"--annotations={annotations}",
        f"--annotations_config={config}", f"--output={gcs_emulator.url('out/segments')}",
        f"--model_handle=yamnet={bucket_data}"])
    extract.run([*common, f"--input={orca_calls}/hydrophone",
                 f"--annotations={tmp_path / 'annotations.tsv'}", f"--output={tmp_path / 'out'}",
                 f"--model_handle=yamnet={standin_dir / 'yamnet'}"])
    assert summary["rows_by_status"] == {"embedded": 4, "no_call": 1, "rejected": 4}
    same = {gs_root: str(orca_calls), bucket_data: str(standin_dir / "yamnet")}
    remote_n = normalise(gcs_outputs(gcs_emulator, "out/segments"), same)
    local_n = normalise(local_outputs(tmp_path / "out"), {})
    assert len(local_n["yamnet/VERSION/*.parquet"]) == 4 + 3
    assert_same_outputs(remote_n, local_n)
