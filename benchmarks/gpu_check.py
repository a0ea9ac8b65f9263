"""The CUDA path against the CPU: the same pipeline, seed and images on both devices.

Prints, per image: node count, seconds on each device, and the agreement (IoU) of the two
foregrounds and of the two part maps. Needs a CUDA device; run as
``PYTHONPATH=src python benchmarks/gpu_check.py``.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from skimage import data

from napari_deepcut import segment


def iou(a, b) -> float:
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return float((a & b).sum() / max((a | b).sum(), 1))


def agreement(a, b) -> float:
    return float((np.asarray(a) == np.asarray(b)).mean())


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device")
    torch.set_num_threads(4)  # a many-core host oversubscribes with one thread per core
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}, CPU with 4 threads")
    cases = [
        ("astronaut 512^2 RGB, superpixels", data.astronaut(), {}),
        ("coffee 400x600 RGB, superpixels, cc", data.coffee(), {"loss": "cc"}),
        ("astronaut 512^2, pixels, 262,144 nodes", data.astronaut(), {"nodes": "pixels", "downsample": 1}),
    ]
    print("| image | nodes | CPU s | CUDA s | foreground IoU CPU vs CUDA | parts agreement |")
    print("|---|---|---|---|---|---|")
    for name, image, settings in cases:
        runs = {}
        for device in ("cpu", "cuda"):
            segment(image[:64, :64], device=device, epochs=5)  # warm-up (CUDA context, kernels)
            start = time.perf_counter()
            runs[device] = segment(image, parts=4, device=device, **settings)
            if device == "cuda":
                torch.cuda.synchronize()
            runs[device + "_s"] = time.perf_counter() - start
        cpu, gpu = runs["cpu"], runs["cuda"]
        print(
            f"| {name} | {cpu.foreground_stage.graph.n_nodes} | {runs['cpu_s']:.2f} | "
            f"{runs['cuda_s']:.2f} | {iou(cpu.foreground, gpu.foreground):.4f} | "
            f"{agreement(cpu.parts, gpu.parts):.4f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
