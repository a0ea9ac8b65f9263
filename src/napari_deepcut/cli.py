"""The ``napari-deepcut`` command: segment files, run the demo, evaluate, compare methods.

Every field of :class:`napari_deepcut.settings.Settings` is a flag of the same name (``--n_segments``,
also ``--n-segments``), with the same default and help as in the Python API and the GUI. Settings
can also come from a TOML / JSON file (``--config``); flags given on the command line win.

Exit status: 0 when every input was segmented, 1 when any failed or was skipped, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from . import settings as settings_module

SETTING_NAMES = tuple(f.name for f in settings_module.fields())
RUN_KEYS = ("parts", "channel_axis", "spacing")


# --- argument parsing --------------------------------------------------------------------------


def parse_parts(text: str) -> int | str:
    """``--parts`` value: an integer >= 2 or ``auto``."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 2 or 'auto', got {text!r}") from None
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2 (or 'auto'), got {value}")
    return value


def parse_spacing(text: str) -> tuple[float, ...]:
    """``--spacing`` value: comma-separated positive numbers, e.g. ``2,1,1``."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated numbers, got {text!r}") from None
    if not all(v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return values


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`~napari_deepcut.settings.Settings` field, generated from its metadata.

    Defaults are not set on the parser (``argparse.SUPPRESS``) so that a value read from
    ``--config`` is only overridden by a flag the user actually gave.
    """
    group = parser.add_argument_group(
        "segmentation settings", "the same settings, defaults and help as the GUI and napari_deepcut.segment"
    )
    for spec in settings_module.fields():
        names = [f"--{spec.name}"]
        if "_" in spec.name:
            names.append(f"--{spec.name.replace('_', '-')}")
        meta = spec.metadata
        text = meta.get("help", "").replace("%", "%%")
        limits = []
        if "min" in meta:
            limits.append(f"min {meta['min']}")
        if "max" in meta:
            limits.append(f"max {meta['max']}")
        text += f" (default: {spec.default}{'; ' + ', '.join(limits) if limits else ''})"
        kwargs: dict[str, Any] = {"dest": spec.name, "default": argparse.SUPPRESS, "help": text}
        if isinstance(spec.default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif "choices" in meta:
            kwargs.update(choices=meta["choices"], type=str)
        else:
            kwargs.update(type=type(spec.default), metavar=spec.name.upper())
        group.add_argument(*names, **kwargs)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="settings from a TOML file, or a <stem>_settings.json written by an earlier run "
        "(flags given here override it)",
    )
    parser.add_argument(
        "--threads", type=int, metavar="N", help="torch threads in this process (default: torch's choice)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-deepcut",
        description="Annotation-free segmentation by graph neural network clustering (DeepCut).",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    seg = commands.add_parser(
        "segment",
        help="segment image files or folders, write label TIFFs",
        description="Segment image files (tif, tiff, png, jpg) or folders of them. Writes "
        "DIR/<stem>_foreground.tif (uint8 0/1; with --objects, uint32 objects 1..N), with --parts "
        "DIR/<stem>_parts.tif (uint16), and DIR/<stem>_settings.json (reusable as --config).",
    )
    seg.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="image files or folders")
    seg.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (created)")
    seg.add_argument("--parts", type=parse_parts, metavar="K|auto", help="also split the foreground into K parts, or 'auto'")
    seg.add_argument("--channel_axis", "--channel-axis", type=int, metavar="AXIS", help="axis of the channels (default: a last axis of 3 or 4 is RGB(A))")
    seg.add_argument("--spacing", type=parse_spacing, metavar="Z,Y,X", help="pixel / voxel size per spatial axis, comma-separated")
    seg.add_argument("--frames", action="store_true", help="axis 0 of every file is time: segment each frame on its own")
    seg.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: skip those inputs)")
    seg.add_argument("--workers", type=int, metavar="N", help="local worker processes (default: min(2, CPUs); 1 = this process)")
    seg.add_argument("--scheduler", metavar="ADDRESS", help="run on this dask.distributed scheduler (e.g. tcp://host:8786) instead")
    add_run_arguments(seg)
    add_settings_arguments(seg)

    demo = commands.add_parser(
        "demo",
        help="open napari with a sample image and the plugin (or --headless: write results)",
        description="Open napari with the immunohistochemistry sample and the plugin's widgets docked. With "
        "--headless: segment the sample (foreground, then 4 parts) and write demo_foreground.tif, "
        "demo_parts.tif and demo_overlay.png.",
    )
    demo.add_argument("--headless", action="store_true", help="no window: segment the sample and write files")
    demo.add_argument("--out", type=Path, default=Path("deepcut-demo"), metavar="DIR", help="output folder for --headless (default: deepcut-demo)")
    demo.add_argument("--parts", type=parse_parts, default=4, metavar="K|auto", help="parts for --headless (default: 4)")
    add_run_arguments(demo)
    add_settings_arguments(demo)

    ev = commands.add_parser(
        "evaluate",
        help="score methods against reference masks (mIoU, pixel accuracy, seconds)",
        description="Run each method on every image that has a mask of the same name; each method "
        "picks its foreground without seeing the mask. Prints a table; writes scores.csv, "
        "scores.png, summary.md and, per method, worst-<method>.png into --out.",
    )
    from .evaluate import METHOD_NOTES

    ev.add_argument("--images", type=Path, required=True, metavar="DIR")
    ev.add_argument("--masks", type=Path, required=True, metavar="DIR", help="masks, non-zero = foreground")
    ev.add_argument(
        "--methods",
        default="deepcut,ncut,skimage-ncut,otsu",
        metavar="LIST",
        help="comma-separated, from: " + "; ".join(f"{k} ({v})" for k, v in METHOD_NOTES.items()) + " (default: %(default)s)",
    )
    ev.add_argument("--limit", type=int, metavar="N", help="only the first N images (by name)")
    ev.add_argument("--out", type=Path, default=Path("evaluation"), metavar="DIR", help="output folder (default: %(default)s)")
    ev.add_argument(
        "--worst",
        type=int,
        default=6,
        metavar="N",
        help="per method, draw the N images with the lowest IoU next to their masks in "
        "worst-<method>.png (runs the method again on those N; 0 = none; default: %(default)s)",
    )
    add_run_arguments(ev)
    add_settings_arguments(ev)

    cmp = commands.add_parser(
        "compare",
        help="one figure comparing superpixels, spectral N-cut and the GNN on superpixels / pixels",
    )
    cmp.add_argument("image", type=Path, metavar="IMAGE")
    cmp.add_argument("--out", type=Path, required=True, metavar="FIG.png")
    cmp.add_argument("--channel_axis", "--channel-axis", type=int, metavar="AXIS")
    add_run_arguments(cmp)
    add_settings_arguments(cmp)
    parser.subcommands = {"segment": seg, "demo": demo, "evaluate": ev, "compare": cmp}
    return parser


