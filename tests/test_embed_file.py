"""embed_file: the one-call API gives the model's own numbers, chunked or not."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from orca_beam import embed_file
from orca_beam.core.audio import load_audio
from orca_beam.core.framing import num_frames
from orca_beam.core.registry import get_model_spec
from orca_beam.models.embed import cached_model


@pytest.fixture(scope="module")
def recording(orca_calls):
    return str(orca_calls / "hydrophone" / "210825-1925_L-highlight.wav")


@pytest.mark.parametrize("model", ["vggish", "yamnet"])
def test_waveform_models_equal_one_whole_file_call(standin_dir, recording, model):
    spec = get_model_spec(model)
    handle = str(standin_dir / model)
    chunked = embed_file(recording, model, handle, chunk_s=2.0, pack_s=5.0)
    whole = embed_file(recording, model, handle, chunk_s=600.0)
    waveform = load_audio(recording, spec.sample_rate_hz)
    direct = cached_model(handle)[0](tf.constant(waveform))
    direct = (direct if model == "vggish" else direct[1]).numpy()
    n = num_frames(spec, len(waveform))
    assert chunked.embeddings.shape == whole.embeddings.shape == direct.shape == (
        n, spec.embedding_dim)
    np.testing.assert_allclose(whole.embeddings, direct, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(chunked.embeddings, direct, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(chunked.start_s, np.arange(n) * spec.hop_s)
    assert chunked.end_s[-1] <= chunked.duration_s + 1e-9
    assert chunked.duration_s == pytest.approx(11.7, abs=0.1)
    assert chunked.standin and chunked.model_version.endswith("+standin")
    if model == "yamnet":
        assert chunked.spectrogram.shape == cached_model(handle)[0](waveform)[2].shape
    else:
        assert chunked.spectrogram.shape == (1 + (len(waveform) - 400) // 160, 64)


def test_humpback_notebook_framing_and_chunk_tolerance(standin_dir, recording):
    spec = get_model_spec("humpback")
    handle = str(standin_dir / "humpback")
    model = cached_model(handle)[0]
    waveform = load_audio(recording, 10000)
    pcen = model.front_end(waveform[None, :, None]).numpy()[0]
    windows = -(-pcen.shape[0] // 128)
    padded = np.zeros((windows * 128, 64), np.float32)
    padded[: pcen.shape[0]] = pcen
    notebook = model.features(padded.reshape(windows, 128, 64)).numpy()
    whole = embed_file(recording, "humpback", handle, chunk_s=600.0)
    chunked = embed_file(recording, "humpback", handle, chunk_s=3.84)  # one window per piece
    assert whole.embeddings.shape == chunked.embeddings.shape == (windows, 2048)
    assert windows == num_frames(spec, len(waveform))
    np.testing.assert_allclose(whole.embeddings, notebook, rtol=1e-4, atol=1e-3)
    # PCEN warm-up of 512 frames: chunked values within 1e-3 relative of the whole-file ones
    rel = np.abs(chunked.embeddings - notebook).max() / np.abs(notebook).max()
    assert rel < 1e-3
    np.testing.assert_allclose(whole.spectrogram, pcen)
    np.testing.assert_allclose(whole.end_s[:2], [3.9124, 7.7524])
    assert whole.end_s[-1] == pytest.approx(whole.duration_s)


def test_bytes_in_and_short_input(standin_dir, recording):
    data = open(recording, "rb").read()
    out = embed_file(data, "vggish", str(standin_dir / "vggish"))
    assert out.embeddings.shape[0] == num_frames(get_model_spec("vggish"), round(out.duration_s * 16000))
    tiny = load_audio(recording, 16000)[:3200]
    import io

    import soundfile as sf
    buffer = io.BytesIO()
    sf.write(buffer, tiny, 16000, format="WAV")
    short = embed_file(buffer.getvalue(), "vggish", str(standin_dir / "vggish"))
    assert short.embeddings.shape == (0, 128)
    assert embed_file(buffer.getvalue(), "yamnet", str(standin_dir / "yamnet")).embeddings.shape == (1, 1024)
