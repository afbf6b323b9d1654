"""Orcasound's HLS folders: playlists, segment order, absolute time, and one continuous decode.

A node writes ``<node>/hls/<unix start seconds>/live.m3u8`` and ``live000.ts``, ``live001.ts``,
... (AAC in MPEG-TS, about 10 s each; after ``live999.ts`` comes ``live1000.ts``). No Beam here:
these are the rules and the decoder the pipeline's HLS source is built from.

Time is UTC throughout and never depends on the machine's zone: folder names are unix seconds,
``#EXT-X-PROGRAM-DATE-TIME`` carries its own offset, and every datetime returned is aware (UTC).
Segment lengths are the playlist's real ``#EXTINF`` durations, never ``#EXT-X-TARGETDURATION``.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import numpy as np

from orca_beam.core.audio import frame_samples

PLAYLIST_NAME = "live.m3u8"
#: How a row's absolute time was obtained (the ``time_source`` values).
PROGRAM_DATE_TIME = "program_date_time"
FOLDER_PLUS_DURATIONS = "folder_plus_durations"
#: A jump between consecutive AAC packets' timestamps beyond this (seconds) is a gap.
PTS_GAP_TOLERANCE_S = 0.005
#: MPEG-TS timestamps are 33-bit counts of a 90 kHz clock: they wrap every 26.5 hours.
PTS_WRAP_S = 2 ** 33 / 90_000


def pts_difference_s(later_s: float, earlier_s: float) -> float:
    """``later_s - earlier_s`` for MPEG-TS times, across at most one wrap of the 33-bit clock
    (the result lies in [-PTS_WRAP_S / 2, PTS_WRAP_S / 2))."""
    return (later_s - earlier_s + PTS_WRAP_S / 2) % PTS_WRAP_S - PTS_WRAP_S / 2


def unwrap_offset_s(difference_s: float, estimate_s: float | None) -> float:
    """A stream offset from a (wrapped) MPEG-TS difference: ``difference_s`` plus the whole
    number of wraps that brings it closest to ``estimate_s`` (the playlist's durations; a
    folder can run past 26.5 hours). Without an estimate, the offset in [0, PTS_WRAP_S)."""
    base = difference_s % PTS_WRAP_S
    if estimate_s is None:
        return base
    return base + round((estimate_s - base) / PTS_WRAP_S) * PTS_WRAP_S


def first_pts_s(data: bytes) -> float | None:
    """The MPEG-TS time (s) of the first audio packet in ``data`` (a segment, or its first
    bytes), without decoding; None when there is none."""
    import av

    try:
        with av.open(io.BytesIO(data), format="mpegts") as container:
            if not container.streams.audio:
                return None
            stream = container.streams.audio[0]
            for packet in container.demux(stream):
                if packet.pts is not None and packet.size:
                    return float(packet.pts * stream.time_base)
    except (av.error.FFmpegError, ValueError):
        return None
    return None

_SEGMENT = re.compile(r"live(\d+)\.ts")


@dataclass(frozen=True)
class Segment:
    """One segment of a folder: file name, number, playlist duration (``#EXTINF`` s, None when
    not in the playlist), ``#EXT-X-PROGRAM-DATE-TIME`` (UTC) when given, and whether the
    playlist lists it and the folder holds it."""

    name: str
    number: int
    duration_s: float | None = None
    program_date_time: datetime | None = None
    in_playlist: bool = True
    present: bool = True


def segment_number(name: str) -> int | None:
    """The number of ``live<N>.ts`` (any count of digits), else None."""
    match = _SEGMENT.fullmatch(name.rsplit("/", 1)[-1])
    return int(match.group(1)) if match else None


def parse_datetime(text: str) -> datetime:
    """An ISO 8601 time with its zone (``Z``, ``+00:00`` or ``+0000``) as an aware UTC datetime.
    ValueError for a time without a zone: it would depend on the machine's zone."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"time {text!r} has no zone (add Z or +HH:MM)")
    return value.astimezone(UTC)


