"""The HLS source: a node's ``hls/`` folders as continuous streams, in the Beam pipeline.

Stages, top to bottom:

1. :class:`ListFolders` (when the pipeline runs): the folders of each ``hls/`` root, by their
   unix-time names (:func:`list_folders`); ``hls.select_folders`` keeps those that can overlap
   ``--start`` / ``--end``.
2. :class:`PlanFolders`: per folder, its playlist and listing -> a :class:`FolderPlan` (every
   segment in order, with its UTC start), the present segments in range as ``MatchedFile`` s
   (they go through the manifest's plan like files), and a ``gap`` outcome per segment the
   playlist lists but the folder lacks.
3. :class:`FormSpans`: the segments some model must (re-)embed, cut into time ranges of about
   ``--span_s`` seconds (:class:`SpanWork`), each with the look-behind that settles the decoder,
   resampler and PCEN, and one look-ahead segment.
4. :class:`DecodeSpans`: each span decoded as one stream (one AAC decoder across segments),
   resampled once per model rate, cut into Pieces of full windows on the folder's own grid.

The grid: stream second 0 is the folder's first sample (the first readable segment's first
MPEG-TS time, placed at the playlist offset of that segment). Frame ``i`` of a model covers
``[i * hop, i * hop + window)`` on it, across segment joins. A window belongs to the segment its
last sample is in: that segment is its row's ``source``, and one segment's outcome counts its
rows. A span therefore emits exactly the frames that end in its own segments, and the rows of all
spans, of any size and of any re-run over a grown folder, are those of one pass over the folder.
A gap (missing or unreadable segment, MPEG-TS timestamp jump) ends a run of audio: no window
spans it, and audio after it keeps its true place. The rows cover every sample of a run between
gaps (:class:`~orca_beam.core.framing.RunChunker`): one window starts at the run's first sample,
and the last one before a gap is zero-padded to the run's end. At the end of the audio so far
the partial hop is left out (a later run embeds it once the folder has grown).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from orca_beam.core import s3
from orca_beam.core.audio import mono_block, resample_stream
from orca_beam.core.errors import UsageError
from orca_beam.core.framing import (
    Owner,
    Piece,
    Place,
    RunChunker,
    default_chunk_frames,
    default_warmup_units,
)
from orca_beam.core.hls import (
    PLAYLIST_NAME,
    PTS_GAP_TOLERANCE_S,
    Decoded,
    Segment,
    decode_segments,
    first_pts_s,
    folder_start,
    order_segments,
    parse_playlist,
    playlist_offsets,
    pts_difference_s,
    segment_starts,
    select_folders,
    unwrap_offset_s,
)
from orca_beam.core.listing import MatchedFile, matched_file
from orca_beam.core.prefetch import DECODE_NICENESS, prefetched
from orca_beam.core.registry import ModelSpec
from orca_beam.core.statuses import EMBEDDED, EMPTY, GAP, NO_TIME, NOT_IN_PLAYLIST, UNREADABLE
from orca_beam.progress import Progress
from orca_beam.records import Failure, FileRecord, Outcome, SourceState
from orca_beam.sources.base import Listed
from orca_beam.store.fingerprint import fingerprint
from orca_beam.tags import FAILURES_TAG, FILES_TAG, GAPS_TAG, NAMESPACE, SOURCES_TAG

LOG = logging.getLogger(__name__)
FOLDERS_TAG = "folders"
#: Seconds assumed for a segment whose duration the playlist does not give.
UNKNOWN_SEGMENT_S = 10.0
#: Seconds of audio after a decoder / resampler start before a window may begin (the resampler
#: settles within 0.1 s, measured; the AAC decoder within one 21 ms frame).
SETTLE_S = 0.2
#: Segments a span's fetching and decoding thread may run ahead of the model (two packed
#: calls' worth of audio, so it has slack while the model runs).
PREFETCH_SEGMENTS = 12
#: Bytes read from a segment to find its first MPEG-TS time (a few packets).
PTS_PROBE_BYTES = 64 * 1024


@dataclass(frozen=True)
class Slot:
    """One segment of a folder: the playlist's facts (``segment``), its path, its UTC start
    (seconds since the epoch) and how that was obtained, its playlist offset from the folder's
    first segment (s; None after a segment of unknown duration), size and modification time."""

    segment: Segment
    path: str
    start_utc_s: float | None
    time_source: str
    offset_s: float | None
    size_bytes: int = 0
    mtime_s: float | None = None

    @property
    def duration_s(self) -> float:
        """The playlist's duration, or UNKNOWN_SEGMENT_S when it gives none."""
        return self.segment.duration_s if self.segment.duration_s is not None \
            else UNKNOWN_SEGMENT_S


