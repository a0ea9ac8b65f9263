"""Seconds of the steps of a scene of many objects, each on the same mask and image.

The fields are like those of ``microscopy.py`` ("wide brightness range": blurred nuclei of a
tenfold range of brightness in noise): a 2048 x 2048 field and a 48 x 1024 x 1024 volume (sides
set by ``--size``); the mask is the drawn objects grown by one pixel, as a clustering leaves
them. Each step runs alone on that mask, so the figures compare the steps with one another, in
one process.

    python benchmarks/object_steps.py
    python benchmarks/object_steps.py --objects 400 --size 1024
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage

from napari_deepcut.image import prepare_image
from napari_deepcut.refine import dim_objects, faint_objects, object_edges


def field(shape, count, rng):
    """Blurred balls of radius 6-12 around ``count`` random centres (touching ones split where
    they meet) in noise, and the mask of the balls grown by one pixel."""
    seeds = np.zeros(shape, bool)
    seeds[tuple(rng.integers(0, s, count) for s in shape)] = True
    distance, nearest = ndimage.distance_transform_edt(~seeds, return_indices=True)
    ids = np.zeros(shape, np.int32)
    ids[seeds] = np.arange(1, seeds.sum() + 1)
    labels = ids[tuple(nearest)]
    labels[distance >= rng.uniform(6, 12, labels.max() + 1)[labels]] = 0
    brightness = np.exp(rng.uniform(np.log(0.1), 0.0, labels.max() + 1))
    brightness[0] = 0.0
    image = 0.1 + ndimage.gaussian_filter(brightness[labels], 1.5) + rng.normal(0, 0.03, shape)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8), ndimage.binary_dilation(labels > 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=2048, help="side of the 2D field; the volume is 48 x size/2 x size/2")
    parser.add_argument("--objects", type=int, default=1500)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print("| field | objects | faint objects s | dim objects s | object edges s |")
    print("|---|---|---|---|---|")
    for shape in ((args.size, args.size), (48, args.size // 2, args.size // 2)):
        image, mask = field(shape, args.objects, rng)
        prepared = prepare_image(image)
        prepared.noise  # measured once, as in the pipeline
        seconds = []
        for step in (lambda: faint_objects(mask, prepared, 10.0), lambda: dim_objects(mask, prepared), lambda: object_edges(mask, prepared)):
            start = time.perf_counter()
            step()
            seconds.append(time.perf_counter() - start)
        count = ndimage.label(mask)[1]
        print(f"| {' x '.join(map(str, shape))} | {count} | " + " | ".join(f"{s:.2f}" for s in seconds) + " |", flush=True)


if __name__ == "__main__":
    main()
