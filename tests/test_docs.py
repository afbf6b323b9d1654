"""The docs a newcomer reads: the README stays short, its first run works offline from a fresh
clone's point of view (synthetic audio, BirdNET from the wheel), and the output-schema page is
generated from the store's schema and current."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from orca_beam.store.schema_doc import schema_page

REPO = Path(__file__).resolve().parents[1]


def test_the_schema_page_is_current():
    page = (REPO / "docs" / "output-schema.md").read_text()
    assert page == schema_page(), "run: python -m orca_beam.store.schema_doc > docs/output-schema.md"


def test_the_readme_is_short_and_links_resolve():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
        assert (REPO / target).exists(), target


def first_run_commands(marker: str = "first-run") -> list[str]:
    """The bash lines after <!-- marker --> in README.md."""
    text = (REPO / "README.md").read_text()
    block = re.search(rf"<!-- {marker} -->\s*```bash\n(.*?)```", text, re.S)
    assert block, f"README has no {marker} block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def run_readme_lines(commands: list[str], folder: Path) -> None:
    """Runs README lines as written in ``folder`` (``.venv/bin/python``: this interpreter)."""
    for command in commands:
        argv = shlex.split(command)
        assert argv[0] == ".venv/bin/python"
        done = subprocess.run([sys.executable, *argv[1:]], cwd=folder, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.e2e
def test_the_readme_first_run_works_offline(tmp_path):
    """The README's first run, line by line, in an empty folder: the venv line is this test
    environment's own install (CI runs the same install first); the other lines run as
    written, with ``.venv/bin/python`` being this interpreter."""
    install, *commands = first_run_commands()
    assert install.startswith("python3.11 -m venv .venv") and '".[birdnet]"' in install
    run_readme_lines(commands, tmp_path)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    counts = summary["models"]["birdnet"]
    assert counts["embedded"] == 4 and counts["failed"] == 0
    # 48 kHz, 3 s windows at every hop before the end: 4 s -> 2, 6 s -> 2, 5 s -> 2, 9 s -> 3
    assert counts["embeddings"] == 2 + 2 + 2 + 3
    # then the Classify section's lines: train on demo/labels.csv, apply to the 9 rows
    run_readme_lines(first_run_commands("classify-run"), tmp_path)
    clf = json.loads((tmp_path / "clf" / "classifier.json").read_text())
    assert clf["classes"] == ["call", "sweep", "tone"]  # noise: the negative label
    applied = json.loads((tmp_path / "scores" / "apply_summary.json").read_text())
    assert applied["rows_scored"] == 9
    assert (tmp_path / "scores" / "events.csv").read_text().startswith("class,stream,")
    # then the Reports section's lines: the report over out/ and scores/, and an animation
    run_readme_lines(first_run_commands("report-run"), tmp_path)
    report = json.loads((tmp_path / "report" / "report_summary.json").read_text())
    assert report["overview"] == {"birdnet": 9} and report["detections"] > 0
    assert {p.name for p in (tmp_path / "report").iterdir()} >= {
        "coverage.csv", "coverage.png", "overview.png", "clusters.json", "index.html"}
    assert (tmp_path / "anim.mp4").stat().st_size > 10_000
