"""Seconds of the steps of a scene of many objects, each on the same mask and image.

The fields are like those of ``microscopy.py`` ("wide brightness range": blurred nuclei of a
tenfold range of brightness in noise): a 2048 x 2048 field and a 48 x 1024 x 1024 volume (sides
set by ``--size``); the mask is the drawn objects grown by one pixel, as a clustering leaves
them. Each step runs alone on that mask, building its own distance transform (``ObjectRims``), so
the figures compare the steps with one another, in one process; then the three run in turn as
``foreground_stage`` runs them, sharing one transform while a step leaves the mask as it was.

    python benchmarks/object_steps.py
    python benchmarks/object_steps.py --objects 400 --size 1024
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage

from napari_deepcut.image import prepare_image
from napari_deepcut.refine import ObjectRims, dim_objects, faint_objects, object_edges


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
    print("| field | objects | faint objects s | dim objects s | object edges s | sum s | in turn, shared s | transforms |")
    print("|---|---|---|---|---|---|---|---|")
    for shape in ((args.size, args.size), (48, args.size // 2, args.size // 2)):
        image, mask = field(shape, args.objects, rng)
        prepared = prepare_image(image)
        prepared.noise  # measured once, as in the pipeline
        steps = (
            lambda m, r: faint_objects(m, prepared, 10.0, r),
            lambda m, r: dim_objects(m, prepared, r),
            lambda m, r: object_edges(m, prepared, r),
        )
        seconds = []
        for step in steps:
            start = time.perf_counter()
            step(mask, None)
            seconds.append(time.perf_counter() - start)
        start, now, rims, transforms = time.perf_counter(), mask, None, 0
        for step in steps:  # as foreground_stage
            if rims is None or not rims.fits(now):
                rims = None
                rims, transforms = ObjectRims.of(now, prepared.spacing), transforms + 1
            now = step(now, rims)
        shared = time.perf_counter() - start
        count = ndimage.label(mask)[1]
        print(
            f"| {' x '.join(map(str, shape))} | {count} | " + " | ".join(f"{s:.2f}" for s in seconds)
            + f" | {sum(seconds):.2f} | {shared:.2f} | {transforms} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
