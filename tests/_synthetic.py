"""Small synthetic images for the command-line, batch and evaluation tests (no data files needed)."""

from __future__ import annotations

import numpy as np
import pytest

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
