"""What SLIC at a reduced working resolution, or with fewer iterations, costs in superpixel quality.

The *ceiling* of a superpixel map is the foreground IoU reached when every superpixel takes the
majority label of the reference mask: no clustering can do better on that graph. For each image
(the first ``--limit`` of each data set, as given and upscaled ``--upscale`` times to emulate large
images), the ceiling and SLIC's seconds are printed for SLIC at full resolution and on block means
of 2 x 2 and 3 x 3 pixels, forced here (the engine picks the blocks with ``graph.slic_factors``).
With ``--iterations``, the columns are instead numbers of SLIC's k-means iterations (the
``slic_iterations`` setting), at the block size the engine picks.

    python benchmarks/slic_resolution.py --limit 20
    python benchmarks/slic_resolution.py --limit 100 --iterations 10,6,5,4,3,2
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


def run(
    image: np.ndarray, truth: np.ndarray, n_segments: int, factor: int | None, iterations: int = 10
) -> tuple[float, float]:
    """Ceiling and SLIC's CPU seconds at block size ``factor`` (None: the engine's choice)."""
    prepared = prepare_image(image)
    original = graph.slic_factors
    if factor is not None:
        forced = (factor,) * prepared.ndim
        graph.slic_factors = lambda *args: forced  # this block size, whatever the rule says
    try:
        start = time.process_time()
        labels = graph.superpixel_labels(prepared, n_segments, iterations=iterations)
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
    parser.add_argument("--iterations", help="comma-separated SLIC iteration counts to compare (the first "
                        "is the reference), at the engine's block size")
    args = parser.parse_args()

    if args.iterations:
        counts = [int(i) for i in args.iterations.split(",")]
        columns = [(None, i) for i in counts]
        names = [f"{i} iterations" for i in counts]
    else:
        columns = [(f, 10) for f in (1, 2, 3)]
        names = [f"block {f}" for f, _ in columns]
    print(f"{args.n_segments} segments; ceiling IoU (SLIC CPU seconds)")
    print("| data set | scale | pixels / superpixel at full resolution | " + " | ".join(names) + " |")
    print("|---|---:|---:|" + "---:|" * len(columns))
    for name in ("horse", "nuclei-dev"):
        root = Path(args.datasets) / name
        pairs = find_pairs(root / "images", root / "masks")[: args.limit]
        for scale in (1, args.upscale):
            scores = np.zeros((len(pairs), len(columns)))
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
                for c, (factor, iterations) in enumerate(columns):
                    scores[p, c], seconds[p, c] = run(image, truth, args.n_segments, factor, iterations)
            cells = [f"{m:.3f} ({s:.2f} s)" for m, s in zip(scores.mean(0), seconds.mean(0))]
            print(f"| {name} ({len(pairs)}) | {scale} | {np.mean(pixels):.0f} | " + " | ".join(cells) + " |",
                  flush=True)
            drop = scores[:, 0:1] - scores[:, 1:]
            print(f"  worst drop per image vs {names[0]}: "
                  + ", ".join(f"{name}: {d:.3f}" for name, d in zip(names[1:], drop.max(0))))


if __name__ == "__main__":
    main()
