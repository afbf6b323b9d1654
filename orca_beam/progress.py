"""Progress lines on long runs: process-wide counts (files, audio seconds, embeddings per model),
logged at most every ``interval_s`` seconds from whichever worker thread adds to them."""

from __future__ import annotations

import logging
import threading
import time

LOG = logging.getLogger("orca_beam.extract.stages")


class Progress:
    """Process-wide progress counts, logged at most every ``interval_s`` seconds."""

    _lock = threading.Lock()
    _counts: dict[str, float] = {}
    _started = time.monotonic()
    _last_log = 0.0
    interval_s = 30.0

    @classmethod
    def configure(cls, interval_s: float) -> None:
        """Sets the seconds between progress lines in this process. DoFns call it from their
        ``setup()`` with the interval they were constructed with, so worker processes log at the
        interval the launcher was given."""
        cls.interval_s = float(interval_s)

    @classmethod
    def restart(cls) -> None:
        """Zeroes the counts and the clock (start of a run in this process)."""
        with cls._lock:
            cls._counts = {}
            cls._started = time.monotonic()
            cls._last_log = 0.0

    @classmethod
    def add(cls, **amounts: float) -> None:
        """Adds to named counts (files, audio_s, failed, <model> embeddings) and maybe logs."""
        with cls._lock:
            for name, amount in amounts.items():
                cls._counts[name] = cls._counts.get(name, 0) + amount
            now = time.monotonic()
            if now - cls._last_log < cls.interval_s:
                return
            cls._last_log = now
            counts = dict(cls._counts)
        elapsed = max(now - cls._started, 1e-9)
        models = ", ".join(f"{k[4:]}={int(v)}" for k, v in sorted(counts.items())
                           if k.startswith("emb_"))
        LOG.info("progress: %d files done (%.1f s of audio decoded, %.1f audio s/s), %d failed; "
                 "embeddings: %s", counts.get("files", 0), counts.get("audio_s", 0.0),
                 counts.get("audio_s", 0.0) / elapsed, counts.get("failed", 0), models or "none")
