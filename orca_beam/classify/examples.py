"""Labelled windows for training: a label table joined to a version's current rows.

The table (``--label_table``) is either keyed by file (as the extraction's ``--label_table``:
every window of a matching source takes the file's label; several labels separated by ``;``) or
keyed by window (``source, start_s, end_s``, what the review page exports, with ``verdict``
yes / no / unsure; :mod:`orca_beam.review.verdicts`). A labelled window matches the row of its
source starting within 1 ms of ``start_s`` (the rows the review page shows), else every row whose
centre lies in ``[start_s, end_s)`` (an annotation of any length); no ``start_s``: every row.

What each window teaches each class ``c`` (a target and a weight):

* labelled ``c`` (a file label, or a ``yes`` verdict): positive, weight 1;
* labelled another class, a ``no`` verdict for ``c``, or the ``--negative_label`` value:
  negative, weight 1;
* only ``no`` verdicts for other classes, or a random unlabelled window (a *weak negative*, as
  perch-hoplite trains): negative, weight ``weak_weight`` (default 0.05, hoplite's);
* ``unsure`` for ``c``: left out of ``c`` (weight 0); a window with nothing but unsure verdicts is
  left out.

Memory: the labelled windows' vectors, ``weak_negatives`` more, and the names of the sources
that hold them; the version's other sources are only counted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from orca_beam.core.errors import UsageError
from orca_beam.labels import read_labels
from orca_beam.review.verdicts import (
    ROW_MATCH_S,
    WindowLabel,
    is_window_table,
    read_table_rows,
    window_labels,
)
from orca_beam.store.manifest import iter_entries
from orca_beam.store.reader import embedding_matrix, read_current_rows_of_shard

#: hoplite's weight of a random unlabelled window as a negative.
WEAK_WEIGHT = 0.05
ROW_COLUMNS = ["source", "start_s", "end_s", "embedding"]


@dataclass(frozen=True)
class LabelSettings:
    """Where the labels come from (one or more tables, e.g. the first labels and each review's
    export; their labels add up) and how negatives are made (module doc)."""

    tables: tuple[str, ...]
    column: str = "label"
    negative_label: str | None = None
    weak_negatives: int = 1000
    weak_weight: float = WEAK_WEIGHT
    seed: int = 0


@dataclass
class _Window:
    yes: set[str] = field(default_factory=set)
    no: set[str] = field(default_factory=set)
    unsure: set[str] = field(default_factory=set)
    negative: bool = False


@dataclass
class Examples:
    """Training windows: ``vectors`` [N, D], ``targets`` and ``weights`` [N, C] per class of
    ``classes``, ``keys`` (source, start_s, end_s) per window, ``strata`` (a window's label set,
    for stratified folds), ``counts`` (what was matched) and ``digest`` (SHA-256 of the labels
    as matched to rows, weak negatives aside)."""

    classes: list[str]
    vectors: np.ndarray
    targets: np.ndarray
    weights: np.ndarray
    keys: list[tuple[str, float, float]]
    strata: list[str]
    counts: dict
    digest: str


def _file_label_lookup(path: str, column: str):
    table = read_labels(path)
    if column not in table.columns:
        raise UsageError(f"--label_table {path}: no column {column!r} "
                         f"(columns: {', '.join(table.columns)})")
    at = table.columns.index(column)

    def lookup(source: str) -> list[str]:
        values = table.lookup(source)
        if values is None:
            return []
        return [v.strip() for v in values[at].split(";") if v.strip()]

    return lookup


def _apply_label(window: _Window, label: str, verdict: str, negative_label: str | None) -> None:
    if label == negative_label and verdict == "yes":
        window.negative = True
    else:
        {"yes": window.yes, "no": window.no, "unsure": window.unsure}[verdict].add(label)


def match_rows(labels: list[WindowLabel], starts: np.ndarray, ends: np.ndarray
               ) -> Iterable[tuple[WindowLabel, np.ndarray]]:
    """(label, the positions of the rows it labels) for each labelled window of one source,
    given its rows' ``starts`` and ``ends`` (seconds): the row starting within ROW_MATCH_S of
    ``start_s``, else the rows centred in ``[start_s, end_s)``; every row without start_s."""
    centres = (starts + ends) / 2
    for label in labels:
        if label.start_s is None:
            yield label, np.arange(len(starts))
            continue
        exact = np.flatnonzero(np.abs(starts - label.start_s) <= ROW_MATCH_S)
        if len(exact) or label.end_s is None:
            yield label, exact[:1]
        else:
            yield label, np.flatnonzero((centres >= label.start_s) & (centres < label.end_s))


def gather_examples(folder: str, settings: LabelSettings) -> Examples:
    """The labelled windows of version ``folder`` (module doc). UsageError when no label
    matches a row, or fewer than one class has a positive."""
    tables = LabelledWindows(settings.tables, settings.column)
    windows_of, file_lookup = tables.windows, tables.file_labels
    rng = np.random.default_rng(settings.seed)
    wanted: dict[str, set[str]] = {}
    weak_sources: list[tuple[str, list[str]]] = []
    seen_unlabelled = 0
    file_labels: dict[str, list[str]] = {}
    for entry in iter_entries(folder):
        source, shards = entry["source"], entry["shards"] or []
        if not shards:
            continue
        labels = file_lookup(source)
        if (source in windows_of) or labels:
            if labels:
                file_labels[source] = labels
            for shard in shards:
                wanted.setdefault(shard, set()).add(source)
        elif settings.weak_negatives > 0:
            seen_unlabelled += 1
            if len(weak_sources) < settings.weak_negatives:
                weak_sources.append((source, shards))
            else:
                j = int(rng.integers(seen_unlabelled))
                if j < settings.weak_negatives:
                    weak_sources[j] = (source, shards)
    weak_of_shard: dict[str, set[str]] = {}
    for source, shards in weak_sources:
        for shard in shards:
            weak_of_shard.setdefault(shard, set()).add(source)
    windows: dict[tuple[str, float, float], _Window] = {}
    vectors: dict[tuple[str, float, float], np.ndarray] = {}
    matched: set[WindowLabel] = set()
    weak_keys: list[tuple] = []
    weak_vectors: list[np.ndarray] = []
    weak_seen = 0
    for shard in sorted(set(wanted) | set(weak_of_shard)):
        sources = wanted.get(shard, set()) | weak_of_shard.get(shard, set())
        table = read_current_rows_of_shard(shard, sources, ROW_COLUMNS)
        if not table.num_rows:
            continue
        matrix = embedding_matrix(table)
        names = table.column("source").to_pylist()
        starts = np.asarray(table.column("start_s"), np.float64)
        ends = np.asarray(table.column("end_s"), np.float64)
        by_source: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            by_source.setdefault(name, []).append(i)
        for source, rows in by_source.items():
            rows = np.asarray(rows)
            keys = [(source, float(starts[i]), float(ends[i])) for i in rows]
            if source in file_labels:
                for key, i in zip(keys, rows, strict=True):
                    window = windows.setdefault(key, _Window())
                    for label in file_labels[source]:
                        _apply_label(window, label, "yes", settings.negative_label)
                    vectors[key] = matrix[i]
            if source in windows_of:
                for label, hit in match_rows(windows_of[source], starts[rows], ends[rows]):
                    if len(hit):
                        matched.add(label)
                    for j in hit:
                        key = keys[j]
                        _apply_label(windows.setdefault(key, _Window()), label.label,
                                     label.verdict, settings.negative_label)
                        vectors[key] = matrix[rows[j]]
            if source not in file_labels and source not in windows_of:
                # a weak negative candidate: reservoir over its rows
                for key, i in zip(keys, rows, strict=True):
                    weak_seen += 1
                    if len(weak_keys) < settings.weak_negatives:
                        weak_keys.append(key)
                        weak_vectors.append(matrix[i])
                    else:
                        j = int(rng.integers(weak_seen))
                        if j < settings.weak_negatives:
                            weak_keys[j], weak_vectors[j] = key, matrix[i]
    unmatched = [lab for labs in windows_of.values() for lab in labs if lab not in matched]
    return _build(settings, windows, vectors, weak_keys, weak_vectors, unmatched, tables.kinds)


def _build(settings: LabelSettings, windows: dict, vectors: dict, weak_keys: list,
           weak_vectors: list, unmatched: list[WindowLabel], kinds: list[str]) -> Examples:
    windows = {k: w for k, w in windows.items() if w.yes or w.no or w.negative}
    classes = sorted({c for w in windows.values() for c in w.yes})
    if not classes:
        raise UsageError(f"--label_table {', '.join(settings.tables)}: no positive label "
                         "matches a row "
                         f"({len(unmatched)} labelled windows match none)")
    index = {c: i for i, c in enumerate(classes)}
    keys = sorted(windows)
    n, c = len(keys) + len(weak_keys), len(classes)
    targets = np.zeros((n, c), np.float32)
    weights = np.full((n, c), settings.weak_weight, np.float32)
    strata = []
    for row, key in enumerate(keys):
        window = windows[key]
        for name in window.yes:
            targets[row, index[name]] = 1.0
        if window.yes or window.negative:
            weights[row] = 1.0
        for name in window.no:
            if name in index:
                weights[row, index[name]] = 1.0
        for name in window.unsure - window.yes - window.no:
            if name in index:
                weights[row, index[name]] = 0.0
        strata.append("+".join(sorted(window.yes)) or ("negative" if window.negative else
                                                        "no:" + "+".join(sorted(window.no))))
    strata += ["weak"] * len(weak_keys)
    all_vectors = [vectors[k] for k in keys] + weak_vectors
    digest = hashlib.sha256(json.dumps(
        [[k[0], round(k[1], 6), round(k[2], 6), sorted(windows[k].yes), sorted(windows[k].no),
          sorted(windows[k].unsure), windows[k].negative] for k in keys]).encode()).hexdigest()
    counts = {
        "keyed_by": kinds,
        "windows": len(keys),
        "positives": {name: int(targets[:len(keys), i].sum()) for i, name in enumerate(classes)},
        "explicit_negatives": int(sum(1 for k in keys if windows[k].negative)),
        "no_verdicts": int(sum(len(windows[k].no) for k in keys)),
        "weak_negatives": len(weak_keys),
        "weak_weight": settings.weak_weight,
        "unmatched_labels": len(unmatched),
        "unmatched_sample": [f"{lab.source}@{lab.start_s}" for lab in unmatched[:20]],
    }
    return Examples(classes, np.stack(all_vectors).astype(np.float32), targets, weights,
                    keys + weak_keys, strata, counts, digest)


class LabelledWindows:
    """Label tables, read once (small beside the corpus): ``windows`` (source -> its labelled
    windows, from the window-keyed tables), :meth:`file_labels` (the labels file-keyed tables
    give a source), ``kinds`` ("window" / "file" per table). Training joins them to rows; the
    review leaves out the rows they label (:meth:`mask`)."""

    def __init__(self, tables: Iterable[str], column: str = "label"):
        self.windows: dict[str, list[WindowLabel]] = {}
        self.lookups = []
        self.kinds: list[str] = []
        for path in tables:
            rows = read_table_rows(path, "--label_table")
            if is_window_table(rows):
                self.kinds.append("window")
                for label in window_labels(rows, path, column):
                    self.windows.setdefault(label.source, []).append(label)
            else:
                self.kinds.append("file")
                self.lookups.append(_file_label_lookup(path, column))

    def file_labels(self, source: str) -> list[str]:
        """The labels the file-keyed tables give ``source`` (matched by base name)."""
        return [label for lookup in self.lookups for label in lookup(source)]

    def mask(self, sources: list[str], starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Whether each row (its source, start and end in seconds) is labelled already."""
        labelled = np.zeros(len(sources), bool)
        by_source: dict[str, list[int]] = {}
        for i, source in enumerate(sources):
            by_source.setdefault(source, []).append(i)
        for source, rows in by_source.items():
            rows = np.asarray(rows)
            if self.file_labels(source):
                labelled[rows] = True
            for _, hit in match_rows(self.windows.get(source, []), starts[rows], ends[rows]):
                labelled[rows[hit]] = True
        return labelled
