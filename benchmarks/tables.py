"""What the benchmark scripts share: settings given as KEY=VALUE, and tables of methods' scores."""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from napari_deepcut.evaluate import METHODS, iou


def add_settings_argument(parser: argparse.ArgumentParser, help: str = "settings for every method") -> None:
    """The trailing ``KEY=VALUE`` arguments (JSON values): ``refine=false nodes='"pixels"'``."""
    parser.add_argument("settings", nargs="*", metavar="KEY=VALUE", help=f"{help} (JSON values)")


def parse_settings(items: list[str]) -> dict:
    """``["refine=false", "n_segments=500"]`` -> ``{"refine": False, "n_segments": 500}``."""
    return {key: json.loads(value) for key, value in (item.split("=", 1) for item in items)}


class MethodTable:
    """A Markdown table printed row by row: the case columns, then each method's mean foreground
    IoU over the row's images, and a last row of means over every image.

    Parameters
    ----------
    columns : list of str
        Headers of the columns that name a row's case.
    methods : list of str
        Keys of :data:`napari_deepcut.evaluate.METHODS`.
    settings : Settings
        Given to every method.
    """

    def __init__(self, columns: list[str], methods: list[str], settings) -> None:
        self.columns, self.methods, self.settings = columns, methods, settings
        self.scores = {m: [] for m in methods}
        self.seconds = dict.fromkeys(methods, 0.0)
        print("| " + " | ".join(columns + methods) + " |")
        print("|" + "---|" * len(columns) + "---:|" * len(methods))

    def row(self, names: list[str], cases: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """Score every method on ``cases`` (image, true mask) and print the row."""
        means = []
        for method in self.methods:
            start = time.perf_counter()
            scores = [iou(METHODS[method](image, self.settings)[0], mask) for image, mask in cases]
            self.seconds[method] += time.perf_counter() - start
            self.scores[method] += scores
            means.append(f"{np.mean(scores):.3f}")
        print("| " + " | ".join(names + means) + " |", flush=True)

    def total(self) -> None:
        """The last row, means over all images, and each method's seconds."""
        blanks = [""] * (len(self.columns) - 1)
        means = [f"**{np.mean(self.scores[m]):.3f}**" for m in self.methods]
        print("| " + " | ".join(["**all**"] + blanks + means) + " |")
        print("seconds: " + ", ".join(f"{m} {self.seconds[m]:.0f}" for m in self.methods))
