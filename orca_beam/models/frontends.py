"""The published front ends as pure TensorFlow functions (the maths, no wiring).

Used inside the stand-in SavedModels and, for VGGish whose Hub model does not return its log-mel,
to compute the representation the model consumed (for sprites and ``embed_file``). Parameters come
from :class:`~orca_beam.core.registry.FrontEnd`.
"""

from __future__ import annotations

import tensorflow as tf

from orca_beam.core.registry import (
    PCEN_ALPHA,
    PCEN_DELTA,
    PCEN_FLOOR,
    PCEN_ROOT,
    PCEN_SMOOTHING,
    FrontEnd,
)


def mel_magnitude(waveform: tf.Tensor, front_end: FrontEnd, sample_rate_hz: int) -> tf.Tensor:
    """|STFT| weighted to mel bands: [..., samples] float32 -> [..., frames, mel_bands].

    Periodic Hann window, no centring, partial frames dropped (``tf.signal.stft`` defaults).
    """
    stft = tf.signal.stft(waveform, frame_length=front_end.stft_window_samples,
                          frame_step=front_end.stft_hop_samples,
                          fft_length=front_end.fft_length)
    magnitude = tf.abs(stft)
    mel_matrix = tf.signal.linear_to_mel_weight_matrix(
        num_mel_bins=front_end.mel_bands, num_spectrogram_bins=front_end.fft_bins,
        sample_rate=sample_rate_hz, lower_edge_hertz=front_end.mel_min_hz,
        upper_edge_hertz=front_end.mel_max_hz)
    return tf.tensordot(magnitude, mel_matrix, axes=1)


def log_mel(waveform: tf.Tensor, front_end: FrontEnd, sample_rate_hz: int) -> tf.Tensor:
    """VGGish/YAMNet log-mel: log(mel + log_offset), [samples] -> [frames, 64]."""
    return tf.math.log(mel_magnitude(waveform, front_end, sample_rate_hz) + front_end.log_offset)


def ema_smooth(energy: tf.Tensor, smoothing: float = PCEN_SMOOTHING) -> tf.Tensor:
    """PCEN smoother M_t = s*E_t + (1-s)*M_{t-1}, M_0 = E_0, over axis 1 of [batch, frames, bands].

    A sequential scan over frames, as the published model's SimpleRNN does.
    """
    by_time = tf.transpose(energy, [1, 0, 2])
    # Starting from E_0 and scanning every frame gives M_0 = s*E_0 + (1-s)*E_0 = E_0.
    smoothed = tf.scan(lambda prev, cur: smoothing * cur + (1.0 - smoothing) * prev,
                       by_time, initializer=by_time[0])
    return tf.transpose(smoothed, [1, 0, 2])


def pcen(energy: tf.Tensor, alpha: tf.Tensor, delta: tf.Tensor, root: tf.Tensor,
         floor: float = PCEN_FLOOR) -> tf.Tensor:
    """Per-channel energy normalisation of [batch, frames, bands] energies.

    PCEN = (E / (floor + M)^alpha + delta)^(1/root) - delta^(1/root), alpha <= 1, root >= 1.
    """
    alpha = tf.minimum(alpha, 1.0)
    root = tf.maximum(root, 1.0)
    smoothed = ema_smooth(energy)
    one_over_root = 1.0 / root
    return (tf.pow(energy / tf.pow(floor + smoothed, alpha) + delta, one_over_root)
            - tf.pow(delta, one_over_root))


def default_pcen_parameters(bands: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The published initial alpha, delta, root vectors, each [bands] float32."""
    return (tf.fill([bands], PCEN_ALPHA), tf.fill([bands], PCEN_DELTA), tf.fill([bands], PCEN_ROOT))


def pcen_mel(waveform: tf.Tensor, front_end: FrontEnd, sample_rate_hz: int,
             alpha: tf.Tensor, delta: tf.Tensor, root: tf.Tensor) -> tf.Tensor:
    """Humpback front end: [batch, samples] -> PCEN of square(mel(|STFT|)) [batch, frames, 64].

    The frame count may be zero (fewer than 1024 samples); then the result is [batch, 0, 64].
    """
    energy = tf.square(mel_magnitude(waveform, front_end, sample_rate_hz))
    return tf.cond(tf.shape(energy)[1] > 0,
                   lambda: pcen(energy, alpha, delta, root),
                   lambda: energy)
