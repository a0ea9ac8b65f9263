"""One object alone in a noisy field: small, or faint, in grey, RGB and 3D.

Foreground IoU with the default settings, with and without the noise floor of the affinity scale
(:data:`napari_deepcut.graph.NOISE_FLOOR`, or with ``--nodes pixels``
:data:`napari_deepcut.graph.PIXEL_NOISE_FLOOR`; 0 turns it off), both in this process. Each field is
noise of standard deviation 10 around 100 with one disc (ball) ``a`` deviations brighter:

- small: a = 2, 3, 4, 6 and radius 10, 14, 20 pixels in 256 x 256, three seeds each;
- RGB: the same disc in red, a = 3, 4, 6, radius 10, 14, two seeds;
- 3D: balls of radius 6 and 8.4 voxels in 48 x 128 x 128, a = 3, 4, 6, two seeds;
- faint: a = 1, 1.5, 2 and radius 25, 40 in 160 x 160 and 256 x 256 (centred), two seeds.

    python benchmarks/isolated_objects.py      # about 3 minutes
    python benchmarks/isolated_objects.py --nodes pixels --downsample 2   # PIXEL_NOISE_FLOOR
"""

from __future__ import annotations

import argparse
import itertools
import time
import warnings

import numpy as np
import torch

import napari_deepcut.graph as graph_module
from napari_deepcut import segment


def disc(shape: tuple[int, ...], centre, radius: float) -> np.ndarray:
    grid = np.indices(shape).astype(float)
    return ((grid - np.reshape(centre, (-1,) + (1,) * len(shape))) ** 2).sum(0) < radius**2


def fields():
    """(family, image, true mask, segment keyword arguments) for every field."""
    for a, r, seed in itertools.product((2, 3, 4, 6), (10, 14, 20), range(3)):
        rng = np.random.default_rng([seed, a, r])
        mask = disc((256, 256), rng.uniform(40, 216, 2), r)
        yield "small, grey", 100 + 10 * a * mask + rng.normal(0, 10, mask.shape), mask, {}
    for a, r, seed in itertools.product((3, 4, 6), (10, 14), range(2)):
        rng = np.random.default_rng([seed, a, r])
        mask = disc((256, 256), rng.uniform(40, 216, 2), r)
        colour = np.array([120.0, 100, 100]) + mask[..., None] * np.array([1.0, -0.5, -0.5]) * 10 * a
        yield "small, RGB", colour + rng.normal(0, 10, mask.shape + (3,)), mask, {"rgb": True}
    for a, r, seed in itertools.product((3, 4, 6), (10, 14), range(2)):
        rng = np.random.default_rng([seed, a, r])
        centre = [24, *rng.uniform(20, 108, 2)]
        mask = disc((48, 128, 128), centre, 0.6 * r)
        yield "small, 3D", 100 + 10 * a * mask + rng.normal(0, 10, mask.shape), mask, {}
    for size, a, r, seed in itertools.product((160, 256), (1.0, 1.5, 2.0), (25, 40), range(2)):
        mask = disc((size, size), (size / 2, size / 2), r)
        noise = np.random.default_rng(seed).normal(0, 10, mask.shape)
        yield "faint, grey", (100 + 10 * a * mask + noise).astype(np.float32), mask, {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", choices=("superpixels", "pixels"), default="superpixels")
    parser.add_argument("--downsample", type=int, default=0, help="pixel nodes: block size (0: the default)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    name = "NOISE_FLOOR" if args.nodes == "superpixels" else "PIXEL_NOISE_FLOOR"
    floors = (0.0, getattr(graph_module, name))
    nodes = {} if args.nodes == "superpixels" else {"nodes": "pixels", "downsample": args.downsample}
    scores: dict[tuple[str, float], list[float]] = {}
    start = time.perf_counter()
    for family, image, mask, kwargs in fields():
        if family != "faint, grey":
            image = np.clip(image, 0, 255).astype(np.uint8)
        for floor in floors:
            setattr(graph_module, name, floor)
            found = segment(image, **kwargs, **nodes).foreground.astype(bool)
            scores.setdefault((family, floor), []).append((found & mask).sum() / (found | mask).sum())
    setattr(graph_module, name, floors[1])
    flags = "" if not nodes else f" --nodes pixels --downsample {args.downsample}"
    print(f"`python benchmarks/isolated_objects.py{flags}`\n")
    print(f"| one object in noise | fields | no floor | floor {floors[1]:g} |\n|---|---:|---:|---:|")
    for family in dict.fromkeys(f for f, _ in scores):
        no, yes = (np.mean(scores[family, floor]) for floor in floors)
        print(f"| {family} | {len(scores[family, floors[0]])} | {no:.3f} | {yes:.3f} |")
    print(f"\nseconds: {time.perf_counter() - start:.0f}")


if __name__ == "__main__":
    main()
