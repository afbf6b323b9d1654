"""Coverage: what audio a version holds per node and UTC hour, from its manifest entries alone.

Each entry gives its source's place (node, UTC start), its decoded seconds and its outcome; the
gaps it accounts for give their UTC start and seconds. :func:`entry_cells` spreads one entry
over the UTC hours it touches (a segment across midnight counts on both days); summed per
(node, day, hour) by a combiner, the cells are the whole picture, and :func:`day_rows` folds them
into ``coverage.csv``'s rows. No Beam here: the job is :mod:`orca_beam.reports.job`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath

from orca_beam.core.hls import FOLDER_PLUS_DURATIONS, PROGRAM_DATE_TIME
from orca_beam.core.orcasite import node_of_stream
from orca_beam.core.statuses import (
    EMBEDDED,
    EMPTY,
    FAILED,
    NO_TIME,
    NOT_IN_PLAYLIST,
    TOO_SHORT,
    UNREADABLE,
)

#: ``day`` of sources with no UTC time.
NO_DAY = "unknown"
#: ``time_source`` values, in coverage.csv's column order (``file_name``: the file times).
TIME_SOURCES = (PROGRAM_DATE_TIME, FOLDER_PLUS_DURATIONS, "file_name", NO_TIME)
#: Statuses counted per (node, day), from the reference model's entries.
COUNTED_STATUSES = (EMBEDDED, NOT_IN_PLAYLIST, UNREADABLE, EMPTY, FAILED, TOO_SHORT)
#: Outcomes whose decoded seconds count as audio embedded.
AUDIO_STATUSES = (EMBEDDED, NOT_IN_PLAYLIST)
HOUR_S = 3600.0


def node_of(entry: dict) -> str:
    """The node an entry's source belongs to: the HLS folder's node (the path component before
    ``hls``), else the node before ``hls``/``flac`` in a file's path, else the file's folder."""
    node = node_of_stream(entry.get("stream"))
    if node:
        return node
    parts = [p for p in str(entry["source"]).split("/") if p]
    for marker in ("hls", "flac"):
        if marker in parts[:-1]:
            at = len(parts) - 1 - parts[::-1].index(marker)
            if at > 0:
                return parts[at - 1]
    return PurePosixPath(str(entry["source"])).parent.name or "."


def hour_of(start: datetime | None) -> tuple[str, int]:
    """(UTC day ``YYYY-MM-DD``, hour 0-23) of a moment; None: (NO_DAY, -1)."""
    if start is None:
        return NO_DAY, -1
    at = start.astimezone(UTC)
    return at.strftime("%Y-%m-%d"), at.hour


def hour_spans(start: datetime | None, seconds: float) -> Iterator[tuple[str, int, float]]:
    """``seconds`` from UTC ``start`` spread over UTC hours: (day ``YYYY-MM-DD``, hour 0-23,
    seconds in that hour). No start: one (NO_DAY, -1, seconds)."""
    if seconds <= 0:
        return
    if start is None:
        yield NO_DAY, -1, seconds
        return
    at = start.astimezone(UTC)
    end = at + timedelta(seconds=seconds)
    while at < end:
        boundary = at.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        upto = min(boundary, end)
        yield at.strftime("%Y-%m-%d"), at.hour, (upto - at).total_seconds()
        at = upto


def cell_fields(models: Sequence[str]) -> list[str]:
    """The names of a cell's sums, in order: seconds embedded per model, then (reference model)
    sources per counted status, seconds per time source, gap seconds and gap count."""
    return ([f"embedded_s_{m}" for m in models] + [f"failed_{m}" for m in models]
            + list(COUNTED_STATUSES) + [f"s_{t}" for t in TIME_SOURCES] + ["gap_s", "gaps"])


@functools.lru_cache(maxsize=8)
def _field_index(models: tuple[str, ...]) -> dict[str, int]:
    return {name: i for i, name in enumerate(cell_fields(models))}


def entry_cells(entry: dict, model: str, models: Sequence[str], reference: bool
                ) -> Iterator[tuple[tuple[str, str, int], tuple[float, ...]]]:
    """One manifest entry of ``model`` -> ((node, day, hour), sums) pieces, sums in
    :func:`cell_fields` order. Every model adds its embedded seconds and failures; only the
    ``reference`` model (the first) adds the source counts, time sources and gaps, so that a
    segment every model read is counted once."""
    index = _field_index(tuple(models))
    node = node_of(entry)
    start, status = entry.get("start_utc"), entry["status"]
    seconds = float(entry.get("duration_s") or 0.0)
    audio = status in AUDIO_STATUSES
    first = hour_of(start)
    zero = [0.0] * len(index)

    def piece(values: dict) -> tuple[float, ...]:
        sums = list(zero)
        for name, value in values.items():
            sums[index[name]] = value
        return tuple(sums)

    if status in (FAILED, UNREADABLE):
        yield (node, first[0], first[1]), piece({f"failed_{model}": 1.0})
    if audio:
        for day, hour, part in hour_spans(start, seconds):
            values = {f"embedded_s_{model}": part}
            if reference:
                source = entry.get("time_source") or NO_TIME
                values[f"s_{source if source in TIME_SOURCES else NO_TIME}"] = part
            yield (node, day, hour), piece(values)
    if not reference:
        return
    if status in COUNTED_STATUSES:
        yield (node, first[0], first[1]), piece({status: 1.0})
    for gap in entry.get("gaps") or []:
        length = float(gap.get("duration_s") or 0.0)
        spans = list(hour_spans(gap.get("start_utc"), length))
        for i, (day, hour, part) in enumerate(spans):
            yield (node, day, hour), piece({"gap_s": part, "gaps": 1.0 if i == 0 else 0.0})


def is_seconds(name: str) -> bool:
    """Whether a cell field holds seconds (else a count)."""
    return name == "gap_s" or name.startswith(("embedded_s_", "s_"))


def add_sums(sums: Sequence[tuple[float, ...]]) -> tuple[float, ...]:
    """Element-wise sum of cells' sums (the combiner; an empty input gives ())."""
    total: list[float] | None = None
    for values in sums:
        if total is None:
            total = list(values)
        else:
            for i, value in enumerate(values):
                total[i] += value
    return tuple(total or ())


def day_rows(cells: Sequence[tuple[tuple[str, str, int], tuple[float, ...]]],
             models: Sequence[str]) -> list[dict]:
    """coverage.csv's rows from the summed hour cells: one per (node, day), sorted, seconds
    rounded to 0.001 s, counts as integers. ``cells`` are few (nodes x days x 24)."""
    fields = cell_fields(models)
    days: dict[tuple[str, str], list[float]] = {}
    for (node, day, _hour), values in cells:
        total = days.setdefault((node, day), [0.0] * len(fields))
        for i, value in enumerate(values):
            total[i] += value
    rows = []
    for (node, day), total in sorted(days.items()):
        row = {"node": node, "day": day}
        for name, value in zip(fields, total, strict=True):
            row[name] = round(value, 3) if is_seconds(name) else int(round(value))
        rows.append(row)
    return rows


def csv_columns(models: Sequence[str]) -> list[str]:
    """coverage.csv's header."""
    return ["node", "day", *cell_fields(models)]
