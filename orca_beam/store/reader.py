"""Reading a version's current rows: the one way every stage after extraction (projector, search,
classifier, reports) and every notebook gets at the embeddings.

A version's current rows are those its commit names: each manifest entry lists the row shards
that hold its source's rows, and a shard may also hold rows of sources that have changed since
(their old rows), which are filtered out here. Two entry points:

* :class:`ReadCurrentRows`, a PTransform: version folder -> Arrow record batches of the current
  rows, one shard's row groups at a time, only the columns asked for. Memory per worker: one row
  group, plus the set of current sources of the shard being read.
* :func:`current_rows`, for notebooks and tests: every current row of a small version as one
  table.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Iterator, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from orca_beam.core import s3
from orca_beam.store.manifest import iter_entries, manifest_parts, read_entry_part


def shard_sources(entries: Iterable[dict]) -> dict[str, set[str]]:
    """Row shard -> the sources whose current rows it holds (entries with rows)."""
    wanted: dict[str, set[str]] = {}
    for entry in entries:
        for shard in entry["shards"] or []:
            wanted.setdefault(shard, set()).add(entry["source"])
    return wanted


def keep_sources(table: pa.Table, sources: set[str] | None) -> pa.Table:
    """The rows of ``table`` whose ``source`` is in ``sources`` (None: every row)."""
    if sources is None:
        return table
    return table.filter(pc.is_in(table.column("source"),
                                 value_set=pa.array(sorted(sources), pa.string())))


def read_current_rows_of_shard(shard: str, sources: set[str] | None,
                               columns: list[str] | None = None) -> pa.Table:
    """The rows of one row shard whose source is in ``sources`` (None: every row); ``columns``:
    the columns to read (default all)."""
    with FileSystems.open(shard) as handle:
        wanted = None if columns is None else list(dict.fromkeys(["source", *columns]))
        table = keep_sources(pq.ParquetFile(handle).read(columns=wanted), sources)
    return table if columns is None else table.select(columns)


def current_rows(folder: str | dict, columns: list[str] | None = None) -> pa.Table | None:
    """Every current row of a small version as one table (a changed source's old rows stay out);
    None if it has no rows. ``folder``: the version folder (or a :func:`read_manifest` dict).
    Holds them all in memory: for notebooks and tests. The pipeline's stages read the same rows
    with :class:`ReadCurrentRows`."""
    entries = (folder["entries"].values() if isinstance(folder, dict) else iter_entries(folder))
    tables = [read_current_rows_of_shard(shard, sources, columns)
              for shard, sources in sorted(shard_sources(entries).items())]
    return pa.concat_tables(tables) if tables else None


def embedding_matrix(rows: pa.Table | pa.RecordBatch) -> np.ndarray:
    """The ``embedding`` column of a table or record batch as float32 [N, D] (no copy for a
    record batch)."""
    column = rows.column("embedding")
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not len(column):
        return np.zeros((0, 0), np.float32)
    values = np.asarray(column.flatten(), np.float32)
    return values.reshape(len(column), -1)


class _ListEntryShardsFn(beam.DoFn):
    def setup(self):
        s3.install()

    def process(self, folder: str) -> Iterator[str]:
        yield from manifest_parts(folder)


class _ReadEntryShardFn(beam.DoFn):
    def setup(self):
        s3.install()

    def process(self, path: str) -> Iterator[dict]:
        yield from read_entry_part(path)


class ReadEntries(beam.PTransform):
    """A version folder -> its manifest entries (ENTRY_SCHEMA dicts), read at run time (so a
    template run every night reads that night's state), one entry shard per worker step; an old
    version's single ``_manifest.json`` is read as it is; a new version gives none.
    ``spread``: reshuffle the shards over the workers (off for an in-process run, where it
    would only add a stage)."""

    def __init__(self, folder: str, spread: bool = True):
        super().__init__()
        self.folder = folder
        self.spread = spread

    def expand(self, pbegin):
        shards = (pbegin
                  | "VersionFolder" >> beam.Create([self.folder])
                  | "ListEntryShards" >> beam.ParDo(_ListEntryShardsFn()))
        if self.spread:
            shards = shards | "SpreadShards" >> beam.Reshuffle()
        return shards | "ReadEntryShard" >> beam.ParDo(_ReadEntryShardFn())


def _shards_of_entry(entry: dict, pattern: str | None) -> Iterator[tuple[str, str]]:
    if pattern is not None and not fnmatch.fnmatchcase(entry["source"], pattern):
        return
    for shard in entry["shards"] or []:
        yield shard, entry["source"]


class _ReadShardFn(beam.DoFn):
    def __init__(self, columns: Sequence[str] | None):
        self.columns = None if columns is None else list(columns)

    def setup(self):
        s3.install()

    def process(self, keyed) -> Iterator[pa.RecordBatch]:
        shard, sources = keyed
        yield from iter_current_batches(shard, set(sources), self.columns)


def iter_current_batches(shard: str, sources: set[str] | None,
                         columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
    """The rows of one row shard whose ``source`` is in ``sources`` (None: every row), as one
    record batch per Parquet row group, holding ``columns`` (None: all)."""
    wanted = None if columns is None else list(dict.fromkeys(["source", *columns]))
    with FileSystems.open(shard) as handle:
        parquet = pq.ParquetFile(handle)
        for group in range(parquet.num_row_groups):
            table = keep_sources(parquet.read_row_group(group, columns=wanted), sources)
            if table.num_rows:
                if columns is not None:
                    table = table.select(list(columns))
                yield from table.combine_chunks().to_batches()


class ReadCurrentRows(beam.PTransform):
    """A version folder -> ``pyarrow.RecordBatch`` es of its current rows.

    ``columns``: the columns to read (None: all; reading only the key columns and ``embedding``
    is what search and scoring need). ``sources``: an ``fnmatch`` pattern the ``source`` must
    match (None: every source). Entries are read one entry shard per step and grouped by row
    shard, so no process holds the version's sources or rows: a worker holds one row group and
    the current sources of one shard."""

    def __init__(self, folder: str, *, columns: Sequence[str] | None = None,
                 sources: str | None = None):
        super().__init__()
        self.folder = folder
        self.columns = None if columns is None else list(columns)
        self.sources = sources

    def expand(self, pbegin):
        pattern = self.sources
        return (pbegin
                | "ReadEntries" >> ReadEntries(self.folder)
                | "ShardsOfEntries" >> beam.FlatMap(_shards_of_entry, pattern)
                | "SourcesPerShard" >> beam.GroupByKey()
                | "ReadShards" >> beam.ParDo(_ReadShardFn(self.columns)))
