"""Derived tables: what a later stage computes from every row of a version (a classifier's
scores), stored so that a re-run computes only what is new, and read back as current rows.

A derived table is a folder of its own (anywhere: local, gs://, s3://):

* ``part-<artifact 8 hex>-<row shard name>-g<row group>.parquet``: the derived rows of one row
  group of one row shard of the version (one per row of it, with the row's ``source``): written
  as each row group is done, so no stage gathers a shard;
* ``_derived.json``: the commit, written last and atomically: the version it derives from (folder
  and ``version_id``), the artifact that made it (its SHA-256, e.g. of classifier.json) and
  settings, and ``parts``, row shard -> its parts, plus the run history.

Row shards never change once written (a re-run of the extraction writes new ones and its commit
names them), so a part stays valid for as long as its row shard is in the version's commit and
the artifact is the same. A run (:func:`plan_derived`) derives only the row shards the version's
commit names that have no part for this artifact; its commit keeps the other parts, and then
deletes the parts no longer named (shards gone from the version, another artifact's). A run
killed before its commit leaves the previous commit in force.

Reading (:class:`ReadDerivedRows`, :func:`derived_rows`) joins parts to the version's entries as
:mod:`.reader` does rows: a part's rows count only if the version's commit names their source for
that shard, so a changed or deleted source's old rows never come back through a derived table.

Memory of a run's commit: one (shard, part) pair per row group of the version (a row group holds
about 4096 rows: 2,500 pairs for 10M rows), never one per source or row.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

from orca_beam.core import s3
from orca_beam.core.errors import UsageError
from orca_beam.store.manifest import iter_entries, version_state, write_atomically
from orca_beam.store.reader import (
    ReadEntries,
    iter_current_batches,
    read_current_rows_of_shard,
    shard_sources,
)
from orca_beam.store.version import VERSION_NAME, read_json, utc_now

DERIVED_NAME = "_derived.json"
DERIVED_FORMAT = 1


def read_derived_commit(folder: str) -> dict | None:
    """The commit of a derived table folder, or None when it has none yet."""
    path = f"{folder.rstrip('/')}/{DERIVED_NAME}"
    return read_json(path) if FileSystems.exists(path) else None


def part_path(folder: str, artifact_sha256: str, shard: str, group: int) -> str:
    """Where the part of row group ``group`` of row shard ``shard`` made by that artifact
    lives."""
    name = shard.rsplit("/", 1)[-1].removesuffix(".parquet")
    return f"{folder.rstrip('/')}/part-{artifact_sha256[:8]}-{name}-g{group:05d}.parquet"


def plan_derived(folder: str, upstream: str, artifact_sha256: str
                 ) -> tuple[list[str], dict[str, list[str]]]:
    """(row shards to derive, parts to keep: row shard -> its parts) for a run writing derived
    table ``folder`` from version ``upstream`` with this artifact. UsageError when ``folder``
    derives from another version (a new version needs a new folder)."""
    version_id = read_json(f"{upstream.rstrip('/')}/{VERSION_NAME}")["version_id"]
    commit = read_derived_commit(folder)
    if commit is not None and commit["upstream"]["version_id"] != version_id:
        raise UsageError(
            f"{folder} holds what was derived from version {commit['upstream']['version_id']}, "
            f"not {version_id} ({upstream}): give another --output")
    shards = version_state(upstream)["row_shards"]
    parts = {} if commit is None or commit["artifact_sha256"] != artifact_sha256 \
        else commit["parts"]
    keep = {s: parts[s] for s in shards if s in parts}
    return [s for s in shards if s not in keep], keep


def commit_derived(folder: str, upstream: str, artifact_sha256: str, settings: dict,
                   parts: dict[str, list[str]], run: dict) -> list[str]:
    """Makes ``parts`` (row shard -> its parts) the derived table's state: writes ``_derived.json``
    atomically, then deletes the part files it does not name. ``run``: this run's counts, added
    to the history. Returns the deleted paths."""
    folder = folder.rstrip("/")
    previous = read_derived_commit(folder) or {}
    version = read_json(f"{upstream.rstrip('/')}/{VERSION_NAME}")
    record = {"format": DERIVED_FORMAT, "written_at": utc_now(),
              "upstream": {"folder": upstream, "version_id": version["version_id"],
                           "model_version": version["label"]},
              "artifact_sha256": artifact_sha256, "settings": settings,
              "parts": {shard: sorted(paths) for shard, paths in sorted(parts.items())},
              "runs": [*previous.get("runs", []), {"written_at": utc_now(), **run}]}
    write_atomically(f"{folder}/{DERIVED_NAME}", (json.dumps(record, indent=1) + "\n").encode())
    found = [m.path for r in FileSystems.match([f"{folder}/part-*"]) for m in r.metadata_list]
    stale = sorted(set(found) - {p for paths in parts.values() for p in paths})
    if stale:
        FileSystems.delete(stale)
    return stale


def _current_parts(commit: dict, entries) -> Iterator[tuple[str, set[str]]]:
    for shard, sources in sorted(shard_sources(entries).items()):
        for part in commit["parts"].get(shard, []):
            yield part, sources


def derived_rows(folder: str, columns: list[str] | None = None) -> pa.Table | None:
    """Every current row of a small derived table as one table (None if it has none). Holds
    them all: for notebooks and tests; stages read with :class:`ReadDerivedRows`."""
    commit = read_derived_commit(folder)
    if commit is None:
        return None
    tables = [read_current_rows_of_shard(part, sources, columns)
              for part, sources in _current_parts(commit,
                                                  iter_entries(commit["upstream"]["folder"]))]
    return pa.concat_tables(tables) if tables else None


class _ReadPartFn(beam.DoFn):
    def __init__(self, parts: dict[str, list[str]], columns: Sequence[str] | None):
        self.parts, self.columns = parts, None if columns is None else list(columns)

    def setup(self):
        s3.install()

    def process(self, keyed) -> Iterator[pa.RecordBatch]:
        shard, sources = keyed
        yield from iter_part_batches(self.parts.get(shard, []), set(sources), self.columns)


def iter_part_batches(parts: Sequence[str], sources: set[str],
                      columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
    """The rows of ``parts`` (one row shard's) whose ``source`` is in ``sources``, one record
    batch per Parquet row group, holding ``columns`` (None: all): the store's own row reader,
    part by part."""
    for part in parts:
        yield from iter_current_batches(part, sources, columns)


class ReadDerivedRows(beam.PTransform):
    """A derived table folder -> ``pyarrow.RecordBatch`` es of its current rows (``columns``;
    None: all), one part's row groups at a time: the version's entries are read one entry shard
    per step and grouped by row shard, as :class:`~orca_beam.store.reader.ReadCurrentRows` does.
    The commit (its parts map, one pair per row shard) is read when the pipeline is built."""

    def __init__(self, folder: str, columns: Sequence[str] | None = None):
        super().__init__()
        self.commit = read_derived_commit(folder)
        if self.commit is None:
            raise UsageError(f"{folder}: no {DERIVED_NAME} (nothing derived there yet)")
        self.columns = columns

    def expand(self, pbegin):
        return (pbegin
                | "ReadEntries" >> ReadEntries(self.commit["upstream"]["folder"])
                | "ShardsOfEntries" >> beam.FlatMap(
                    lambda e: [(s, e["source"]) for s in e["shards"] or []])
                | "SourcesPerShard" >> beam.GroupByKey()
                | "ReadParts" >> beam.ParDo(_ReadPartFn(self.commit["parts"], self.columns)))
