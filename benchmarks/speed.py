"""Seconds and peak memory of the default pipeline against scikit-image's normalized cut.

All cases run one after the other in this one process, on the same images:

- ``segment(image, parts=4)`` (default settings: superpixels, both stages) on astronaut (512 x 512
  RGB) and on a 2048 x 2048 grey image (scikit-image's camera, resized);
- the fast preset, ``segment(image, parts=4, laplacian_features=0)``: one clustering by colour in
  the foreground stage instead of two;
- pixel mode at full resolution, ``nodes="pixels", downsample=1``: 262,144 graph nodes on astronaut;
- scikit-image's recipe: ``slic(n_segments=400, compactness=30)`` + ``graph.rag_mean_color(mode=
  "similarity")`` + ``graph.cut_normalized`` on both images.

``--compare KEY=VALUE ...`` adds a third preset, the defaults with those settings changed (for
instance ``slic_iterations=10``, the former default), run interleaved with the others.

CPU seconds (this process's CPU time) are shown beside wall seconds: on a shared machine the wall
time grows with other load, the CPU time much less. Peak memory is the highest resident set size (RSS, sampled every 5 ms by a thread) during a case,
minus the RSS when the case started: what the case itself needed, torch's buffers included
(tracemalloc would miss those). The graph column gives each stage's nodes, epochs and seconds.

    python benchmarks/speed.py --threads 1 --repeat 5
    python benchmarks/speed.py --threads 1 --repeat 5 --skip-pixels --compare slic_iterations=10
"""

from __future__ import annotations

import argparse
import os
import platform
import threading
import time

import numpy as np
from tables import parse_settings


def rss_bytes() -> int:
    """This process's resident set size now."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import psutil

        return psutil.Process().memory_info().rss


class PeakMemory:
    """Context manager: ``.peak`` = highest RSS seen inside minus the RSS on entry."""

    def __enter__(self):
        self.start = rss_bytes()
        self.high = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop.wait(0.005):
            self.high = max(self.high, rss_bytes())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.high = max(self.high, rss_bytes())
        self.peak = self.high - self.start


def skimage_ncut(image: np.ndarray, seed: int = 0) -> np.ndarray:
    """scikit-image's documented normalized-cut recipe (8-bit RGB in)."""
    from skimage import graph
    from skimage.segmentation import slic

    rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=-1)
    labels = slic(rgb, n_segments=400, compactness=30, start_label=1, channel_axis=-1)
    rag = graph.rag_mean_color(rgb, labels, mode="similarity")
    # cut_normalized's ARPACK calls sometimes fail ("No shifts could be applied"): retry with the
    # next seed, as a user would; the time of the failed tries counts.
    for attempt in range(seed, seed + 3):
        try:
            return graph.cut_normalized(labels, rag.copy(), rng=attempt), attempt - seed
        except Exception as error:
            failure = error
    raise failure


DEFAULT = "napari-deepcut segment(parts=4), superpixels"
FAST = "napari-deepcut segment(parts=4, laplacian_features=0), superpixels"
PRESETS = {DEFAULT: "defaults", FAST: "fast: laplacian_features=0"}
SKIMAGE = "skimage SLIC + rag_mean_color + cut_normalized"


