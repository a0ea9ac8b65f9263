"""Make docs/relief.png: a DIC field, its integral along the shear found, and the foreground with
and without the relief step.

The field is the first of ``benchmarks/microscopy.py``'s kind "DIC" (the slope of dome-shaped
cells' optical path along a diagonal, with noise); each foreground panel gives its IoU against
the drawn cells.

Usage, from the repository root::

    python scripts/relief_figure.py [--out docs/relief.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "docs" / "relief.png"))
    args = parser.parse_args()

    import torch

    from napari_deepcut import segment
    from napari_deepcut.evaluate import iou
    from napari_deepcut.figures import grey_panels
    from napari_deepcut.image import prepare_image

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from microscopy import KINDS, draw

    torch.set_num_threads(1)
    field, truth = draw("DIC", np.random.default_rng([0, KINDS.index("DIC")]))
    integral, shear = prepare_image(field).relief
    result = segment(field)
    plain = segment(field, relief=False).foreground
    grey_panels([[
        (field, "synthetic DIC field"),
        (integral.data[..., 0], f"integrated along {np.degrees(shear.angle):g} degrees"),
        (plain, f"relief=False, IoU {iou(plain, truth):.3f}"),
        (result.foreground, f"defaults, IoU {iou(result.foreground, truth):.3f}"),
    ]], args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
