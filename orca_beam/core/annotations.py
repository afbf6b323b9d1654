"""Annotated segments (Orcaml / Pod.Cast ``annotations.tsv``): rows in, checked segments and model
windows out. No Beam here; :mod:`orca_beam.sources.calls` wires it into the pipeline.

A column-mapping config (``configs/orcaml.yaml``) says which columns hold the file name, the start
and the duration (or end); every column of a row is carried as metadata, unchanged.

Decisions made per file, in this order (each annotation row gets exactly one):

* ``path_outside_root``: the file name is absolute, has a URL scheme, or climbs out with ``..``.
  Such a name is never resolved, opened or read.
* ``bad_row``: a time is missing, not a number, negative or not finite.
* ``file_missing`` / ``unreadable_audio``: the file does not exist / cannot be decoded.
* ``zero_duration``: duration 0 on a file that also has calls. On a file with no call, the
  zero-duration row marks the file as call-free (status ``no_call``; negatives may be drawn from it).
* ``outside_file``: the segment starts before 0 or ends after the file (1 ms tolerance).
* otherwise the segment is embedded.

Model windows of a segment (:func:`plan_window`), per model: the number of frames follows the
model's own rule for a clip of the call's length (VGGish: windows wholly inside the call, at least
one; YAMNet and humpback: windows covering the call), and that block of windows is centred on the
call. A call shorter than one window therefore gets one window centred on it. Audio outside the call
comes from the file itself; where the window runs past the file's start or end it is zero-padded,
and the row says how much (``zero_padded_s``).
"""

from __future__ import annotations

import csv
import io
import math
import posixpath
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from orca_beam.core.errors import UsageError
from orca_beam.core.framing import num_frames
from orca_beam.core.registry import ModelSpec

#: Row statuses and reasons.
EMBEDDED = "embedded"
REJECTED = "rejected"
NO_CALL = "no_call"
FAILED = "failed"
PATH_OUTSIDE_ROOT = "path_outside_root"
BAD_ROW = "bad_row"
FILE_MISSING = "file_missing"
UNREADABLE_AUDIO = "unreadable_audio"
ZERO_DURATION = "zero_duration"
OUTSIDE_FILE = "outside_file"
CALL = "call"
NEGATIVE = "negative"
#: A segment may end this far past the decoded file and still count as inside it.
END_TOLERANCE_S = 1e-3
#: configs/orcaml.yaml of the source tree (an editable install), else of the working directory
#: (the Docker image's /opt/orca-beam).
DEFAULT_CONFIG = next((p for p in (Path(__file__).resolve().parents[1] / "configs" / "orcaml.yaml",
                                   Path("configs") / "orcaml.yaml") if p.is_file()),
                      Path("configs") / "orcaml.yaml")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


@dataclass(frozen=True)
class ColumnMapping:
    """Which annotation columns hold the file name and the times, and how to read them.

    Exactly one of ``duration_column`` / ``end_column``. Times are multiplied by ``time_scale``
    to get seconds (1 for seconds, 0.001 for milliseconds). ``delimiter`` None: from the file name
    (``.csv`` -> comma, else tab).
    """

    file_column: str
    start_column: str
    duration_column: str | None = None
    end_column: str | None = None
    time_scale: float = 1.0
    delimiter: str | None = None

    def required(self) -> list[str]:
        """The columns a file must have."""
        return [c for c in (self.file_column, self.start_column, self.duration_column,
                            self.end_column) if c]


