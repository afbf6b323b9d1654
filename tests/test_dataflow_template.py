"""The README's Dataflow template command, run offline: the launcher stages the pipeline to the GCS
emulator and writes the classic template there; the job description and the staged pipeline must
hold the GPU option, the container image, the machine type and every step."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import string
from pathlib import Path

import pytest
from apache_beam.portability.api import beam_runner_api_pb2

from pipelines import extract

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[1]
HANDLES = {"vggish": "https://tfhub.dev/google/vggish/1",
           "yamnet": "https://tfhub.dev/google/yamnet/1",
           "humpback": "https://tfhub.dev/google/humpback_whale/1"}
VARIABLES = {"PROJECT": "orca-project", "REGION": "us-central1",
             "IMAGE": "us-central1-docker.pkg.dev/orca-project/orca/orca-beam:test"}


def readme_template_command() -> str:
    """The bash block after <!-- dataflow-template-command --> in docs/dataflow.md, lines joined."""
    text = (REPO / "docs" / "dataflow.md").read_text()
    block = re.search(r"<!-- dataflow-template-command -->\s*```bash\n(.*?)```", text, re.S)
    assert block, "docs/dataflow.md has no dataflow-template-command block"
    return block.group(1).replace("\\\n", " ").strip()


@pytest.fixture()
def tfhub_cache(standin_dir, tmp_path, monkeypatch):
    """TFHUB_CACHE_DIR holding the stand-ins under the TF Hub handles' cache names, so the default
    handles resolve offline (the launcher hashes each model to name its version)."""
    for name, url in HANDLES.items():
        (tmp_path / hashlib.sha1(url.encode()).hexdigest()).symlink_to(standin_dir / name)
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path))


def test_readme_template_command_builds_the_gpu_job(gcs_emulator, orca_calls, tfhub_cache):
    command = string.Template(readme_template_command()).substitute(
        VARIABLES, BUCKET=gcs_emulator.bucket)
    argv = shlex.split(command)
    assert argv[:3] == [".venv/bin/python", "-m", "pipelines.extract"]
    for recording in sorted((orca_calls / "hydrophone").glob("*.wav")):
        gcs_emulator.upload(recording, f"hydrophone/{recording.name}")

    assert extract.run(argv[3:]) == {
        "template_location": f"gs://{gcs_emulator.bucket}/templates/orca-beam-extract"}

    job = json.loads(gcs_emulator.download("templates/orca-beam-extract"))
    environment = job["environment"]
    assert environment["serviceOptions"] == [
        "worker_accelerator=type:nvidia-tesla-t4;count:1;install-nvidia-driver"]
    pool = environment["workerPools"][0]
    assert pool["machineType"] == "n1-standard-8"
    assert pool["numThreadsPerWorker"] == 4
    assert pool["diskSizeGb"] == 50
    assert [image["containerImage"] for image in pool["sdkHarnessContainerImages"]] == [
        VARIABLES["IMAGE"]]
    assert "beam:version:sdk_base:apache/beam_python3.11_sdk:2.77.0" in \
        pool["sdkHarnessContainerImages"][0]["capabilities"]
    assert "no_use_multiple_sdk_containers" in environment["experiments"]
    options = environment["sdkPipelineOptions"]["options"]
    assert options["input"] == [f"gs://{gcs_emulator.bucket}/hydrophone/*.wav"]
    assert options["output"] == f"gs://{gcs_emulator.bucket}/embeddings"

    # Runner v2 submits the steps as the staged pipeline proto (pipelineUrl)
    staged = options["pipelineUrl"].removeprefix(f"gs://{gcs_emulator.bucket}/")
    pipeline = beam_runner_api_pb2.Pipeline.FromString(gcs_emulator.download(staged))
    steps = {t.unique_name for t in pipeline.components.transforms.values()}
    expected = {"MatchFiles/MatchPatterns", "PlanSources/JoinBySource",
                "DecodeAndFrame/DecodeResampleCut", "AccountOutcomes/JoinBySource",
                "WriteOutcomes/WriteOutcomeLines", "WriteOutcomes/WriteErrorLines"}
    for model in HANDLES:
        expected |= {f"Embed_{model}/RunInference", f"Embed_{model}/ToRows",
                     f"Write_{model}/WriteParquet", f"ReadEntries_{model}/ReadEntryShard",
                     f"Manifest_{model}/WriteEntryShards", f"Manifest_{model}/WriteCommit",
                     f"Projector_{model}/ScanKeyColumns", f"Projector_{model}/JoinParts"}
    assert expected <= steps, sorted(expected - steps)
    images = {env.payload for env in pipeline.components.environments.values()}
    assert any(VARIABLES["IMAGE"].encode() in payload for payload in images)