@dataclass(frozen=True)
class FolderPlan:
    """A folder: every segment in order (present or not), and where its stream's second 0 is:
    the MPEG-TS time ``origin_pts_s`` of the first readable segment, at playlist offset
    ``origin_offset_s`` (None: no segment could be read)."""

    folder: str
    slots: tuple[Slot, ...]
    origin_pts_s: float | None
    origin_offset_s: float


@dataclass(frozen=True)
class SpanWork:
    """A time range of one folder to decode: ``slots`` are the look-behind, the span's own
    segments ``slots[owned[0]:owned[1]]`` and at most one look-ahead. ``starts_run``: the first
    slot begins a run of audio (the folder's first segment). ``work``: path -> (fingerprint,
    how it was compared) of the owned segments; ``models``: what they are embedded with.
    ``gap_after``: the slot after the last one is missing from the folder (a gap, not the end
    of the audio so far)."""

    folder: str
    slots: tuple[Slot, ...]
    owned: tuple[int, int]
    starts_run: bool
    origin_pts_s: float
    origin_offset_s: float
    models: tuple[str, ...]
    work: dict
    gap_after: bool = False


def _iso(utc_s: float | None) -> str | None:
    return None if utc_s is None else datetime.fromtimestamp(utc_s, UTC).isoformat()


def list_folders(root: str, options=None) -> list[str]:
    """The folders directly under an ``hls/`` root (local, gs:// or s3://), as paths ending in
    ``/``, sorted. s3:// is listed with a delimiter (one request per 1,000 folders, not one per
    1,000 segments), with the s3 settings of the pipeline ``options``."""
    from apache_beam.io.filesystems import FileSystems

    root = root.rstrip("/") + "/"
    if root.startswith("s3://"):
        from orca_beam.core.s3 import list_prefixes

        return sorted(list_prefixes(root, options))
    if "://" not in root:
        import os

        if not os.path.isdir(root):
            raise ValueError(f"--input {root!r} is not a folder (an HLS root: <node>/hls/)")
        return sorted(root + name + "/" for name in os.listdir(root)
                      if os.path.isdir(os.path.join(root, name)))
    found = FileSystems.match([root + "*"])[0].metadata_list
    return sorted({root + meta.path[len(root):].split("/", 1)[0] + "/" for meta in found
                   if "/" in meta.path[len(root):]})


def folders_in_range(root: str, start: datetime, end: datetime, s3: dict | None = None
                     ) -> list[str]:
    """The folders under ``root`` that can overlap ``[start, end)`` (``hls.select_folders``),
    listed with the s3:// settings ``s3`` (``s3.s3_settings`` of the pipeline options)."""
    return select_folders(list_folders(root, s3), start, end)


class ListFolders(beam.PTransform):
    """HLS roots -> the folders that can overlap ``[start, end)``, listed when the pipeline runs
    (a Dataflow template run every night sees that night's folders)."""

    def __init__(self, start: datetime, end: datetime, s3: dict | None = None):
        super().__init__()
        self.start = start
        self.end = end
        self.s3 = s3

    def expand(self, roots):
        return roots | "ListAndChoose" >> beam.FlatMap(folders_in_range, self.start, self.end,
                                                        self.s3)


def plan_folder(folder: str, start: datetime, end: datetime
                ) -> tuple[FolderPlan, list[int]]:
    """Reads a folder's playlist and lists its segments: the FolderPlan, and the indices of the
    slots whose audio overlaps ``[start, end)`` (UTC). A folder without a playlist has every
    segment ``not_in_playlist``, timed from the folder's name where the order allows."""
    from apache_beam.io.filesystems import FileSystems

    folder = folder.rstrip("/") + "/"
    try:
        with FileSystems.open(folder + PLAYLIST_NAME) as handle:
            playlist = parse_playlist(handle.read().decode("utf-8", "replace"))
    except (OSError, ValueError) as exc:
        LOG.warning("%s: no readable %s (%s); every segment is read as not in the playlist",
                    folder, PLAYLIST_NAME, exc)
        playlist = []
    metas = {meta.path.rsplit("/", 1)[-1]: meta
             for meta in FileSystems.match([folder + "live*.ts"])[0].metadata_list}
    segments = order_segments(playlist, metas)
    slots = []
    for segment, (utc, source), offset in zip(
            segments, segment_starts(segments, folder_start(folder)),
            playlist_offsets(segments), strict=True):
        file = matched_file(metas[segment.name]) if segment.name in metas else None
        slots.append(Slot(segment, folder + segment.name,
                          None if utc is None else utc.timestamp(), source or NO_TIME, offset,
                          file.size_bytes if file else 0, file.mtime_s if file else None))
    selected, last_in = [], False
    for index, slot in enumerate(slots):
        if slot.start_utc_s is None:
            inside = last_in
        else:
            inside = (slot.start_utc_s < end.timestamp()
                      and slot.start_utc_s + slot.duration_s > start.timestamp())
        if inside:
            selected.append(index)
        last_in = inside
    origin_pts, origin_offset = None, 0.0
    for slot in slots:
        if not slot.segment.present:
            continue
        try:
            with FileSystems.open(slot.path) as handle:
                origin_pts = first_pts_s(handle.read(PTS_PROBE_BYTES))
        except OSError:
            origin_pts = None
        if origin_pts is not None:
            origin_offset = slot.offset_s or 0.0
            break
    return FolderPlan(folder, tuple(slots), origin_pts, origin_offset), selected


