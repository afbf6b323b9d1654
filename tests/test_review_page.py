"""The review page a search writes: clips cut from the right place of the source (oracle: the
whole file decoded and sliced), and the page in headless Chromium: every audio element plays a
clip of non-zero duration, verdicts given with the keyboard, labels exported as CSV."""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from orca_beam.core.audio import load_audio
from orca_beam.review.clips import CLIP_RATE_HZ, cut_clip, spectrogram_rgb
from orca_beam.store.reader import current_rows
from orca_beam.store.version import latest_version_folder
from pipelines import search
from tests.browser import chromium_page

SCREENSHOT_DIR = Path(os.environ.get("ORCA_BEAM_ARTIFACTS", tempfile.gettempdir())) / "orca-beam"


def test_a_clip_is_the_sources_audio_between_its_times(orca_calls):
    path = str(orca_calls / "hydrophone" / "210825-1925_L-highlight.wav")
    whole = load_audio(path, CLIP_RATE_HZ)
    clip, begin = cut_clip(path, 2.5, 7.25)
    assert begin == 2.5
    np.testing.assert_array_equal(clip, whole[80_000:232_000])
    tail, _ = cut_clip(path, 9.0, 60.0)  # clipped to the file's end
    np.testing.assert_array_equal(tail, whole[288_000:])
    picture = spectrogram_rgb(clip, marks_s=(1.0,))
    assert picture.shape == (256, 1 + (len(clip) - 1024) // 256, 3)
    assert (picture[:, 125] == 255).all()  # the mark: 1 s = column 125


@pytest.mark.e2e
def test_review_page_in_chromium_verdicts_by_keyboard_and_export(birdnet_catalogue_run,
                                                                 tmp_path):
    output, _ = birdnet_catalogue_run
    table = current_rows(latest_version_folder(str(output), "birdnet"), ["source", "start_s"])
    query = next(s for s in table.column("source").to_pylist() if "/catalog/" in s)
    out = tmp_path / "search"
    summary = search.run([f"--embeddings={output}", "--model=birdnet", f"--output={out}",
                          f"--query_row={query}@0.0", "--top_k=6", "--context_s=2"])
    assert summary["review"] == {"hits": 6, "clips": 6, "missing": 0}
    hits = list(csv.DictReader((out / "results.csv").open(newline="")))
    for n, hit in enumerate(hits, 1):  # each clip: the hit with 2 s each side, in its file
        info = sf.info(str(out / "review" / "clips" / f"hit-{n:04d}.wav"))
        length = sf.info(hit["source"]).duration
        expected = min(length, float(hit["end_s"]) + 2) - max(0.0, float(hit["start_s"]) - 2)
        assert info.samplerate == CLIP_RATE_HZ
        assert info.duration == pytest.approx(expected, abs=1e-3)
    url = (out / "review" / "index.html").as_uri()
    with chromium_page(url, tmp_path / "profile") as page:
        page.wait_for("document.querySelectorAll('audio').length === 6 && "
                      "[...document.querySelectorAll('audio')].every(a => a.readyState >= 1)")
        durations = page.evaluate("[...document.querySelectorAll('audio')].map(a => a.duration)")
        assert len(durations) == 6 and all(d > 0 for d in durations)
        for n, d in enumerate(durations, 1):
            info = sf.info(str(out / "review" / "clips" / f"hit-{n:04d}.wav"))
            assert d == pytest.approx(info.duration, abs=0.01)
        pictures = page.evaluate("[...document.querySelectorAll('img.spec')]"
                                 ".map(i => i.complete && i.naturalWidth)")
        assert len(pictures) == 6 and all(pictures)
        for key in ("y", "n", "u", "j", "y"):  # hit 4 is skipped with j
            page.press(key)
        assert page.evaluate("document.getElementById('counts').textContent") == \
            "6 hits, 4 reviewed, 2 to go"
        page.screenshot(SCREENSHOT_DIR / "review.png")
        print(f"\nreview screenshot: {SCREENSHOT_DIR / 'review.png'}")
        page.press("e")
        exported = page.wait_for("document.getElementById('exported').textContent")
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert [r["verdict"] for r in rows] == ["yes", "no", "unsure", "yes"]
    assert [(r["source"], float(r["start_s"])) for r in rows] == [
        (h["source"], float(h["start_s"])) for h in (hits[0], hits[1], hits[2], hits[4])]
    assert all(r["label"] == f"{query}@0.0" for r in rows)
    assert list(rows[0]) == ["source", "start_s", "end_s", "start_utc", "label", "verdict"]
