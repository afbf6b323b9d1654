"""SeaStats datapoints: what Orcasound's SeaStats dashboard API takes per station
(``PUT /data/{org}/{station}``, orcasound/seastats-api-cloudflare), one JSON array per node in
``<seastats>/<station>.json``.

* ``recordingCoverage``: per UTC day, ``value`` = seconds of audio embedded (the reference model)
  / 86,400 (the API's example value is such a fraction). Every day from the node's first to its
  last is present; a day with no audio has 0.
* ``callRate``: per UTC day and class, ``value`` = detections per hour of audio that day; null
  on a day with no audio (so "no audio" and "no calls" differ).
* ``callEvent``: one per row of the classifier's ``events.csv``: ``species``, ``callType`` (the
  class), ``startDateTime`` / ``endDateTime`` (ISO 8601 UTC, milliseconds, ``Z``),
  ``callCount`` (its detections) and ``audioUrl``: orcasite's bout page at its start.

The fields and types are the API's validators' (``src/validation/inputValidation.js``); see
docs/reports.md. Events are read and written one line at a time.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta

from apache_beam.io.filesystems import FileSystems

from orca_beam.core.orcasite import bout_url, feed_slug
from orca_beam.reports.coverage import NO_DAY, node_of

DAY_S = 86400.0
EVENTS_NAME = "events.csv"
#: Every datapoint type written, with its fields (the API's required ones).
DATAPOINT_FIELDS = {
    "recordingCoverage": ("date", "value"),
    "callRate": ("species", "callType", "date", "value"),
    "callEvent": ("species", "callType", "startDateTime", "endDateTime", "callCount",
                  "audioUrl"),
}


def station_key(node: str, slugs: dict[str, str]) -> str:
    """The station key of a node: ``slugs``' entry, else orcasite's feed slug, else the name in
    the API's key alphabet (lower-case letters, digits, hyphens)."""
    key = slugs.get(node) or feed_slug(node) or node
    return re.sub(r"[^a-z0-9-]+", "-", key.lower()).strip("-") or "station"


def utc_text(moment: datetime) -> str:
    """``2021-10-01T00:00:12.000Z``: the API's UTC timestamp form."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _days(first: str, last: str) -> Iterator[str]:
    at, end = date.fromisoformat(first), date.fromisoformat(last)
    while at <= end:
        yield at.isoformat()
        at += timedelta(days=1)


def day_points(rows: Sequence[dict], detections: Sequence, reference: str, species: str
               ) -> dict[str, list[dict]]:
    """node -> its recordingCoverage and callRate datapoints, from coverage.csv's rows and the
    detection counts ((node, day, hour, class), count)."""
    audio: dict[tuple[str, str], float] = {}
    for row in rows:
        if row["day"] != NO_DAY:
            audio[(row["node"], row["day"])] = row[f"embedded_s_{reference}"]
    calls: dict[tuple[str, str, str], int] = {}
    for (node, day, _hour, name), count in detections:
        calls[(node, day, name)] = calls.get((node, day, name), 0) + count
    classes = sorted({name for (_n, _d, name) in calls})
    points: dict[str, list[dict]] = {}
    for node in sorted({n for n, _ in audio}):
        days = sorted(d for n, d in audio if n == node)
        out = points.setdefault(node, [])
        for day in _days(days[0], days[-1]):
            seconds = audio.get((node, day), 0.0)
            out.append({"dataPointType": "recordingCoverage", "date": day,
                        "value": seconds / DAY_S})
            for name in classes:
                count = calls.get((node, day, name), 0)
                out.append({"dataPointType": "callRate", "species": species, "callType": name,
                            "date": day,
                            "value": count / (seconds / 3600.0) if seconds > 0 else None})
    return points


def event_points(events_csv: str, slugs: dict[str, str], species: str
                 ) -> Iterator[tuple[str, dict]]:
    """(node, callEvent datapoint) per row of a classifier's events.csv, one line at a time;
    rows with no UTC time are left out (the API needs one)."""
    with FileSystems.open(events_csv) as handle:
        for row in csv.DictReader(io.TextIOWrapper(handle, encoding="utf-8")):
            if not row["start_utc"]:
                continue
            node = node_of({"stream": row["stream"] or None, "source": row["first_source"]})
            start = datetime.fromisoformat(row["start_utc"])
            end = datetime.fromisoformat(row["end_utc"]) if row["end_utc"] else start
            yield node, {
                "dataPointType": "callEvent", "species": species, "callType": row["class"],
                "startDateTime": utc_text(start), "endDateTime": utc_text(end),
                "callCount": int(row["detections"]),
                "audioUrl": bout_url(row["stream"] or None, start, slugs.get(node)) or None}


def write_seastats(settings, rows: Sequence[dict], detections: Sequence) -> dict:
    """Writes ``<settings.seastats>/<station>.json`` per node (a JSON array: the day points,
    then the call events streamed from ``<settings.scores>/events.csv``). Returns
    {station: datapoints written}."""
    out = settings.seastats.rstrip("/")
    points = day_points(rows, detections, settings.models[0], settings.species)
    handles, counts = {}, {}

    def emit(node: str, point: dict) -> None:
        key = station_key(node, settings.node_slugs)
        if key not in handles:
            handles[key] = FileSystems.create(f"{out}/{key}.json")
            handles[key].write(b"[\n")
            counts[key] = 0
        if counts[key]:
            handles[key].write(b",\n")
        handles[key].write(json.dumps(point).encode())
        counts[key] += 1

    for node, items in points.items():
        for point in items:
            emit(node, point)
    if settings.scores:
        for node, point in event_points(f"{settings.scores.rstrip('/')}/{EVENTS_NAME}",
                                        settings.node_slugs, settings.species):
            emit(node, point)
    for handle in handles.values():
        handle.write(b"\n]\n")
        handle.close()
    return counts