def gap_outcome(stream: str, source: str, start_utc_s: float | None, gap_s: float | None,
                cause: str, time_source: str, owner: str | None = None) -> Outcome:
    """The outcome row of one gap in a stream (status ``gap``, model ``""``). ``owner``: the
    segment whose manifest entry records it (default: ``source``)."""
    return Outcome(source, "", GAP, 0, None if gap_s is None else round(gap_s, 6), None, None,
                   error_class="Gap", error=cause, stream=stream, start_utc=_iso(start_utc_s),
                   time_source=time_source, owner=owner or source)


def gap_owner(plan: FolderPlan, index: int, selected: Sequence[int]) -> str | None:
    """The segment whose manifest entry records the gap of missing slot ``index``: the next
    present slot among ``selected`` (the slots in range), else the last present one before it;
    None when no selected slot is present (the gap is in no entry)."""
    present = [i for i in selected if plan.slots[i].segment.present]
    after = [i for i in present if i > index]
    before = [i for i in present if i < index]
    pick = after[0] if after else (before[-1] if before else None)
    return None if pick is None else plan.slots[pick].path


class _PlanFolderFn(beam.DoFn):
    def __init__(self, start: datetime, end: datetime):
        self.start = start
        self.end = end
        self.listed = Metrics.counter(NAMESPACE, "hls_segments_listed")

    def setup(self):
        s3.install()

    def process(self, folder: str):
        plan, selected = plan_folder(folder, self.start, self.end)
        self.listed.inc(len(selected))
        LOG.info("%s: %d segments, %d in range, stream origin %s", plan.folder, len(plan.slots),
                 len(selected), "unknown (no readable segment)" if plan.origin_pts_s is None
                 else f"at playlist offset {plan.origin_offset_s:.3f} s")
        yield beam.pvalue.TaggedOutput(FOLDERS_TAG, (plan.folder, plan))
        for index in selected:
            slot = plan.slots[index]
            if slot.segment.present:
                yield MatchedFile(slot.path, slot.size_bytes, slot.mtime_s)
            else:
                yield beam.pvalue.TaggedOutput(GAPS_TAG, gap_outcome(
                    plan.folder, slot.path, slot.start_utc_s, slot.segment.duration_s,
                    f"{slot.segment.name} is in {PLAYLIST_NAME} but missing from the folder",
                    slot.time_source, gap_owner(plan, index, selected)))


class PlanFolders(beam.PTransform):
    """Folder paths -> tagged outputs: main, ``MatchedFile`` per present segment in
    ``[start, end)``; ``folders``, (folder, FolderPlan); ``gaps``, an Outcome per listed segment
    missing from its folder (in range). ``spread``: reshuffle the folders over the workers
    (off for an in-process run, where it would only add a stage)."""

    def __init__(self, start: datetime, end: datetime, spread: bool = True):
        super().__init__()
        self.start = start
        self.end = end
        self.spread = spread

    def expand(self, folders):
        if self.spread:
            folders = folders | "SpreadFolders" >> beam.Reshuffle()
        return (folders
                | "ReadPlaylists" >> beam.ParDo(_PlanFolderFn(self.start, self.end))
                .with_outputs(FOLDERS_TAG, GAPS_TAG, main="segments"))


def settle_samples(spec: ModelSpec) -> int:
    """Samples (at the model's rate) after a decoder / resampler start before the model's first
    window may start: SETTLE_S plus the humpback PCEN warm-up."""
    return round(SETTLE_S * spec.sample_rate_hz) + default_warmup_units(spec) * \
        spec.unit_hop_samples


