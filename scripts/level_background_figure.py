"""Make docs/level_background.png: the foreground stage with and without background levelling.

Two rows: scikit-image's ``coins`` (a grey photo lit from the top left) and a synthetic field of
nuclei under an off-centre lamp (``benchmarks/microscopy.py``, kind "uneven illumination"). Each
row shows the image, the foreground with ``level_background=False``, and with the defaults; the
synthetic row gives the IoU against its drawn nuclei.

Usage, from the repository root::

    python scripts/level_background_figure.py [--out docs/level_background.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "docs" / "level_background.png"))
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    from skimage import data

    from napari_deepcut import segment
    from napari_deepcut.evaluate import iou

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from microscopy import KINDS, draw

    torch.set_num_threads(1)
    kind = "uneven illumination"
    field, truth = draw(kind, np.random.default_rng([0, KINDS.index(kind)]))
    rows = [("coins (scikit-image)", data.coins(), None), (f"synthetic: {kind}", field, truth)]
    figure, axes = plt.subplots(len(rows), 3, figsize=(10.5, 3.3 * len(rows)))
    for (name, image, reference), axis in zip(rows, axes):
        once = segment(image, level_background=False).foreground
        result = segment(image)
        levelled = result.metadata()["foreground"].get("background_levelled")
        panels = [
            (image, name),
            (once, "level_background=False"),
            (result.foreground, f"defaults (unevenness {levelled})" if levelled else "defaults (not levelled)"),
        ]
        for (picture, title), ax in zip(panels, axis):
            if reference is not None and picture is not image:
                title += f", IoU {iou(picture, reference):.3f}"
            ax.imshow(picture, cmap="gray")
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    figure.tight_layout()
    figure.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