def parse_playlist(text: str) -> list[Segment]:
    """The segments of a ``live.m3u8``, in playlist order, with their ``#EXTINF`` durations and
    program date-times (a ``#EXT-X-PROGRAM-DATE-TIME`` tag applies to the next segment).
    ValueError when the text is not an M3U playlist."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != "#EXTM3U":
        raise ValueError("not an HLS playlist (no #EXTM3U)")
    segments, duration, stamp = [], None, None
    for line in lines[1:]:
        if line.startswith("#EXTINF:"):
            duration = float(line[len("#EXTINF:"):].split(",", 1)[0])
        elif line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            stamp = parse_datetime(line.split(":", 1)[1])
        elif not line.startswith("#"):
            number = segment_number(line)
            if number is not None:
                segments.append(Segment(line.rsplit("/", 1)[-1], number, duration, stamp))
            duration, stamp = None, None
    return segments


def folder_start(name: str) -> datetime:
    """The UTC start of a folder named by its unix seconds (``.../hls/1700000000/``)."""
    return datetime.fromtimestamp(int(name.rstrip("/").rsplit("/", 1)[-1]), UTC)


def select_folders(names: Iterable[str], start: datetime, end: datetime) -> list[str]:
    """The folders whose audio can overlap ``[start, end)``: the last one that began at or
    before ``start`` and every one that began before ``end``, in time order. Names that are not
    unix seconds are left out."""
    dated = sorted((folder_start(n), n) for n in names
                   if n.rstrip("/").rsplit("/", 1)[-1].isdigit())
    before = [n for began, n in dated if began <= start]
    later = [n for began, n in dated if start < began < end]
    return before[-1:] + later


def order_segments(playlist: Sequence[Segment], files: Iterable[str]) -> list[Segment]:
    """The folder's segments by number (``live1000.ts`` after ``live999.ts``): those of the
    playlist, marked ``present`` or not, then the files present but not in the playlist
    (``in_playlist=False``, duration unknown)."""
    names = {name.rsplit("/", 1)[-1] for name in files}
    listed = {segment.name for segment in playlist}
    found = [replace(segment, present=segment.name in names) for segment in playlist]
    found += [Segment(name, segment_number(name), in_playlist=False)
              for name in names - listed if segment_number(name) is not None]
    return sorted(found, key=lambda segment: segment.number)


def playlist_offsets(segments: Sequence[Segment]) -> list[float | None]:
    """Seconds from the folder's first segment to each segment's start: the sum of the real
    ``#EXTINF`` durations before it; None after a segment of unknown duration (not in the
    playlist)."""
    out, elapsed = [], 0.0
    for segment in segments:
        out.append(elapsed)
        elapsed = (None if elapsed is None or segment.duration_s is None
                   else elapsed + segment.duration_s)
    return out


def segment_starts(segments: Sequence[Segment], folder: datetime
                   ) -> list[tuple[datetime | None, str | None]]:
    """(UTC start, time source) of each segment, in order: its program date-time when the
    playlist gives one, else the folder's time plus the real ``#EXTINF`` durations before it.
    After a segment of unknown duration (not in the playlist) and no date-time, None."""
    out = []
    for segment, elapsed in zip(segments, playlist_offsets(segments), strict=True):
        if segment.program_date_time is not None:
            out.append((segment.program_date_time, PROGRAM_DATE_TIME))
        elif elapsed is not None:
            out.append((folder + timedelta(seconds=elapsed), FOLDER_PLUS_DURATIONS))
        else:
            out.append((None, None))
    return out


@dataclass
class Decoded:
    """Audio of one segment from a continuous decode: ``samples`` [n, channels] float32 at
    ``rate_hz``; ``first_pts_s`` the MPEG-TS time of its first sample; ``gap_before_s`` the
    timestamp jump since the previous segment's end (0 when continuous; None for the first)."""

    segment: Segment
    samples: np.ndarray
    rate_hz: int
    first_pts_s: float | None
    gap_before_s: float | None


@dataclass
class Unreadable:
    """A segment FFmpeg could not demux or decode, and its message."""

    segment: Segment
    error: str


def decode_segments(items: Iterable[tuple[Segment, bytes]]) -> Iterator[Decoded | Unreadable]:
    """Decodes consecutive segments of one folder as one stream: their AAC packets go through one
    decoder, so each segment's audio continues the previous one's exactly (a fresh decoder per
    segment would lose the overlap of the first frame). Every packet's timestamp is checked: a
    jump since the previous packet's end is reported as ``gap_before_s`` and the decoder is reset
    there. A jump inside a segment splits it: one Decoded per continuous piece, in order (the
    same ``segment``). An unreadable segment is reported and also resets the decoder; an empty
    file is a Decoded with no samples (``first_pts_s`` None)."""
    import av

    decoder = None
    expected_pts = None
    for segment, data in items:
        if not data:  # a 0-byte file (an upload that never completed): empty, not corrupt
            yield Decoded(segment, np.zeros((0, 1), np.float32), 0, None, None)
            continue
        pieces: list[Decoded] = []
        try:
            with av.open(io.BytesIO(data), format="mpegts") as container:
                if not container.streams.audio:
                    raise ValueError("no audio stream")
                stream = container.streams.audio[0]
                base = float(stream.time_base)
                rate = stream.codec_context.sample_rate
                codec, extradata = stream.codec_context.name, stream.codec_context.extradata
                if decoder is None:
                    decoder = av.CodecContext.create(codec, "r")
                    decoder.extradata = extradata
                blocks: list[np.ndarray] = []
                first_pts, gap = None, None
                for packet in container.demux(stream):
                    if packet.pts is None or packet.size == 0:
                        continue
                    pts_s = packet.pts * base
                    jump = None if expected_pts is None else pts_difference_s(pts_s, expected_pts)
                    if jump is not None and abs(jump) > PTS_GAP_TOLERANCE_S:
                        if first_pts is not None:
                            pieces.append(Decoded(segment, _joined(blocks), rate, first_pts, gap))
                            blocks = []
                        first_pts, gap = pts_s, jump
                        decoder = av.CodecContext.create(codec, "r")
                        decoder.extradata = extradata
                    elif first_pts is None:
                        first_pts, gap = pts_s, None if jump is None else 0.0
                    expected_pts = pts_s + (packet.duration or 0) * base
                    blocks.extend(frame_samples(frame) for frame in decoder.decode(packet))
                pieces.append(Decoded(segment, _joined(blocks), rate, first_pts, gap))
        except (av.error.FFmpegError, ValueError) as exc:
            decoder, expected_pts = None, None
            yield Unreadable(segment, f"{type(exc).__name__}: {exc}")
            continue
        yield from pieces


def _joined(blocks: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(blocks) if blocks else np.zeros((0, 1), np.float32)
