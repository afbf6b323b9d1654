"""Sample grids and exact chunking per model.

A model's embeddings lie on a grid (see :class:`~orca_beam.core.registry.ModelSpec`): embedding
``i`` covers samples ``[i * hop_samples, i * hop_samples + window_samples)`` of the file at the
model's rate. :func:`num_frames` gives how many embeddings one call on the whole file yields, and
:class:`Chunker` cuts a stream of samples into bounded :class:`Piece` s whose embeddings are exactly
those of the whole-file call (same count, same timestamps, same values for VGGish/YAMNet; for the
humpback PCEN, whose smoothing state runs over the file, each piece is preceded by
``warmup_units`` front-end frames of real audio so the state has converged).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from orca_beam.core.registry import ModelSpec

#: Humpback PCEN warm-up, in front-end frames (15.36 s). The smoothing weight of a frame that far
#: back is 0.975**512 = 2.3e-6, so a chunked PCEN agrees with the whole-file PCEN to ~1e-6.
HUMPBACK_WARMUP_UNITS = 512


def num_units(spec: ModelSpec, num_samples: int) -> int:
    """Grid units in ``num_samples`` samples (samples for VGGish/YAMNet, STFT frames for humpback)."""
    if num_samples < spec.unit_window_samples:
        return 0
    return 1 + (num_samples - spec.unit_window_samples) // spec.unit_hop_samples


def num_frames(spec: ModelSpec, num_samples: int) -> int:
    """Embeddings one call of the model on ``num_samples`` samples yields.

    VGGish: ``max(0, floor((N - 15600) / 15360) + 1)``. YAMNet: ``1 + ceil(max(0, N - 15600) /
    7680)`` for N >= 1. Humpback (notebook framing): F = ``1 + floor((N - 1024) / 300)`` PCEN
    frames, then ``1 + ceil(max(0, F - 128) / hop)`` zero-padded windows. BirdNET
    (BirdNET-Analyzer's segments, ``birdnet`` 1.1): ``ceil(N / hop)`` windows, one starting at
    every hop before the end, each zero-filled to 144000 samples; any clip of N >= 1 gives one.
    """
    units = num_units(spec, num_samples)
    if units == 0:
        return 0
    if spec.tail == "drop":
        return max(0, (units - spec.window_units) // spec.hop_units + 1)
    if spec.tail == "every_start":
        return math.ceil(units / spec.hop_units)
    return 1 + math.ceil(max(0, units - spec.window_units) / spec.hop_units)


def frame_bounds_samples(spec: ModelSpec, first_frame: int, count: int,
                         file_samples: int | None = None, shift_samples: int = 0
                         ) -> tuple[np.ndarray, np.ndarray]:
    """First sample and one past the last real sample (model-rate samples, int64) of embeddings
    ``first_frame .. first_frame + count - 1``: frame ``i`` starts at ``i * hop + shift_samples``
    and spans ``window_samples``, its end clipped to ``file_samples`` when given (a zero-padded
    window never ends past the audio)."""
    index = np.arange(first_frame, first_frame + count, dtype=np.int64)
    start = index * spec.hop_samples + shift_samples
    end = start + spec.window_samples
    if file_samples is not None:
        end = np.minimum(end, file_samples)
    return start, end


def frame_times_s(spec: ModelSpec, first_frame: int, count: int,
                  file_samples: int | None = None, shift_samples: int = 0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (seconds) of embeddings ``first_frame .. first_frame + count - 1``: the
    bounds of :func:`frame_bounds_samples` divided by the model's rate."""
    start, end = frame_bounds_samples(spec, first_frame, count, file_samples, shift_samples)
    rate = float(spec.sample_rate_hz)
    return start / rate, end / rate


@dataclass
class Piece:
    """A bounded slice of one file at one model's rate, and the embeddings it must yield.

    ``samples`` starts at sample ``offset_samples`` of the file. The piece yields embeddings
    ``first_frame .. first_frame + num_frames - 1`` of the whole-file grid. For humpback the first
    ``warmup_units`` front-end frames of the piece are warm-up only. ``file_samples`` is the file's
    total length at this rate when known (always on the last piece; in a stream, the end of the
    run of audio when the piece's window is zero-padded). ``tag`` is carried through
    inference untouched (segments mode: the segment and its window). ``shift_samples``: the
    piece's frames start that many samples after their grid position (a stream's window at the
    first sample after a gap, which lies between two grid frames).
    """

    source: str
    model: str
    channel: int
    first_frame: int
    num_frames: int
    offset_samples: int
    warmup_units: int
    samples: np.ndarray = field(repr=False)
    file_samples: int | None = None
    is_last: bool = False
    tag: object = None
    #: where the piece's rows belong and when they were recorded (None: plain file, no clock)
    place: Place | None = None
    shift_samples: int = 0

    def bounds_samples(self, spec: ModelSpec) -> tuple[np.ndarray, np.ndarray]:
        """:func:`frame_bounds_samples` of the piece's frames."""
        return frame_bounds_samples(spec, self.first_frame, self.num_frames, self.file_samples,
                                    self.shift_samples)


@dataclass(frozen=True)
class Owner:
    """A source that owns the frames from ``first_frame`` on (until the next owner's): the file
    or segment ``source``; ``start_s``: its first sample in the stream's seconds; ``start_utc_s``:
    the UTC time of that sample (seconds since the epoch; None when unknown); ``time_source``:
    how that time was obtained (``program_date_time``, ``folder_plus_durations``, ``file_name``
    or ``none``)."""

    first_frame: int
    source: str
    start_s: float
    start_utc_s: float | None
    time_source: str


@dataclass(frozen=True)
class Place:
    """Where a piece's rows belong: the ``stream`` (an HLS folder; None for a file) and the
    owners of its frames, in frame order (a stream window belongs to the segment its last sample
    is in)."""

    stream: str | None
    owners: tuple[Owner, ...]

    def row_owners(self, first_frame: int, count: int) -> list[Owner]:
        """The owner of each of frames ``first_frame .. first_frame + count - 1``."""
        starts = [owner.first_frame for owner in self.owners]
        index = np.searchsorted(starts, np.arange(first_frame, first_frame + count), "right") - 1
        return [self.owners[max(0, int(i))] for i in index]

    @staticmethod
    def row_times_utc_s(owners: list[Owner], start_s: np.ndarray) -> np.ndarray:
        """UTC start (seconds since the epoch; NaN when unknown) of each row, given its owner
        (:meth:`row_owners`) and its stream start ``start_s``: the owner's UTC time plus the
        offset from the owner's first sample."""
        return np.array([np.nan if o.start_utc_s is None else o.start_utc_s + (s - o.start_s)
                         for o, s in zip(owners, start_s, strict=True)], np.float64)


def default_warmup_units(spec: ModelSpec) -> int:
    """Front-end units of real audio before a piece's first window: HUMPBACK_WARMUP_UNITS for
    a PCEN front end (its smoothing state runs over the stream), else 0."""
    return HUMPBACK_WARMUP_UNITS if spec.front_end.compression == "pcen" else 0


def default_chunk_frames(spec: ModelSpec, chunk_s: float) -> int:
    """Embeddings per piece so that one piece holds about ``chunk_s`` seconds of audio."""
    return max(1, int(round(chunk_s / spec.hop_s)))


class Chunker:
    """Cuts a stream of samples (one file, one model rate) into Pieces on the model's grid.

    Feed blocks with :meth:`push` (any sizes), then call :meth:`finish` with nothing; both yield
    Pieces. Memory holds at most one piece of samples plus one block.
    """

    def __init__(self, spec: ModelSpec, source: str, *, channel: int, chunk_frames: int,
                 warmup_units: int | None = None):
        if chunk_frames < 1:
            raise ValueError("chunk_frames must be >= 1")
        self.spec = spec
        self.source = source
        self.channel = channel
        self.chunk_frames = chunk_frames
        self.warmup_units = default_warmup_units(spec) if warmup_units is None else warmup_units
        self._buffer: list[np.ndarray] = []
        self._buffer_start = 0  # file sample index of the buffer's first sample
        self._buffer_len = 0
        self._next_frame = 0
        self._total = 0  # samples seen so far

    def _piece_start(self, frame: int) -> tuple[int, int]:
        """(first sample, warm-up units) of a piece whose first embedding is ``frame``."""
        first_unit = frame * self.spec.hop_units
        warm = min(self.warmup_units, first_unit)
        return (first_unit - warm) * self.spec.unit_hop_samples, warm

    def _frame_end_sample(self, frame: int) -> int:
        return frame * self.spec.hop_samples + self.spec.window_samples

    def _take(self, start: int, stop: int) -> np.ndarray:
        joined = np.concatenate(self._buffer) if len(self._buffer) != 1 else self._buffer[0]
        self._buffer = [joined]
        return joined[start - self._buffer_start: stop - self._buffer_start].copy()

    def _drop_before(self, sample: int) -> None:
        if sample <= self._buffer_start:
            return
        joined = np.concatenate(self._buffer) if len(self._buffer) != 1 else self._buffer[0]
        cut = min(sample - self._buffer_start, len(joined))
        joined = joined[cut:]
        self._buffer = [joined] if len(joined) else []
        self._buffer_start += cut
        self._buffer_len = len(joined)

    def push(self, block: np.ndarray) -> Iterator[Piece]:
        """Adds samples; yields every full piece that is now complete."""
        if len(block):
            self._buffer.append(np.asarray(block, dtype=np.float32))
            self._buffer_len += len(block)
            self._total += len(block)
        while True:
            last_frame = self._next_frame + self.chunk_frames - 1
            need = self._frame_end_sample(last_frame)
            if need > self._total:
                return
            start, warm = self._piece_start(self._next_frame)
            yield Piece(self.source, self.spec.name, self.channel, self._next_frame,
                        self.chunk_frames, start, warm, self._take(start, need))
            self._next_frame += self.chunk_frames
            self._drop_before(self._piece_start(self._next_frame)[0])

    def finish(self) -> Iterator[Piece]:
        """Yields the last piece (the remaining embeddings, tail handled as the model does)."""
        total_frames = num_frames(self.spec, self._total)
        remaining = total_frames - self._next_frame
        if remaining > 0:
            start, warm = self._piece_start(self._next_frame)
            yield Piece(self.source, self.spec.name, self.channel, self._next_frame, remaining,
                        start, warm, self._take(start, self._total), self._total, True)
        self._buffer = []

    @property
    def total_samples(self) -> int:
        """Samples pushed so far (the file's length once the stream has ended)."""
        return self._total


class RunChunker:
    """Cuts one contiguous run of a stream (one model rate) into Pieces on the stream's own
    grid: frame ``i`` covers grid samples ``[i * hop, i * hop + window)`` counted from the
    stream's sample 0, whichever sample the run starts at.

    ``origin``: grid index of the first sample pushed. ``valid_from``: no frame starts before
    this sample (the audio before it only settles the decoder, resampler and PCEN). Frames are
    emitted only once *owned*: their last real sample lies in ``[owned_from, owned_to)`` (set
    with :meth:`own`; a span of an HLS folder owns the frames that end in its segments).

    The edges of a run, so that its rows cover every sample of it:

    - ``true_start`` (the run begins after a gap, or is the stream's first audio) with an
      ``origin`` between two grid frames: one extra window starts at ``origin`` itself (a Piece
      of one frame, numbered ``origin // hop``, with ``shift_samples = origin % hop``), so the
      first row starts at the first sample after the gap.
    - :meth:`finish` with ``gap=True`` (a gap follows): when the last full window ends before
      the run does, one more grid window starts at the next hop, zero-padded past the run's end
      (``file_samples`` = the run's end, so its row ends there). At the end of the audio so far
      (``gap=False``) the partial hop is left out: a later run over the grown stream embeds it.

    Memory holds at most one piece of samples plus one block (and the look-behind before
    ownership starts).
    """

    def __init__(self, spec: ModelSpec, source: str, *, channel: int, chunk_frames: int,
                 origin: int, valid_from: int, warmup_units: int | None = None,
                 true_start: bool = False):
        if chunk_frames < 1:
            raise ValueError("chunk_frames must be >= 1")
        self.spec = spec
        self.source = source
        self.channel = channel
        self.chunk_frames = chunk_frames
        self.warmup_units = default_warmup_units(spec) if warmup_units is None else warmup_units
        self._next_frame = -(-max(valid_from, origin) // spec.hop_samples)
        self.owned_from: int | None = None
        self.owned_to: int | None = None
        self._buffer = np.zeros(0, np.float32)
        self._buffer_start = origin
        self._end = origin  # grid index one past the last sample pushed
        self._origin = origin
        #: the window at the run's first sample, until it is complete (or the run ends)
        self._start_pending = true_start and origin % spec.hop_samples != 0
        self._start_end = origin + spec.window_samples if self._start_pending else origin

    def own(self, owned_from: int | None = None, owned_to: int | None = None) -> None:
        """Sets the bounds (grid samples) of the frame ends this chunker emits."""
        if owned_from is not None:
            self.owned_from = owned_from
            first = -(-(owned_from - self.spec.window_samples + 1) // self.spec.hop_samples)
            self._next_frame = max(self._next_frame, first)
        if owned_to is not None:
            self.owned_to = owned_to

    def _owns(self, last_sample: int) -> bool:
        return self.owned_from is not None and self.owned_from <= last_sample and (
            self.owned_to is None or last_sample < self.owned_to)

    def _last_sample(self, frame: int) -> int:
        return frame * self.spec.hop_samples + self.spec.window_samples - 1

    def _ready(self) -> int:
        """Frames from ``_next_frame`` on that are owned and complete."""
        if self.owned_from is None:
            return 0
        limit = self._end if self.owned_to is None else min(self._end, self.owned_to)
        last = (limit - self.spec.window_samples) // self.spec.hop_samples  # last frame ending < limit
        return max(0, last - self._next_frame + 1)

    def _piece(self, count: int, stop: int | None = None) -> Piece:
        """The next ``count`` frames; ``stop``: the run's end when the last one is zero-padded."""
        spec = self.spec
        first_unit = self._next_frame * spec.hop_units
        warm = min(self.warmup_units,
                   (first_unit * spec.unit_hop_samples - self._buffer_start) // spec.unit_hop_samples)
        start = (first_unit - warm) * spec.unit_hop_samples
        end = self._last_sample(self._next_frame + count - 1) + 1 if stop is None else stop
        samples = self._buffer[start - self._buffer_start: end - self._buffer_start].copy()
        piece = Piece(self.source, spec.name, self.channel, self._next_frame, count, start, warm,
                      samples, file_samples=stop)
        self._next_frame += count
        return piece

    def _start_window(self, at_end: bool) -> Iterator[Piece]:
        """The window at the run's first sample, once complete (or at the run's end, when the
        run is shorter than a window), if this chunker owns its last real sample."""
        window = self.spec.window_samples
        if not self._start_pending or (self._end < self._origin + window and not at_end):
            return
        self._start_pending = False
        stop = min(self._origin + window, self._end)
        if stop <= self._origin or not self._owns(stop - 1):
            return
        frame, shift = divmod(self._origin, self.spec.hop_samples)
        yield Piece(self.source, self.spec.name, self.channel, frame, 1, self._origin, 0,
                    self._buffer[self._origin - self._buffer_start:
                                 stop - self._buffer_start].copy(),
                    file_samples=None if stop == self._origin + window else stop,
                    shift_samples=shift)

    def _trim(self) -> None:
        if self.owned_from is None:
            keep_from = self._end - self.spec.window_samples - (
                self.warmup_units * self.spec.unit_hop_samples)
        else:
            keep_from = (self._next_frame * self.spec.hop_units - self.warmup_units) \
                * self.spec.unit_hop_samples
        if self._start_pending:
            keep_from = min(keep_from, self._origin)
        cut = min(max(0, keep_from - self._buffer_start), len(self._buffer))
        if cut:
            self._buffer = self._buffer[cut:]
            self._buffer_start += cut

    def push(self, block: np.ndarray) -> Iterator[Piece]:
        """Adds the run's next samples; yields every full piece of owned frames now complete."""
        if len(block):
            self._buffer = np.concatenate([self._buffer, np.asarray(block, np.float32)])
            self._end += len(block)
        yield from self._start_window(at_end=False)
        while self._ready() >= self.chunk_frames:
            yield self._piece(self.chunk_frames)
        self._trim()

    def finish(self, gap: bool = False) -> Iterator[Piece]:
        """Yields the owned frames not yet emitted (the run has ended); with ``gap`` (a gap
        follows, not the end of the audio so far) also the zero-padded window that covers the
        run's last partial hop."""
        yield from self._start_window(at_end=True)
        count = self._ready()
        if count:
            yield self._piece(count)
        spec = self.spec
        last_full = (self._end - spec.window_samples) // spec.hop_samples
        covered = max(last_full * spec.hop_samples + spec.window_samples, self._start_end)
        padded = last_full + 1
        if (gap and covered < self._end and padded >= self._next_frame
                and padded * spec.hop_samples < self._end and self._owns(self._end - 1)):
            yield self._piece(1, stop=self._end)
        self._buffer = np.zeros(0, np.float32)
