"""The notebook's one-call API: one file in, its embeddings, timestamps and spectrogram out.

Same loader, registry, chunking and model calls as the pipeline, so the numbers match it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from orca_beam.core.audio import Source, load_audio
from orca_beam.core.framing import Chunker, default_chunk_frames, frame_times_s, num_frames
from orca_beam.core.registry import ModelSpec, get_model_spec
from orca_beam.models.loading import cached_model
from orca_beam.models.runners import DEFAULT_PACK_S, make_runner


@dataclass(frozen=True)
class FileEmbeddings:
    """Embeddings of one file by one model.

    ``embeddings`` [N, D] float32; ``start_s``/``end_s`` [N] seconds (end = the window's real span,
    clipped to the file); ``spectrogram`` [T, 64] float32, the representation the model consumed
    (log-mel for vggish/yamnet/birdnet, PCEN for humpback), one row per ``spectrogram_hop_s`` s;
    ``model_version`` "<handle>@sha256:<hash>[+standin]"; ``standin`` True for stand-in models.
    """

    model: str
    embeddings: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray
    spectrogram: np.ndarray
    spectrogram_hop_s: float
    duration_s: float
    model_version: str
    standin: bool


def representation(spec: ModelSpec, model, waveform: np.ndarray) -> np.ndarray:
    """The time-frequency input the model computes from ``waveform`` (model-rate samples).

    vggish/yamnet: log-mel [T, 64] (YAMNet's over its zero-padded waveform, as the model does);
    humpback: the model's own ``front_end`` PCEN [T, 64]; birdnet: the registry's display
    log-mel [T, 64] over the zero-filled windows (BirdNET's own spectrograms are inside it).
    """
    import tensorflow as tf

    from orca_beam.models import frontends

    if spec.interface == "humpback":
        return model.front_end(tf.constant(waveform[None, :, None], tf.float32)).numpy()[0]
    if spec.interface in ("yamnet", "birdnet"):
        count = num_frames(spec, len(waveform))
        padded_len = max(len(waveform), (count - 1) * spec.hop_samples + spec.window_samples)
        waveform = np.concatenate([waveform, np.zeros(padded_len - len(waveform), np.float32)])
    return frontends.log_mel(tf.constant(waveform, tf.float32), spec.front_end,
                             spec.sample_rate_hz).numpy()


def embed_file(source: Source, model: str, handle: str | None = None, *,
               channel: int | None = None, hop_frames: int | None = None,
               chunk_s: float = 60.0, pack_s: float = DEFAULT_PACK_S) -> FileEmbeddings:
    """Embeds one file (path, gs:// path or bytes) with ``model`` (vggish, yamnet, humpback or
    birdnet).

    ``handle`` overrides the registry's TF Hub handle (URL, SavedModel dir, gs:// dir).
    ``channel`` picks one channel (default: mix to mono). ``hop_frames`` changes the humpback
    window hop (PCEN frames of 30 ms; default 128 = 3.84 s), or the birdnet hop (samples at
    48 kHz; default 144000 = 3 s). The file is embedded in chunks of
    about ``chunk_s`` seconds exactly as one whole-file call would be.
    """
    spec = get_model_spec(model)
    if hop_frames is not None:
        spec = spec.with_hop_units(hop_frames)
    loaded, version = cached_model(handle or spec.handle, embedding_tensor=spec.embedding_tensor)
    name = source if isinstance(source, str) else "<bytes>"
    waveform = load_audio(source, spec.sample_rate_hz, channel=channel, name=name)
    chunker = Chunker(spec, name, channel=-1 if channel is None else channel,
                      chunk_frames=default_chunk_frames(spec, chunk_s))
    pieces = list(chunker.push(waveform)) + list(chunker.finish())
    runner = make_runner(spec, loaded, pack_s=pack_s)
    rows = runner.embed(pieces)
    embeddings = (np.concatenate(rows) if rows
                  else np.zeros((0, spec.embedding_dim), np.float32))
    start_s, end_s = frame_times_s(spec, 0, embeddings.shape[0], len(waveform))
    return FileEmbeddings(
        model=spec.name, embeddings=embeddings, start_s=start_s, end_s=end_s,
        spectrogram=representation(spec, loaded, waveform),
        spectrogram_hop_s=spec.front_end.stft_hop_samples / spec.sample_rate_hz,
        duration_s=len(waveform) / spec.sample_rate_hz,
        model_version=version.label, standin=version.standin)
