"""The extraction with its workers in other processes: DirectRunner's multi-process mode, and
Beam's PortableRunner with Beam's own local job service and an external worker pool (the Fn API
worker protocol Dataflow Runner v2 uses). Each must give the in-process run's current rows,
manifest entries and projector files: no stage may rely on the launcher's memory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orca_beam.store.manifest import iter_entries
from orca_beam.store.reader import current_rows
from orca_beam.store.version import COMMIT_NAME
from tests.servers import free_port, start_server

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[1]
CLIPS = ["S01-J,L-1.wav", "S02i-J-1.wav", "S03-J-1.wav", "S04-J-1.wav"]
ENTRY_FIELDS = ("source", "size_bytes", "mtime_s", "fingerprint", "compared", "status",
                "embeddings", "duration_s", "error_class")


def extract(audio: Path, output: Path, handle: Path, *runner: str, env=None) -> dict:
    """Runs ``python -m pipelines.extract`` in a fresh process; returns its summary."""
    command = [sys.executable, "-m", "pipelines.extract", *runner, f"--input={audio}/*.wav",
               f"--output={output}", "--model=yamnet", f"--model_handle=yamnet={handle}",
               "--pack_s=0.5", "--projector_tensor_format=bytes"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=170,
                          env=env or dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return json.loads((output / "summary.json").read_text())


def state(output: Path) -> dict:
    """Current rows (sorted), manifest entries without run-specific fields, projector files."""
    [commit] = list(output.glob(f"yamnet/*/{COMMIT_NAME}"))
    folder = str(commit.parent)
    rows = current_rows(folder).sort_by([("source", "ascending"), ("start_s", "ascending")])
    entries = sorted(({k: e[k] for k in ENTRY_FIELDS} for e in iter_entries(folder)),
                     key=lambda e: e["source"])
    projector = {}
    for path in sorted((output / "projector" / "yamnet").iterdir()):
        data = path.read_bytes()
        if path.name == "projector_summary.json":
            summary = json.loads(data)
            summary.pop("rows_digest")
            data = json.dumps(summary, sort_keys=True).encode()
        projector[path.name] = data
    return {"rows": rows.to_pylist(), "entries": entries, "projector": projector,
            "commit": json.loads(commit.read_text())["entries"]}


@pytest.fixture(scope="module")
def reference(orca_calls, standin_dir, tmp_path_factory):
    """The clips, and the in-process run's state over them."""
    root = tmp_path_factory.mktemp("workers")
    audio = root / "audio"
    audio.mkdir()
    for name in CLIPS:
        shutil.copy(orca_calls / "catalog" / name, audio / name)
    summary = extract(audio, root / "in_process", standin_dir / "yamnet",
                      "--runner=DirectRunner")
    assert summary["models"]["yamnet"]["embedded"] == len(CLIPS)
    return audio, state(root / "in_process")


def assert_same(got: dict, expected: dict) -> None:
    assert got["commit"] == expected["commit"] == len(CLIPS)
    assert got["entries"] == expected["entries"]
    assert len(got["rows"]) == len(expected["rows"]) > len(CLIPS)
    assert got["rows"] == expected["rows"]
    assert got["projector"].keys() == expected["projector"].keys()
    for name, data in expected["projector"].items():
        assert got["projector"][name] == data, name


def test_multi_process_workers_equal_the_in_process_run(reference, standin_dir, tmp_path):
    audio, expected = reference
    summary = extract(audio, tmp_path / "out", standin_dir / "yamnet", "--runner=DirectRunner",
                      "--direct_running_mode=multi_processing", "--direct_num_workers=2")
    assert summary["models"]["yamnet"]["embedded"] == len(CLIPS)
    assert summary["model_load_s"] == {}  # the launcher loaded no model: the workers did
    assert_same(state(tmp_path / "out"), expected)


@pytest.fixture()
def portable_services(tmp_path):
    """Beam's local job service and an external worker pool, as processes on loopback; the
    venv's bin first on PATH (the pool starts ``python`` from PATH)."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}"
               f"{os.environ.get('PATH', '')}", TF_CPP_MIN_LOG_LEVEL="3")
    job_port, pool_port = free_port(), free_port()
    processes = []
    try:
        processes.append(start_server(
            [sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main",
             "--port", str(job_port)], job_port, tmp_path / "job_service.log",
            "local_job_service_main", env=env, cwd=REPO, timeout_s=60))
        processes.append(start_server(
            [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
             "--service_port", str(pool_port)], pool_port, tmp_path / "worker_pool.log",
            "worker_pool_main", env=env, cwd=REPO, timeout_s=60))
        yield job_port, pool_port, env
    finally:
        for process in processes:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def test_portable_runner_with_an_external_worker_pool_equals_the_in_process_run(
        reference, standin_dir, tmp_path, portable_services):
    audio, expected = reference
    job_port, pool_port, env = portable_services
    started = time.monotonic()
    summary = extract(audio, tmp_path / "out", standin_dir / "yamnet", "--runner=PortableRunner",
                      f"--job_endpoint=localhost:{job_port}", "--environment_type=EXTERNAL",
                      f"--environment_config=localhost:{pool_port}", env=env)
    assert summary["models"]["yamnet"]["embedded"] == len(CLIPS)
    assert summary["model_load_s"] == {}
    assert_same(state(tmp_path / "out"), expected)
    assert time.monotonic() - started < 170


def worker_progress_lines(audio: Path, output: Path, handle: Path, interval_s: str) -> list[str]:
    """The progress lines a multi-process run's workers logged (as the launcher shows them)."""
    command = [sys.executable, "-m", "pipelines.extract", "--runner=DirectRunner",
               "--direct_running_mode=multi_processing", "--direct_num_workers=2",
               f"--input={audio}/*.wav", f"--output={output}", "--model=yamnet",
               f"--model_handle=yamnet={handle}", "--pack_s=0.5", "--projector_point=none",
               f"--progress_interval_s={interval_s}"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=170,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.returncode == 0, done.stderr[-5000:]
    return [line for line in done.stderr.splitlines()
            if "Worker:" in line and 'message: "progress: ' in line]


def test_progress_interval_reaches_the_worker_processes(reference, standin_dir, tmp_path):
    """--progress_interval_s is passed to the DoFns, so workers in other processes log at that
    interval: with 1 s their progress lines show; with 1 ms every file, block and model call
    logs one, far more than the one line per worker process the default 30 s allows in a run
    of a few seconds."""
    audio, _ = reference
    handle = standin_dir / "yamnet"
    assert worker_progress_lines(audio, tmp_path / "a", handle, "1")
    assert len(worker_progress_lines(audio, tmp_path / "b", handle, "0.001")) > 2 * 2
