"""How far the foreground found stands out from the noise, on empty fields and on real images.

The foreground stage keeps its foreground only when its contrast to the noise
(:func:`napari_deepcut.checks.foreground_contrast`) reaches ``min_contrast``. This prints that
ratio, measured with the check off, for empty fields (no object: every foreground found is wrong;
"one region" counts those the clustering left one cluster, whose foreground is empty already, by
the noise floor of the affinities): pure noise, and noise on a smooth ramp or vignetting, as blank
wells and empty tiles come off a microscope with uneven illumination. Then for the development sets
and the synthetic microscopy kinds (objects everywhere: every foreground should stay), so the
margin on either side of the threshold is visible.

    python benchmarks/empty_fields.py --fields 6                # noise only (about a minute)
    python benchmarks/empty_fields.py --fields 6 --limit 100    # + horse, nuclei-dev, synthetic kinds
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import torch

from microscopy import KINDS, draw
from napari_deepcut.evaluate import find_pairs
from napari_deepcut.files import read_image
from napari_deepcut.image import prepare_image
from napari_deepcut.checks import foreground_contrast
from napari_deepcut.pipeline import foreground_stage
from napari_deepcut.settings import Settings

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
CHECK_OFF = Settings().replace(min_contrast=0)


def noise_fields(rng: np.random.Generator) -> dict[str, tuple[np.ndarray, Settings]]:
    """One field of each kind of pure noise, with the settings it is segmented with."""
    return {
        "grey 8-bit 256^2": (rng.normal(100, 10, (256, 256)).clip(0, 255).astype(np.uint8), CHECK_OFF),
        "Poisson, 3 counts, 512^2": (rng.poisson(3, (512, 512)).astype(np.uint16), CHECK_OFF),
        "float 128 x 300": (rng.normal(0, 1, (128, 300)).astype(np.float32), CHECK_OFF),
        "3D Poisson 32 x 96^2": (rng.poisson(20, (32, 96, 96)).astype(np.uint16), CHECK_OFF),
        "grey 8-bit 1024^2": (rng.normal(100, 5, (1024, 1024)).astype(np.uint8), CHECK_OFF),
        "RGB, one grey signal 256^2": (
            np.stack([rng.normal(100, 10, (256, 256))] * 3, -1).clip(0, 255).astype(np.uint8)
            + rng.integers(0, 3, (256, 256, 3)).astype(np.uint8),
            CHECK_OFF,
        ),
        "RGB 300^2": (rng.normal(100, 10, (300, 300, 3)).clip(0, 255).astype(np.uint8), CHECK_OFF),
        "float 200^2, pixel nodes": (rng.normal(0, 1, (200, 200)), CHECK_OFF.replace(nodes="pixels")),
    }


def graded_fields(rng: np.random.Generator) -> dict[str, tuple[np.ndarray, Settings]]:
    """One empty field of each kind with a smooth trend under its noise: ramps, vignetting."""
    y, x = np.mgrid[:256, :256] / 255.0
    vignette = 1.0 - ((y - 0.5) ** 2 + (x - 0.5) ** 2) / 0.5  # 1 at the centre, 0 in the corners
    wide = np.mgrid[:512, :512] / 511.0
    wide_vignette = 1.0 - ((wide[0] - 0.5) ** 2 + (wide[1] - 0.5) ** 2) / 0.5
    volume_ramp = np.broadcast_to(np.linspace(0.5, 1.0, 96), (24, 96, 96))
    tint = np.array([1.0, 0.97, 0.95])
    return {
        "ramp, grey 8-bit 256^2 (80 to 120, noise 5)": (
            rng.normal(80 + 40 * x, 5).clip(0, 255).astype(np.uint8),
            CHECK_OFF,
        ),
        "diagonal ramp, float 256^2": (rng.normal(0, 0.05, (256, 256)) + (x + y) / 2, CHECK_OFF),
        "vignetted Poisson 512^2 (50 counts, corners 60 %)": (
            rng.poisson(50 * (0.6 + 0.4 * wide_vignette)).astype(np.uint16),
            CHECK_OFF,
        ),
        "vignetted bright-field RGB 256^2": (
            rng.normal((230 * (0.75 + 0.25 * vignette))[..., None] * tint, 4).clip(0, 255).astype(np.uint8),
            CHECK_OFF,
        ),
        "3D ramp, Poisson 24 x 96^2": (rng.poisson(30 * volume_ramp).astype(np.uint16), CHECK_OFF),
        "ramp, float 256^2, pixel nodes": (rng.normal(80 + 40 * x, 5), CHECK_OFF.replace(nodes="pixels")),
    }


def contrast(image: np.ndarray, settings: Settings = CHECK_OFF) -> float:
    """The foreground's contrast to the noise; NaN when the clustering found one region (an empty
    foreground), infinite when the image has no measurable noise."""
    prepared = prepare_image(image)
    foreground = foreground_stage(prepared, settings).labels.astype(bool)
    if not foreground.any() or foreground.all():
        return float("nan")
    segmented = prepared.relief[0] if settings.relief else prepared  # the image the stage segmented
    return foreground_contrast(segmented, foreground)


def summary(values: list[float]) -> str:
    """Range of the measured ratios, how many reach ``min_contrast`` (their foreground is kept),
    and how many are one region or without measurable noise."""
    v = np.asarray(values)
    split = v[~np.isnan(v)]
    measured = split[np.isfinite(split)]
    counts = f"{len(v) - len(split)} of {len(v)} one region"
    if len(split) > len(measured):
        counts += f", {len(split) - len(measured)} without measurable noise"
    kept = f"{int((split >= Settings().min_contrast).sum())} of {len(v)} kept"
    if not len(measured):
        return f"{kept} ({counts})"
    return f"min {measured.min():.1f}, median {np.median(measured):.1f}, max {measured.max():.1f}; {kept} ({counts})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fields", type=int, default=6, help="noise fields of each kind (seeds 0..N-1)")
    parser.add_argument("--limit", type=int, default=0, help="also the first N images of each set (0: none)")
    parser.add_argument("--kinds", type=int, default=4, help="with --limit: synthetic fields per kind")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    print(f"min_contrast default: {Settings().min_contrast:g}\n\n| pure noise | contrast to noise |\n|---|---|")
    ratios: dict[str, list[float]] = {}
    for seed in range(args.fields):
        for name, (field, settings) in noise_fields(np.random.default_rng(seed)).items():
            ratios.setdefault(name, []).append(contrast(field, settings))
    for name, values in ratios.items():
        print(f"| {name} | {summary(values)} |")
    print(f"| **all noise** | {summary(sum(ratios.values(), []))} |", flush=True)
    graded: dict[str, list[float]] = {}
    for seed in range(args.fields):
        for name, (field, settings) in graded_fields(np.random.default_rng([1, seed])).items():
            graded.setdefault(name, []).append(contrast(field, settings))
    print("\n| graded empty field | contrast to noise |\n|---|---|")
    for name, values in graded.items():
        print(f"| {name} | {summary(values)} |")
    print(f"| **all graded** | {summary(sum(graded.values(), []))} |", flush=True)
    if not args.limit:
        return
    print("\n| images with objects | contrast to noise |\n|---|---|")
    for name in ("horse", "nuclei-dev"):
        pairs = find_pairs(DATASETS / name / "images", DATASETS / name / "masks", args.limit)
        print(f"| {name} | {summary([contrast(read_image(path)) for path, _ in pairs])} |", flush=True)
    synthetic = []
    for kind in KINDS:
        rng = np.random.default_rng([0, KINDS.index(kind)])
        synthetic += [contrast(draw(kind, rng)[0]) for _ in range(args.kinds)]
    print(f"| synthetic microscopy, {len(KINDS)} kinds | {summary(synthetic)} |")


if __name__ == "__main__":
    main()