def load_mapping(path: str | Path | None = None) -> ColumnMapping:
    """Reads a column-mapping YAML (local, gs:// or s3://; default ``configs/orcaml.yaml``); raises
    ValueError on a missing file or a missing or unknown key."""
    from apache_beam.io.filesystems import FileSystems

    path = str(path or DEFAULT_CONFIG)
    if not FileSystems.exists(path):
        raise UsageError(f"annotation config {path} not found (pass --annotations_config)")
    with FileSystems.open(path) as handle:
        config = yaml.safe_load(handle.read().decode("utf-8")) or {}
    section = config.get("annotations", config)
    allowed = {"columns", "time_scale", "delimiter"}
    unknown = set(section) - allowed
    if unknown:
        raise UsageError(f"{path}: unknown keys {sorted(unknown)} (allowed: {sorted(allowed)})")
    columns = section.get("columns") or {}
    unknown = set(columns) - {"file", "start_s", "duration_s", "end_s"}
    if unknown or "file" not in columns or "start_s" not in columns:
        raise UsageError(f"{path}: columns needs file and start_s, and one of duration_s/end_s "
                         f"(got {sorted(columns)})")
    if ("duration_s" in columns) == ("end_s" in columns):
        raise UsageError(f"{path}: columns needs exactly one of duration_s / end_s")
    return ColumnMapping(columns["file"], columns["start_s"], columns.get("duration_s"),
                         columns.get("end_s"), float(section.get("time_scale", 1.0)),
                         section.get("delimiter"))


@dataclass(frozen=True)
class AnnotationRow:
    """One data row of the annotation file: its 1-based row number, the raw file name, times in
    seconds (None where unreadable) and every column's raw text."""

    row: int
    file: str
    start_s: float | None
    duration_s: float | None
    columns: dict[str, str] = field(hash=False)

    @property
    def segment_id(self) -> str:
        """Stable id of the segment this row describes: ``row:<n>``."""
        return f"row:{self.row}"


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def parse_annotations(text: str, mapping: ColumnMapping, name: str = "annotations"
                      ) -> tuple[list[str], list[AnnotationRow]]:
    """The header (column names, in order) and rows of an annotation file's text.

    Raises ValueError if a mapped column is missing from the header."""
    delimiter = mapping.delimiter or ("," if name.lower().endswith(".csv") else "\t")
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")), delimiter=delimiter)
    header = next(reader, None)
    if not header:
        raise UsageError(f"{name}: empty annotation file (a header row is required)")
    header = [h.strip() for h in header]
    missing = [c for c in mapping.required() if c not in header]
    if missing:
        raise UsageError(f"{name}: columns {missing} not in the header {header} "
                         f"(fix the column mapping config)")
    rows = []
    for number, values in enumerate(reader, start=1):
        if not any(v.strip() for v in values):
            continue
        columns = {h: (values[i] if i < len(values) else "") for i, h in enumerate(header)}
        start = _number(columns[mapping.start_column])
        if mapping.duration_column:
            duration = _number(columns[mapping.duration_column])
        else:
            end = _number(columns[mapping.end_column])
            duration = None if end is None or start is None else end - start
        scale = mapping.time_scale
        rows.append(AnnotationRow(
            number, columns[mapping.file_column].strip(),
            None if start is None else start * scale,
            None if duration is None else duration * scale, columns))
    return header, rows


def resolve_under_root(root: str, name: str) -> str | None:
    """``root/name`` for a relative name that stays under ``root``; None for an absolute name, a
    name with a URL scheme or drive, or one whose ``..`` climbs out (such names are never read)."""
    if not name or name.startswith(("/", "\\")) or _SCHEME.match(name):
        return None
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        return None
    clean = posixpath.normpath("/".join(parts))
    if clean in (".", "") or clean.startswith("../"):
        return None
    return root.rstrip("/") + "/" + clean


@dataclass(frozen=True)
class Segment:
    """A span to embed: an annotated call or a sampled negative, with its metadata."""

    segment_id: str
    kind: str  # "call" | "negative"
    source: str  # resolved path of the audio file
    start_s: float
    end_s: float
    columns: dict[str, str] = field(hash=False)
    row: int | None = None


@dataclass(frozen=True)
class RowDecision:
    """What happens to one annotation row: a segment to embed, or a status and reason."""

    row: AnnotationRow
    status: str  # EMBEDDED (planned) | REJECTED | NO_CALL
    reason: str = ""
    detail: str = ""


