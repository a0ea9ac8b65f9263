"""Foreground quality of every method on the development sets, as markdown tables.

Runs ``napari-deepcut evaluate`` on ``../shared/datasets/{horse,nuclei-dev}`` (relative to the
repository) for all methods and prints, per set, the command and the table it printed. Per-image
scores (CSV) and box plots (PNG) go to ``benchmarks/results/quality/<set>/``.

    python benchmarks/quality.py --limit 20            # first 20 images of each set
    python benchmarks/quality.py                       # full sets (slow: the deck method trains 1000 epochs)
    python benchmarks/quality.py --limit 20 -- --loss cc   # extra flags go to evaluate (ablations)
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
METHODS = "deepcut,ncut,skimage-ncut,otsu,deck"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, help="first N images of each set (default: all)")
    parser.add_argument("--sets", default="horse,nuclei-dev")
    parser.add_argument("--methods", default=METHODS)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: steadier timings on a shared machine)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks") / "results" / "quality", help="relative to the repository root")
    parser.add_argument("extra", nargs="*", help="more evaluate flags, after --")
    args = parser.parse_args()

    for name in args.sets.split(","):
        folder = Path("..") / DATASETS.relative_to(ROOT.parent) / name  # as seen from the repository root
        out = args.out / name
        command = [
            "napari-deepcut", "evaluate",
            "--images", str(folder / "images"), "--masks", str(folder / "masks"),
            "--methods", args.methods, "--out", str(out), "--threads", str(args.threads), "--no-progress",
        ]
        if args.limit:
            command += ["--limit", str(args.limit)]
        command += args.extra
        start = time.perf_counter()
        run = subprocess.run(
            [sys.executable, "-m", "napari_deepcut.cli", *command[1:]], capture_output=True, text=True, cwd=ROOT
        )
        shown = shlex.join(command)
        print(f"### {name}\n\n`{shown}` ({time.perf_counter() - start:.0f} s in all)\n")
        print(run.stdout.strip() + "\n", flush=True)
        if run.returncode:
            errors = [line for line in run.stderr.splitlines() if line.startswith("error")]
            print("\n".join(errors[:20]) + "\n", flush=True)


if __name__ == "__main__":
    main()
