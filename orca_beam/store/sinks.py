"""Parquet writing with bounded shards, for every runner.

Beam's ``WriteToParquetBatched`` lets the runner pick the shard count: DirectRunner writes one
shard per run, however large (158 MB for 4.2 h of YAMNet rows; about 27 GB for a month). This
sink closes a shard and opens the next once it holds ``max_bytes`` (default 256 MiB), so no shard
grows past that plus one table (one row group, about 4096 rows).
"""

from __future__ import annotations

import uuid

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.io import iobase, parquetio
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

#: Largest Parquet shard (bytes) before the writer starts the next one.
MAX_SHARD_BYTES = 256 * 1024 * 1024


class _CountingFile:
    """A writable file that counts the bytes written through it (pyarrow writes to it)."""

    def __init__(self, raw):
        self.raw = raw
        self.bytes_written = 0
        self.closed = False

    def write(self, data) -> int:
        self.bytes_written += len(data)
        self.raw.write(data)
        return len(data)

    def tell(self) -> int:
        return self.bytes_written

    def flush(self) -> None:
        self.raw.flush()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        if not self.closed:
            self.raw.close()
            self.closed = True


class _BoundedParquetSink(parquetio._ParquetSink):  # noqa: SLF001 - Beam's own Parquet sink
    """Beam's Parquet sink with FileBasedSink's ``max_bytes_per_shard`` turned on (the
    Parquet transforms do not pass it through): the writer counts the bytes it writes and the
    shard is closed once they reach ``max_bytes``."""

    def __init__(self, prefix: str, schema, max_bytes: int):
        super().__init__(prefix, schema, "none", False, False, ".parquet", 0, None,
                         "application/x-parquet", None)
        self.max_bytes_per_shard = max_bytes

    def open(self, temp_path):
        self.byte_counter = _CountingFile(FileSystems.create(temp_path, self.mime_type))
        self._file_handle = self.byte_counter
        return pq.ParquetWriter(self.byte_counter, self._schema, compression=self._codec)


#: What a bundle that wrote no file yields, so the gather below has an element to finish on.
NO_FILE = ""


class _WriteBundlesFn(beam.DoFn):
    """Elements -> the sink's temporary files, one per bundle (or per ``max_bytes``), as
    Beam's own write does; yields each closed file's path, or NO_FILE from a bundle that wrote
    none (FnApiRunner runs every stage's bundle, empty ones too)."""

    def __init__(self, sink, temp_dir: str):
        self.sink = sink
        self.temp_dir = temp_dir

    def start_bundle(self):
        self.writer = None
        self.wrote = False

    def process(self, element):
        if self.writer is None:
            self.writer = self.sink.open_writer(self.temp_dir, uuid.uuid4().hex)
        self.writer.write(element)
        if self.writer.at_capacity():
            self.wrote = True
            yield self.writer.close()
            self.writer = None

    def finish_bundle(self):
        path = NO_FILE
        if self.writer is not None:
            path = self.writer.close()
            self.writer = None
        elif self.wrote:
            return
        yield WindowedValue(path, GlobalWindow().max_timestamp(), [GlobalWindow()])


def _finalize(temp_files: list[str], sink, temp_dir: str) -> list[str]:
    """The temporary files -> their final ``-SSSSS-of-NNNNN`` names (Beam's FileBasedSink
    renames them, as its own write's last step does; one empty shard when there are none)."""
    temp_files = [path for path in temp_files if path != NO_FILE]
    if not temp_files and not sink.skip_if_empty:
        temp_files = [sink.open_writer(temp_dir, uuid.uuid4().hex).close()]
    sink.pre_finalize(temp_dir, temp_files)
    return list(sink.finalize_write(temp_dir, temp_files, None) or [])


def write_files(elements, sink, in_process: bool = False):
    """Elements -> a FileBasedSink's final files (a PCollection of their paths), applied at
    the caller's level. On a distributed runner, Beam's ``iobase.Write`` (step
    ``WriteShards``). ``in_process``: the same sink methods in two steps instead of Beam's
    four stages: the temporary folder is made when the graph is built, each bundle writes its
    files (fused with the step before), and one step renames them all (the files and their
    names are those Beam's write gives)."""
    if not in_process:
        return elements | "WriteShards" >> iobase.Write(sink)
    temp_dir = sink.initialize_write()
    return (elements
            | "WriteBundles" >> beam.ParDo(_WriteBundlesFn(sink, temp_dir))
            # no default to inject: every bundle yields at least NO_FILE (one stage fewer)
            | "GatherFiles" >> beam.CombineGlobally(
                beam.combiners.ToListCombineFn()).without_defaults()
            | "FinalizeWrite" >> beam.FlatMap(_finalize, sink, temp_dir))


class WriteParquetShards(beam.PTransform):
    """pyarrow Tables -> ``<prefix>-SSSSS-of-NNNNN.parquet`` shards of at most ``max_bytes``
    (plus one table) each, whatever the runner; the output is the written shard paths.
    ``in_process``: see :func:`write_files`."""

    def __init__(self, prefix: str, schema, max_bytes: int = MAX_SHARD_BYTES,
                 in_process: bool = False):
        super().__init__()
        self.sink = _BoundedParquetSink(prefix, schema, max_bytes)
        self.in_process = in_process

    def expand(self, tables):
        return write_files(tables, self.sink, self.in_process)


def write_text_lines(lines, prefix: str, suffix: str, in_process: bool = False):
    """Text lines -> ``<prefix>-SSSSS-of-NNNNN<suffix>`` files, as ``beam.io.WriteToText``
    writes them (its own sink); ``in_process``: see :func:`write_files`. Output: the paths."""
    from apache_beam.io.textio import _TextSink

    return write_files(lines, _TextSink(prefix, file_name_suffix=suffix), in_process)
