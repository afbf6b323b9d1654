"""AAC in MPEG-TS (Orcasound's HLS segments), ADTS and MP4 through the one loader (PyAV), with
fixtures written here by PyAV from a real recording."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from orca_beam.core.audio import (
    CorruptAudioError,
    EmptyAudioError,
    load_audio,
    probe_audio,
    validate_audio,
)

AAC_FRAME = 1024


def encode_aac(samples: np.ndarray, rate: int, container: str) -> bytes:
    """``samples`` [n, channels] float32 encoded by FFmpeg's AAC encoder into ``container``
    (mpegts, adts or mp4), as bytes."""
    import av

    buffer = io.BytesIO()
    layout = "mono" if samples.shape[1] == 1 else "stereo"
    with av.open(buffer, "w", format=container) as out:
        stream = out.add_stream("aac", rate=rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples.T, np.float32),
                                           format="fltp", layout=layout)
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


def decode_reference(data: bytes) -> np.ndarray:
    """Every decoded sample [n, channels], straight from PyAV."""
    import av

    with av.open(io.BytesIO(data)) as container:
        return np.concatenate([f.to_ndarray().T for f in container.decode(audio=0)])


@pytest.fixture(scope="module")
def recording(orca_calls) -> np.ndarray:
    samples, rate = sf.read(str(orca_calls / "hydrophone" / "210825-1925_L-highlight.wav"),
                            dtype="float32", always_2d=True)
    assert rate == 48000
    return samples[:480_000]  # 10 s, one HLS segment


@pytest.mark.parametrize("container, name", [("mpegts", "MPEGTS"), ("adts", "AAC"),
                                             ("mp4", "MOV")])
def test_aac_decodes_to_every_sample_the_decoder_gives(recording, container, name, tmp_path):
    data = encode_aac(recording, 48000, container)
    reference = decode_reference(data)
    # FFmpeg's AAC keeps its encoder priming (1024) and fills the last frame
    assert len(reference) >= len(recording) and len(reference) % AAC_FRAME == 0
    info = probe_audio(data)
    assert (info.sample_rate_hz, info.channels, info.frames) == (48000, 1, len(reference))
    assert info.format.startswith(name) and info.subtype == "AAC"
    path = tmp_path / f"live007.{container}"
    path.write_bytes(data)
    np.testing.assert_array_equal(load_audio(str(path), 48000), reference[:, 0])
    at_16k = load_audio(str(path), 16000)
    assert abs(len(at_16k) - len(reference) / 3) <= 1
    # the decoded audio is the recording (lossy), one AAC frame later: the encoder's priming
    def match(lag):
        shifted = reference[lag:lag + len(recording) - AAC_FRAME, 0]
        return np.corrcoef(shifted, recording[:len(shifted), 0])[0, 1]

    assert match(AAC_FRAME) > 0.95 and match(0) < 0.5


def test_stereo_segment_mixes_or_picks_a_channel(recording):
    stereo = np.concatenate([recording, 0.5 * recording], axis=1)
    data = encode_aac(stereo, 48000, "mpegts")
    reference = decode_reference(data)
    assert probe_audio(data).channels == 2
    np.testing.assert_allclose(load_audio(data, 48000), reference.mean(axis=1), atol=1e-7)
    np.testing.assert_array_equal(load_audio(data, 48000, channel=1), reference[:, 1])


def test_a_damaged_segment_is_a_typed_error(recording):
    data = encode_aac(recording, 48000, "mpegts")
    packets = bytearray(data)
    for start in range(188 * 4, len(packets), 188):  # keep the tables, garble the payloads
        packets[start + 4:start + 188] = bytes(184)
    with pytest.raises(CorruptAudioError):
        validate_audio(bytes(packets), name="live042.ts")
    with pytest.raises(EmptyAudioError, match="live043.ts"):  # the tables, and no audio packet
        validate_audio(data[:188 * 3], name="live043.ts")


@pytest.mark.e2e
def test_pipeline_embeds_ts_segments(recording, standin_dir, tmp_path):
    from pipelines import extract

    folder = tmp_path / "hls"
    folder.mkdir()
    for index in range(2):
        part = recording[index * 240_000:(index + 1) * 240_000]
        (folder / f"live{index:03d}.ts").write_bytes(encode_aac(part, 48000, "mpegts"))
    summary = extract.run(["--runner=DirectRunner", f"--input={folder}/*.ts",
                           f"--output={tmp_path / 'out'}", "--model=yamnet",
                           f"--model_handle=yamnet={standin_dir / 'yamnet'}",
                           "--projector_point=none"])
    counts = summary["models"]["yamnet"]
    assert (counts["embedded"], counts["failed"]) == (2, 0)
    assert "labels" not in summary  # no --label_table: no label counts
    assert Path(tmp_path / "out" / "summary.json").exists()
