"""Dark fields: bright objects and dark holes in a dim glow, with and without the dark-field rule.

A 16-bit fluorescence field of 256 x 256: a glow of level ``g`` with three dark holes (level 120,
radius 25-35) and three small bright objects (level 3000, radius 5-8, the truth), blurred by 1.5
pixels, noise 20. Foreground IoU against the objects with ``dark_field`` on and off, both in this
process, for several glow levels; the median column is that of the image rescaled to [0, 1] as
the engine reads it, which the rule compares with ``DARK_FIELD``.

With ``--horse``, also grey versions (mean of R, G, B) of the horse photos of
``../shared/datasets/horse`` whose median lies under 0.3: the rule must leave dark scenes alone.

    python benchmarks/dark_field.py --fields 4 [--horse]
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
from scipy import ndimage

from napari_deepcut import segment
from napari_deepcut.image import prepare_image

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def glow_field(seed: int, glow: float, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(uint16 image, bool truth): see the module docstring."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]

    def disc(margin, radius):
        cy, cx = rng.uniform(margin, size - margin, 2)
        return (yy - cy) ** 2 + (xx - cx) ** 2 < rng.uniform(*radius) ** 2

    image = np.full((size, size), glow)
    for _ in range(3):
        image[disc(60, (25, 35))] = 120.0
    truth = disc(30, (5, 8)) | disc(30, (5, 8)) | disc(30, (5, 8))
    image[truth] = 3000.0
    image = ndimage.gaussian_filter(image, 1.5) + rng.normal(0, 20, truth.shape)
    return np.clip(image, 0, 65535).astype(np.uint16), truth


def iou(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return float((a & b).sum() / max((a | b).sum(), 1))


def scores(pairs) -> tuple[float, float, float]:
    """Mean median brightness, then mean IoU with the rule and without."""
    medians, on, off = [], [], []
    for image, truth in pairs:
        medians.append(float(np.median(prepare_image(image).data)))
        on.append(iou(segment(image).foreground, truth))
        off.append(iou(segment(image, dark_field=False).foreground, truth))
    return np.mean(medians), np.mean(on), np.mean(off)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fields", type=int, default=4, help="fields per glow level")
    parser.add_argument("--horse", action="store_true", help="also the grey horse photos of median < 0.3")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print("| fields | images | median | with the rule | without |")
    print("|---|---:|---:|---:|---:|")
    for glow in (400, 600, 800, 1200):
        median, on, off = scores(glow_field(seed, glow) for seed in range(args.fields))
        print(f"| glow {glow}, holes 120, objects 3000 | {args.fields} | {median:.3f} | {on:.3f} | {off:.3f} |", flush=True)
    if args.horse:
        import imageio.v3 as iio

        pairs = []
        for path in sorted((DATASETS / "horse" / "images").glob("*.jpg")):
            grey = iio.imread(path).astype(np.float32).mean(-1).astype(np.uint8)
            if np.median(prepare_image(grey).data) < 0.3:
                pairs.append((grey, iio.imread(DATASETS / "horse" / "masks" / f"{path.stem}.png") > 0))
        median, on, off = scores(pairs)
        print(f"| grey horse photos of median < 0.3 | {len(pairs)} | {median:.3f} | {on:.3f} | {off:.3f} |")


if __name__ == "__main__":
    main()
