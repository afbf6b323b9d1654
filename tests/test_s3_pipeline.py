"""s3:// against a real S3 emulator process (moto_server on loopback): a public-read bucket read
with no credentials at all (unsigned requests, no credential retries), and every path on s3://
(input, label table, model handle, output) with keys; the rows equal a local run's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from orca_beam.store.reader import current_rows
from orca_beam.store.version import latest_version_folder
from pipelines import extract

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[1]
FILES = ["210825-1925_L-highlight.wav", "someCalls.wav"]


def without_credentials(tmp_path: Path) -> dict:
    """This environment with no AWS credentials anywhere boto3 looks (variables, files)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
               AWS_CONFIG_FILE=str(tmp_path / "none"), TF_CPP_MIN_LOG_LEVEL="3")
    return env


def rows_by_name(output: str, model: str) -> dict[tuple, np.ndarray]:
    """(file name, start_s) -> embedding of a run's current rows."""
    table = current_rows(latest_version_folder(output, model))
    vectors = np.asarray(table.column("embedding").combine_chunks().flatten(), np.float32)
    vectors = vectors.reshape(table.num_rows, -1)
    keys = zip([s.rsplit("/", 1)[-1] for s in table.column("source").to_pylist()],
               table.column("start_s").to_pylist(), strict=True)
    return dict(zip(keys, vectors, strict=True))


FIRST_READ = """
import json, sys, time
started = time.perf_counter()
from orca_beam.core import s3
s3.install()  # the shared, unsigned-without-credentials S3 client
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
FileSystems.set_options(PipelineOptions([f"--s3_endpoint_url={sys.argv[1]}"]))
found = FileSystems.match([sys.argv[2]])[0].metadata_list
with FileSystems.open(found[0].path) as handle:
    head = handle.read(4)
print(json.dumps({"files": len(found), "head": head.decode(), "seconds": time.perf_counter()
                  - started}))
"""


def test_public_bucket_is_read_at_once_without_credentials(s3_emulator, orca_calls, standin_dir,
                                                           tmp_path):
    for name in FILES:
        s3_emulator.upload(orca_calls / "hydrophone" / name, f"public/{name}")
    pattern = s3_emulator.url("public/*.wav")
    env = without_credentials(tmp_path)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", FIRST_READ, s3_emulator.endpoint, pattern],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    first = json.loads(done.stdout.strip().splitlines()[-1])
    assert first["files"] == 2 and first["head"] == "RIFF"
    print(f"\nno credentials: listing and first bytes {first['seconds']:.2f} s after start")
    # listing and the first bytes within 5 s of the process start (Beam's own client would
    # retry "Unable to locate credentials" for minutes)
    assert first["seconds"] < 5.0 and time.perf_counter() - started < 30
    out = tmp_path / "from-s3"
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.extract", "--runner=DirectRunner",
         f"--input={pattern}", f"--s3_endpoint_url={s3_emulator.endpoint}",
         f"--output={out}", "--model=yamnet", f"--model_handle=yamnet={standin_dir / 'yamnet'}",
         "--pack_s=0.5", "--projector_point=none"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "requests are unsigned" in done.stderr
    local = tmp_path / "local"
    extract.run(["--runner=DirectRunner",
                 *[f"--input={orca_calls / 'hydrophone' / name}" for name in FILES],
                 f"--output={local}", "--model=yamnet",
                 f"--model_handle=yamnet={standin_dir / 'yamnet'}", "--pack_s=0.5",
                 "--projector_point=none"])
    remote_rows, local_rows = rows_by_name(str(out), "yamnet"), rows_by_name(str(local), "yamnet")
    assert remote_rows.keys() == local_rows.keys() and len(remote_rows) > 50
    for key, vector in local_rows.items():
        np.testing.assert_array_equal(remote_rows[key], vector)
    sources = current_rows(latest_version_folder(str(out), "yamnet")).column("source")
    assert set(sources.to_pylist()) == {s3_emulator.url(f"public/{n}") for n in FILES}


def test_every_path_on_s3_with_keys(s3_emulator, orca_calls, standin_dir, tmp_path):
    clips = ["S01-J,L-1.wav", "S02i-J-1.wav", "S03-J-1.wav"]
    for name in clips:
        s3_emulator.upload(orca_calls / "catalog" / name, f"catalog/{name}")
    labels = s3_emulator.upload(orca_calls / "catalog" / "labels.tsv", "catalog/labels.tsv")
    model = s3_emulator.upload(standin_dir / "yamnet", "models/yamnet")
    keys = [f"--s3_endpoint_url={s3_emulator.endpoint}", "--s3_access_key_id=test",
            "--s3_secret_access_key=test", "--s3_region_name=us-west-2"]
    output = s3_emulator.url("runs/one")
    summary = extract.run(["--runner=DirectRunner", f"--input={s3_emulator.url('catalog')}/*.wav",
                           f"--output={output}", "--model=yamnet",
                           f"--model_handle=yamnet={model}", f"--label_table={labels}",
                           "--pack_s=0.5", *keys])
    assert summary["models"]["yamnet"]["embedded"] == 3
    assert summary["labels"] == {"sources_labelled": 3, "sources_without_label": 0,
                                 "without_label": []}
    written = s3_emulator.list("runs/one/")
    assert any(name.endswith("/_commit.json") for name in written)
    assert any("/rows-" in name and name.endswith(".parquet") for name in written)
    metadata = s3_emulator.download("runs/one/projector/yamnet/metadata.tsv").decode()
    header, *lines = metadata.splitlines()
    assert header.split("\t")[-4:] == ["call_type", "pod", "clan", "population"]
    assert {line.split("\t")[-4] for line in lines} == {"S01", "S02i", "S03"}
    local = tmp_path / "local"
    for name in clips:
        (local / "in").mkdir(parents=True, exist_ok=True)
        (local / "in" / name).symlink_to(orca_calls / "catalog" / name)
    extract.run(["--runner=DirectRunner", f"--input={local / 'in'}/*.wav",
                 f"--output={local / 'out'}", "--model=yamnet",
                 f"--model_handle=yamnet={standin_dir / 'yamnet'}", "--pack_s=0.5",
                 "--projector_point=none"])
    local_rows = rows_by_name(str(local / "out"), "yamnet")
    FileSystems.set_options(PipelineOptions(keys))  # the local run set options without them
    remote_rows = rows_by_name(output, "yamnet")
    assert remote_rows.keys() == local_rows.keys()
    for key, vector in local_rows.items():
        np.testing.assert_array_equal(remote_rows[key], vector)
    # a re-run reads no object again: same sizes and times in the listing
    again = extract.run(["--runner=DirectRunner", f"--input={s3_emulator.url('catalog')}/*.wav",
                         f"--output={output}", "--model=yamnet",
                         f"--model_handle=yamnet={model}", f"--label_table={labels}",
                         "--pack_s=0.5", *keys])
    assert again["nothing_changed"] and again["files_decoded"] == 0
    assert "orca_beam:files_content_checked" not in again["counters"]
