"""Sample grids and exact chunking per model.

A model's embeddings lie on a grid (see :class:`~orca_beam.models.registry.ModelSpec`): embedding
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

from orca_beam.models.registry import ModelSpec

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


def frame_times_s(spec: ModelSpec, first_frame: int, count: int,
                  file_samples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (seconds) of embeddings ``first_frame .. first_frame + count - 1``.

    The end is the window's real span (``window_samples``), clipped to the file's length
    ``file_samples`` (model-rate samples) when given, so padded tails never end past the audio.
    """
    index = np.arange(first_frame, first_frame + count, dtype=np.int64)
    start = index * spec.hop_samples
    end = start + spec.window_samples
    if file_samples is not None:
        end = np.minimum(end, file_samples)
    rate = float(spec.sample_rate_hz)
    return start / rate, end / rate


@dataclass
class Piece:
    """A bounded slice of one file at one model's rate, and the embeddings it must yield.

    ``samples`` starts at sample ``offset_samples`` of the file. The piece yields embeddings
    ``first_frame .. first_frame + num_frames - 1`` of the whole-file grid. For humpback the first
    ``warmup_units`` front-end frames of the piece are warm-up only. ``file_samples`` is the file's
    total length at this rate when known (always on the last piece). ``tag`` is carried through
    inference untouched (segments mode: the segment and its window).
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
        if warmup_units is None:
            warmup_units = HUMPBACK_WARMUP_UNITS if spec.front_end.compression == "pcen" else 0
        self.warmup_units = warmup_units
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
