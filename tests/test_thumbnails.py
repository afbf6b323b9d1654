"""Batched thumbnails: Pillow's bilinear resize, per-patch scaling, the same for any batch."""

from __future__ import annotations

import numpy as np
from PIL import Image

from orca_beam.features.thumbnails import THUMB_PX, to_images


def pillow_thumbnail(patch: np.ndarray) -> np.ndarray:
    """One patch the way Pillow does it: transpose (time on x), low bands at the bottom,
    min-max to 0..255, bilinear resize in float."""
    picture = patch.T[::-1]
    low, high = picture.min(), picture.max()
    image = Image.fromarray(((picture - low) / (high - low) * 255).astype(np.float32), mode="F")
    resized = np.asarray(image.resize((THUMB_PX, THUMB_PX), Image.Resampling.BILINEAR))
    return np.clip(resized, 0, 255).round().astype(np.uint8)


def test_same_pixels_as_pillow_and_independent_of_the_batch():
    rng = np.random.default_rng(3)
    for frames in (96, 128, 20):  # YAMNet/VGGish log-mel patch, humpback PCEN window, short
        patches = (rng.standard_normal((300, frames, 64)) * 3 - 5).astype(np.float32)
        images = to_images(patches)
        assert images.shape == (300, THUMB_PX, THUMB_PX) and images.dtype == np.uint8
        reference = np.stack([pillow_thumbnail(p) for p in patches])
        differ = np.abs(images.astype(int) - reference.astype(int))
        assert differ.max() <= 1 and (differ > 0).mean() < 1e-4  # float32 vs Pillow's double
        alone = np.stack([to_images(patches[i:i + 1])[0] for i in range(0, 300, 7)])
        np.testing.assert_array_equal(alone, images[::7])


def test_orientation_scaling_and_non_finite_values():
    patch = np.zeros((96, 64), np.float32)
    patch[:, :8] = 1.0  # energy in the lowest bands: the bottom rows of the image
    image = to_images(patch[None])[0]
    assert image[-1].min() == 255 and image[0].max() == 0
    ramp = np.tile(np.linspace(0, 1, 96, dtype=np.float32)[:, None], (1, 64))
    row = to_images(ramp[None])[0][THUMB_PX // 2]
    assert row[0] < 10 and row[-1] > 245 and np.all(np.diff(row.astype(int)) >= 0)  # time on x
    bad = ramp.copy()
    bad[10, 5] = np.nan
    bad[20, 7] = np.inf
    as_minimum = ramp.copy()
    as_minimum[10, 5] = as_minimum[20, 7] = 0.0  # non-finite values count as the minimum
    np.testing.assert_array_equal(to_images(bad[None]), to_images(as_minimum[None]))
    assert to_images(np.full((2, 96, 64), np.nan, np.float32)).max() == 0
    assert to_images(np.ones((1, 96, 64), np.float32)).max() == 0  # constant: black
    assert to_images(np.zeros((0, 96, 64), np.float32)).shape == (0, THUMB_PX, THUMB_PX)
