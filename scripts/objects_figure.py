"""Make docs/objects.png: a dense field of nuclei, its foreground numbered object by object as
connected pieces (``objects="connected"``) and with touching objects split (``"split"``).

The field is the first of ``benchmarks/microscopy.py``'s kind "dense field" (121 nuclei packed
on 256 x 256, many touching after the blur); each panel gives its objects and their F1 against
the drawn nuclei (matched one to one at IoU over 0.5). Objects are shown in random colours.

Usage, from the repository root::

    python scripts/objects_figure.py [--out docs/objects.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "docs" / "objects.png"))
    args = parser.parse_args()

    import torch
    from skimage.color import label2rgb

    from napari_deepcut import segment
    from napari_deepcut.evaluate import object_matches
    from napari_deepcut.figures import grey_panels

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from microscopy import KINDS, draw_labels

    torch.set_num_threads(1)
    field, drawn = draw_labels("dense field", np.random.default_rng([0, KINDS.index("dense field")]))
    panels = [(field, f"synthetic dense field, {drawn.max()} nuclei drawn")]
    for way in ("connected", "split"):
        objects = segment(field, seed=0, objects=way).foreground
        tp, fp, fn = object_matches(objects, drawn)
        colours = label2rgb(objects, bg_label=0, colors=np.random.default_rng(0).uniform(0.2, 1.0, (64, 3)))
        panels.append((colours, f'objects="{way}": {objects.max()}, F1 {2 * tp / (2 * tp + fp + fn):.3f}'))
    grey_panels([panels], args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
