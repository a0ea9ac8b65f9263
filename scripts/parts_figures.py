"""Make docs/parts.png: the foreground, then its parts, on scikit-image's sample images.

One row per image: the image; the foreground stage (``napari_deepcut.segment`` with its default
settings); the foreground split into k parts; and split K-less (``parts="auto"``). Each panel is
titled with the clusters or parts found and its seconds. Only samples that ship with scikit-image
are used (nothing is downloaded); one that does not load is left out with a message.

Usage, from the repository root::

    python scripts/parts_figures.py [--images astronaut,chelsea,...] [--parts 4] [--out docs/parts.png]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

SAMPLES = "astronaut,chelsea,coffee,rocket,immunohistochemistry"
"""scikit-image samples stored in the package itself (no download)."""

ROW_INCHES = 2.3
"""Height of one row; panels are 1.2 times as wide."""


def load_sample(name: str) -> np.ndarray:
    """``skimage.data.<name>()``.

    Raises
    ------
    ValueError
        If there is no such sample or it cannot be loaded (e.g. one that must be downloaded, offline).
    """
    from skimage import data

    loader = getattr(data, name, None)
    if loader is None or name.startswith("_"):
        raise ValueError(f"skimage.data has no sample {name!r}")
    try:
        return np.asarray(loader())
    except Exception as error:  # noqa: BLE001 (pooch / network errors have many types)
        raise ValueError(f"skimage.data.{name}() failed: {type(error).__name__}: {error}") from None


def count_parts(labels: np.ndarray) -> int:
    """Number of distinct non-zero labels."""
    return int(np.count_nonzero(np.bincount(np.asarray(labels).ravel())[1:]))


def run_image(image: np.ndarray, k: int, seed: int) -> dict:
    """The foreground and both part splits of one image, with their seconds.

    Returns
    -------
    dict
        ``foreground`` (bool image), ``clusters`` (clusters of the foreground stage), ``parts_k`` and
        ``parts_auto`` (label images; None where there is no foreground) and ``seconds_*`` of each.
    """
    from napari_deepcut import segment, segment_parts

    result = segment(image, parts=k, seed=seed)
    foreground = result.foreground != 0
    run = {
        "foreground": foreground,
        "clusters": result.foreground_stage.n_clusters,
        "seconds_foreground": result.foreground_stage.seconds,
        "parts_k": result.parts if foreground.any() else None,
        "seconds_k": result.parts_stage.seconds,
        "parts_auto": None,
        "seconds_auto": 0.0,
    }
    if foreground.any():
        start = time.perf_counter()
        run["parts_auto"] = segment_parts(image, foreground, parts="auto", seed=seed)
        run["seconds_auto"] = time.perf_counter() - start
    return run


def draw(rows: list[tuple[str, np.ndarray, dict]], k: int, path: Path, dpi: float) -> None:
    """The figure: one row per (name, image, run), four panels each."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from napari_deepcut.figures import display_rgb, overlay, save_small_png

    figure, axes = plt.subplots(
        len(rows), 4, figsize=(4 * 1.2 * ROW_INCHES, len(rows) * ROW_INCHES), squeeze=False, constrained_layout=True
    )
    for panels, (name, image, run) in zip(axes, rows, strict=True):
        rgb = display_rgb(image)
        foreground = run["foreground"]
        stage = f"foreground: {run['clusters']} clusters, {100 * foreground.mean():.0f} %\n{run['seconds_foreground']:.1f} s"
        pictures = [(f"{name} ({image.shape[1]} x {image.shape[0]})", rgb), (stage, overlay(rgb, foreground))]
        for key, label in (("k", f"k = {k}"), ("auto", "auto (K-less)")):
            parts = run[f"parts_{key}"]
            if parts is None:
                pictures.append((f"{label}: no foreground", overlay(rgb, foreground)))
            else:
                title = f"parts, {label}: {count_parts(parts)} found\n{run[f'seconds_{key}']:.1f} s"
                pictures.append((title, overlay(rgb, foreground, parts)))
        for ax, (title, picture) in zip(panels, pictures, strict=True):
            ax.imshow(picture)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    save_small_png(figure, path, dpi)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default=SAMPLES, help="comma-separated skimage.data samples (default: %(default)s)")
    parser.add_argument("--parts", type=int, default=4, help="k of the third column (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    parser.add_argument("--dpi", type=float, default=80, help="(default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("docs") / "parts.png", help="(default: %(default)s)")
    args = parser.parse_args(argv)
    if args.parts < 2:
        parser.error(f"--parts must be at least 2, got {args.parts}")

    import torch

    from napari_deepcut import segment

    torch.set_num_threads(args.threads)
    # warm up, so that the first image's seconds do not include torch's first-call set-up
    segment(np.random.default_rng(0).random((32, 32)), parts=2, seed=args.seed)
    shown = shlex.join(["python", "scripts/parts_figures.py", *(sys.argv[1:] if argv is None else argv)])
    print(f"`{shown}`\n")
    print(f"| image | foreground (clusters, s) | k = {args.parts} (parts, s) | auto (parts, s) |")
    print("|---|---:|---:|---:|")
    rows = []
    for name in (n.strip() for n in args.images.split(",") if n.strip()):
        try:
            image = load_sample(name)
        except ValueError as error:
            print(f"skipped: {error}", file=sys.stderr)
            continue
        run = run_image(image, args.parts, args.seed)
        found = {key: "-" if run[f"parts_{key}"] is None else count_parts(run[f"parts_{key}"]) for key in ("k", "auto")}
        print(
            f"| {name} | {run['clusters']}, {run['seconds_foreground']:.2f} | {found['k']}, {run['seconds_k']:.2f} "
            f"| {found['auto']}, {run['seconds_auto']:.2f} |",
            flush=True,
        )
        rows.append((name, image, run))
    if not rows:
        print("error: no image could be loaded", file=sys.stderr)
        return 1
    draw(rows, args.parts, args.out, args.dpi)
    print(f"\nwrote {args.out} ({args.out.stat().st_size / 1000:.0f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
