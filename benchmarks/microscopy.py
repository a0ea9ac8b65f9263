"""Foreground quality on synthetic microscopy of several kinds, with exact ground truth.

Each kind draws fields of cells or nuclei (smooth ellipses with some internal texture, blurred by
a Gaussian point-spread function) and changes one thing a real acquisition changes: uneven
illumination, a wide range of brightness between objects, bright-field polarity, low signal to
noise, a 16-bit camera using a few hundred grey levels, a sparse or a dense field, objects of a
few pixels, a 3D volume, phase contrast (the optical path of dome-shaped cells minus its local
average: dark rims, centres near the background's grey, a faint bright halo), differential
interference contrast (DIC: that path's slope along a diagonal, each cell lit on one side and
shadowed on the other), a large field (8 times the side, 3,000 nuclei of a few pixels: a 10x
objective on a 4-megapixel camera). Every method segments each image with its defaults and is
scored by foreground IoU against the drawn objects. The kinds are not the public data sets the
product is judged on; they separate the conditions those data sets mix, so a failure can be traced
to one.

    python benchmarks/microscopy.py --images 8
    python benchmarks/microscopy.py --images 8 --methods deepcut refine=false   # settings as KEY=VALUE
    python benchmarks/microscopy.py --images 2 --size 1024 --methods deepcut nodes='"pixels"'
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import ndimage

from napari_deepcut.settings import Settings
from tables import MethodTable, add_settings_argument, parse_settings


def _objects(rng, shape, count, radius, min_gap=2.0):
    """Label image of ``count`` non-overlapping ellipses (fewer when the field is full); each is
    drawn in the box around its centre that holds it with its gap."""
    labels = np.zeros(shape, np.int32)
    placed = 0
    for _ in range(count * 20):
        if placed == count:
            break
        centre = [rng.uniform(0, s) for s in shape]
        radii = rng.uniform(radius[0], radius[1], len(shape))
        axes = np.linalg.qr(rng.normal(size=(len(shape), len(shape))))[0]  # a random orientation
        reach = int(np.ceil(radii.max() + min_gap)) + 1
        box = tuple(slice(max(int(c) - reach, 0), min(int(c) + reach + 1, s)) for c, s in zip(centre, shape))
        grids = np.mgrid[box].astype(np.float32)
        offset = np.tensordot(axes, np.stack([g - c for g, c in zip(grids, centre)]), 1)
        inside = sum((o / r) ** 2 for o, r in zip(offset, radii)) < 1
        grown = sum((o / (r + min_gap)) ** 2 for o, r in zip(offset, radii)) < 1
        if inside.any() and not labels[box][grown].any():
            placed += 1
            labels[box][inside] = placed
    return labels


def draw(kind: str, rng: np.random.Generator, size: int = 256):
    """(image, bool mask of the objects) for one field of ``kind`` (see :data:`KINDS`)."""
    image, labels = draw_labels(kind, rng, size)
    return image, labels > 0


def draw_labels(kind: str, rng: np.random.Generator, size: int = 256):
    """(image, label image of the objects, 1..N) for one field of ``kind``, as :func:`draw`."""
    shape = (48, size // 2, size // 2) if kind == "3d volume" else (size, size)
    if kind == "large field":
        shape = (8 * size, 8 * size)
    count, radius = {
        "sparse field": (3, (8, 14)),
        "dense field": (400, (7, 11)),
        "small objects": (120, (2, 3.5)),
        "large cells": (5, (25, 60)),
        "large field": (3000, (3, 5.5)),
    }.get(kind, (40, (6, 12)))
    labels = _objects(rng, shape, count, radius)
    n = int(labels.max())
    brightness = rng.uniform(0.6, 1.0, n + 1)
    if kind == "wide brightness range":
        brightness = np.exp(rng.uniform(np.log(0.1), 0.0, n + 1))  # a tenfold range
    brightness[0] = 0.0
    texture = ndimage.gaussian_filter(rng.normal(0, 1, shape), 2.0)
    signal = brightness[labels] * (1.0 + 0.15 * texture / texture.std())
    signal = ndimage.gaussian_filter(signal, 1.5)  # the point-spread function
    background, noise = 0.1, 0.03
    if kind == "uneven illumination":
        grids = np.indices(shape) / np.array(shape).reshape(-1, *[1] * len(shape))
        centre = rng.uniform(0.2, 0.8, len(shape)).reshape(-1, *[1] * len(shape))
        falloff = np.exp(-((grids - centre) ** 2).sum(0) / 0.18)  # a vignetted, off-centre lamp
        signal = signal * (0.3 + 0.7 * falloff)
        background = 0.05 + 0.25 * falloff
    if kind == "low signal to noise":
        noise = 0.15
    image = background + signal + rng.normal(0, noise, shape)
    if kind == "bright-field":
        image = 1.0 - 0.6 * signal + rng.normal(0, noise, shape)  # dark objects on a bright field
    if kind in ("phase contrast", "DIC"):
        # the optical path of dome-shaped cells
        depth = ndimage.distance_transform_edt(labels > 0)
        path = np.sqrt(np.clip(depth / radius[0], 0, 1)) * (1.0 + 0.15 * texture / texture.std())
        path = ndimage.gaussian_filter(path, 1.0)
        if kind == "phase contrast":
            # minus its average over about a cell: dark cells with a bright halo, on mid-grey
            image = 0.5 - 0.4 * (path - ndimage.gaussian_filter(path, radius[0] / 2)) + rng.normal(0, noise, shape)
        else:
            # its slope along the shear (a diagonal): each cell lit on one side, shadowed on the other
            slope = sum(np.gradient(path, axis=a) for a in range(path.ndim)) / np.sqrt(path.ndim)
            image = 0.5 + 1.2 * slope + rng.normal(0, noise, shape)
    if kind == "16-bit with few grey levels":
        image = np.round(100 + 300 * image).clip(0, 65535).astype(np.uint16)
    else:
        image = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    return image, labels


KINDS = (
    "even fluorescence",
    "uneven illumination",
    "wide brightness range",
    "bright-field",
    "low signal to noise",
    "16-bit with few grey levels",
    "sparse field",
    "dense field",
    "small objects",
    "large cells",
    "3d volume",
    "phase contrast",
    "DIC",
    "large field",  # last, so the kinds above draw the fields they drew before it
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8, help="images per kind")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=256, help="side of a 2D field (a volume: 48 x size/2 x size/2); "
                        "the same number of objects, so a larger field is a sparser one")
    parser.add_argument("--methods", default="deepcut,ncut,otsu", help="comma-separated keys of evaluate.METHODS")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated kinds")
    add_settings_argument(parser)
    args = parser.parse_args()
    table = MethodTable(["kind"], args.methods.split(","), Settings().replace(**parse_settings(args.settings)))
    for kind in args.kinds.split(","):
        rng = np.random.default_rng([args.seed, KINDS.index(kind)])  # the same fields in any subset
        table.row([kind], [draw(kind, rng, args.size) for _ in range(args.images)])
    table.total()


if __name__ == "__main__":
    main()
