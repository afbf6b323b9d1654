"""The one audio loader: encoded bytes -> float32 mono samples at the rates the models want.

Decoding is libsndfile (through ``soundfile``: WAV in 8/16/24/32-bit int, float and ADPCM, FLAC,
OGG/Vorbis, MP3, and the rest of libsndfile's formats) and, for what libsndfile cannot read
(MPEG-TS, ADTS and MP4/M4A audio: AAC, as in Orcasound's HLS segments), FFmpeg's decoders through
PyAV (``av``); the format is read from the content, never from the file name. Resampling is soxr at high quality ("HQ"), streamed, so a file of any length is
decoded in bounded blocks. Integer formats come out in [-1, 1); float formats come out as stored.
Nothing else is done to the signal: no DC removal, no gain, no clipping.

Every failure is a typed :class:`AudioError` subclass with a message that names the source.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

#: Length of one decoded block, in seconds of input audio. Bounds memory on long files.
DECODE_BLOCK_S = 10.0
#: soxr quality preset used for every resampling ("HQ" = 20-bit precision, steep filter).
RESAMPLE_QUALITY = "HQ"

# Leading bytes of containers libsndfile can read. Used only to tell "corrupt" from "unsupported".
_AUDIO_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"fLaC", b"OggS", b"ID3", b"FORM", b"caff", b".snd",
                b"riff", b"NIST", b"\xff\xfb", b"\xff\xf3", b"\xff\xf2", b"\xff\xfa")


# libsndfile's note on a data chunk that claims more bytes than the file holds.
_SIZE_MISMATCH = re.compile(r"^\s*(data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.IGNORECASE)


class AudioError(Exception):
    """A source could not be turned into samples. ``reason`` is a short stable slug."""

    reason = "audio_error"

    def __init__(self, source: str, message: str):
        super().__init__(f"{source}: {message}")
        self.source = source
        self.detail = message


class EmptyAudioError(AudioError):
    """The source has no bytes, or a valid header and zero samples."""

    reason = "empty"


class TruncatedAudioError(AudioError):
    """The header promises more audio than the file holds."""

    reason = "truncated"


class CorruptAudioError(AudioError):
    """A known audio container whose content cannot be decoded."""

    reason = "corrupt"


class UnsupportedAudioError(AudioError):
    """Content that is not a recognised audio format (text, random bytes, ...)."""

    reason = "unsupported_format"


class NonFiniteAudioError(AudioError):
    """The decoded samples contain NaN or infinity; such audio never reaches a model."""

    reason = "non_finite_samples"


class ChannelOutOfRangeError(AudioError):
    """The requested channel does not exist in the source."""

    reason = "channel_out_of_range"


@dataclass(frozen=True)
class AudioInfo:
    """What the container says about a source (before resampling)."""

    sample_rate_hz: int
    channels: int
    frames: int
    format: str
    subtype: str
    #: True when opening the source already decoded all of it and checked every sample (PyAV's
    #: sources, whose frame count only a decode gives): validating needs no second decode.
    validated_at_open: bool = False

    @property
    def duration_s(self) -> float:
        """Duration in seconds at the native rate."""
        return self.frames / self.sample_rate_hz


Source = str | bytes | bytearray | memoryview | BinaryIO


def _name_of(source: Source, name: str | None) -> str:
    if name:
        return name
    if isinstance(source, str):
        return source
    return getattr(source, "name", None) or "<bytes>"


@contextlib.contextmanager
def _open_binary(source: Source) -> Iterator[BinaryIO]:
    """Yields a seekable binary file object for a path (any Beam filesystem), bytes or a file."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        yield io.BytesIO(bytes(source))
    elif isinstance(source, str):
        from apache_beam.io.filesystem import CompressionTypes
        from apache_beam.io.filesystems import FileSystems

        with FileSystems.open(source, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            yield handle
    else:
        yield source


def _classify_open_error(name: str, head: bytes, exc: Exception) -> AudioError:
    if not head:
        return EmptyAudioError(name, "file has no bytes")
    message = str(exc).split(": ", 1)[-1] if ": " in str(exc) else str(exc)
    if "not recognised" in message.lower() and not head.startswith(_AUDIO_MAGIC):
        return UnsupportedAudioError(name, f"not a recognised audio format ({message})")
    return CorruptAudioError(name, message)


def _is_ffmpeg_container(head: bytes) -> bool:
    """MPEG-TS (sync byte 0x47 at 0 and 188), ADTS AAC (sync word 0xFFF) or MP4/M4A (``ftyp``
    box): read with PyAV, since libsndfile cannot."""
    transport = head[:1] == b"\x47" and (len(head) <= 188 or head[188:189] == b"\x47")
    adts = len(head) > 1 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0
    return transport or adts or head[4:8] == b"ftyp"


def frame_samples(frame) -> np.ndarray:
    """One audio frame decoded by PyAV as float32 [samples, channels]: planar layouts
    transposed, packed ones unfolded, integer samples scaled to [-1, 1)."""
    array = frame.to_ndarray()
    if frame.format.is_planar:
        array = array.T
    else:
        array = array.reshape(-1, len(frame.layout.channels))
    if array.dtype.kind == "i":
        array = array / float(np.iinfo(array.dtype).max + 1)
    return array.astype(np.float32, copy=False)


class PyAVSound:
    """The part of ``soundfile.SoundFile`` the loader uses, over FFmpeg's decoders (PyAV), for
    the containers libsndfile cannot read. Opening decodes the stream once to count its frames
    exactly and to find undecodable or non-finite content, keeping no samples (memory stays at
    one frame); :meth:`read` then decodes again, block by block. Samples are float32 in [-1, 1], as
    the decoder gives them (AAC: planar float), including the encoder's priming samples."""

    def __init__(self, fileobj: BinaryIO, label: str):
        import av

        self._fileobj, self._start, self._label = fileobj, fileobj.tell(), label
        self.extra_info = ""
        try:
            with av.open(fileobj, mode="r") as container:
                if not container.streams.audio:
                    raise UnsupportedAudioError(label, "container holds no audio stream")
                stream = container.streams.audio[0]
                self.samplerate = int(stream.codec_context.sample_rate)
                self.channels = int(stream.codec_context.channels)
                self.format = container.format.name.split(",")[0].upper()
                self.subtype = stream.codec_context.name.upper()
                self.frames = 0
                for frame in container.decode(stream):
                    samples = frame_samples(frame)
                    if not np.isfinite(samples).all():
                        raise NonFiniteAudioError(
                            label, f"non-finite samples (NaN/inf) in frames {self.frames}.."
                                   f"{self.frames + len(samples)}")
                    self.frames += len(samples)
        except av.error.FFmpegError as exc:
            raise CorruptAudioError(label, f"FFmpeg cannot decode it: {exc}") from exc
        self._frames_iter: Iterator[np.ndarray] | None = None
        self._pending = np.zeros((0, self.channels), np.float32)

    def _decoded(self) -> Iterator[np.ndarray]:
        import av

        self._fileobj.seek(self._start)
        try:
            with av.open(self._fileobj, mode="r") as container:
                for frame in container.decode(container.streams.audio[0]):
                    yield frame_samples(frame)
        except av.error.FFmpegError as exc:
            raise CorruptAudioError(self._label, f"FFmpeg decoding failed: {exc}") from exc

    def read(self, frames: int, dtype: str = "float32", always_2d: bool = True) -> np.ndarray:
        """Up to ``frames`` frames [n, channels] float32; zero rows at the end."""
        if self._frames_iter is None:
            self._frames_iter = self._decoded()
        parts, have = [self._pending], len(self._pending)
        while have < frames:
            block = next(self._frames_iter, None)
            if block is None:
                break
            parts.append(block)
            have += len(block)
        joined = np.concatenate(parts) if len(parts) > 1 else parts[0]
        self._pending = joined[frames:]
        return joined[:frames]

    def __enter__(self) -> PyAVSound:
        return self

    def __exit__(self, *exc) -> None:
        self._frames_iter = None


@contextlib.contextmanager
def _open_sound(fileobj: BinaryIO, name: str) -> Iterator[sf.SoundFile | PyAVSound]:
    start = fileobj.tell()
    head = fileobj.read(189)
    fileobj.seek(start)
    if _is_ffmpeg_container(head):
        with PyAVSound(fileobj, name) as sound:
            yield sound
        return
    try:
        sound = sf.SoundFile(fileobj)
    except sf.LibsndfileError as exc:
        raise _classify_open_error(name, head, exc) from exc
    except (RuntimeError, TypeError, ValueError) as exc:
        raise _classify_open_error(name, head, exc) from exc
    with sound:
        yield sound


def _declared_size_mismatch(sound: sf.SoundFile) -> str | None:
    """libsndfile trims a short WAV/AIFF silently but notes ``(should be N)``; surface that."""
    for line in sound.extra_info.splitlines():
        match = _SIZE_MISMATCH.match(line)
        if match and int(match.group(2)) > int(match.group(3)):
            return line.strip()
    return None


def _info_of(sound: sf.SoundFile | PyAVSound) -> AudioInfo:
    return AudioInfo(int(sound.samplerate), int(sound.channels), int(sound.frames),
                     sound.format, sound.subtype, isinstance(sound, PyAVSound))


def probe_audio(source: Source, *, name: str | None = None) -> AudioInfo:
    """Reads only the header of ``source`` (path, bytes or binary file) and returns its AudioInfo.

    Raises the typed AudioError subclasses for empty, unsupported or corrupt content.
    """
    label = _name_of(source, name)
    with _open_binary(source) as fileobj, _open_sound(fileobj, label) as sound:
        return _info_of(sound)


def mono_block(block: np.ndarray, channel: int | None) -> np.ndarray:
    """Samples [n, channels] -> float32 [n]: the channels' mean (``channel=None``) or one."""
    if channel is None:
        return block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
    return block[:, channel]


def _decoded_blocks(sound: sf.SoundFile, label: str, channel: int | None) -> Iterator[np.ndarray]:
    """Yields mono float32 blocks at the native rate; raises if the stream ends early or is bad."""
    block_frames = max(1024, int(DECODE_BLOCK_S * sound.samplerate))
    declared = sound.frames
    got = 0
    while True:
        try:
            block = sound.read(block_frames, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise CorruptAudioError(label, f"decoding failed after {got} frames: {exc}") from exc
        except CorruptAudioError as exc:
            raise CorruptAudioError(label, f"decoding failed after {got} frames: "
                                           f"{exc.detail}") from exc
        if block.shape[0] == 0:
            break
        if not np.isfinite(block).all():
            bad = int(np.count_nonzero(~np.isfinite(block)))
            raise NonFiniteAudioError(
                label, f"{bad} non-finite samples (NaN/inf) in frames {got}..{got + len(block)}")
        got += block.shape[0]
        yield np.ascontiguousarray(mono_block(block, channel))
    if got < declared:
        raise TruncatedAudioError(label, f"header declares {declared} frames, file holds {got}")


def _checked_info(sound: sf.SoundFile, channel: int | None, label: str) -> AudioInfo:
    """The source's AudioInfo, after the checks that need no decoding (channel, empty, size)."""
    info = _info_of(sound)
    if channel is not None and not 0 <= channel < info.channels:
        raise ChannelOutOfRangeError(label, f"channel {channel} requested, file has {info.channels}")
    if info.frames == 0:
        raise EmptyAudioError(label, "header is valid but holds zero samples")
    mismatch = _declared_size_mismatch(sound)
    if mismatch:
        raise TruncatedAudioError(label, f"container size mismatch: {mismatch}")
    return info


#: Containers whose frame count libsndfile derives from the data chunk's size (a short file is
#: caught from the header: ``(should be N)``), and the integer PCM codings in which every byte
#: pattern is a valid, finite sample. Together: nothing can go wrong later in the decode.
_SIZED_CONTAINERS = {"WAV", "WAVEX", "RF64", "W64", "AIFF", "CAF", "AU"}
_PLAIN_PCM = {"PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "PCM_32"}


def needs_decoding_to_validate(info: AudioInfo) -> bool:
    """False for integer PCM in a sized container (WAV, AIFF, ...): its header checks are the
    whole validation; and for sources that opening already decoded and checked
    (``validated_at_open``). True for the other compressed, ADPCM and float codings, which can
    fail or hold NaN/inf part-way through."""
    return not (info.validated_at_open
                or (info.format in _SIZED_CONTAINERS and info.subtype in _PLAIN_PCM))


def validate_audio(source: Source, *, channel: int | None = None,
                   name: str | None = None) -> AudioInfo:
    """Checks ``source`` fully without keeping the samples and returns its AudioInfo.

    Raises EmptyAudioError, TruncatedAudioError, CorruptAudioError, UnsupportedAudioError,
    NonFiniteAudioError or ChannelOutOfRangeError. Codings that can fail part-way (compressed,
    ADPCM, float) are decoded once, memory staying at one decode block; integer PCM in a sized
    container needs only its header (see :func:`needs_decoding_to_validate`).
    """
    label = _name_of(source, name)
    with _open_binary(source) as fileobj, _open_sound(fileobj, label) as sound:
        info = _checked_info(sound, channel, label)
        if needs_decoding_to_validate(info):
            for _ in _decoded_blocks(sound, label, channel):
                pass
    return info


def resample_stream(from_hz: int, to_hz: int) -> soxr.ResampleStream | None:
    """The pipeline's streaming resampler (soxr "HQ", mono float32) from ``from_hz`` to
    ``to_hz``; None when the rates are equal. Its output is aligned with its input: output sample
    ``m`` is at input time ``m / to_hz``."""
    if from_hz == to_hz:
        return None
    return soxr.ResampleStream(from_hz, to_hz, 1, dtype="float32", quality=RESAMPLE_QUALITY)


def iter_resampled_blocks(source: Source, sample_rates_hz: Sequence[int], *,
                          channel: int | None = None,
                          name: str | None = None) -> Iterator[dict[int, np.ndarray]]:
    """Decodes ``source`` once and yields ``{rate_hz: float32 mono block}`` for every wanted rate.

    Blocks are consecutive pieces of one continuous signal per rate (soxr streaming, "HQ"); the
    concatenation of all blocks of a rate is the whole file at that rate. ``channel=None`` averages
    the channels; an int picks one. Memory stays at one decode block (``DECODE_BLOCK_S`` seconds).
    Raises the same typed errors as :func:`validate_audio`, possibly after some blocks were yielded:
    call ``validate_audio`` first when partial output must be avoided.
    """
    label = _name_of(source, name)
    rates = sorted({int(rate) for rate in sample_rates_hz})
    with _open_binary(source) as fileobj, _open_sound(fileobj, label) as sound:
        info = _checked_info(sound, channel, label)
        streams = {rate: resample_stream(info.sample_rate_hz, rate) for rate in rates}
        for block in _decoded_blocks(sound, label, channel):
            yield {rate: block if stream is None else stream.resample_chunk(block)
                   for rate, stream in streams.items()}
        tails = {rate: stream.resample_chunk(np.zeros(0, np.float32), last=True)
                 for rate, stream in streams.items() if stream is not None}
        if any(len(tail) for tail in tails.values()):
            yield {rate: tails.get(rate, np.zeros(0, np.float32)) for rate in rates}


def load_audio(source: Source, sample_rate_hz: int, *, channel: int | None = None,
               name: str | None = None) -> np.ndarray:
    """Returns the whole of ``source`` as float32 mono samples at ``sample_rate_hz`` (Hz).

    ``source`` is a path (local or any Beam filesystem such as gs://), bytes, or a binary file.
    Same decoding and resampling as the pipeline (:func:`iter_resampled_blocks`), so the numbers
    match. Raises the typed AudioError subclasses.
    """
    blocks = [piece[sample_rate_hz] for piece in
              iter_resampled_blocks(source, [sample_rate_hz], channel=channel, name=name)]
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