def resolve_settings(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[settings_module.Settings, dict]:
    """Defaults < ``--config`` file < flags. Returns the checked settings and the run options
    (``parts`` / ``channel_axis`` / ``spacing``) the config file gave."""
    from .files import read_config

    values: dict[str, Any] = {}
    run_options: dict[str, Any] = {}
    if getattr(args, "config", None) is not None:
        try:
            config = read_config(args.config)
        except ValueError as error:
            parser.error(str(error))
        run_options = {k: config.pop(k) for k in RUN_KEYS if k in config}
        try:
            settings_module.from_kwargs(config)
        except (TypeError, ValueError) as error:
            parser.error(f"{error} (in {args.config})")
        values.update(config)
    values.update({name: getattr(args, name) for name in SETTING_NAMES if hasattr(args, name)})
    try:
        return settings_module.from_kwargs(values), run_options
    except (TypeError, ValueError) as error:
        parser.error(str(error))


def _set_threads(args) -> None:
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


# --- commands ----------------------------------------------------------------------------------


def run_segment(args, parser) -> int:
    from .batch import run_batch
    from .files import find_images

    config, run_options = resolve_settings(args, parser)
    parts = args.parts if args.parts is not None else run_options.get("parts")
    if parts is not None:
        try:
            parts = parse_parts(str(parts))
        except argparse.ArgumentTypeError as error:
            parser.error(f"parts {error}")
    channel_axis = args.channel_axis if args.channel_axis is not None else run_options.get("channel_axis")
    spacing = args.spacing if args.spacing is not None else run_options.get("spacing")
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be at least 1")
    _set_threads(args)

    images, problems = find_images(args.inputs)
    for path, reason in problems:
        print(f"error: {path}: {reason}", file=sys.stderr)
    report = run_batch(
        images,
        args.out,
        parts=parts,
        settings=config,
        channel_axis=channel_axis,
        spacing=spacing,
        frames=args.frames,
        overwrite=args.overwrite,
        workers=args.workers,
        scheduler=args.scheduler,
        show_progress=not args.no_progress,
    )
    n_failed = len(report.failed) + len(problems)
    print(
        f"{len(report.written)} segmented, {len(report.skipped)} skipped, {n_failed} failed; outputs in {args.out}",
        file=sys.stderr,
    )
    return 0 if report.ok and not problems else 1


def sample_image():
    """The demo image: the plugin's immunohistochemistry sample (scikit-image's
    ``data.immunohistochemistry``, a stained tissue section; no download)."""
    try:
        from .samples import immunohistochemistry

        return immunohistochemistry()[0][0]
    except Exception:  # the samples module is optional here
        from skimage import data

        return data.immunohistochemistry()


def run_demo(args, parser) -> int:
    config, _ = resolve_settings(args, parser)
    _set_threads(args)
    image = sample_image()
    if not args.headless:
        try:
            import napari
        except ImportError:
            print("error: the demo window needs napari: pip install 'napari-deepcut[gui]' (or use --headless)", file=sys.stderr)
            return 1
        viewer = napari.Viewer(title="napari-deepcut demo")
        viewer.add_image(image, name="immunohistochemistry", rgb=True)
        for widget in ("Foreground / background", "Parts"):
            try:
                viewer.window.add_plugin_dock_widget("napari-deepcut", widget)
            except Exception as error:  # keep the viewer usable if a widget is missing
                print(f"warning: could not dock {widget!r}: {error}", file=sys.stderr)
        napari.run()
        return 0

    from .figures import display_rgb, overlay
    from .files import write_json, write_labels
    from .pipeline import segment

    start = time.perf_counter()
    result = segment(image, args.parts, **config.as_dict())
    seconds = time.perf_counter() - start
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    write_labels(out / "demo_foreground.tif", result.foreground)
    write_labels(out / "demo_parts.tif", result.parts)
    import imageio.v3 as iio

    iio.imwrite(out / "demo_overlay.png", overlay(display_rgb(image), result.foreground, result.parts))
    write_json(out / "demo_settings.json", result.metadata() | {"parts": args.parts})
    n_parts = int(result.parts.max()) if result.parts is not None else 0
    print(
        f"segmented the immunohistochemistry sample ({image.shape[1]} x {image.shape[0]}) in {seconds:.1f} s: "
        f"{100 * result.foreground.mean():.0f} % foreground, {n_parts} parts\n"
        f"wrote {out / 'demo_foreground.tif'}\n      {out / 'demo_parts.tif'}\n"
        f"      {out / 'demo_overlay.png'}\n      {out / 'demo_settings.json'}"
    )
    return 0


def run_evaluate(args, parser) -> int:
    from . import evaluate as ev

    config, _ = resolve_settings(args, parser)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in ev.METHODS]
    if unknown or not methods:
        parser.error(f"unknown method(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(ev.METHODS)}")
    if args.worst < 0:
        parser.error(f"--worst must be 0 or more, got {args.worst}")
    _set_threads(args)
    try:
        pairs = ev.find_pairs(args.images, args.masks, args.limit)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    scores = ev.evaluate(pairs, methods, config, show_progress=not args.no_progress)
    rows = ev.summarise(scores, methods)
    table = ev.format_table(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    ev.write_scores_csv(scores, args.out / "scores.csv")
    written = [args.out / "scores.csv", args.out / "summary.md"]
    try:
        ev.plot_scores(scores, methods, args.out / "scores.png", title=f"{args.images.resolve().parent.name}/{args.images.name} ({len(pairs)} images)")
        written.insert(1, args.out / "scores.png")
        for method in methods:  # --worst 0: plot_worst draws nothing
            worst = args.out / f"worst-{method}.png"
            if ev.plot_worst(pairs, scores, method, config, worst, args.worst):
                written.insert(-1, worst)
    except ImportError:
        print("warning: no plots: matplotlib is not installed (pip install matplotlib)", file=sys.stderr)
    import shlex

    command = shlex.join(["napari-deepcut", *args.argv])
    notes = "\n".join(f"- {m}: {ev.METHOD_NOTES[m]}" for m in methods)
    notes += "\n\n* mIoU had each image's foreground been the better of the method's two sides (a diagnostic that looks at the mask)"
    (args.out / "summary.md").write_text(f"`{command}`\n\n{args.images}, {len(pairs)} images\n\n{table}\n\n{notes}\n")
    print(table)
    failures = [s for s in scores if s.note and s.iou != s.iou]
    for s in failures:
        print(f"error: {s.image}: {s.method}: {s.note}", file=sys.stderr)
    print("wrote " + ", ".join(map(str, written)), file=sys.stderr)
    return 1 if failures else 0


def run_compare(args, parser) -> int:
    from .figures import comparison_figure
    from .files import read_image

    config, _ = resolve_settings(args, parser)
    _set_threads(args)
    try:
        image = read_image(args.image)
        seconds = comparison_figure(image, args.out, config, channel_axis=args.channel_axis)
    except ValueError as error:
        print(f"error: {args.image}: {error}", file=sys.stderr)
        return 1
    except ImportError as error:
        print(f"error: the figure needs matplotlib (pip install matplotlib): {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} (" + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()) + ")")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``napari-deepcut`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__

        print(f"napari-deepcut {__version__}")
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    args.argv = list(sys.argv[1:] if argv is None else argv)
    run = {"segment": run_segment, "demo": run_demo, "evaluate": run_evaluate, "compare": run_compare}
    return run[args.command](args, parser.subcommands[args.command])


if __name__ == "__main__":
    sys.exit(main())
