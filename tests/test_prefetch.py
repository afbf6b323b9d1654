"""Prefetching in a background thread: order, bounded look-ahead, errors where they happened."""

from __future__ import annotations

import threading
import time

import pytest

from orca_beam.core.prefetch import prefetched


def test_items_arrive_in_order_and_the_producer_stays_at_most_depth_ahead():
    produced = []

    def items():
        for i in range(50):
            produced.append(i)
            yield i

    seen = []
    for item in prefetched(items, 3, niceness=19):
        time.sleep(0.002)
        # the producer has made at most: this item, 3 queued, and one waiting to be queued
        assert len(produced) <= item + 1 + 3 + 1
        seen.append(item)
    assert seen == list(range(50))
    assert list(prefetched(items, 0)) == list(range(50))  # depth 0: inline


def test_an_error_is_raised_after_the_items_before_it():
    def items():
        yield 1
        yield 2
        raise ValueError("bad block")

    got = []
    with pytest.raises(ValueError, match="bad block"):
        for item in prefetched(items, 4):
            got.append(item)
    assert got == [1, 2]


def test_closing_early_stops_the_producer_and_closes_its_source():
    closed = threading.Event()

    def items():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    stream = prefetched(items, 2)
    assert [next(stream) for _ in range(5)] == [0, 1, 2, 3, 4]
    stream.close()
    assert closed.wait(5)
    assert not any(t.name == "orca-beam-prefetch" for t in threading.enumerate())
