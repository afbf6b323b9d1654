"""The audio loader: formats by content, odd rates, mixing, DC, and typed errors."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from orca_beam.core.audio import (
    ChannelOutOfRangeError,
    CorruptAudioError,
    EmptyAudioError,
    NonFiniteAudioError,
    TruncatedAudioError,
    UnsupportedAudioError,
    iter_resampled_blocks,
    load_audio,
    needs_decoding_to_validate,
    probe_audio,
    validate_audio,
)


def tone(rate: int, seconds: float, freq: float = 1000.0, amp: float = 0.5,
         channels: int = 1, dc: float = 0.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    mono = (amp * np.sin(2 * np.pi * freq * t) + dc).astype(np.float32)
    return mono if channels == 1 else np.stack([mono * (c + 1) / channels
                                                for c in range(channels)], axis=1)


def encode(samples: np.ndarray, rate: int, fmt: str, subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


FORMATS = [
    ("WAV", "PCM_U8"), ("WAV", "PCM_16"), ("WAV", "PCM_24"), ("WAV", "PCM_32"),
    ("WAV", "FLOAT"), ("WAV", "IMA_ADPCM"), ("WAV", "MS_ADPCM"), ("FLAC", "PCM_16"),
    ("FLAC", "PCM_24"), ("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III"),
]


@pytest.mark.parametrize("fmt,subtype", FORMATS)
def test_every_format_decodes_to_the_right_length_rate_and_tone(fmt, subtype):
    rate, seconds = 44100, 2.0
    data = encode(tone(rate, seconds), rate, fmt, subtype)
    info = probe_audio(data)
    assert info.sample_rate_hz == rate
    out = load_audio(data, 16000)
    assert out.dtype == np.float32 and out.ndim == 1
    expected = info.frames * 16000 / rate
    assert abs(len(out) - expected) <= 2
    assert np.abs(out).max() <= 1.0
    assert peak_hz(out, 16000) == pytest.approx(1000.0, abs=2.0)


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 25057, 44100, 48000, 96000, 192000, 384000])
def test_odd_and_high_rates_resample_to_exact_length_and_keep_the_tone(rate):
    data = encode(tone(rate, 1.5, freq=3000.0), rate, "WAV", "PCM_24")
    for target in (16000, 10000):
        out = load_audio(data, target)
        assert abs(len(out) - 1.5 * target) <= 1
        assert peak_hz(out, target) == pytest.approx(3000.0, abs=2.0)


def test_same_rate_is_passed_through_unchanged():
    samples = tone(16000, 1.0)
    out = load_audio(encode(samples, 16000, "WAV", "FLOAT"), 16000)
    np.testing.assert_array_equal(out, samples)


def test_format_is_read_from_content_not_name(tmp_path):
    flac_named_wav = tmp_path / "really_flac.wav"
    flac_named_wav.write_bytes(encode(tone(22050, 1.0), 22050, "FLAC"))
    mp3_named_flac = tmp_path / "really_mp3.flac"
    mp3_named_flac.write_bytes(encode(tone(48000, 1.0), 48000, "MP3"))
    assert probe_audio(str(flac_named_wav)).format == "FLAC"
    assert probe_audio(str(mp3_named_flac)).format == "MP3"
    assert abs(len(load_audio(str(flac_named_wav), 16000)) - 16000) <= 1
    assert peak_hz(load_audio(str(mp3_named_flac), 16000), 16000) == pytest.approx(1000, abs=2)


def test_multichannel_is_mixed_to_mono_or_one_channel_is_picked():
    stereo = tone(16000, 1.0, channels=3)  # channel c = tone * (c + 1) / 3
    data = encode(stereo, 16000, "WAV", "FLOAT")
    mixed = load_audio(data, 16000)
    np.testing.assert_allclose(mixed, stereo.mean(axis=1), atol=1e-7)
    picked = load_audio(data, 16000, channel=2)
    np.testing.assert_allclose(picked, stereo[:, 2], atol=1e-7)
    with pytest.raises(ChannelOutOfRangeError):
        load_audio(data, 16000, channel=3)


def test_dc_offset_is_kept():
    data = encode(tone(44100, 2.0, amp=0.2, dc=0.4), 44100, "WAV", "PCM_16")
    out = load_audio(data, 16000)
    assert float(out[1000:-1000].mean()) == pytest.approx(0.4, abs=2e-3)


def test_blocks_concatenate_to_the_whole_file_at_every_rate():
    data = encode(tone(48000, 25.0), 48000, "WAV", "PCM_16")  # > 2 decode blocks
    blocks = list(iter_resampled_blocks(data, [16000, 10000]))
    assert len(blocks) >= 3
    for rate in (16000, 10000):
        joined = np.concatenate([b[rate] for b in blocks])
        np.testing.assert_array_equal(joined, load_audio(data, rate))
        assert abs(len(joined) - 25 * rate) <= 1


def test_empty_sources_raise_empty():
    with pytest.raises(EmptyAudioError):
        load_audio(b"", 16000)
    with pytest.raises(EmptyAudioError):
        load_audio(encode(np.zeros(0, np.float32), 16000, "WAV", "PCM_16"), 16000)


def test_truncated_wav_and_flac_raise_truncated():
    wav = encode(tone(16000, 2.0), 16000, "WAV", "PCM_16")
    with pytest.raises(TruncatedAudioError, match="should be"):
        validate_audio(wav[: len(wav) // 2])
    flac = encode(np.random.default_rng(1).uniform(-0.5, 0.5, 48000).astype(np.float32),
                  16000, "FLAC")
    with pytest.raises((TruncatedAudioError, CorruptAudioError)):
        validate_audio(flac[: len(flac) // 2])


def test_only_codings_that_can_fail_part_way_are_decoded_to_validate():
    samples = tone(16000, 1.0)
    for fmt, subtype, decode in [("WAV", "PCM_16", False), ("WAV", "PCM_24", False),
                                 ("AIFF", "PCM_16", False), ("WAV", "FLOAT", True),
                                 ("WAV", "IMA_ADPCM", True), ("FLAC", "PCM_16", True),
                                 ("OGG", "VORBIS", True)]:
        info = probe_audio(encode(samples, 16000, fmt, subtype))
        assert needs_decoding_to_validate(info) is decode, (fmt, subtype)
    # a PCM WAV cut short is still caught, from its header
    wav = encode(samples, 16000, "WAV", "PCM_16")
    with pytest.raises(TruncatedAudioError):
        validate_audio(wav[:-1000])


def test_garbage_is_unsupported_and_broken_containers_are_corrupt():
    with pytest.raises(UnsupportedAudioError):
        load_audio(np.random.default_rng(0).bytes(5000), 16000)
    with pytest.raises(UnsupportedAudioError):
        load_audio(b"label\tstart\tend\n" * 50, 16000)
    wav = encode(tone(16000, 1.0), 16000, "WAV", "PCM_16")
    with pytest.raises(CorruptAudioError):
        load_audio(wav[:30], 16000)


def test_non_finite_samples_are_refused():
    samples = tone(16000, 1.0)
    samples[5000] = np.nan
    samples[9000] = np.inf
    with pytest.raises(NonFiniteAudioError, match="2 non-finite"):
        validate_audio(encode(samples, 16000, "WAV", "FLOAT"))


def test_errors_name_the_source(tmp_path):
    bad = tmp_path / "noise.wav"
    bad.write_bytes(b"x" * 100)
    with pytest.raises(UnsupportedAudioError) as info:
        load_audio(str(bad), 16000)
    assert str(bad) in str(info.value) and info.value.reason == "unsupported_format"


FUZZ = r"""
import io, sys
import numpy as np, soundfile as sf
from orca_beam.core.audio import AudioError, validate_audio
rng = np.random.default_rng(7)
seeds = []
for fmt, sub in [("WAV", "PCM_16"), ("WAV", "IMA_ADPCM"), ("FLAC", "PCM_16"), ("OGG", "VORBIS"),
                 ("MP3", "MPEG_LAYER_III")]:
    b = io.BytesIO(); sf.write(b, rng.uniform(-.5, .5, 8000).astype("float32"), 8000, format=fmt,
                               subtype=sub); seeds.append(b.getvalue())
