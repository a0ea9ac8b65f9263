"""Objects one by one: each object of the foreground its own label (``objects="connected"`` or
``"split"``), against the drawn objects of the synthetic microscopy kinds.

Every field of ``benchmarks/microscopy.py`` is segmented once with the defaults; its foreground is
then numbered object by object (:func:`napari_deepcut.objects.label_objects`) as connected pieces
and with touching objects split, and matched to the drawn objects one to one at IoU over 0.5
(:func:`napari_deepcut.evaluate.object_matches`). The table gives the drawn objects, the objects
found, and the object-level F1 ``2 TP / (2 TP + FP + FN)`` of each way, with the seconds of each
labelling next to the segmentation's.

    python benchmarks/objects.py --images 4
    python benchmarks/objects.py --images 2 --size 1024 --kinds "dense field,small objects"
    python benchmarks/objects.py --timing 2048x2048,4096x4096,64x512x512   # labelling alone

``--timing`` times the labelling alone on masks of the shapes given: smoothed noise above its
median, 42 % of the pixels in blobs about 10 pixels across that touch and branch (a worst case of
many necks), one run each after a warm-up.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from microscopy import KINDS, draw_labels

from napari_deepcut import segment
from napari_deepcut.evaluate import object_matches
from napari_deepcut.objects import label_objects

WAYS = ("connected", "split")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4, help="fields per kind")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=256, help="side of a 2D field (a volume: 48 x size/2 x size/2)")
    parser.add_argument("--kinds", default=",".join(k for k in KINDS if k != "large field"), help="comma-separated kinds")
    parser.add_argument("--timing", help="comma-separated shapes (e.g. 2048x2048,64x512x512): time the labelling alone")
    args = parser.parse_args()
    if args.timing:
        timing([tuple(int(n) for n in shape.split("x")) for shape in args.timing.split(",")])
        return
    print("| kind | drawn | " + " | ".join(f"{w}: found | {w}: F1" for w in WAYS) + " | s: segment | "
          + " | ".join(f"s: {w}" for w in WAYS) + " |")
    print("|---|---:|" + "---:|---:|" * len(WAYS) + "---:|" * (1 + len(WAYS)))
    totals = {w: np.zeros(3, int) for w in WAYS}
    for kind in args.kinds.split(","):
        rng = np.random.default_rng([args.seed, KINDS.index(kind)])  # the fields microscopy.py draws
        counts = {w: np.zeros(3, int) for w in WAYS}
        found = {w: 0 for w in WAYS}
        seconds = {w: 0.0 for w in ("segment", *WAYS)}
        drawn = 0
        for _ in range(args.images):
            image, truth = draw_labels(kind, rng, args.size)
            drawn += int(truth.max())
            start = time.perf_counter()
            foreground = segment(image, seed=0).foreground
            seconds["segment"] += time.perf_counter() - start
            for way in WAYS:
                start = time.perf_counter()
                objects = label_objects(foreground, split=way == "split")
                seconds[way] += time.perf_counter() - start
                found[way] += int(objects.max())
                counts[way] += object_matches(objects, truth)
        for way in WAYS:
            totals[way] += counts[way]
        f1 = {w: 2 * c[0] / max(2 * c[0] + c[1] + c[2], 1) for w, c in counts.items()}
        print(f"| {kind} | {drawn} | " + " | ".join(f"{found[w]} | {f1[w]:.3f}" for w in WAYS)
              + " | " + " | ".join(f"{seconds[k] / args.images:.2f}" for k in seconds) + " |", flush=True)
    f1 = {w: 2 * c[0] / max(2 * c[0] + c[1] + c[2], 1) for w, c in totals.items()}
    print("| **all** | | " + " | ".join(f" | **{f1[w]:.3f}**" for w in WAYS) + " | | | |")


def timing(shapes) -> None:
    """Seconds of each labelling of smooth random masks of ``shapes``."""
    from scipy import ndimage

    label_objects(np.ones((8, 8), bool))  # imports and first calls out of the timings
    print("| mask | share | connected: objects | s | split: objects | s |")
    print("|---|---:|---:|---:|---:|---:|")
    for shape in shapes:
        noise = np.random.default_rng(0).normal(size=shape).astype(np.float32)
        mask = ndimage.gaussian_filter(noise, 3) > 0.02
        cells = [f"{'x'.join(map(str, shape))}", f"{mask.mean():.2f}"]
        for way in WAYS:
            start = time.perf_counter()
            objects = label_objects(mask, split=way == "split")
            cells += [str(int(objects.max())), f"{time.perf_counter() - start:.1f}"]
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
