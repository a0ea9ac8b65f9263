"""Small synthetic images for the tests (no data files needed)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

FAST = ["--epochs", "20", "--n_segments", "60", "--no-progress"]
"""Settings flags that keep a run well under a second on these images."""


def disk_image(shape=(48, 56), centre=(24, 26), radius=13, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """A bright disk on a dark noisy background: (uint8 grey image, bool mask of the disk)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.indices(shape)
    mask = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < radius**2
    image = np.clip(mask * 150 + 50 + rng.normal(0, 8, shape), 0, 255).astype(np.uint8)
    return image, mask


def to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.stack([grey, grey // 2 + 60, 255 - grey], axis=-1).astype(np.uint8)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One torch thread while these tests run: on a busy 2-core machine torch's default of one
    thread per core makes these tiny graphs train ~20x slower (threads wait on each other)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def cells(shape=(160, 160), count=14, seed=0):
    """Non-overlapping discs of radius 6-10 and the optical path of dome-shaped cells over them."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, bool)
    rows, cols = np.indices(shape)
    placed = 0
    for _ in range(count * 20):
        if placed == count:
            break
        r = rng.uniform(6, 10)
        cy, cx = rng.uniform(r, shape[0] - r), rng.uniform(r, shape[1] - r)
        disc = (rows - cy) ** 2 + (cols - cx) ** 2 < r**2
        if not (ndimage.binary_dilation(disc, iterations=3) & mask).any():  # 3 pixels apart
            mask |= disc
            placed += 1
    depth = ndimage.distance_transform_edt(mask)
    path = ndimage.gaussian_filter(np.sqrt(np.clip(depth / 6, 0, 1)), 1.0)
    return path, mask


def dic(path, angle, noise=0.03, seed=1):
    """The path's slope along ``angle`` (radians from the last axis toward the first) on grey, as
    8 bits: each cell lit on one side and shadowed on the other."""
    slope = np.sin(angle) * np.gradient(path, axis=0) + np.cos(angle) * np.gradient(path, axis=1)
    image = 0.5 + 1.2 * slope + np.random.default_rng(seed).normal(0, noise, path.shape)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)
