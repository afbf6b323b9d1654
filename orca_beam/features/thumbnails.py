"""Spectrogram thumbnails: the time-frequency patch a model consumed -> a small grey image.

Thumbnails are made at inference time (the pipeline has the patch in hand) and stored with each
embedding row, so the projector stage never decodes audio again. Time runs left to right, low
frequencies at the bottom; each thumbnail is min-max scaled on its own.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

#: Stored thumbnail edge in pixels (uint8, THUMB_PX * THUMB_PX bytes per row).
THUMB_PX = 32


def _bilinear_weights(in_size: int, out_size: int) -> np.ndarray:
    """[out_size, in_size] float32 weights of a bilinear resize along one axis, as Pillow
    computes them (its ``precompute_coeffs``: a triangle filter widened by the scale when
    shrinking, each row normalised to sum 1)."""
    scale = in_size / out_size
    support = max(scale, 1.0)
    weights = np.zeros((out_size, in_size), np.float64)
    for out in range(out_size):
        center = (out + 0.5) * scale
        first = max(int(center - support + 0.5), 0)
        last = min(int(center + support + 0.5), in_size)
        taps = np.arange(first, last)
        kernel = np.maximum(0.0, 1.0 - np.abs((taps - center + 0.5) / support))
        weights[out, first:last] = kernel / kernel.sum()
    return weights.astype(np.float32)


@functools.lru_cache(maxsize=16)
def _resize_weights(frames: int, bands: int, size_px: int) -> tuple[np.ndarray, np.ndarray]:
    """(time weights [size_px, frames], band weights [size_px, bands] with the band axis
    reversed, so that low frequencies land at the bottom of the image)."""
    return _bilinear_weights(frames, size_px), _bilinear_weights(bands, size_px)[:, ::-1].copy()


def to_images(patches: np.ndarray, size_px: int = THUMB_PX) -> np.ndarray:
    """[N, frames, bands] float patches -> [N, size_px, size_px] uint8 images: time on x, low
    frequencies at the bottom, bilinear resize, each image min-max scaled to 0..255 by its own
    patch (non-finite values count as the patch's minimum; a constant patch is black). The whole
    batch is resized with two matrix products (float32)."""
    patches = np.asarray(patches, np.float32)
    count, frames, bands = patches.shape
    if count == 0:
        return np.zeros((0, size_px, size_px), np.uint8)
    finite = np.isfinite(patches)
    if finite.all():
        low = patches.min(axis=(1, 2))
        high = patches.max(axis=(1, 2))
    else:
        low = np.where(finite, patches, np.inf).min(axis=(1, 2))
        high = np.where(finite, patches, -np.inf).max(axis=(1, 2))
        low = np.where(np.isfinite(low), low, 0.0).astype(np.float32)
        high = np.where(np.isfinite(high), high, 0.0).astype(np.float32)
        patches = np.where(finite, patches, low[:, None, None])
    time_weights, band_weights = _resize_weights(frames, bands, size_px)
    # resize along bands ([N*frames, bands] -> [N*frames, px]), then along time, per patch
    across = (patches.reshape(count * frames, bands) @ band_weights.T).reshape(
        count, frames, size_px)
    resized = np.matmul(time_weights, across).transpose(0, 2, 1)  # [N, bands px, time px]
    span = high - low
    scale = np.where(span > 0, 255.0 / np.where(span > 0, span, 1.0), 0.0).astype(np.float32)
    images = (resized - low[:, None, None]) * scale[:, None, None]
    return np.clip(images, 0, 255).round().astype(np.uint8)


def resize(thumbnail: np.ndarray, size_px: int) -> np.ndarray:
    """A stored uint8 thumbnail resized to ``size_px`` square (bilinear)."""
    if thumbnail.shape == (size_px, size_px):
        return thumbnail
    image = Image.fromarray(thumbnail, mode="L").resize((size_px, size_px),
                                                         Image.Resampling.BILINEAR)
    return np.asarray(image)


def join_in_time(thumbnails: list[np.ndarray]) -> np.ndarray:
    """Several consecutive thumbnails side by side, squeezed back to one (a file's overview)."""
    if len(thumbnails) == 1:
        return thumbnails[0]
    wide = np.concatenate(thumbnails, axis=1)
    size = thumbnails[0].shape[0]
    image = Image.fromarray(wide, mode="L").resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image)