def look_behind_s(specs: Sequence[ModelSpec]) -> float:
    """Seconds of audio before a span's first frame that make its frames equal to those of one
    pass: the longest window plus the settling of :func:`settle_samples`."""
    return max((spec.window_samples + settle_samples(spec)) / spec.sample_rate_hz
               for spec in specs)


def form_spans(plan: FolderPlan, work: dict[str, tuple], span_s: float, behind_s: float
               ) -> Iterator[SpanWork]:
    """The spans of one folder: runs of consecutive segments to embed with the same models
    (``work``: path -> (models, fingerprint, compared)), cut every ``span_s`` seconds, each with
    look-behind segments covering ``behind_s`` and the next present segment as look-ahead.
    Missing segments inside a run do not cut it (the decoder handles the gap)."""
    if plan.origin_pts_s is None:
        return
    slots = plan.slots
    by_models: dict[tuple, list[int]] = {}
    for index, slot in enumerate(slots):
        if slot.path in work:
            by_models.setdefault(tuple(work[slot.path][0]), []).append(index)
    for models, indices in by_models.items():
        chosen = set(indices)
        runs: list[list[int]] = []
        for index in indices:
            previous = runs[-1][-1] if runs else None
            between = range(previous + 1, index) if previous is not None else range(0)
            if previous is not None and all(not slots[i].segment.present for i in between):
                runs[-1].extend([*between, index])
            else:
                runs.append([index])
        for run in runs:
            spans, current, length = [], [], 0.0
            for index in run:
                if current and length + slots[index].duration_s > span_s + 1e-9:
                    spans.append(current)
                    current, length = [], 0.0
                current.append(index)
                length += slots[index].duration_s
            spans.append(current)
            for members in spans:
                first, last = members[0], members[-1]
                behind, covered = first, 0.0
                while behind > 0 and covered < behind_s:
                    behind -= 1
                    covered += slots[behind].duration_s
                ahead = last + 1 if last + 1 < len(slots) and slots[last + 1].segment.present \
                    else last
                yield SpanWork(plan.folder, slots[behind:ahead + 1],
                               (first - behind, last - behind + 1), behind == 0,
                               plan.origin_pts_s, plan.origin_offset_s, models,
                               {slots[i].path: work[slots[i].path][1:] for i in members
                                if i in chosen},
                               ahead + 1 < len(slots) and not slots[ahead + 1].segment.present)


class _FormSpansFn(beam.DoFn):
    def __init__(self, span_s: float, behind_s: float):
        self.span_s = span_s
        self.behind_s = behind_s

    def process(self, keyed):
        _, grouped = keyed
        plans = list(grouped["plans"])
        if not plans:
            return
        work = {item.path: (item.models, item.fingerprint, item.compared)
                for item in grouped["work"]}
        yield from form_spans(plans[0], work, self.span_s, self.behind_s)


def _folder_of(path: str) -> str:
    return path.rsplit("/", 1)[0] + "/"


class FormSpans(beam.PTransform):
    """``{"plans": (folder, FolderPlan), "work": WorkItem}`` -> SpanWork per time range to
    decode (joined by folder: one folder's plan is small, and the join never holds more than
    one folder's segments). ``spread``: reshuffle the spans over the workers (off for an
    in-process run)."""

    def __init__(self, span_s: float, behind_s: float, spread: bool = True):
        super().__init__()
        self.span_s = span_s
        self.behind_s = behind_s
        self.spread = spread

    def expand(self, inputs):
        keyed = {"plans": inputs["plans"],
                 "work": inputs["work"] | "KeyByFolder" >> beam.Map(
                     lambda item: (_folder_of(item.path), item))}
        spans = (keyed | "JoinByFolder" >> beam.CoGroupByKey()
                 | "CutSpans" >> beam.ParDo(_FormSpansFn(self.span_s, self.behind_s)))
        return spans | "SpreadSpans" >> beam.Reshuffle() if self.spread else spans


@dataclass
class _Run:
    """One contiguous run of audio in a span, on the producer's side: where its next sample goes
    on the native grid, the samples of its first segment to skip (before the first sample every
    model rate divides), and its resamplers."""

    native_end: int
    skip: int
    resamplers: dict


@dataclass
class _Started:
    """A run starts at slot ``i``: its first sample on the native grid; ``true_start``: after a
    gap or at the folder's start (else after a decoder start in a span's look-behind)."""

    i: int
    rate: int
    native_start: int
    true_start: bool


@dataclass
class _Samples:
    """Slot ``i``'s audio in the current run: blocks per model rate; ``native_first``: its first
    (aligned) sample on the native grid; ``stream_s``: its first decoded sample's stream
    second."""

    i: int
    blocks: dict
    native_first: int
    stream_s: float