def images() -> dict[str, np.ndarray]:
    from skimage import data
    from skimage.transform import resize

    camera = resize(data.camera(), (2048, 2048), order=1, preserve_range=True, anti_aliasing=False)
    return {"astronaut 512x512 RGB": data.astronaut(), "camera 2048x2048 grey": camera.astype(np.uint8)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--skip-pixels", action="store_true", help="leave out the 262,144-node case")
    parser.add_argument(
        "--repeat", type=int, default=1,
        help="run the superpixel and scikit-image cases this many times, interleaved, and report "
        "medians (the pixel case runs once)",
    )
    parser.add_argument(
        "--compare", nargs="+", metavar="KEY=VALUE", default=[],
        help="also run the defaults with these settings (JSON values)",
    )
    args = parser.parse_args()
    changed = parse_settings(args.compare)
    if changed:
        shown = ", ".join(f"{k}={v!r}" for k, v in changed.items())
        PRESETS[f"napari-deepcut segment(parts=4, {shown}), superpixels"] = f"defaults, {shown}"

    import torch

    from napari_deepcut import __version__, segment

    if args.threads:
        torch.set_num_threads(args.threads)
    pictures = images()
    # Warm up torch and the imports so that the first case does not pay for them.
    segment(pictures["astronaut 512x512 RGB"][::8, ::8], parts=2, epochs=5, n_segments=50)
    skimage_ncut(pictures["astronaut 512x512 RGB"][::8, ::8])

    cases = []
    for name, image in pictures.items():
        cases.append((name, DEFAULT, lambda im=image: segment(im, parts=4), True))
        cases.append((name, FAST, lambda im=image: segment(im, parts=4, laplacian_features=0), True))
        for preset in list(PRESETS)[2:]:
            cases.append((name, preset, lambda im=image: segment(im, parts=4, **changed), True))
        cases.append((name, SKIMAGE, lambda im=image: skimage_ncut(im), True))
    if not args.skip_pixels:
        astronaut = pictures["astronaut 512x512 RGB"]
        cases.append(
            ("astronaut 512x512 RGB", "napari-deepcut segment(parts=4), pixels, 262,144 nodes",
             lambda: segment(astronaut, parts=4, nodes="pixels", downsample=1), False)
        )

    runs = {}  # (image, method) -> [(seconds, MiB, detail, CPU seconds), ...]
    schedule = [case for _ in range(args.repeat) for case in cases if case[3]] + [c for c in cases if not c[3]]
    for image_name, method, run, _ in schedule:
        with PeakMemory() as memory:
            start, cpu_start = time.perf_counter(), time.process_time()
            output = run()
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        detail = ""
        if hasattr(output, "foreground_stage"):
            stages = [output.foreground_stage, output.parts_stage]
            nodes = [s.graph.n_nodes for s in stages if s is not None and s.graph is not None]
            epochs = [len(s.clustering.loss_history) for s in stages if s is not None and s.clustering is not None]
            seconds_per_stage = [f"{s.seconds:.1f}" for s in stages if s is not None]
            detail = (
                f"nodes {'/'.join(map(str, nodes))}, epochs {'/'.join(map(str, epochs))}, "
                f"stage seconds {'/'.join(seconds_per_stage)}"
            )
        else:
            segments, retries = output
            detail = f"{len(np.unique(segments))} segments" + (f", {retries} failed ARPACK tries" if retries else "")
        runs.setdefault((image_name, method), []).append((seconds, memory.peak / 2**20, detail, cpu))
        print(f"  {image_name} | {method}: {seconds:.1f} s, {memory.peak / 2**20:.0f} MiB", flush=True)
    results = [
        (image_name, method, float(np.median([r[0] for r in rs])), max(r[1] for r in rs), rs[-1][2],
         float(np.median([r[3] for r in rs])))
        for (image_name, method), rs in runs.items()
    ]

    print(
        f"\nnapari-deepcut {__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs\n"
    )
    if args.repeat > 1:
        print(f"Seconds are medians of {args.repeat} runs (the pixel case: one run).\n")
    print("| image | method | seconds | CPU seconds | peak memory (MiB) | graph |")
    print("|---|---|---:|---:|---:|---|")
    for image_name, method, seconds, mib, detail, cpu in results:
        print(f"| {image_name} | {method} | {seconds:.1f} | {cpu:.1f} | {mib:.0f} | {detail} |")

    print("\n| image | napari-deepcut | deepcut / skimage seconds | CPU seconds | peak memory |")
    print("|---|---|---:|---:|---:|")
    for name in pictures:
        theirs = next(r for r in results if r[0] == name and r[1].startswith("skimage"))
        for preset in PRESETS:
            ours = next(r for r in results if r[0] == name and r[1] == preset)
            print(f"| {name} | {PRESETS[preset]} | {ours[2] / theirs[2]:.2f} | {ours[5] / theirs[5]:.2f} "
                  f"| {ours[3] / max(theirs[3], 1e-9):.2f} |")
    if args.repeat > 1:
        print("\nWall-time ratio of each repeat (deepcut / skimage, run next to each other):")
        for name in pictures:
            theirs = runs[(name, SKIMAGE)]
            for preset in PRESETS:
                ratios = ", ".join(f"{a[0] / b[0]:.2f}" for a, b in zip(runs[(name, preset)], theirs))
                print(f"- {name}, {PRESETS[preset]}: {ratios}")


if __name__ == "__main__":
    main()
