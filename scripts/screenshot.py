"""Make docs/screenshot.png: napari with both napari-deepcut widgets docked, after running them.

Run it under a display (on a headless machine: ``xvfb-run -a python scripts/screenshot.py``).
The viewer must be shown for the screenshot to hold anything but black.

Usage: ``python scripts/screenshot.py [--sample immunohistochemistry] [--parts 3] [--output docs/screenshot.png]``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication

PLUGIN = "napari-deepcut"


def wait_for(widget, timeout: float = 300.0) -> None:
    """Keep the GUI responsive until ``widget``'s run has finished."""
    deadline = time.monotonic() + timeout
    while widget.running:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{type(widget).__name__} did not finish within {timeout} s")
        QApplication.processEvents()
        time.sleep(0.02)
    QApplication.processEvents()


def save_png(rgb: np.ndarray, path: Path, max_bytes: int = 480_000) -> None:
    """Write ``rgb`` as PNG; if that exceeds ``max_bytes``, as a 256-colour palette PNG instead."""
    from PIL import Image as PILImage

    picture = PILImage.fromarray(np.ascontiguousarray(rgb, np.uint8))
    picture.save(path, optimize=True)
    if path.stat().st_size > max_bytes:
        picture.quantize(256, method=PILImage.Quantize.MEDIANCUT).save(path, optimize=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", default="immunohistochemistry", help="sample key of the plugin (default immunohistochemistry)")
    parser.add_argument("--parts", type=int, default=3, help="number of parts (default 3)")
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "screenshot.png")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=860)
    args = parser.parse_args(argv)

    viewer = napari.Viewer(show=True, title="napari-deepcut")
    viewer.window.resize(args.width, args.height)
    viewer.open_sample(PLUGIN, args.sample)
    image = viewer.layers[-1]

    _, parts_widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Parts")
    _, foreground_widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Foreground / background", tabify=True)
    foreground_widget.restore_defaults()  # the picture shows the defaults, not this machine's settings
    parts_widget.restore_defaults()
    foreground_widget.image_chooser.value = image

    foreground_widget.run()
    wait_for(foreground_widget)
    foreground = viewer.layers[f"{image.name} foreground"]
    parts_widget.image_chooser.value = image
    parts_widget.mask_chooser.value = foreground
    parts_widget.parts_count.value = args.parts
    parts_widget.run()
    wait_for(parts_widget)

    foreground.contour = 2
    foreground.opacity = 1.0
    viewer.layers[f"{image.name} parts"].opacity = 0.55
    foreground_widget.parent().raise_()  # show the stage-1 widget's tab
    viewer.reset_view()
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.05)

    args.output.parent.mkdir(parents=True, exist_ok=True)
    picture = viewer.screenshot(canvas_only=False, flash=False)
    save_png(picture[..., :3], args.output)
    print(f"wrote {args.output} ({args.output.stat().st_size // 1024} KiB, {picture.shape[1]} x {picture.shape[0]})")
    print("foreground:", foreground.metadata.get("foreground"))
    viewer.close()


if __name__ == "__main__":
    main()
