"""The table the review page exports, and every other table of labelled windows: a CSV (or TSV)
with ``source``, ``start_s``, ``end_s`` (seconds in the source) and optionally ``start_utc``,
``label`` and ``verdict`` (``yes`` / ``no`` / ``unsure``; no column: every row is a ``yes``).

Read by the search (``--queries_from``: the ``yes`` rows as query clips) and the classifier
(``--label_table``: yes rows are positives of their label, no rows negatives, unsure rows left
out). Small beside the corpus: read whole.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from apache_beam.io.filesystems import FileSystems

from orca_beam.core.errors import UsageError

#: The export's columns, in order (the page writes this header).
EXPORT_COLUMNS = ("source", "start_s", "end_s", "start_utc", "label", "verdict")
#: Seconds within which a labelled window's (or a ``SOURCE@START_S`` reference's) start names a
#: stored row's ``start_s``.
ROW_MATCH_S = 1e-3
VERDICTS = ("yes", "no", "unsure")


@dataclass(frozen=True)
class WindowLabel:
    """One labelled window: ``source``, ``start_s`` / ``end_s`` (seconds in the source; None:
    the whole source), ``label`` and ``verdict`` (yes / no / unsure)."""

    source: str
    start_s: float | None
    end_s: float | None
    label: str
    verdict: str


def read_table_rows(path: str, flag: str) -> list[dict]:
    """The rows of a CSV or TSV file (a tab in the header line means TSV; local, gs:// or
    s3://) as dicts of stripped strings; UsageError naming ``flag`` when it cannot be read."""
    try:
        with FileSystems.open(path) as handle:
            text = handle.read().decode("utf-8-sig")
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot be read ({exc})") from None
    first = text.split("\n", 1)[0]
    reader = csv.DictReader(io.StringIO(text), delimiter="\t" if "\t" in first else ",")
    return [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader
            if any((v or "").strip() for v in row.values())]


def _seconds(row: dict, column: str, path: str, line: int) -> float | None:
    text = row.get(column, "")
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"{path} line {line}: {column} {text!r} is not a number of seconds"
                         ) from None


def read_window_labels(path: str, label_column: str = "label", flag: str = "--label_table"
                       ) -> list[WindowLabel]:
    """The labelled windows of a table keyed by window (see the module doc). ``label_column``:
    the column holding the label. UsageError (naming the file and line) for a missing column,
    a bad number or an unknown verdict."""
    return window_labels(read_table_rows(path, flag), path, label_column, flag)


def window_labels(rows: list[dict], path: str, label_column: str = "label",
                  flag: str = "--label_table") -> list[WindowLabel]:
    """:func:`read_window_labels` of rows already read (:func:`read_table_rows`)."""
    if not rows:
        raise UsageError(f"{flag} {path}: no rows")
    missing = [c for c in ("source", "start_s", label_column) if c not in rows[0]]
    if missing:
        raise UsageError(f"{flag} {path}: no column {', '.join(missing)} "
                         f"(columns: {', '.join(rows[0])})")
    labels = []
    for line, row in enumerate(rows, start=2):
        verdict = (row.get("verdict") or "yes").lower()
        if verdict not in VERDICTS:
            raise UsageError(f"{flag} {path} line {line}: verdict {row['verdict']!r} is not "
                             f"one of {', '.join(VERDICTS)}")
        labels.append(WindowLabel(row["source"], _seconds(row, "start_s", path, line),
                                  _seconds(row, "end_s", path, line), row[label_column],
                                  verdict))
    return labels


def is_window_table(rows: list[dict]) -> bool:
    """Whether a label table's rows (:func:`read_table_rows`) are keyed by window (``source``
    and ``start_s`` columns) rather than by file."""
    return bool(rows) and "source" in rows[0] and "start_s" in rows[0]
