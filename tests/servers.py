"""Server processes the tests start on loopback: a free port, and a start that waits until the
server accepts connections."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(command: list[str], port: int, log: Path, what: str, *,
                 env: dict | None = None, cwd: Path | None = None,
                 timeout_s: float = 30.0) -> subprocess.Popen:
    """Starts ``command`` with its output in ``log`` and waits, at most ``timeout_s`` seconds,
    until it accepts connections on 127.0.0.1:``port``; RuntimeError naming ``what`` with the
    log otherwise."""
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"{what} did not start: {log.read_text()}") from None
            time.sleep(0.1)
