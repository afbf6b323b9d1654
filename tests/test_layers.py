"""The import layers the architecture states (``[tool.importlinter]`` in pyproject.toml), checked
by import-linter itself, and the package import that has no side effect."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_layers_contract_holds():
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_importing_the_store_changes_no_s3_client():
    code = ("from apache_beam.io.aws.clients.s3 import boto3_client\n"
            "before = boto3_client.Client\n"
            "import orca_beam, orca_beam.store, orca_beam.records\n"
            "from orca_beam.store.reader import current_rows\n"
            "assert boto3_client.Client is before, boto3_client.Client\n"
            "from orca_beam.core import s3\n"
            "s3.install()\n"
            "assert boto3_client.Client is s3.SharedS3Client\n"
            "print('ok')")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.stdout.strip() == "ok", result.stderr
