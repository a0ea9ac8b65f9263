"""Foreground quality on synthetic volumes of several object sizes and blur widths.

Each kind draws volumes (48 x 128 x 128) of 40 textured balls as ``microscopy.py`` does, blurred
by a Gaussian point-spread function of the width given (per axis: the last kind is 2.5 times
wider along z), with noise; scored by foreground IoU against the drawn balls. Where the blur is
wide against the objects, their edges are a large share of every neighbourhood.

    python benchmarks/blurred_volumes.py
    python benchmarks/blurred_volumes.py --volumes 3 --methods deepcut,otsu object_edges=false
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import ndimage

from microscopy import _objects
from napari_deepcut.settings import Settings
from tables import MethodTable, add_settings_argument, parse_settings

#: (object radius range in voxels, point-spread widths per axis)
KINDS = (
    ((3, 6), (1.5, 1.5, 1.5)),
    ((6, 12), (1.0, 1.0, 1.0)),
    ((6, 12), (2.5, 2.5, 2.5)),
    ((12, 20), (1.5, 1.5, 1.5)),
    ((6, 12), (3.75, 1.5, 1.5)),
)


def draw(radius, blur, rng: np.random.Generator, shape=(48, 128, 128)):
    """(uint8 volume, bool mask of the balls): 40 balls of brightness 0.6-1.0 with a 15 % texture,
    blurred by ``blur``, on a background of 0.1 with noise of 0.03."""
    labels = _objects(rng, shape, 40, radius)
    brightness = rng.uniform(0.6, 1.0, int(labels.max()) + 1)
    brightness[0] = 0.0
    texture = ndimage.gaussian_filter(rng.normal(0, 1, shape), 2.0)
    signal = ndimage.gaussian_filter(brightness[labels] * (1.0 + 0.15 * texture / texture.std()), blur)
    image = 0.1 + signal + rng.normal(0, 0.03, shape)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8), labels > 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--volumes", type=int, default=3, help="volumes per kind")
    parser.add_argument("--methods", default="deepcut,ncut,otsu", help="comma-separated keys of evaluate.METHODS")
    add_settings_argument(parser)
    args = parser.parse_args()
    settings = Settings().replace(**parse_settings(args.settings))
    table = MethodTable(["object radius", "blur (z, y, x)"], args.methods.split(","), settings)
    for index, (radius, blur) in enumerate(KINDS):
        volumes = [draw(radius, blur, np.random.default_rng([0, index, i])) for i in range(args.volumes)]
        table.row([f"{radius[0]}-{radius[1]}", ", ".join(map(str, blur))], volumes)
    table.total()


if __name__ == "__main__":
    main()
