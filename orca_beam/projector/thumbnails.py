"""Spectrogram thumbnails: the time-frequency patch a model consumed -> a small grey image.

Thumbnails are made at inference time (the pipeline has the patch in hand) and stored with each
embedding row, so the projector stage never decodes audio again. Time runs left to right, low
frequencies at the bottom; each thumbnail is min-max scaled on its own.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

#: Stored thumbnail edge in pixels (uint8, THUMB_PX * THUMB_PX bytes per row).
THUMB_PX = 32


def to_image(patch: np.ndarray, size_px: int = THUMB_PX) -> np.ndarray:
    """[frames, bands] float patch -> [size_px, size_px] uint8 image (time on x, low freq bottom)."""
    picture = np.asarray(patch, np.float32).T[::-1]
    finite = np.isfinite(picture)
    if not finite.any():
        return np.zeros((size_px, size_px), np.uint8)
    low, high = float(picture[finite].min()), float(picture[finite].max())
    scaled = np.where(finite, (picture - low) / (high - low) if high > low else 0.0, 0.0)
    image = Image.fromarray((scaled * 255.0).astype(np.float32), mode="F")
    image = image.resize((size_px, size_px), Image.Resampling.BILINEAR)
    return np.clip(np.asarray(image), 0, 255).round().astype(np.uint8)


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
