"""The CUDA path against the CPU: the same pipeline, seed and images on both devices.

Prints, per image: node count, seconds on each device, the agreement (IoU) of the two
foregrounds and of the two part maps, and whether a second CUDA run with the same seed gives the
same labels. With timm installed, also ``features="dino"`` (a ViT-S/8 with random weights saved to
a temporary file, so nothing is downloaded; the ViT runs on the device too). Then a 2048 x 2048
field (:func:`large_field`), and the largest difference between the DINO patch features computed
on the two devices. Needs a CUDA device; run as ``PYTHONPATH=src python benchmarks/gpu_check.py``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from skimage import data

from napari_deepcut import segment
from napari_deepcut.samples import blob_volume

sys.path.insert(0, str(Path(__file__).parent))
from microscopy import draw  # noqa: E402  (the synthetic fields of benchmarks/microscopy.py)


def iou(a, b) -> float:
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return float((a & b).sum() / max((a | b).sum(), 1))


def agreement(a, b) -> float:
    return float((np.asarray(a) == np.asarray(b)).mean())


def random_dino_weights() -> str | None:
    """A ViT-S/8 state dict with random weights in a temporary file (None without timm)."""
    try:
        import timm
    except ImportError:
        return None
    torch.manual_seed(0)
    path = Path(tempfile.mkdtemp()) / "vit_small_patch8_random.pth"
    torch.save(timm.create_model("vit_small_patch8_224", num_classes=0).state_dict(), path)
    return str(path)


def dino_feature_difference(image, weights: str) -> float:
    """Largest absolute difference of the (unit-length) DINO patch keys, CUDA against CPU."""
    from napari_deepcut.deep_features import patch_features
    from napari_deepcut.image import prepare_image
    from napari_deepcut.settings import from_kwargs

    prepared = prepare_image(image)
    keys = {
        device: patch_features(prepared, from_kwargs({"features": "dino", "weights": weights, "device": device})).features
        for device in ("cpu", "cuda")
    }
    return float(np.abs(keys["cpu"] - keys["cuda"]).max())


def large_field() -> None:
    """A 2048 x 2048 field of 40 nuclei of a tenfold brightness range: superpixels on each
    device, pixel nodes at downsample 2 and 1 on CUDA (1 and 4 million nodes); seconds, the
    GPU's peak memory and IoU against the drawn nuclei, with and without the faint-objects rule."""
    image, truth = draw("wide brightness range", np.random.default_rng(0), size=2048)
    print("\n2048 x 2048 field, 40 nuclei")
    print("| settings | nodes | s | GPU peak GiB | IoU |")
    print("|---|---|---|---|---|")
    pixels = {"nodes": "pixels"}
    for settings in (
        {"device": "cpu"},
        {"device": "cuda"},
        {"device": "cuda", **pixels, "downsample": 2},
        {"device": "cuda", **pixels, "downsample": 2, "object_significance": 0},
        {"device": "cuda", **pixels, "downsample": 1},
        {"device": "cuda", **pixels, "downsample": 1, "object_significance": 0},
    ):
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        result = segment(image, **settings)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        print(
            f"| {settings} | {result.foreground_stage.graph.n_nodes} | {seconds:.1f} | "
            f"{torch.cuda.max_memory_allocated() / 2**30:.2f} | {iou(result.foreground, truth):.3f} |",
            flush=True,
        )


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device")
    torch.set_num_threads(4)  # a many-core host oversubscribes with one thread per core
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}, CPU with 4 threads")
    field, _ = draw("wide brightness range", np.random.default_rng(0), size=512)
    cases = [
        ("astronaut 512^2 RGB, superpixels", data.astronaut(), {}),
        ("coffee 400x600 RGB, superpixels, cc", data.coffee(), {"loss": "cc"}),
        ("astronaut 512^2, pixels, 262,144 nodes", data.astronaut(), {"nodes": "pixels", "downsample": 1}),
        ("512^2 fluorescence, ~40 nuclei of a tenfold brightness range", field, {}),
        ("32x96x96 volume of blobs, spacing (2, 1, 1)", blob_volume(), {"spacing": (2.0, 1.0, 1.0)}),
    ]
    weights = random_dino_weights()
    if weights is None:
        print("timm is not installed: no features='dino' cases (pip install 'napari-deepcut[dino]')")
    else:
        dino = {"features": "dino", "weights": weights}
        cases += [
            ("astronaut 512^2, dino ViT-S/8 (random weights), superpixels", data.astronaut(), dino),
            ("astronaut 512^2, dino ViT-S/8 (random weights), patch nodes", data.astronaut(), {**dino, "nodes": "pixels"}),
        ]
    print("| image | nodes | CPU s | CUDA s | foreground IoU CPU vs CUDA | parts agreement | CUDA run twice, equal |")
    print("|---|---|---|---|---|---|---|")
    for name, image, settings in cases:
        runs = {}
        for device in ("cpu", "cuda"):
            segment(image[:64, :64], device=device, epochs=5, **settings)  # warm-up (CUDA context, kernels)
            start = time.perf_counter()
            runs[device] = segment(image, parts=4, device=device, **settings)
            if device == "cuda":
                torch.cuda.synchronize()
            runs[device + "_s"] = time.perf_counter() - start
        cpu, gpu = runs["cpu"], runs["cuda"]
        again = segment(image, parts=4, device="cuda", **settings)
        repeat = np.array_equal(again.foreground, gpu.foreground) and np.array_equal(again.parts, gpu.parts)
        print(
            f"| {name} | {cpu.foreground_stage.graph.n_nodes} | {runs['cpu_s']:.2f} | "
            f"{runs['cuda_s']:.2f} | {iou(cpu.foreground, gpu.foreground):.4f} | "
            f"{agreement(cpu.parts, gpu.parts):.4f} | {'yes' if repeat else 'NO'} |",
            flush=True,
        )

    large_field()

    if weights is not None:
        difference = dino_feature_difference(data.astronaut(), weights)
        print(f"\nDINO patch keys (unit length), CUDA against CPU: largest absolute difference {difference:.2e}")
        shutil.rmtree(Path(weights).parent)


if __name__ == "__main__":
    main()
