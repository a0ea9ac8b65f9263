"""What SLIC at a reduced working resolution costs in superpixel quality.

The *ceiling* of a superpixel map is the foreground IoU reached when every superpixel takes the
majority label of the reference mask: no clustering can do better on that graph. For each image
(the first ``--limit`` of each data set, as given and upscaled ``--upscale`` times to emulate large
images), the ceiling and SLIC's seconds are printed for SLIC at full resolution and on block means
of 2 x 2 and 3 x 3 pixels, forced here (the engine picks the blocks with ``graph.slic_factors``).

    python benchmarks/slic_resolution.py --limit 20
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from skimage.transform import rescale

from napari_deepcut import graph
from napari_deepcut.evaluate import find_pairs, iou, read_mask
from napari_deepcut.files import read_image
from napari_deepcut.image import prepare_image


def ceiling(labels: np.ndarray, truth: np.ndarray) -> float:
    """IoU of the best foreground made of whole superpixels (majority vote of ``truth`` in each)."""
    n = int(labels.max()) + 1
    inside = np.bincount(labels.ravel(), weights=truth.ravel(), minlength=n)
    size = np.bincount(labels.ravel(), minlength=n)
    return iou((inside * 2 > size)[labels], truth)


def run(image: np.ndarray, truth: np.ndarray, n_segments: int, factor: int) -> tuple[float, float]:
    prepared = prepare_image(image)
    forced = (factor,) * prepared.ndim
    original = graph.slic_factors
    graph.slic_factors = lambda *args: forced  # this block size, whatever the rule says
    try:
        start = time.process_time()
        labels = graph.superpixel_labels(prepared, n_segments)
        seconds = time.process_time() - start
    finally:
        graph.slic_factors = original
    return ceiling(labels, truth), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="../shared/datasets", help="folder holding horse/ and nuclei-dev/")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--upscale", type=int, default=4)
    parser.add_argument("--n-segments", type=int, default=1000)
    args = parser.parse_args()

    factors = (1, 2, 3)
    print(f"{args.n_segments} segments; ceiling IoU (SLIC CPU seconds) at block size {factors}")
    print("| data set | scale | pixels / superpixel at full resolution | "
          + " | ".join(f"block {f}" for f in factors) + " |")
    print("|---|---:|---:|" + "---:|" * len(factors))
    for name in ("horse", "nuclei-dev"):
        root = Path(args.datasets) / name
        pairs = find_pairs(root / "images", root / "masks")[: args.limit]
        for scale in (1, args.upscale):
            scores = np.zeros((len(pairs), len(factors)))
            seconds = np.zeros_like(scores)
            pixels = []
            for p, (image_path, mask_path) in enumerate(pairs):
                image = np.asarray(read_image(image_path))
                truth = read_mask(mask_path) != 0
                if scale > 1:
                    image = rescale(image, scale, order=1, channel_axis=-1 if image.ndim == 3 else None,
                                    preserve_range=True, anti_aliasing=False).astype(image.dtype)
                    truth = np.kron(truth, np.ones((scale, scale), bool))
                pixels.append(truth.size / args.n_segments)
                for f, factor in enumerate(factors):
                    scores[p, f], seconds[p, f] = run(image, truth, args.n_segments, factor)
            cells = [f"{m:.3f} ({s:.2f} s)" for m, s in zip(scores.mean(0), seconds.mean(0))]
            print(f"| {name} ({len(pairs)}) | {scale} | {np.mean(pixels):.0f} | " + " | ".join(cells) + " |",
                  flush=True)
            drop = scores[:, 0:1] - scores[:, 1:]
            print("  worst drop per image vs full resolution: "
                  + ", ".join(f"block {f}: {d:.3f}" for f, d in zip(factors[1:], drop.max(0))))


if __name__ == "__main__":
    main()
