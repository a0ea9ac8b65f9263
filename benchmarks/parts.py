"""Parts inside a known foreground, on synthetic objects with ground-truth part maps.

Each image holds one object made of 2-5 parts. The parts are angular sectors of an ellipse, each
with its own colour and texture (stripes or speckle of random frequency). The object sits on a
cluttered background: random blobs of other colours, plus noise. ``segment_parts`` gets the true
foreground and either the true number of parts or ``parts="auto"`` (K-less). The score is the part
mIoU after optimal one-to-one (Hungarian) matching of predicted to true parts. A true part left
unmatched scores 0, so finding too few parts costs.

    python benchmarks/parts.py --images 30
    python benchmarks/parts.py --images 30 refine=false     # settings as KEY=VALUE (JSON values)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.optimize import linear_sum_assignment
from skimage.filters import gaussian

from napari_deepcut import segment_parts
from tables import add_settings_argument, parse_settings


def synthetic_object(rng: np.random.Generator, size: int = 160):
    """(RGB uint8 image, int part map: 0 background, 1..k parts)."""
    yy, xx = np.mgrid[:size, :size].astype(float)
    image = rng.uniform(0.2, 0.8, 3) * np.ones((size, size, 3))
    for _ in range(12):  # background clutter
        cy, cx, r = rng.uniform(0, size, 2).tolist() + [rng.uniform(5, 25)]
        blob = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
        image[blob] = rng.uniform(0, 1, 3)
    image = gaussian(image, 1.0, channel_axis=-1)

    k = int(rng.integers(2, 6))
    cy, cx = rng.uniform(0.4, 0.6, 2) * size
    ry, rx = rng.uniform(0.22, 0.35, 2) * size
    inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
    angle = (np.arctan2(yy - cy, xx - cx) + np.pi + rng.uniform(0, 2 * np.pi)) % (2 * np.pi)
    bounds = np.sort(rng.uniform(0, 2 * np.pi, k - 1))
    bounds = np.concatenate([[0.0], bounds, [2 * np.pi]])
    gaps = np.diff(bounds)
    if gaps.min() < 0.5:  # keep each part a visible wedge
        bounds = np.linspace(0, 2 * np.pi, k + 1)
    truth = np.where(inside, np.searchsorted(bounds, angle, side="right"), 0).clip(0, k)
    # well-separated part colours: evenly spaced hues of random lightness
    hues = (rng.uniform() + np.arange(k) / k) % 1.0
    for part, hue in enumerate(hues, start=1):
        colour = np.array([np.cos(2 * np.pi * (hue - s)) for s in (0, 1 / 3, 2 / 3)]) * 0.35 + 0.5
        frequency = rng.uniform(0.2, 0.6)
        texture = 0.08 * np.sin(frequency * (xx * np.cos(part) + yy * np.sin(part)))
        region = truth == part
        image[region] = np.clip(colour + texture[region, None], 0, 1)
    image += rng.normal(0, 0.03, image.shape)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8), truth


def part_miou(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Mean IoU over the true parts after Hungarian matching of predicted parts to true parts."""
    true_ids = [t for t in np.unique(truth) if t > 0]
    pred_ids = [p for p in np.unique(prediction) if p > 0]
    ious = np.zeros((len(true_ids), max(len(pred_ids), 1)))
    for a, t in enumerate(true_ids):
        for b, p in enumerate(pred_ids):
            inter = np.sum((truth == t) & (prediction == p))
            union = np.sum((truth == t) | (prediction == p))
            ious[a, b] = inter / union if union else 0.0
    rows, cols = linear_sum_assignment(-ious)
    return float(ious[rows, cols].sum() / len(true_ids))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nodes", default="superpixels,pixels", help="node kinds, comma-separated")
    parser.add_argument("--modes", default="true k,auto", help="'true k' and/or 'auto', comma-separated")
    add_settings_argument(parser, "settings for segment_parts")
    args = parser.parse_args()
    settings = parse_settings(args.settings)
    rng = np.random.default_rng(args.seed)
    cases = [synthetic_object(rng) for _ in range(args.images)]
    print(f"`python benchmarks/parts.py --images {args.images} {' '.join(args.settings)}`\n".replace(" `", "`"))
    print("| parts asked for | nodes | part mIoU | parts found = true k | s / image |")
    print("|---|---|---:|---:|---:|")
    for nodes in args.nodes.split(","):
        for mode in args.modes.split(","):
            scores, exact, start = [], 0, time.perf_counter()
            for image, truth in cases:
                k = int(truth.max())
                parts = segment_parts(image, truth > 0, parts=k if mode == "true k" else "auto", nodes=nodes, **settings)
                scores.append(part_miou(parts, truth))
                exact += int(parts.max() == k)
            seconds = (time.perf_counter() - start) / len(cases)
            print(f"| {mode} | {nodes} | {np.mean(scores):.3f} ± {np.std(scores, ddof=1) / np.sqrt(len(scores)):.3f} "
                  f"| {exact}/{len(cases)} | {seconds:.2f} |", flush=True)


if __name__ == "__main__":
    main()
