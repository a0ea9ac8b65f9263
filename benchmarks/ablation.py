"""Ablations of the default pipeline on the development sets: one setting changed at a time.

Each row is ``segment(image, **change)`` scored like ``napari-deepcut evaluate --methods deepcut``
(foreground mIoU, each run picking its own foreground side), so the network's own contribution and
each prior / post-processing step are visible with and without it:

    python benchmarks/ablation.py --limit 20
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

from napari_deepcut import evaluate, pipeline
from napari_deepcut.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
VARIANTS = [
    ("defaults (GNN, correlation clustering into <= 8 clusters, a second clustering with 6 "
     "Laplacian eigenvectors, frame trimming, edge refinement)", {}),
    ("- Laplacian features: colour only, one clustering", {"laplacian_features": 0}),
    ("Laplacian clustering always kept (no contrast choice)", {"patch": {"cut_contrast": "second"}}),
    ("3 Laplacian eigenvectors (not 6)", {"laplacian_features": 3}),
    ("12 Laplacian eigenvectors (not 6)", {"laplacian_features": 12}),
    ("- edge refinement", {"refine": False}),
    ("- frame trimming", {"trim_frame": False}),
    ("border scores split at their largest gap (not Otsu's split by area)", {"patch": {"split_scores": "gap"}}),
    ("- many-objects check: every foreground is one object", {"patch": {"MANY_OBJECTS": 0.0}}),
    ("- border contact cap (0.2) when the foreground is one object", {"patch": {"ONE_OBJECT_CONTACT": np.inf}}),
    ("contact cap whenever a cluster is under it (not only when they hold 1/4 of the foreground)", {"patch": {"ONE_OBJECT_SHARE": 1e-9}}),
    ("- both: cluster scores split once", {"patch": {"MANY_OBJECTS": 0.0, "ONE_OBJECT_CONTACT": np.inf}}),
    ("correlation clustering shift 0.5 (not 0.7)", {"cc_shift": 0.5}),
    ("classical spectral N-cut, same graph (eigengap k <= 8)", {"clustering": "spectral"}),
    ("classical spectral N-cut, same graph, - edge refinement", {"clustering": "spectral", "refine": False}),
    ("direct 2-way cut: relaxed N-cut, k = 2", {"foreground_loss": "ncut", "foreground_clusters": 2}),
    ("relaxed N-cut, eigengap k <= 4", {"foreground_loss": "ncut", "foreground_clusters": 4}),
    ("2-way MinCutPool form (as DeepCut)", {"foreground_loss": "mincut", "foreground_clusters": 2}),
    ("modularity, <= 8 clusters", {"foreground_loss": "modularity"}),
    ("nodes: pixels (<= 65,536)", {"nodes": "pixels"}),
    ("no long-range edges (touching nodes only)", {"long_range_weight": 0.0}),
    ("features: colour + texture", {"features": "texture"}),
    ("+ colour sides: clusters join the side of nearer mean colour", {"colour_sides": True}),
    ("+ keep largest component", {"keep_largest": True}),
    ("+ fill holes", {"fill_holes": True}),
]


def largest_gap_split(area, score):
    """The former split: scores sorted (ties: smaller first) and cut at the largest gap between two."""
    area, score = np.asarray(area, float), np.asarray(score, float)
    present = np.flatnonzero(area > 0)
    order = present[np.lexsort((area[present], score[present]))]
    below = np.zeros(len(area), bool)
    if len(order) >= 2:
        below[order[: int(np.argmax(np.diff(score[order]))) + 1]] = True
    return below


def second_always_wins():
    """A ``cut_contrast`` under which the second clustering always wins: the foreground stage
    measures the Laplacian clustering's outline first (1), then the colour one's (0)."""
    values = itertools.cycle((1.0, 0.0))
    return lambda graph, inside: next(values)


PATCHES = {"gap": lambda: largest_gap_split, "second": second_always_wins}  # a fresh one per row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, help="first N images of each set (default: all)")
    parser.add_argument("--sets", default="horse,nuclei-dev")
    parser.add_argument("--rows", help="only the variants whose labels contain one of these comma-separated words")
    args = parser.parse_args()
    words = args.rows.split(",") if args.rows else None
    pairs = {name: evaluate.find_pairs(DATASETS / name / "images", DATASETS / name / "masks", args.limit)
             for name in args.sets.split(",")}
    rows = f" --rows {args.rows}" if args.rows else ""
    print(f"`python benchmarks/ablation.py{' --limit ' + str(args.limit) if args.limit else ''}{rows}`\n")
    print("| variant | " + " | ".join(f"{n} mIoU ({len(p)})" for n, p in pairs.items()) + " | s / image |")
    print("|---|" + "---:|" * (len(pairs) + 1))
    for label, change in VARIANTS:
        if words and not any(word in label for word in words):
            continue
        change = dict(change)
        patch = {name: PATCHES[value]() if isinstance(value, str) else value
                 for name, value in change.pop("patch", {}).items()}
        settings = Settings().replace(**change)
        cells, seconds = [], []
        engine = {name: getattr(pipeline, name) for name in patch}
        for name, value in patch.items():
            setattr(pipeline, name, value)
        try:
            for name, set_pairs in pairs.items():
                scores = evaluate.evaluate(set_pairs, ["deepcut"], settings, show_progress=False)
                row = evaluate.summarise(scores, ["deepcut"])[0]
                cells.append(f"{row['mIoU']:.3f} ± {row['sem']:.3f}")
                seconds.append(row["seconds"])
        finally:  # the engine's own rule again, whatever happened
            for name, value in engine.items():
                setattr(pipeline, name, value)
        print(f"| {label} | " + " | ".join(cells) + f" | {np.mean(seconds):.2f} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