outcomes = {"ok": 0, "typed": 0}
for i in range(300):
    data = bytearray(seeds[i % len(seeds)])
    for _ in range(1 + i % 20):
        data[rng.integers(0, len(data))] = rng.integers(0, 256)
    if i % 3 == 0:
        data = data[: rng.integers(0, len(data))]
    try:
        validate_audio(bytes(data)); outcomes["ok"] += 1
    except AudioError:
        outcomes["typed"] += 1
print(outcomes["ok"] + outcomes["typed"])
"""


def test_mutated_files_give_typed_errors_never_an_interpreter_crash():
    done = subprocess.run([sys.executable, "-c", FUZZ], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "300"


def test_real_catalogue_clips_decode_at_model_rates(orca_calls):
    clips = sorted((orca_calls / "catalog").glob("*.wav"))
    assert len(clips) >= 100
    offsets = []
    for clip in clips:
        info = probe_audio(str(clip))
        out = load_audio(str(clip), 16000)
        assert abs(len(out) - info.frames * 16000 / info.sample_rate_hz) <= 1
        native = sf.read(str(clip), dtype="float32")[0]
        offsets.append((float(native.mean()), float(out.mean())))
    big = [(a, b) for a, b in offsets if abs(a) > 0.1]
    assert big, "the catalogue has clips with a large DC offset"
    for native_mean, resampled_mean in big:
        assert resampled_mean == pytest.approx(native_mean, abs=0.01)
