"""A hit's audio with context, cut from its source, and its spectrogram picture.

Audio is decoded block by block (:func:`orca_beam.core.audio.iter_resampled_blocks`) and only
the wanted range is kept, so a clip of a long file costs the clip, not the file.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
from apache_beam.io.filesystems import FileSystems

from orca_beam.core.audio import iter_resampled_blocks, mono_block
from orca_beam.core.hls import (
    PLAYLIST_NAME,
    Decoded,
    decode_segments,
    folder_start,
    parse_playlist,
    segment_starts,
)

#: Sample rate of review clips (Hz): killer-whale calls and whistles reach about 16 kHz.
CLIP_RATE_HZ = 32_000
FFT_SAMPLES = 1024
HOP_SAMPLES = 256
DYNAMIC_RANGE_DB = 80.0
#: Anchor colours of the spectrogram's colour map, dark (quiet) to bright (loud).
COLOURS = np.array([[0, 0, 4], [59, 15, 112], [140, 41, 129], [222, 73, 104], [254, 159, 109],
                    [252, 253, 191]], np.float64)


def cut_clip(source: str, start_s: float, end_s: float, rate_hz: int = CLIP_RATE_HZ
             ) -> tuple[np.ndarray, float]:
    """Samples of ``source`` (local, gs:// or s3://) from ``start_s`` to ``end_s`` (seconds in
    the file, clipped to it) at ``rate_hz``, mono float32, and the second the clip starts at."""
    first = max(0, round(start_s * rate_hz))
    last = max(first, round(end_s * rate_hz))
    kept, at = [], 0
    for blocks in iter_resampled_blocks(source, [rate_hz], name=source):
        block = blocks[rate_hz]
        lo, hi = max(first - at, 0), min(last - at, len(block))
        if hi > lo:
            kept.append(block[lo:hi])
        at += len(block)
        if at >= last:
            break
    samples = np.concatenate(kept) if kept else np.zeros(0, np.float32)
    return samples.astype(np.float32), first / rate_hz


def wav_bytes(samples: np.ndarray, rate_hz: int = CLIP_RATE_HZ) -> bytes:
    """16-bit PCM WAV of mono float32 ``samples``."""
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(samples, -1.0, 1.0), rate_hz, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def spectrogram_rgb(samples: np.ndarray, rate_hz: int = CLIP_RATE_HZ, *, height: int = 256,
                    marks_s: tuple[float, ...] = ()) -> np.ndarray:
    """[height, frames, 3] uint8 picture of the clip's log-magnitude STFT (Hann window of
    FFT_SAMPLES, hop HOP_SAMPLES; 0 Hz at the bottom, rate / 2 at the top), DYNAMIC_RANGE_DB
    below the clip's loudest bin shown dark; white columns at the seconds ``marks_s``."""
    if len(samples) < FFT_SAMPLES:
        samples = np.concatenate([samples, np.zeros(FFT_SAMPLES - len(samples), np.float32)])
    frames = 1 + (len(samples) - FFT_SAMPLES) // HOP_SAMPLES
    index = np.arange(FFT_SAMPLES)[None, :] + HOP_SAMPLES * np.arange(frames)[:, None]
    power = np.abs(np.fft.rfft(samples[index] * np.hanning(FFT_SAMPLES), axis=1)) ** 2
    db = 10 * np.log10(power + 1e-12)
    level = np.clip((db - (db.max() - DYNAMIC_RANGE_DB)) / DYNAMIC_RANGE_DB, 0.0, 1.0)
    bins = level.shape[1]
    rows = np.linspace(0, bins - 1, height).round().astype(int)
    picture = level[:, rows].T[::-1]  # [height, frames], low frequencies at the bottom
    position = picture * (len(COLOURS) - 1)
    low = np.floor(position).astype(int).clip(0, len(COLOURS) - 2)
    weight = (position - low)[..., None]
    rgb = COLOURS[low] * (1 - weight) + COLOURS[low + 1] * weight
    for mark in marks_s:
        column = round(mark * rate_hz / HOP_SAMPLES)
        if 0 <= column < frames:
            rgb[:, column] = 255
    return rgb.astype(np.uint8)


def png_bytes(rgb: np.ndarray) -> bytes:
    """PNG of an [H, W, 3] uint8 picture."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def cut_stream_clip(stream: str, start_utc_s: float, end_utc_s: float, channel: int | None = None
                    ) -> tuple[np.ndarray, int, float]:
    """Audio of an HLS folder ``stream`` (local, gs:// or s3://, ending in ``/``) from
    ``start_utc_s`` to ``end_utc_s`` (seconds since the epoch, UTC), across segment joins:
    (mono float32 samples at the stream's rate, that rate in Hz, the UTC second the clip starts
    at). The segments that overlap the range are decoded as one stream (one AAC decoder); sample
    ``j`` of a segment lies at the segment's playlist time plus ``j / rate``, as the rows' own
    ``start_utc``. Audio missing from the folder is silence. ValueError when no segment with a
    known time overlaps the range."""
    folder = stream.rstrip("/") + "/"
    with FileSystems.open(folder + PLAYLIST_NAME) as handle:
        segments = parse_playlist(handle.read().decode())
    starts = segment_starts(segments, folder_start(folder))
    wanted = [(segment, start.timestamp()) for segment, (start, _) in zip(segments, starts,
                                                                          strict=True)
              if start is not None and segment.duration_s is not None
              and start.timestamp() < end_utc_s
              and start.timestamp() + segment.duration_s > start_utc_s]
    if not wanted:
        raise ValueError(f"no segment of {folder} with a known time overlaps the clip")
    utc_of = {segment.name: utc for segment, utc in wanted}

    def fetched():
        for segment, _ in wanted:
            try:
                with FileSystems.open(folder + segment.name) as handle:
                    yield segment, handle.read()
            except OSError:
                continue  # a missing segment: silence

    pieces, rate, seen = [], None, {}
    for item in decode_segments(fetched()):
        if not isinstance(item, Decoded) or not len(item.samples):
            continue
        rate = rate or item.rate_hz
        done = seen.get(item.segment.name, 0)  # a segment split by a timestamp jump
        pieces.append((utc_of[item.segment.name] + done / item.rate_hz,
                       mono_block(item.samples, channel)))
        seen[item.segment.name] = done + len(item.samples)
    if rate is None:
        raise ValueError(f"no segment of {folder} in the clip's range could be decoded")
    first = round(start_utc_s * rate)
    clip = np.zeros(max(0, round(end_utc_s * rate) - first), np.float32)
    for utc, samples in pieces:
        at = round(utc * rate) - first
        lo, hi = max(0, at), min(len(clip), at + len(samples))
        if hi > lo:
            clip[lo:hi] = samples[lo - at:hi - at]
    return clip, rate, first / rate
