"""Headless Chromium driven over the DevTools protocol, for the tests of the pages we ship."""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.servers import free_port


def chromium_binary() -> str | None:
    """The Chromium on PATH, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


class Page:
    """One browser tab: DevTools calls, script evaluation, key presses, screenshots."""

    def __init__(self, ws):
        self.ws = ws
        self.counter = iter(range(1, 10**6))

    def call(self, method: str, **params) -> dict:
        """One DevTools command; its result."""
        ident = next(self.counter)
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == ident:
                return message.get("result", {})

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout_s: float = 60.0):
        """Polls until ``expression`` is truthy; returns its value (fails the test on timeout)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.25)
        pytest.fail(f"page never satisfied: {expression}")

    def press(self, key: str) -> None:
        """A real key press (keyDown with its text, then keyUp), as a user types it."""
        codes = {" ": ("Space", 32)}
        code, vk = codes.get(key, (f"Key{key.upper()}", ord(key.upper())))
        self.call("Input.dispatchKeyEvent", type="keyDown", key=key, code=code, text=key,
                  windowsVirtualKeyCode=vk)
        self.call("Input.dispatchKeyEvent", type="keyUp", key=key, code=code,
                  windowsVirtualKeyCode=vk)

    def click(self, selector: str, index: int = 0) -> None:
        """A real mouse click (press and release) at the centre of the ``index``-th element
        matching the CSS ``selector``, scrolled into view first."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelectorAll({json.dumps(selector)})[{index}];"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.left + r.width / 2, r.top + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1],
                      button="left", clickCount=1)

    def screenshot(self, path: Path) -> None:
        """Saves a PNG of the viewport."""
        shot = self.call("Page.captureScreenshot", format="png")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))


@contextlib.contextmanager
def chromium_page(url: str, profile: Path, size: str = "1400,900",
                  flags: Sequence[str] = ()) -> Iterator[Page]:
    """Headless Chromium showing ``url`` (``flags``: more command-line switches); skips the
    test where Chromium is not installed."""
    browser = chromium_binary()
    if browser is None:
        pytest.skip("Chromium not installed (apt-get install chromium); .ci/run installs it")
    from websockets.sync.client import connect

    port = free_port()
    process = subprocess.Popen([
        browser, "--headless=new", "--no-sandbox", "--disable-gpu",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--autoplay-policy=no-user-gesture-required",
        "--allow-file-access-from-files", f"--user-data-dir={profile}",
        f"--window-size={size}", f"--remote-debugging-port={port}", *flags, "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, target = time.monotonic() + 60, None
        while time.monotonic() < deadline and target is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=5) as r:
                    target = next(p for p in json.loads(r.read()) if p.get("type") == "page")
            except (OSError, StopIteration, ValueError):
                time.sleep(0.5)
        assert target, "chromium did not open its debugging port"
        with connect(target["webSocketDebuggerUrl"], max_size=2**26, open_timeout=30) as ws:
            page = Page(ws)
            page.call("Page.enable")
            page.call("Page.navigate", url=url)
            yield page
    finally:
        process.terminate()
        process.wait(timeout=30)