def decide_rows(rows: Sequence[AnnotationRow], duration_s: float | None) -> list[RowDecision]:
    """The decisions for one file's rows (path, missing-file and decoding checks are the caller's).

    ``duration_s`` is the file's length in seconds."""
    has_calls = any((r.duration_s or 0) > 0 for r in rows)
    decisions = []
    for row in rows:
        if row.start_s is None or row.duration_s is None or row.start_s < 0 or row.duration_s < 0:
            decisions.append(RowDecision(row, REJECTED, BAD_ROW,
                                         "start/duration missing, not a number or negative"))
        elif row.duration_s == 0:
            if has_calls:
                decisions.append(RowDecision(row, REJECTED, ZERO_DURATION,
                                             "zero duration on a file that has calls"))
            else:
                decisions.append(RowDecision(row, NO_CALL))
        elif duration_s is not None and row.start_s + row.duration_s > duration_s + END_TOLERANCE_S:
            decisions.append(RowDecision(
                row, REJECTED, OUTSIDE_FILE,
                f"segment {row.start_s:.3f}-{row.start_s + row.duration_s:.3f} s ends after "
                f"the file's {duration_s:.3f} s"))
        else:
            decisions.append(RowDecision(row, EMBEDDED))
    return decisions


def file_level_columns(rows: Sequence[AnnotationRow], mapping: ColumnMapping) -> dict[str, str]:
    """Columns a negative of this file carries: those on which all the file's rows agree; the
    time columns are blank."""
    times = {mapping.start_column, mapping.duration_column, mapping.end_column}
    out = {}
    for name in rows[0].columns:
        values = {r.columns.get(name, "") for r in rows}
        out[name] = "" if name in times or len(values) != 1 else values.pop()
    return out


def sample_negatives(calls: Sequence[tuple[float, float]], duration_s: float, count: int,
                     length_s: float, clear_s: float, seed: int, key: str
                     ) -> list[tuple[float, float]]:
    """Up to ``count`` call-free spans of ``length_s`` seconds in a file of ``duration_s``.

    ``calls`` are (start_s, end_s) of every annotated span. Around each negative's centre,
    ``clear_s`` seconds (at least ``length_s``: the widest model window) lie inside the file and
    overlap no call, so no model sees call audio or padding. Candidates are consecutive tiles of
    the free time; ``count`` of them are drawn without replacement from a generator seeded by
    ``seed`` and ``key`` (the file name), so the choice does not depend on processing order.
    Returned sorted by start.
    """
    if count <= 0 or duration_s <= 0:
        return []
    clear_s = max(clear_s, length_s)
    free, cursor = [], 0.0
    for start, end in sorted(calls):
        if start > cursor:
            free.append((cursor, start))
        cursor = max(cursor, end)
    if cursor < duration_s:
        free.append((cursor, duration_s))
    tiles = []
    for begin, end in free:
        k = 0
        while begin + (k + 1) * clear_s <= end + 1e-9:
            tiles.append(begin + k * clear_s)
            k += 1
    if not tiles:
        return []
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    chosen = sorted(rng.choice(len(tiles), min(count, len(tiles)), replace=False))
    out = []
    for index in chosen:
        centre = tiles[index] + clear_s / 2
        out.append((round(centre - length_s / 2, 6), round(centre + length_s / 2, 6)))
    return out


@dataclass(frozen=True)
class SegmentWindow:
    """The audio one model sees for one segment, in samples at the model's rate.

    ``start_sample`` may be negative and ``start_sample + num_samples`` may pass the file's end:
    those parts are zeros. ``num_samples = (num_frames - 1) * hop + window``.
    """

    start_sample: int
    num_samples: int
    num_frames: int


def plan_window(spec: ModelSpec, start_s: float, end_s: float) -> SegmentWindow:
    """The model's frames for the segment [start_s, end_s): frame count by the model's own rule
    for a clip that long (at least 1), the block of frames centred on the segment."""
    rate = spec.sample_rate_hz
    length = int(round((end_s - start_s) * rate))
    frames = max(1, num_frames(spec, length))
    needed = (frames - 1) * spec.hop_samples + spec.window_samples
    centre = (start_s + end_s) / 2 * rate
    return SegmentWindow(int(math.floor(centre - needed / 2 + 0.5)), needed, frames)


def zero_padded_samples(window: SegmentWindow, file_samples: int) -> int:
    """Samples of ``window`` outside the file ``[0, file_samples)`` (they are zeros)."""
    before = max(0, -window.start_sample)
    after = max(0, window.start_sample + window.num_samples - file_samples)
    return min(window.num_samples, before + after)
