"""Sample images for trying the plugin: napari sample-data contributions, plain numpy, no napari.

Every function returns a list of napari layer-data tuples ``(data, layer_kwargs, "image")``. The
natural and microscopy images ship with scikit-image (nothing is downloaded); the volume and the
time series are synthetic, generated from a fixed seed.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage import data as skdata


def coffee() -> list[tuple]:
    """A cup of coffee on a table (RGB, 400 x 600): a natural image with one clear object."""
    return [(skdata.coffee(), {"name": "coffee", "rgb": True}, "image")]


def chelsea() -> list[tuple]:
    """Chelsea the cat (RGB, 300 x 451): foreground / background, then parts (head, body)."""
    return [(skdata.chelsea(), {"name": "chelsea", "rgb": True}, "image")]


def immunohistochemistry() -> list[tuple]:
    """Immunohistochemistry of a colon tissue section (RGB, 512 x 512, brightfield microscopy)."""
    return [(skdata.immunohistochemistry(), {"name": "immunohistochemistry", "rgb": True}, "image")]


def cell() -> list[tuple]:
    """A cell in phase-contrast light microscopy (grayscale, 660 x 550)."""
    return [(skdata.cell(), {"name": "cell", "colormap": "gray"}, "image")]


def blob_volume(shape=(32, 96, 96), spacing=(2.0, 1.0, 1.0), seed: int = 0) -> np.ndarray:
    """Synthetic fluorescence volume: bright smooth blobs on a dark, noisy background.

    Parameters
    ----------
    shape : tuple of int
        ``(z, y, x)`` size in voxels.
    spacing : tuple of float
        Voxel size; the blobs are round in physical units, so z is squashed when spacing[0] > 1.
    seed : int
        Seed of the blob positions and the noise.

    Returns
    -------
    ndarray of float32, ``shape``, values roughly in [0, 1].
    """
    rng = np.random.default_rng(seed)
    n_blobs = 12
    centres = rng.uniform(0.15, 0.85, size=(n_blobs, 3)) * np.asarray(shape) * np.asarray(spacing)
    radii = rng.uniform(0.08, 0.14, size=n_blobs) * min(np.asarray(shape) * np.asarray(spacing))
    grid = np.stack(np.meshgrid(*[np.arange(s) * sp for s, sp in zip(shape, spacing)], indexing="ij"), -1)
    volume = np.zeros(shape, np.float32)
    for centre, radius in zip(centres, radii):
        inside = ((grid - centre) ** 2).sum(-1) <= radius**2
        volume[inside] = 0.8
    volume = ndimage.gaussian_filter(volume, sigma=1.0 / np.asarray(spacing))
    volume += rng.normal(0.1, 0.05, size=shape).astype(np.float32)
    return volume.astype(np.float32)


def blobs_3d() -> list[tuple]:
    """Synthetic fluorescence volume (32 x 96 x 96 voxels, z spacing 2): segmented as a 3D volume."""
    spacing = (2.0, 1.0, 1.0)
    volume = blob_volume(spacing=spacing)
    return [(volume, {"name": "blobs 3D", "scale": spacing, "colormap": "magma"}, "image")]


def blob_timelapse(n_frames: int = 6, shape=(96, 96), seed: int = 0) -> np.ndarray:
    """Synthetic 2D time-lapse: a few blobs drifting across a noisy background.

    Returns
    -------
    ndarray of float32, ``(n_frames, *shape)``.
    """
    rng = np.random.default_rng(seed)
    n_blobs = 5
    start = rng.uniform(0.25, 0.75, size=(n_blobs, 2)) * np.asarray(shape)
    velocity = rng.uniform(-2.0, 2.0, size=(n_blobs, 2))
    radii = rng.uniform(0.08, 0.13, size=n_blobs) * min(shape)
    yy, xx = np.indices(shape, dtype=np.float32)
    frames = np.zeros((n_frames, *shape), np.float32)
    for t in range(n_frames):
        for centre, step, radius in zip(start, velocity, radii):
            cy, cx = centre + t * step
            frames[t][(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = 0.8
        frames[t] = ndimage.gaussian_filter(frames[t], 1.0)
    frames += rng.normal(0.1, 0.05, size=frames.shape).astype(np.float32)
    return frames


def blobs_timelapse() -> list[tuple]:
    """Synthetic 2D time-lapse (6 frames of 96 x 96): segmented frame by frame."""
    return [(blob_timelapse(), {"name": "blobs time-lapse", "colormap": "magma"}, "image")]
