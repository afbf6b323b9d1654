"""End to end: pipeline on real recordings -> projector files -> real TensorBoard -> Chromium."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines import extract
from tests.browser import chromium_page
from tests.servers import free_port

pytestmark = pytest.mark.e2e
SCREENSHOT_DIR = Path(os.environ.get("ORCA_BEAM_ARTIFACTS", tempfile.gettempdir())) / "orca-beam"


def get(url: str, timeout: float = 30.0) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        return error.code, error.read(), ""


@pytest.fixture(scope="module")
def projector_run(standin_dir, orca_calls, tmp_path_factory):
    output = tmp_path_factory.mktemp("projector_run")
    summary = extract.run([
        "--runner=DirectRunner", f"--input={orca_calls / 'hydrophone'}/*.wav",
        f"--input={orca_calls / 'catalog'}/S0*.wav", f"--output={output}", "--model=yamnet",
        f"--model_handle=yamnet={standin_dir / 'yamnet'}"])
    return output / "projector" / "yamnet", summary["models"]["yamnet"]["embeddings"]


class TensorBoard:
    """A real TensorBoard process serving one projector folder on loopback."""

    def __init__(self, folder: Path):
        port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", "--logdir", str(folder), "--host",
             "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        self.base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(self.process.stderr.read().decode()[-3000:])
            try:
                if get(self.base + "/data/plugin/projector/runs", 5)[0] == 200:
                    return
            except OSError:
                time.sleep(0.5)
        self.close()
        raise TimeoutError("tensorboard did not start")

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def tensorboard(projector_run):
    server = TensorBoard(projector_run[0])
    try:
        yield server.base
    finally:
        server.close()


def test_tensorboard_serves_the_projector_files(projector_run, tensorboard):
    folder, points = projector_run
    assert points > 100
    api = tensorboard + "/data/plugin/projector"
    status, body, _ = get(api + "/runs")
    assert status == 200 and json.loads(body) == ["."]
    status, body, _ = get(api + "/info?run=.")
    assert status == 200
    info = json.loads(body)["embeddings"][0]
    assert info["tensorName"] == "yamnet" and [int(v) for v in info["tensorShape"]] == [points,
                                                                                        1024]
    px = int(info["sprite"]["singleImageDim"][0])
    status, body, _ = get(api + "/tensor?run=.&name=yamnet")
    assert status == 200 and len(body) == points * 1024 * 4
    tensor = np.frombuffer(body, "<f4").reshape(points, 1024)
    np.testing.assert_allclose(tensor[0], np.loadtxt(folder / "tensors.tsv", max_rows=1),
                               rtol=1e-6)
    status, body, _ = get(api + "/metadata?run=.&name=yamnet&num_rows=100000")
    assert status == 200 and len(body.decode().rstrip("\n").split("\n")) == points + 1
    status, body, content_type = get(api + "/sprite_image?run=.&name=yamnet")
    assert status == 200 and "png" in content_type
    cells = int(np.ceil(np.sqrt(points)))
    (folder / "_served_sprite.png").write_bytes(body)
    assert Image.open(folder / "_served_sprite.png").size == (cells * px, cells * px)
    (folder / "_served_sprite.png").unlink()


DEEP_TEXT = """(() => {
  const parts = [];
  const walk = (root) => {
    if (!root) return;
    const texts = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    for (let node = texts.nextNode(); node; node = texts.nextNode()) {
      const parent = node.parentElement ? node.parentElement.tagName : '';
      if (parent !== 'STYLE' && parent !== 'SCRIPT' && node.data.trim()) {
        parts.push(node.data.trim());
      }
    }
    for (const el of root.querySelectorAll('*')) {
      if (el.shadowRoot) walk(el.shadowRoot);
      if (el.tagName === 'IFRAME') { try { walk(el.contentDocument); } catch (e) {} }
    }
  };
  walk(document);
  return parts.join(' ');
})()"""


COLOUR_BY = """(() => {
  const find = (root) => {
    if (!root) return null;
    for (const el of root.querySelectorAll('*')) {
      if (el.tagName === 'VZ-PROJECTOR-DATA-PANEL') return el;
      let inner = el.shadowRoot ? find(el.shadowRoot) : null;
      if (!inner && el.tagName === 'IFRAME') {
        try { inner = find(el.contentDocument); } catch (e) {}
      }
      if (inner) return inner;
    }
    return null;
  };
  const panel = find(document);
  if (!panel || !panel.colorOptions) return null;
  panel.selectedColorOptionName = %s;
  const chosen = panel.colorOptions.find(o => o.name === panel.selectedColorOptionName);
  return {selected: panel.selectedColorOptionName,
          options: panel.colorOptions.map(o => o.name),
          desc: chosen ? (chosen.desc || '') : ''};
})()"""


def projector_in_chromium(base_url: str, profile: Path, screenshot: Path,
                          colour_by: str | None = None) -> tuple[str, dict | None]:
    """Opens TensorBoard's projector in headless Chromium (DevTools protocol), waits until its
    panel shows a non-zero point count and the dimension, optionally colours the points by the
    metadata column ``colour_by``, and saves a screenshot. Returns (page text, colouring
    result); skips where Chromium is not installed."""
    # WebGL through SwiftShader: the projector draws its points with it
    flags = ("--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--disable-quic")
    with chromium_page(base_url + "/#projector", profile, flags=flags) as page:
        text = ""
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            time.sleep(2)
            text = page.evaluate(DEEP_TEXT) or ""
            found = re.search(r"Points:\s*(\d+)", text)
            # the panel shows "Points: 0" for a moment while the tensors load
            if (found and int(found.group(1)) > 0 and "Dimension" in text
                    and "Fetching" not in text):
                break
        colouring = None
        if colour_by is not None:
            colouring = page.evaluate(COLOUR_BY % json.dumps(colour_by))
        time.sleep(3)  # let the sprite textures and colours draw before the picture
        page.screenshot(screenshot)
    print(f"\nprojector screenshot: {screenshot}")
    return text, colouring


def test_headless_chromium_shows_the_points(projector_run, tensorboard, tmp_path):
    _, points = projector_run
    path = SCREENSHOT_DIR / "projector.png"
    text, _ = projector_in_chromium(tensorboard, tmp_path / "profile", path)
    found = re.search(r"Points:\s*(\d+)", text)
    assert found, f"no 'Points:' on the page; text seen: {text[:2000]}"
    assert int(found.group(1)) == points
    assert re.search(r"Dimension:\s*1024", text)
    width, height = Image.open(path).size
    assert width == 1400 and height > 500


def test_birdnet_catalogue_coloured_by_call_type(birdnet_catalogue_run, tmp_path):
    """The real BirdNET embeddings of the call catalogue, coloured by the labels' call type."""
    output, summary = birdnet_catalogue_run
    points = summary["models"]["birdnet"]["embeddings"]
    server = TensorBoard(output / "projector" / "birdnet")
    try:
        path = SCREENSHOT_DIR / "projector-birdnet-call_type.png"
        text, colouring = projector_in_chromium(server.base, tmp_path / "profile", path,
                                                colour_by="call_type")
    finally:
        server.close()
    assert re.search(rf"Points:\s*{points}\b", text), text[:2000]
    assert re.search(r"Dimension:\s*1024", text)
    assert colouring and colouring["selected"] == "call_type", colouring
    assert {"call_type", "pod", "clan"} <= set(colouring["options"])
    # many distinct hues on the plot: the points are drawn in their call type's colour
    pixels = np.asarray(Image.open(path).convert("HSV"))
    saturated = pixels[(pixels[..., 1] > 120) & (pixels[..., 2] > 80)]
    assert len(np.unique(saturated[:, 0] // 8)) >= 8