@dataclass
class _Ended:
    """The current run ends: the resamplers' last samples per rate; ``gap``: a gap follows
    (a missing or unreadable segment, a timestamp jump), not the end of the span's audio."""

    tails: dict
    gap: bool = True


@dataclass
class _Note:
    """What the decoder found about slot ``i``: ``kind`` is ``decoded`` (``value``: seconds,
    rate, channels, added up over a split segment), ``empty``, ``failed`` (error class,
    message) or ``gap`` (seconds, stream second where the audio resumes)."""

    i: int
    kind: str
    value: tuple = ()


class _DecodeSpanFn(beam.DoFn):
    """One span: a producer thread fetches, decodes (one AAC decoder), finds the runs of audio
    and resamples them (:meth:`_events`); this thread cuts the runs into pieces on the folder's
    grid, places them, and reports each owned segment."""

    def __init__(self, specs: Sequence[ModelSpec], chunk_s: float, channel: int | None,
                 progress_interval_s: float = 30.0):
        self.all_specs = list(specs)
        self.chunk_s = chunk_s
        self.channel = channel
        self.progress_interval_s = progress_interval_s
        self.segments = Metrics.counter(NAMESPACE, "hls_segments_decoded")
        self.unreadable = Metrics.counter(NAMESPACE, "hls_segments_unreadable")
        self.gaps = Metrics.counter(NAMESPACE, "hls_gaps")
        self.audio_ms = Metrics.counter(NAMESPACE, "audio_ms_decoded")

    def setup(self):
        s3.install()
        Progress.configure(self.progress_interval_s)

    # -- the producer (a background thread) ---------------------------------------------------
    def _events(self, span: SpanWork, specs: list[ModelSpec]):
        """Fetches and decodes the span's segments in order and yields _Note, _Started,
        _Samples and _Ended events: the runs of audio, resampled once per model rate."""
        from apache_beam.io.filesystems import FileSystems


        lo, hi = span.owned
        index_of = {slot.segment.name: i for i, slot in enumerate(span.slots)}
        rates = sorted({spec.sample_rate_hz for spec in specs})

        def fetched():
            for i, slot in enumerate(span.slots):
                if not slot.segment.present:
                    continue
                try:
                    with FileSystems.open(slot.path) as handle:
                        data = handle.read()
                except OSError as exc:
                    LOG.warning("could not read %s: %s", slot.path, exc)
                    self._read_errors[i] = ("ReadError", f"{type(exc).__name__}: {exc}")
                    data = b""
                if lo <= i < hi:
                    self._prints[i] = span.work.get(slot.path, ("", ""))[0] or fingerprint(
                        slot.path, data)
                yield slot.segment, data

        def ended(run, gap=True):
            if run is None:
                return None
            return _Ended({r: np.zeros(0, np.float32) if stream is None else
                           stream.resample_chunk(np.zeros(0, np.float32), last=True)
                           for r, stream in run.resamplers.items()}, gap)

        run: _Run | None = None
        broke, previous, decoded = span.starts_run, -1, {}
        for item in decode_segments(fetched()):
            i = index_of[item.segment.name]
            missing_before = any(not span.slots[k].segment.present
                                 for k in range(previous + 1, i))
            previous = i
            if missing_before:  # its gap row comes from the plan (PlanFolders)
                yield from filter(None, [ended(run)])
                run, broke = None, True
            if not isinstance(item, Decoded):
                yield from filter(None, [ended(run)])
                run, broke = None, True
                yield _Note(i, "failed", ("CorruptAudioError", item.error))
                continue
            if item.first_pts_s is None or not len(item.samples):
                yield _Note(i, "empty")
                continue
            rate, channels = item.rate_hz, item.samples.shape[1]
            if self.channel is not None and self.channel >= channels:
                yield _Note(i, "failed", ("ChannelOutOfRangeError",
                                          f"channel {self.channel} asked, segment has {channels}"))
                continue
            stream_s = self._stream_s(span, item.first_pts_s, i)
            gap = item.gap_before_s
            if gap not in (None, 0.0) and not missing_before:
                yield _Note(i, "gap", (gap, stream_s))
            elif run is not None and not broke and gap is not None:
                drift = round(stream_s * rate) - run.native_end
                if abs(drift) > PTS_GAP_TOLERANCE_S * rate:
                    LOG.warning("%s: MPEG-TS time is %d samples off the decoded count; a new "
                                "run starts there", span.slots[i].path, drift)
                    gap = drift / rate
            if run is None or broke or gap not in (None, 0.0):
                yield from filter(None, [ended(run)])
                step = int(np.lcm.reduce([rate // np.gcd(rate, r) for r in rates]))
                first = round(stream_s * rate)
                aligned = first + (-first) % step
                run = _Run(aligned, aligned - first, {r: resample_stream(rate, r) for r in rates})
                yield _Started(i, rate, aligned, broke or gap not in (None, 0.0))
                broke = False
            samples = mono_block(item.samples, self.channel)
            total = decoded.get(i, 0.0) + len(samples) / rate
            decoded[i] = total
            yield _Note(i, "decoded", (total, rate, channels))
            native_first = run.native_end
            samples, run.skip = samples[run.skip:], 0
            run.native_end += len(samples)
            yield _Samples(i, {r: samples if stream is None else stream.resample_chunk(samples)
                               for r, stream in run.resamplers.items()}, native_first, stream_s)
        yield from filter(None, [ended(run, gap=span.gap_after or any(
            not span.slots[k].segment.present for k in range(previous + 1, len(span.slots))))])

    @staticmethod
    def _stream_s(span: SpanWork, first_pts_s: float, i: int) -> float:
        """Stream seconds of a decoded piece's first sample, from its MPEG-TS time."""
        slot = span.slots[i]
        estimate = None if slot.offset_s is None else slot.offset_s - span.origin_offset_s
        return span.origin_offset_s + unwrap_offset_s(
            pts_difference_s(first_pts_s, span.origin_pts_s), estimate)

    # -- the consumer (this thread) -------------------------------------------------------------
    def process(self, span: SpanWork):

        self.span = span
        specs = [spec for spec in self.all_specs if spec.name in span.models]
        self.channel_index = -1 if self.channel is None else self.channel
        lo, hi = span.owned
        self.expected = {i: dict.fromkeys((s.name for s in specs), 0) for i in range(lo, hi)}
        self.positions: dict[int, float] = {}  # slot -> stream seconds of its first sample
        self._prints: dict[int, str] = {}
        self._read_errors: dict[int, tuple] = {}
        decoded: dict[int, tuple] = {}
        failed: dict[int, tuple] = {}
        chunkers: dict[str, RunChunker] = {}
        run_rate, bounds = 0, []  # owned segments' first samples (native grid) in this run
        # about three events per segment (decoded note, samples, a run's start or end)
        for event in prefetched(lambda: self._events(span, specs), 3 * PREFETCH_SEGMENTS,
                                niceness=DECODE_NICENESS):
            if isinstance(event, _Note):
                i, owned = event.i, lo <= event.i < hi
                if event.kind == "failed":
                    self.unreadable.inc()
                    if owned:
                        failed[i] = event.value
                elif event.kind == "gap" and owned:
                    self.gaps.inc()
                    gap, resumes_s = event.value
                    slot = span.slots[i]
                    yield beam.pvalue.TaggedOutput(GAPS_TAG, gap_outcome(
                        span.folder, slot.path, self._utc_at(i, resumes_s - gap, resumes_s),
                        gap, f"MPEG-TS timestamps jump by {gap:.3f} s before "
                        f"{slot.segment.name}", slot.time_source))
                elif event.kind == "decoded" and owned:
                    before = decoded.get(i, (0.0,))[0]
                    decoded[i] = event.value
                    self.audio_ms.inc(int(1000 * (event.value[0] - before)))
                    Progress.add(audio_s=event.value[0] - before)
                elif event.kind == "empty" and owned:
                    decoded.setdefault(i, (0.0, None, None))
                if event.kind in ("decoded", "empty"):
                    self.segments.inc()
            elif isinstance(event, _Started):
                run_rate, bounds = event.rate, []
                chunkers = {}
                for spec in specs:
                    origin = event.native_start * spec.sample_rate_hz // event.rate
                    settle = 0 if event.true_start else settle_samples(spec)
                    chunkers[spec.name] = RunChunker(
                        spec, span.folder, channel=self.channel_index,
                        chunk_frames=default_chunk_frames(spec, self.chunk_s), origin=origin,
                        valid_from=origin + settle, true_start=event.true_start)
            elif isinstance(event, _Samples):
                i = event.i
                self.positions.setdefault(i, event.stream_s)
                if lo <= i < hi:
                    bounds.append((event.native_first, i))
                for spec in specs:
                    at = -(-event.native_first * spec.sample_rate_hz // run_rate)
                    chunker = chunkers[spec.name]
                    if lo <= i < hi and chunker.owned_from is None:
                        chunker.own(owned_from=at)
                    elif i >= hi:
                        chunker.own(owned_to=at)
                    for piece in chunker.push(event.blocks[spec.sample_rate_hz]):
                        yield self._placed(spec, piece, run_rate, bounds)
            elif isinstance(event, _Ended):
                for spec in specs:
                    chunker = chunkers[spec.name]
                    pieces = [*chunker.push(event.tails[spec.sample_rate_hz]),
                              *chunker.finish(gap=event.gap)]
                    for piece in pieces:
                        yield self._placed(spec, piece, run_rate, bounds)
                chunkers = {}
        failed.update(self._read_errors)

        for i in range(lo, hi):
            slot = span.slots[i]
            if not slot.segment.present:
                continue
            fingerprint_, compared = self._prints.get(i, ""), span.work.get(
                slot.path, ("", ""))[1]
            yield beam.pvalue.TaggedOutput(SOURCES_TAG, SourceState(
                slot.path, slot.size_bytes, fingerprint_, span.models, slot.mtime_s,
                compared or "new"))
            record = dict(size_bytes=slot.size_bytes, fingerprint=fingerprint_,
                          models=span.models, stream=span.folder, start_utc=_iso(self._utc_of(i)),
                          time_source=self._time_source_of(i),
                          in_playlist=slot.segment.in_playlist)
            if i in failed or i not in decoded:
                error_class, error = failed.get(i, ("MissingRecord", "segment was never decoded"))
                yield beam.pvalue.TaggedOutput(FAILURES_TAG, Failure(
                    slot.path, "", "decode", error_class, error))
                yield beam.pvalue.TaggedOutput(FILES_TAG, FileRecord(
                    slot.path, None, None, None, self.channel_index, {}, **record))
                continue
            duration, rate, channels = decoded[i]
            Progress.add(files=1)
            yield beam.pvalue.TaggedOutput(FILES_TAG, FileRecord(
                slot.path, duration, rate, channels, self.channel_index, self.expected[i],
                **record))

    # -- time ---------------------------------------------------------------------------------
    def _utc_of(self, i: int) -> float | None:
        """UTC start of slot ``i``: the playlist's, else the nearest earlier timed slot's plus
        the stream time between them (a segment not in the playlist)."""
        slots = self.span.slots
        if slots[i].start_utc_s is not None:
            return slots[i].start_utc_s
        for k in range(i - 1, -1, -1):
            if slots[k].start_utc_s is not None and k in self.positions and i in self.positions:
                return slots[k].start_utc_s + self.positions[i] - self.positions[k]
        return None

    def _time_source_of(self, i: int) -> str:
        slots = self.span.slots
        if slots[i].start_utc_s is not None or self._utc_of(i) is None:
            return slots[i].time_source
        return next(slots[k].time_source for k in range(i - 1, -1, -1)
                    if slots[k].start_utc_s is not None)

    def _utc_at(self, i: int, stream_s: float, resumes_s: float) -> float | None:
        """UTC of stream second ``stream_s`` near slot ``i`` (its first sample is at its known
        position, else at ``resumes_s``, where the audio resumes after a jump before it)."""
        utc = self._utc_of(i)
        return None if utc is None else utc + stream_s - self.positions.get(i, resumes_s)

    def _placed(self, spec: ModelSpec, piece: Piece, rate: int, bounds: list):
        """The piece, tagged for its model, with its Place: each frame's owner is the segment
        its last real sample is in."""
        starts = np.array([-(-b * spec.sample_rate_hz // rate) for b, _ in bounds])
        frames = np.arange(piece.first_frame, piece.first_frame + piece.num_frames)
        last = piece.bounds_samples(spec)[1] - 1
        which = np.searchsorted(starts, last, "right") - 1
        owners = []
        for k in dict.fromkeys(which.tolist()):
            i = bounds[k][1]
            first = int(frames[np.argmax(which == k)])
            self.expected[i][spec.name] += int(np.sum(which == k))
            owners.append(Owner(first, self.span.slots[i].path, self.positions[i],
                                self._utc_of(i), self._time_source_of(i)))
        return beam.pvalue.TaggedOutput(
            spec.name, replace(piece, place=Place(self.span.folder, tuple(owners))))


class DecodeSpans(beam.PTransform):
    """SpanWork -> tagged outputs as ``transforms.DecodeAndFrame``'s, per owned segment:
    ``sources`` (SourceState), ``files`` (FileRecord with the segment's clock), ``failures``
    (unreadable segments); one PCollection of Pieces per model (windows owned by the span's
    segments, each Piece with its Place); and ``gaps`` (an Outcome per MPEG-TS timestamp jump
    before an owned segment)."""

    def __init__(self, specs: Sequence[ModelSpec], *, chunk_s: float = 60.0,
                 channel: int | None = None, progress_interval_s: float = 30.0):
        super().__init__()
        self.specs = list(specs)
        self.chunk_s = chunk_s
        self.channel = channel
        self.progress_interval_s = progress_interval_s

    def expand(self, spans):

        return spans | "DecodeSpans" >> beam.ParDo(
            _DecodeSpanFn(self.specs, self.chunk_s, self.channel,
                          self.progress_interval_s)).with_outputs(
                SOURCES_TAG, FILES_TAG, FAILURES_TAG, GAPS_TAG,
                *[spec.name for spec in self.specs])


@dataclass(frozen=True)
class HlsOutcomeRule:
    """HLS segments: a segment that cannot be read is ``unreadable``; none is too short (a short
    segment's audio is in the next segment's windows); a 0 s segment is ``empty``; one the
    playlist does not list is ``not_in_playlist``; else ``embedded``."""

    decode_failed: str = UNREADABLE

    def too_short(self, record: FileRecord, model: str) -> bool:
        """Never: a segment owns the windows that end in it, and may own none."""
        return False

    def embedded(self, record: FileRecord) -> str:
        """``empty``, ``embedded`` or ``not_in_playlist``."""
        if record.duration_s == 0:
            return EMPTY
        return EMBEDDED if record.in_playlist else NOT_IN_PLAYLIST


class HlsSource:
    """HLS folders (``<node>/hls/<unix s>/``) as continuous streams, as a Source: the folders
    under each root that overlap ``[start, end)`` are listed when the pipeline runs and planned
    from their playlists; the plan's segments are decoded as time ranges of ``span_s`` seconds
    of one folder; each gap is one more outcome row. Entries outside the range are carried, not
    deleted (``keep_unmatched``)."""

    keep_unmatched = True
    rule = HlsOutcomeRule()

    def __init__(self, roots: Sequence[str], specs: Sequence[ModelSpec], *, start: datetime,
                 end: datetime, span_s: float, chunk_s: float, channel: int | None,
                 s3_options: dict | None = None, progress_interval_s: float = 30.0,
                 at_run_time: bool = False, spread: bool = True):
        self.roots = list(roots)
        self.specs = list(specs)
        self.start, self.end, self.span_s = start, end, span_s
        self.chunk_s = chunk_s
        self.channel = channel
        self.s3_options = s3_options or {}
        self.progress_interval_s = progress_interval_s
        self.at_run_time = at_run_time
        self.spread = spread

    def check(self) -> None:
        """Raises UsageError when no root has a folder that can overlap the range (one
        delimiter listing per root, in the launcher); skipped for a template
        (``at_run_time``), which lists its folders when it runs."""
        if self.at_run_time:
            return
        found = 0
        for root in self.roots:
            chosen = folders_in_range(root, self.start, self.end, self.s3_options)
            LOG.info("%s: %d folders can overlap %s .. %s", root, len(chosen),
                     self.start.isoformat(), self.end.isoformat())
            found += len(chosen)
        if not found:
            raise UsageError(f"no HLS folder under {self.roots} can overlap "
                             f"{self.start.isoformat()} .. {self.end.isoformat()} (folders are "
                             "named by their unix start time: <node>/hls/<seconds>/)")

    def list(self, pipeline: beam.Pipeline) -> Listed:
        """Adds the folder listing and plans: segments in range, folder plans, listing gaps."""
        listed = (pipeline | "HlsRoots" >> beam.Create(self.roots)
                  | "ListFolders" >> ListFolders(self.start, self.end, self.s3_options)
                  | "PlanFolders" >> PlanFolders(self.start, self.end, self.spread))
        return Listed(listed.segments, {FOLDERS_TAG: listed[FOLDERS_TAG],
                                        GAPS_TAG: listed[GAPS_TAG]})

    def decode(self, work, listed: Listed) -> dict:
        """Adds the spans of the work's folders and their stream decoding."""
        spans = ({"plans": listed.extra[FOLDERS_TAG], "work": work}
                 | "FormSpans" >> FormSpans(self.span_s, look_behind_s(self.specs),
                                           self.spread))
        decoded = spans | "DecodeStreams" >> DecodeSpans(
            self.specs, chunk_s=self.chunk_s, channel=self.channel,
            progress_interval_s=self.progress_interval_s)
        tags = [FILES_TAG, FAILURES_TAG, SOURCES_TAG, *(spec.name for spec in self.specs)]
        return {**{tag: decoded[tag] for tag in tags},
                GAPS_TAG: [listed.extra[GAPS_TAG], decoded[GAPS_TAG]]}
