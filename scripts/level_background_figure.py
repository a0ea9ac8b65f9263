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

    import torch
    from skimage import data

    from napari_deepcut import segment
    from napari_deepcut.evaluate import iou
    from napari_deepcut.figures import grey_panels

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from microscopy import KINDS, draw

    torch.set_num_threads(1)
    kind = "uneven illumination"
    field, truth = draw(kind, np.random.default_rng([0, KINDS.index(kind)]))
    rows = []
    for name, image, reference in [("coins (scikit-image)", data.coins(), None), (f"synthetic: {kind}", field, truth)]:
        once = segment(image, level_background=False).foreground
        result = segment(image)
        levelled = result.metadata()["foreground"].get("background_levelled")
        panels = [
            (once, "level_background=False"),
            (result.foreground, f"defaults (unevenness {levelled})" if levelled else "defaults (not levelled)"),
        ]
        if reference is not None:
            panels = [(picture, f"{title}, IoU {iou(picture, reference):.3f}") for picture, title in panels]
        rows.append([(image, name), *panels])
    grey_panels(rows, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
