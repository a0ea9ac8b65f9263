"""Ablations of the default pipeline on the development sets: one setting changed at a time.

Each row is ``segment(image, **change)`` scored like ``napari-deepcut evaluate --methods deepcut``
(foreground mIoU, each run picking its own foreground side), so the network's own contribution and
each prior / post-processing step are visible with and without it:

    python benchmarks/ablation.py --limit 20
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from napari_deepcut import choice, evaluate, pipeline
from napari_deepcut.image import content_box
from napari_deepcut.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
VARIANTS = [
    ("defaults (GNN, correlation clustering into <= 8 clusters, then 3 with 6 Laplacian "
     "eigenvectors, frame trimming, centre prior, edge refinement)", {}),
    ("- Laplacian features: colour only, one clustering", {"laplacian_features": 0}),
    ("1 Laplacian run (not 3)", {"laplacian_runs": 1}),
    ("2 Laplacian runs (not 3)", {"laplacian_runs": 2}),
    ("Laplacian clusterings always kept (the foreground chosen from them alone)", {"patch": {"choose_foreground": "second"}}),
    ("3 Laplacian eigenvectors (not 6)", {"laplacian_features": 3}),
    ("12 Laplacian eigenvectors (not 6)", {"laplacian_features": 12}),
    ("SLIC run to 10 iterations (not 4)", {"slic_iterations": 10}),
    ("- edge refinement", {"refine": False}),
    ("- faint objects (scenes of many objects: objects whose summed excess over their surroundings is under 10 times its noise dropped)", {"object_significance": 0}),
    ("- dim objects (scenes of many objects: background pieces rising above their surroundings by half the dimmest object's step)", {"dim_objects": False}),
    ("- object edges (scenes of many objects: each edge half way up its object's own step)", {"object_edges": False}),
    ("- object holes (scenes of many objects: holes no larger than their object filled)", {"object_holes": False}),
    ("- background levelling (grey / multichannel scenes of many objects under uneven light)", {"level_background": False}),
    ("- denoising before edge refinement (noisy images only)", {"refine_denoise": False}),
    ("- finer superpixels for small objects (scenes of many objects under two superpixels each)", {"adapt_superpixels": False}),
    ("- frame trimming", {"trim_frame": False}),
    ("- photo frames (frame trimming of uniform frames only)", {"patch": {"content_box": "uniform"}}),
    ("- dark-field rule (grey / multichannel dark fields: only a foreground brighter than its background)", {"dark_field": False}),
    ("- outline choice: the border split of the clustering with the stronger outline", {"patch": {"choose_foreground": "border"}}),
    ("- outline choice, fast preset (colour only)", {"laplacian_features": 0, "patch": {"choose_foreground": "border"}}),
    ("- open outline (one object: the outline's share facing enclosed clusters counts too)", {"patch": {"open_outline": "closed"}}),
    ("- centre prior (one object: the outline score weighed by how central the object lies)", {"centre_prior": False}),
    ("- frame-filling rule (one object: the border term in full for a candidate reaching every side)", {"patch": {"image_sides": "never"}}),
    ("border scores split at their largest gap (not Otsu's split by area)", {"patch": {"split_scores": "gap"}}),
    ("- many-objects check: every foreground is one object", {"patch": {"MANY_OBJECTS": 0.0}}),
    ("- both: cluster scores split once", {"patch": {"MANY_OBJECTS": 0.0, "choose_foreground": "border"}}),
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
    ("- colour sides: for many objects, nodes no longer join the side of nearer mean colour", {"colour_sides": "off"}),
    ("colour sides in every scene, one object too", {"colour_sides": "always"}),
    ("- small pieces kept in RGB photos read as one object (min_piece=0)", {"min_piece": 0.0}),
    ("+ keep largest component", {"keep_largest": True}),
    ("+ fill holes", {"fill_holes": True}),
]


def largest_gap_split(area, score):
    """The former split: scores sorted (ties: smaller first) and cut at the largest gap between two."""
    area, score = np.asarray(area, float), np.asarray(score, float)
    order = choice.score_order(area, score)
    below = np.zeros(len(area), bool)
    if len(order) >= 2:
        below[order[: int(np.argmax(np.diff(score[order]))) + 1]] = True
    return below


def second_always_kept():
    """The engine's choice made among the Laplacian clusterings alone (all but the first, colour
    one; the colour one where it is the only one)."""
    choose = pipeline.choose_foreground

    def choose_laplacian(graph, labelings, n_clusters, brightness=None, touching=True, centre=True):
        first = min(1, len(labelings) - 1)
        index, split = choose(graph, labelings[first:], n_clusters, brightness, touching, centre)
        return first + index, split

    return choose_laplacian


def border_split_only():
    """The former choice: each clustering split along its border scores, and the split whose outline
    has the higher contrast kept, whether the scene is one object or many (no dark-field rule, no
    centre prior)."""

    def choose(graph, labelings, n_clusters, brightness=None, touching=True, centre=True):
        splits = [choice.foreground_clusters(graph, labels, n_clusters, touching) for labels in labelings]
        contrast = [choice.cut_contrast(graph, split[labels]) for split, labels in zip(splits, labelings)]
        index = int(np.argmax(contrast))
        return index, splits[index]

    return choose


def closed_outline():
    """The outline score before the open share: every cut edge counts, enclosed clusters too."""
    return lambda graph, inside, enclosed: 1.0


def no_sides():
    """No candidate reaches every side of the image, so every border term is charged in full."""
    return lambda graph: [np.zeros(0, np.int64)]


def uniform_frames_only():
    """Frame trimming as before photos' frames: uniform frames only."""
    return lambda image: content_box(image, photo_frames=False)


PATCHES = {
    "gap": lambda: largest_gap_split,
    "second": second_always_kept,
    "border": border_split_only,
    "closed": closed_outline,
    "never": no_sides,
    "uniform": uniform_frames_only,
}


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
        # each name patched in every engine module that holds it (where it is defined and where
        # it is imported), so the functions of either module see the patch
        engine = [(module, name, getattr(module, name)) for name in patch for module in (pipeline, choice)
                  if hasattr(module, name)]
        for module, name, _ in engine:
            setattr(module, name, patch[name])
        try:
            for name, set_pairs in pairs.items():
                scores = evaluate.evaluate(set_pairs, ["deepcut"], settings, show_progress=False)
                row = evaluate.summarise(scores, ["deepcut"])[0]
                cells.append(f"{row['mIoU']:.3f} ± {row['sem']:.3f}")
                seconds.append(row["seconds"])
        finally:  # the engine's own rule again, whatever happened
            for module, name, value in engine:
                setattr(module, name, value)
        print(f"| {label} | " + " | ".join(cells) + f" | {np.mean(seconds):.2f} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
