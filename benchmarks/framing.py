"""The horse photos framed four ways: how the foreground choice depends on where the object lies.

Each photo of ``../shared/datasets/horse`` (with its mask) is cropped, from the horse's bounding
box in the reference mask:

- as photographed: the whole photo;
- one side cut: from the box's left edge (less 5 % of its width) to the photo's right edge, or
  from the photo's left edge to the box's right edge, alternately, so the horse lies off centre
  and touches one side;
- close-up: the bounding box itself, so the horse touches all four sides;
- filling the frame: the box shrunk by a tenth of its size on every side, so the horse covers
  most of the frame and crosses all four sides.

Foreground IoU (mean over the photos) of the engine with and without the centre prior
(``centre_prior``), the spectral N-cut of the same graph and Otsu's threshold; the mean offset of
the horse's centroid from the frame's centre (a share of the frame's width and height) and its
share of the frame describe each framing.

    python benchmarks/framing.py --limit 100     # about 6 minutes
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from napari_deepcut.evaluate import METHODS, find_pairs, iou, read_mask
from napari_deepcut.files import read_image
from napari_deepcut.settings import Settings

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
FRAMINGS = ("as photographed", "one side cut", "close-up", "filling the frame")
COLUMNS = {
    "deepcut": ("deepcut", {}),
    "deepcut, no centre prior": ("deepcut", {"centre_prior": False}),
    "ncut": ("ncut", {}),
    "otsu": ("otsu", {}),
}


def frame(mask: np.ndarray, framing: str, index: int) -> tuple[slice, slice]:
    """The window of a photo with reference ``mask`` for ``framing`` (see the module docstring)."""
    rows, cols = np.nonzero(mask)
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    height, width = mask.shape
    if framing == "as photographed":
        return slice(0, height), slice(0, width)
    if framing == "one side cut":
        margin = int(0.05 * (right - left))
        if index % 2:
            return slice(0, height), slice(max(left - margin, 0), width)
        return slice(0, height), slice(0, min(right + margin, width))
    if framing == "close-up":
        return slice(top, bottom), slice(left, right)
    dy, dx = (bottom - top) // 10, (right - left) // 10
    return slice(top + dy, bottom - dy), slice(left + dx, right - dx)


def describe(mask: np.ndarray) -> tuple[float, float]:
    """The centroid's offset from the centre (in shares of the frame's height and width, Euclidean)
    and the object's share of the frame."""
    rows, cols = np.nonzero(mask)
    offset = np.hypot(rows.mean() / mask.shape[0] - 0.5, cols.mean() / mask.shape[1] - 0.5)
    return float(offset), float(mask.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=100, help="first N photos (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    folder = DATASETS / "horse"
    pairs = find_pairs(folder / "images", folder / "masks", args.limit)
    photos = [(read_image(image), read_mask(mask) > 0) for image, mask in pairs]
    settings = Settings(seed=args.seed)
    print(f"`python benchmarks/framing.py --limit {args.limit}{' --seed ' + str(args.seed) if args.seed else ''}`\n")
    print("| framing | photos | centroid offset | object share | " + " | ".join(COLUMNS) + " |")
    print("|---|---:|---:|---:|" + "---:|" * len(COLUMNS))
    seconds = dict.fromkeys(COLUMNS, 0.0)
    for framing in FRAMINGS:
        scores = {name: [] for name in COLUMNS}
        shape = []
        for index, (image, mask) in enumerate(photos):
            window = frame(mask, framing, index)
            image, truth = image[window], mask[window]
            shape.append(describe(truth))
            for name, (method, change) in COLUMNS.items():
                start = time.perf_counter()
                scores[name].append(iou(METHODS[method](image, settings.replace(**change))[0], truth))
                seconds[name] += time.perf_counter() - start
        offset, share = np.mean(shape, axis=0)
        cells = " | ".join(f"{np.mean(scores[name]):.3f}" for name in COLUMNS)
        print(f"| {framing} | {len(photos)} | {offset:.3f} | {share:.2f} | {cells} |", flush=True)
    print("\nseconds: " + ", ".join(f"{name} {s:.0f}" for name, s in seconds.items()))


if __name__ == "__main__":
    main()
