"""End to end: pipeline on real recordings -> projector files -> real TensorBoard -> Chromium."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
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

pytestmark = pytest.mark.slow
SCREENSHOT_DIR = Path(os.environ.get("ORCA_BEAM_ARTIFACTS", tempfile.gettempdir())) / "orca-beam"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


@pytest.fixture(scope="module")
def tensorboard(projector_run):
    folder, _ = projector_run
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(folder), "--host",
         "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(process.stderr.read().decode()[-3000:])
            try:
                if get(base + "/data/plugin/projector/runs", 5)[0] == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            raise TimeoutError("tensorboard did not start")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


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


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_headless_chromium_shows_the_points(projector_run, tensorboard, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("Chromium not installed (apt-get install chromium); .ci/run installs it")
    from websockets.sync.client import connect

    _, points = projector_run
    port = free_port()
    process = subprocess.Popen([
        browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader",
        "--enable-unsafe-swiftshader", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
        f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,900",
        f"--remote-debugging-port={port}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        target = None
        while time.monotonic() < deadline and target is None:
            try:
                pages = json.loads(get(f"http://127.0.0.1:{port}/json", 5)[1])
                target = next(p for p in pages if p.get("type") == "page")
            except (OSError, StopIteration, ValueError):
                time.sleep(0.5)
        assert target, "chromium did not open its debugging port"
        with connect(target["webSocketDebuggerUrl"], max_size=2**26, open_timeout=30) as ws:
            counter = iter(range(1, 10**6))

            def call(method, **params):
                ident = next(counter)
                ws.send(json.dumps({"id": ident, "method": method, "params": params}))
                while True:
                    message = json.loads(ws.recv(timeout=60))
                    if message.get("id") == ident:
                        return message.get("result", {})

            call("Page.enable")
            call("Page.navigate", url=tensorboard + "/#projector")
            text, found = "", None
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                time.sleep(2)
                result = call("Runtime.evaluate", expression=DEEP_TEXT, returnByValue=True)
                text = result.get("result", {}).get("value") or ""
                found = re.search(r"Points:\s*(\d+)", text)
                # the panel shows "Points: 0" for a moment while the tensors load
                if (found and int(found.group(1)) > 0 and "Dimension" in text
                        and "Fetching" not in text):
                    break
            time.sleep(3)  # let the sprite textures draw before the picture
            shot = call("Page.captureScreenshot", format="png")
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOT_DIR / "projector.png"
        path.write_bytes(base64.b64decode(shot["data"]))
        print(f"\nprojector screenshot: {path}")
        assert found, f"no 'Points:' on the page; text seen: {text[:2000]}"
        assert int(found.group(1)) == points
        assert re.search(r"Dimension:\s*1024", text)
        width, height = Image.open(path).size
        assert width == 1400 and height > 500
    finally:
        process.terminate()
        process.wait(timeout=30)
