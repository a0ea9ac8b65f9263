"""Seconds of deep (DINO ViT) features against the colour default, on astronaut (512 x 512 RGB).

The ViT has random weights (no download; timing does not depend on the values): timm's
``vit_small_patch8_224`` (or ``--model``) saved as a state dict to a temporary file and loaded
through ``weights=``, as a user's file. Cases, one after the other in this one process:

- loading the model (timm architecture + state dict), once per process;
- the feature step alone: the ViT's key facet of every patch (``dino_patches=4096``: 64 x 64
  patches, the image resized to 512 x 512 for ViT-S/8), the step the parts stage reuses;
- the whole pipeline ``segment(image, parts=4)`` with colour features (default), with
  ``features="dino"`` on superpixels, and with ``features="dino", nodes="pixels"`` (a node per
  patch, as DeepCut), each run from a cold feature cache;
- graph building with the patch features reduced to 16 / 32 / 64 principal components or kept
  whole (384): the kNN long-range edges are what the dimension costs.

CPU seconds (this process's CPU time, all threads) are shown beside wall seconds: on a shared
machine the wall time grows with other load, the CPU time much less.

    python benchmarks/dino_speed.py [--device cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path


def timed(run):
    start, cpu = time.perf_counter(), time.process_time()
    out = run()
    return out, time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vit_small_patch8_224.dino", help="dino_model (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="device setting (default: %(default)s)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parser.parse_args()

    import timm
    import torch
    from skimage import data

    from napari_deepcut import __version__, deep_features, segment
    from napari_deepcut.graph import build_graph
    from napari_deepcut.image import prepare_image
    from napari_deepcut.settings import from_kwargs

    if args.threads:
        torch.set_num_threads(args.threads)
    image = data.astronaut()
    folder = Path(tempfile.mkdtemp())
    weights = folder / "random.pth"
    torch.manual_seed(0)
    torch.save(timm.create_model(args.model.split(".")[0], num_classes=0).state_dict(), weights)
    dino = {"features": "dino", "dino_model": args.model, "weights": str(weights), "device": args.device}
    settings = from_kwargs(dino)
    prepared = prepare_image(image)
    segment(image[::8, ::8], parts=2, epochs=5, n_segments=50, device=args.device)  # warm-up

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    rows = []
    _, wall, cpu = timed(lambda: deep_features.load_model(args.model, str(weights), str(settings.device)))
    rows.append(("load the model (timm + state dict)", wall, cpu, ""))
    deep_features.patch_features(prepared, settings.replace(dino_patches=64))  # warm-up of the ViT
    deep_features._last.clear()
    patches, wall, cpu = timed(lambda: (deep_features.patch_features(prepared, settings), sync())[0])
    grid = " x ".join(map(str, patches.grid_shape))
    rows.append((f"feature step: ViT keys of {grid} patches", wall, cpu, f"{patches.features.shape[1]} dims"))

    cases = [
        ("segment(parts=4), colour (default)", {"device": args.device}),
        ("segment(parts=4), features='dino', superpixels", dino),
        ("segment(parts=4), features='dino', nodes='pixels' (patch nodes)", {**dino, "nodes": "pixels"}),
    ]
    for name, options in cases:
        deep_features._last.clear()
        result, wall, cpu = timed(lambda o=options: segment(image, parts=4, **o))
        stages = [result.foreground_stage, result.parts_stage]
        detail = "nodes " + "/".join(str(s.graph.n_nodes) for s in stages)
        detail += ", epochs " + "/".join(str(len(s.clustering.loss_history)) for s in stages)
        rows.append((name, wall, cpu, detail))

    for components in (16, 32, 64, 0):
        for nodes in ("superpixels", "pixels"):
            config = settings.replace(dino_components=components, nodes=nodes)
            graph, wall, cpu = timed(lambda c=config: build_graph(prepared, c))  # patch features cached
            dims = graph.features.shape[1]
            rows.append((f"build_graph, {nodes}, {dims} feature dims (cached ViT keys)", wall, cpu, f"{graph.n_nodes} nodes"))

    print(f"\n`{' '.join(['python', *sys.argv])}`\n")
    print(
        f"napari-deepcut {__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"timm {timm.__version__}, {args.model} with random weights, device {args.device}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; astronaut 512 x 512 RGB\n"
    )
    print("| step | seconds | CPU seconds | detail |")
    print("|---|---:|---:|---|")
    for name, wall, cpu, detail in rows:
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {detail} |")
    shutil.rmtree(folder)


if __name__ == "__main__":
    main()
