"""Running an iterator ahead in a background thread, so its work overlaps the consumer's.

The decode stage uses it: libsndfile and soxr decode the next blocks of a long file while the
thread that consumes them runs the model (TensorFlow releases the GIL while it computes). The
decoding thread runs at the lowest CPU priority: on a CPU-only machine TensorFlow keeps the cores
busy, and decoding at equal priority only took cycles from it; at the lowest it fills the gaps.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
#: CPU niceness of a decoding thread (19 = lowest): it takes cycles the model leaves idle.
DECODE_NICENESS = 19

_DONE = object()


class _Raised:
    def __init__(self, exc: BaseException):
        self.exc = exc


def _lower_this_threads_priority(niceness: int) -> None:
    """Gives the calling thread (Linux: threads have their own nice value) a lower CPU
    priority, so it runs on cycles the model's threads leave idle instead of taking theirs."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except (AttributeError, OSError):  # not Linux, or not allowed: run at normal priority
        pass


def prefetched(make_items: Callable[[], Iterable[T]], depth: int, *,
               niceness: int = 0) -> Iterator[T]:
    """Yields the items of ``make_items()`` in order, produced by a background thread that
    stays at most ``depth`` items ahead (memory: ``depth`` items) and runs at ``niceness``
    (higher = lower priority). An exception raised while producing is raised here, at the point
    in the sequence where it happened. Closing the generator early stops the producer. ``depth``
    < 1 runs ``make_items`` inline."""
    if depth < 1:
        yield from make_items()
        return
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        source = None
        if niceness:
            _lower_this_threads_priority(niceness)
        try:
            source = iter(make_items())
            for item in source:
                if not put(item):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put(_Raised(exc))
            return
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()
        put(_DONE)

    worker = threading.Thread(target=produce, name="orca-beam-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                return
            if isinstance(item, _Raised):
                raise item.exc
            yield item
    finally:
        stop.set()
        worker.join()
