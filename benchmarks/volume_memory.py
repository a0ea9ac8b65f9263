"""Seconds and peak memory of ``segment`` on a large 3D volume, per voxel.

The volume is synthetic: smooth random blobs (a quarter of it) at 1,200 on a background of 200,
with Gaussian noise of 50, 16-bit, voxels three times as deep as wide (``spacing=(3, 1, 1)``).
Peak memory is the highest resident set size during the run minus the RSS before it (sampled
every 5 ms, as ``speed.py``); the volume itself is made before.

    python benchmarks/volume_memory.py --shape 64 1024 1024
    python benchmarks/volume_memory.py --shape 64 768 768 object_significance=0   # settings as KEY=VALUE
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage

from speed import PeakMemory
from tables import add_settings_argument, parse_settings


def blobs(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.random((max(2, shape[0] // 8), max(2, shape[1] // 32), max(2, shape[2] // 32))).astype(np.float32)
    field = ndimage.zoom(coarse, [s / c for s, c in zip(shape, coarse.shape)], order=1)
    return ((field > 0.6) * 1000 + 200 + rng.normal(0, 50, field.shape)).astype(np.uint16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=(64, 1024, 1024))
    add_settings_argument(parser, "settings of segment")
    args = parser.parse_args()
    settings = parse_settings(args.settings)

    import torch

    from napari_deepcut import __version__, segment

    torch.set_num_threads(1)
    volume = blobs(tuple(args.shape))
    segment(volume[:8, :64, :64], spacing=(3, 1, 1), epochs=5)  # warm up torch and the imports
    with PeakMemory() as memory:
        start = time.perf_counter()
        result = segment(volume, spacing=(3, 1, 1), **settings)
        seconds = time.perf_counter() - start
    truth = volume > 700
    overlap = (result.foreground.astype(bool) & truth).sum() / max((result.foreground.astype(bool) | truth).sum(), 1)
    print(f"napari-deepcut {__version__}: volume {'x'.join(map(str, volume.shape))} uint16 "
          f"({volume.size / 1e6:.0f} M voxels, {volume.nbytes / 2**20:.0f} MiB)")
    print(f"seconds {seconds:.1f}, peak memory {memory.peak / 2**30:.2f} GiB "
          f"({memory.peak / volume.size:.0f} bytes per voxel), foreground IoU against the blobs {overlap:.3f}")


if __name__ == "__main__":
    main()
