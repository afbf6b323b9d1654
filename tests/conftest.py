"""Shared fixtures: the stand-in models (built once per builder version) and the real recordings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
ORCA_CALLS = Path(os.environ.get("ORCA_CALLS_DIR", REPO.parent / "shared" / "data" / "orca-calls"))


@pytest.fixture(scope="session")
def standin_dir() -> Path:
    """Directory with vggish/, yamnet/, humpback/ stand-in SavedModels (cached across runs)."""
    from orca_beam.models.standins.build import ensure_standins

    return ensure_standins()


@pytest.fixture(scope="session")
def orca_calls() -> Path:
    """The shared real recordings (catalog/, hydrophone/); skips where they are absent."""
    if not (ORCA_CALLS / "catalog").is_dir():
        pytest.skip(f"real recordings not found at {ORCA_CALLS} (set ORCA_CALLS_DIR)")
    return ORCA_CALLS
