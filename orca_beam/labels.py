"""A label table (``--label_table FILE``): columns joined to each source by a key, for the projector
metadata and the outcomes. No Beam here.

The file is TSV or CSV (a tab in the header line means TSV), UTF-8, local, ``gs://`` or any Beam
filesystem, with a header line. One column is the key, by default the first; the others are
the labels. A source matches the row whose key equals the source's base name
(``.../S01-J-1.wav`` -> ``S01-J-1.wav``), or else its base name without the extension
(``S01-J-1``). The table is read once, whole: it is small beside the audio (one row per
labelled file), and memory grows with it, not with the corpus.
"""

from __future__ import annotations

import csv
import io
import posixpath
from dataclasses import dataclass, field

from apache_beam.io.filesystems import FileSystems

from orca_beam.core.errors import UsageError


@dataclass(frozen=True)
class LabelTable:
    """Labels by key: ``columns`` (the label column names, in file order) and, per key, the
    values of those columns. ``fingerprint`` is the CRC32C of the file's bytes."""

    path: str
    key_column: str
    columns: tuple[str, ...]
    rows: dict[str, tuple[str, ...]] = field(repr=False)
    fingerprint: str = ""

    def lookup(self, source: str) -> tuple[str, ...] | None:
        """The label values of ``source`` (a path or URL), matched by base name, then by base
        name without extension; None when no row matches."""
        name = posixpath.basename(source.rstrip("/"))
        found = self.rows.get(name)
        if found is None:
            found = self.rows.get(posixpath.splitext(name)[0])
        return found

    def cells(self, source: str) -> tuple[tuple[str, str], ...]:
        """(column, value) pairs of ``source``'s labels, every column present ("" where the
        source has no row)."""
        values = self.lookup(source) or ("",) * len(self.columns)
        return tuple(zip(self.columns, values, strict=True))

    def as_dict(self, source: str) -> dict[str, str] | None:
        """``{column: value}`` of ``source``'s labels, or None when no row matches."""
        values = self.lookup(source)
        return None if values is None else dict(zip(self.columns, values, strict=True))

    def settings(self) -> dict:
        """What identifies these labels in a projector's settings: path, key, fingerprint."""
        return {"path": self.path, "key": self.key_column, "fingerprint": self.fingerprint}


def parse_labels(text: str, path: str, key_column: str | None = None,
                 fingerprint: str = "") -> LabelTable:
    """The LabelTable of a label file's text. ValueError (naming the file and line) for an
    empty file, a missing key column, a duplicate or empty key, or a row of the wrong width."""
    first = text.split("\n", 1)[0]
    delimiter = "\t" if "\t" in first else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = next(reader, None)
    if not header or not any(h.strip() for h in header):
        raise UsageError(f"--label_table {path}: no header line")
    header = [h.strip() for h in header]
    key = key_column or header[0]
    if key not in header:
        raise UsageError(f"--label_table {path}: no column {key!r} (columns: {', '.join(header)})")
    at = header.index(key)
    columns = tuple(h for i, h in enumerate(header) if i != at)
    rows: dict[str, tuple[str, ...]] = {}
    for line, row in enumerate(reader, start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise UsageError(f"--label_table {path} line {line}: {len(row)} cells, the header has "
                             f"{len(header)}")
        name = row[at].strip()
        if not name:
            raise UsageError(f"--label_table {path} line {line}: empty {key!r}")
        if name in rows:
            raise UsageError(f"--label_table {path} line {line}: {key!r} {name!r} appears twice")
        rows[name] = tuple(cell.strip() for i, cell in enumerate(row) if i != at)
    return LabelTable(path, key, columns, rows, fingerprint)


def read_labels(path: str, key_column: str | None = None) -> LabelTable:
    """Reads the label file at ``path`` (local or a Beam filesystem URL); see
    :func:`parse_labels`. ValueError when it does not exist or is not UTF-8."""
    from orca_beam.store.fingerprint import crc32c_fingerprint

    if not FileSystems.exists(path):
        raise UsageError(f"--label_table {path} does not exist")
    with FileSystems.open(path) as handle:
        data = handle.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"--label_table {path}: not UTF-8 ({exc})") from None
    return parse_labels(text, path, key_column, crc32c_fingerprint(data))
