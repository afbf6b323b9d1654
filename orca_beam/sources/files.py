"""Plain files as an input source: glob patterns listed (``MatchFiles``), each file read once,
fingerprinted, decoded and resampled in bounded blocks and cut into pieces per model
(``DecodeAndFrame``). Decoding and framing are one DoFn on purpose: splitting them across a
Beam boundary would need a per-file GroupByKey holding the whole file in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from orca_beam.core import s3
from orca_beam.core.audio import DECODE_BLOCK_S, AudioError, iter_resampled_blocks, validate_audio
from orca_beam.core.errors import UsageError
from orca_beam.core.file_times import FILE_NAME, FileTimeError, file_start_utc
from orca_beam.core.framing import (
    Chunker,
    Owner,
    Place,
    default_chunk_frames,
    num_frames,
)
from orca_beam.core.listing import MatchedFile, matched_file
from orca_beam.core.prefetch import DECODE_NICENESS, prefetched
from orca_beam.core.registry import ModelSpec
from orca_beam.progress import Progress
from orca_beam.records import Failure, FileRecord, SourceState
from orca_beam.sources.base import FileOutcomeRule, Listed
from orca_beam.store.fingerprint import COMPARED_NEW, fingerprint
from orca_beam.tags import FAILURES_TAG, FILES_TAG, GAPS_TAG, NAMESPACE, SOURCES_TAG

LOG = logging.getLogger(__name__)


def _first(items):
    return next(iter(items))


def _to_matched(meta) -> MatchedFile:
    return matched_file(meta)


class MatchFiles(beam.PTransform):
    """Glob patterns (local, gs:// or s3://) -> one MatchedFile per distinct matched path (listing
    only: no file is opened)."""

    def __init__(self, patterns: Sequence[str]):
        super().__init__()
        self.patterns = list(patterns)

    def expand(self, pbegin):
        matched = (pbegin
                   | "ListPatterns" >> beam.Create(self.patterns)
                   | "MatchPatterns" >> fileio.MatchAll())
        if len(self.patterns) > 1:  # one glob never matches a path twice: no shuffle for it
            matched = (matched | "KeyByPath" >> beam.Map(lambda meta: (meta.path, meta))
                       | "KeepOnePerPath" >> beam.CombinePerKey(_first)
                       | "OnePerPath" >> beam.Values())
        return matched | "ToMatchedFile" >> beam.Map(_to_matched)


#: Files up to this size are read into memory once; larger ones are streamed (a codec that can
#: fail part-way is read twice: validate, then decode), so memory never holds a whole recording.
IN_MEMORY_MAX_BYTES = 256 * 1024 * 1024


#: Decoded blocks (``audio.DECODE_BLOCK_S`` each) a long file's decoder may run ahead of the
#: model: more than one packed call's worth (60 s), so decoding overlaps the call.
PREFETCH_BLOCKS = 8


class _DecodeAndFrameFn(beam.DoFn):
    def __init__(self, specs: Sequence[ModelSpec], chunk_s: float, channel: int | None,
                 file_time: tuple[str, str] | None = None, progress_interval_s: float = 30.0):
        self.all_specs = list(specs)
        self.chunk_s = chunk_s
        self.channel = channel
        self.file_time = file_time
        self.progress_interval_s = progress_interval_s
        self.files = Metrics.counter(NAMESPACE, "files_decoded")
        self.failed = Metrics.counter(NAMESPACE, "files_failed_decoding")
        self.audio_ms = Metrics.counter(NAMESPACE, "audio_ms_decoded")

    def setup(self):
        s3.install()
        Progress.configure(self.progress_interval_s)

    def process(self, item):
        path, size = item.path, item.size_bytes
        wanted = getattr(item, "models", None)
        specs = [spec for spec in self.all_specs if not wanted or spec.name in wanted]
        try:
            if size <= IN_MEMORY_MAX_BYTES:
                with FileSystems.open(path) as handle:
                    data = handle.read()
            else:
                data = None
            print_ = getattr(item, "fingerprint", "") or fingerprint(path, data)
        except Exception:  # noqa: BLE001 - unreadable: decoding below records the failure
            LOG.exception("could not read %s", path)
            data, print_ = None, ""
        models = tuple(spec.name for spec in specs)
        yield beam.pvalue.TaggedOutput(SOURCES_TAG, SourceState(
            path, size, print_, models, getattr(item, "mtime_s", None),
            getattr(item, "compared", "") or COMPARED_NEW))
        record = dict(size_bytes=size, fingerprint=print_, models=models)
        try:
            if data is not None:
                def open_source():
                    return data
            else:
                def open_source():
                    return FileSystems.open(path)
            place, clock = None, {}
            if self.file_time:
                started = file_start_utc(path, *self.file_time)
                place = Place(None, (Owner(0, path, 0.0, started.timestamp(), FILE_NAME),))
                clock = dict(start_utc=started.isoformat(), time_source=FILE_NAME)
            info = validate_audio(open_source(), channel=self.channel, name=path)
            chunkers = {spec.name: Chunker(
                spec, path, channel=-1 if self.channel is None else self.channel,
                chunk_frames=default_chunk_frames(spec, self.chunk_s)) for spec in specs}
            rates = {spec.sample_rate_hz for spec in specs}
            first_rate = min(rates)
            # a long file is decoded in a low-priority background thread while this one runs
            # the model on its earlier blocks (a short one here: a thread would cost more)
            depth = PREFETCH_BLOCKS if info.duration_s > 2 * DECODE_BLOCK_S else 0
            for blocks in prefetched(lambda: iter_resampled_blocks(
                    open_source(), rates, channel=self.channel, name=path), depth,
                    niceness=DECODE_NICENESS):
                Progress.add(audio_s=len(blocks[first_rate]) / first_rate)
                for spec in specs:
                    for piece in chunkers[spec.name].push(blocks[spec.sample_rate_hz]):
                        piece.place = place
                        yield beam.pvalue.TaggedOutput(spec.name, piece)
            for spec in specs:
                for piece in chunkers[spec.name].finish():
                    piece.place = place
                    yield beam.pvalue.TaggedOutput(spec.name, piece)
        except Exception as exc:  # noqa: BLE001 - one bad file never stops the run: a Failure row
            if not isinstance(exc, AudioError | FileTimeError):
                LOG.exception("unexpected error decoding %s", path)
            self.failed.inc()
            Progress.add(failed=1)
            yield beam.pvalue.TaggedOutput(FAILURES_TAG, Failure(
                path, "", "decode", type(exc).__name__, getattr(exc, "detail", str(exc))))
            yield beam.pvalue.TaggedOutput(FILES_TAG, FileRecord(
                path, None, None, None, -1 if self.channel is None else self.channel, {},
                **record))
            return
        expected = {spec.name: num_frames(spec, chunkers[spec.name].total_samples)
                    for spec in specs}
        self.files.inc()
        self.audio_ms.inc(int(info.duration_s * 1000))
        Progress.add(files=1)
        yield beam.pvalue.TaggedOutput(FILES_TAG, FileRecord(
            path, info.duration_s, info.sample_rate_hz, info.channels,
            -1 if self.channel is None else self.channel, expected, **record, **clock))


class DecodeAndFrame(beam.PTransform):
    """Files to decode (``incremental.WorkItem``: path, size, the models to embed it with;
    or ``MatchedFile``: every model) -> tagged outputs: one PCollection of Pieces per model
    name, ``files`` (FileRecord per file), ``failures`` (Failure per file that could not be
    decoded) and ``sources`` (SourceState per file: size, fingerprint, mtime, models).

    ``file_time``: (``strptime`` format, zone) of the recording time in the file names
    (``--file_time_format`` / ``--file_time_zone``): rows then carry ``start_utc``; a name that
    does not match fails the file (FileTimeError). Each file is read once (files over
    ``IN_MEMORY_MAX_BYTES`` are streamed), fingerprinted
    from those bytes when the plan did not already, decoded once and resampled once per
    distinct model rate, in bounded blocks.
    """

    def __init__(self, specs: Sequence[ModelSpec], *, chunk_s: float = 60.0,
                 channel: int | None = None, file_time: tuple[str, str] | None = None,
                 progress_interval_s: float = 30.0):
        super().__init__()
        self.specs = list(specs)
        self.chunk_s = chunk_s
        self.channel = channel
        self.file_time = file_time
        self.progress_interval_s = progress_interval_s

    def expand(self, files):
        return files | "DecodeResampleCut" >> beam.ParDo(
            _DecodeAndFrameFn(self.specs, self.chunk_s, self.channel, self.file_time,
                              self.progress_interval_s)).with_outputs(
                SOURCES_TAG, FILES_TAG, FAILURES_TAG, *[spec.name for spec in self.specs])


class FileSource:
    """Plain files (local, gs://, s3://) as a Source: glob patterns listed by ``MatchFiles``,
    the plan's work decoded by ``DecodeAndFrame``; outcomes by :class:`FileOutcomeRule`.
    ``file_clock``: (``strptime`` format, IANA zone) of recording times in the file names."""

    keep_unmatched = False
    rule = FileOutcomeRule()

    def __init__(self, patterns: Sequence[str], specs: Sequence[ModelSpec], *, chunk_s: float,
                 channel: int | None, file_clock: tuple[str, str] | None = None,
                 progress_interval_s: float = 30.0):
        self.patterns = list(patterns)
        self.specs = list(specs)
        self.chunk_s = chunk_s
        self.channel = channel
        self.file_clock = file_clock
        self.progress_interval_s = progress_interval_s

    def check(self) -> None:
        """Raises UsageError naming any pattern that matches no file (one match asked of each:
        the listing itself is the pipeline's first stage)."""
        for pattern, result in zip(self.patterns, FileSystems.match(
                self.patterns, limits=[1] * len(self.patterns)), strict=True):
            if not result.metadata_list:
                raise UsageError(f"--input {pattern!r} matched no files")

    def list(self, pipeline: beam.Pipeline) -> Listed:
        """Adds ``MatchFiles`` over the patterns."""
        return Listed(pipeline | "MatchFiles" >> MatchFiles(self.patterns), {})

    def decode(self, work, listed: Listed) -> dict:
        """Adds ``DecodeAndFrame`` over the plan's work items; no stream gaps."""
        decoded = work | "DecodeAndFrame" >> DecodeAndFrame(
            self.specs, chunk_s=self.chunk_s, channel=self.channel, file_time=self.file_clock,
            progress_interval_s=self.progress_interval_s)
        tags = [FILES_TAG, FAILURES_TAG, SOURCES_TAG, *(spec.name for spec in self.specs)]
        return {**{tag: decoded[tag] for tag in tags}, GAPS_TAG: []}
