"""napari dock widgets: foreground / background, parts, and a superpixel / affinity preview.

The only module of the package that imports napari or Qt. It turns layers into arrays, runs the
engine (:mod:`napari_deepcut.pipeline`) in a worker thread with progress and cancel, and turns the
results back into *new* layers: an existing layer, hand edits included, is never written to.

Layout of every widget: inputs (layers, axes), the main settings, the advanced settings (collapsed),
Run / Cancel, a progress bar and "Restore defaults". The settings controls are generated from
:func:`napari_deepcut.settings.fields`, so names, defaults, ranges and tooltips are those of the
Python API and the command line. Values persist between sessions in a JSON file in the user's
config directory (``NAPARI_DEEPCUT_CONFIG_DIR`` overrides the directory).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import threading
import time
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.layers import Image, Labels
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QHBoxLayout, QVBoxLayout, QWidget
from superqt import QCollapsible

from .cluster import Progress, SegmentationCancelled
from .graph import build_graph
from .image import prepare_image
from .pipeline import foreground_stage, parts_stage, run_metadata
from .settings import Settings, fields, from_kwargs

# torch._dynamo imports triton when it is installed (it comes with torch's CUDA wheels). Loaded
# after napari's OpenGL (Mesa's LLVM), triton's own LLVM crashed the process (torch 2.14, Linux).
# The engine's optimiser (cluster.FlatAdamW) no longer loads torch._dynamo, as torch's optimisers
# did, but other torch code may. Triton only serves GPUs: without one, torch is told it is absent.
if not torch.cuda.is_available() and "triton" not in sys.modules:
    sys.modules["triton"] = None

#: Settings shown without opening "Advanced settings".
MAIN_SETTINGS = ("nodes", "n_segments", "downsample", "compactness", "epochs", "seed", "device")
#: Settings only one of the two stages reads.
FOREGROUND_ONLY = (
    "foreground_loss",
    "foreground_clusters",
    "laplacian_features",
    "laplacian_runs",
    "trim_frame",
    "centre_prior",
    "min_contrast",
    "min_edge",
    "colour_sides",
    "level_background",
    "dark_field",
    "adapt_superpixels",
    "retry_finer",
    "object_significance",
    "dim_objects",
    "object_edges",
    "object_holes",
    "min_piece",
    "keep_largest",
    "fill_holes",
    "objects",
)
PARTS_ONLY = ("loss", "max_parts")
#: Settings that shape the graph (the only ones the superpixel preview needs); names the engine
#: does not have are skipped.
GRAPH_SETTINGS = (
    "nodes",
    "n_segments",
    "compactness",
    "slic_iterations",
    "downsample",
    "affinity_sigma",
    "smoothing",
    "max_pixel_nodes",
    "connectivity",
    "features",
    "dino_model",
    "weights",
    "dino_patches",
    "dino_components",
    "feature_neighbours",
    "long_range_weight",
    "relief",
)
GRAPH_MAIN_SETTINGS = ("nodes", "n_segments", "compactness", "downsample", "affinity_sigma")

_INT_MAX = 2**31 - 1
_CONFIG_ENV = "NAPARI_DEEPCUT_CONFIG_DIR"


# --- persisted settings ------------------------------------------------------------------------


def config_path() -> Path:
    """The JSON file holding the widgets' last values (``$NAPARI_DEEPCUT_CONFIG_DIR`` if set)."""
    directory = os.environ.get(_CONFIG_ENV)
    if not directory:
        from platformdirs import user_config_dir

        directory = user_config_dir("napari-deepcut", appauthor=False)
    return Path(directory) / "widget-settings.json"


def load_saved(section: str) -> dict[str, Any]:
    """The values saved for one widget (empty when none, or when the file is unreadable)."""
    try:
        saved = json.loads(config_path().read_text()).get(section, {})
    except (OSError, ValueError, AttributeError):
        return {}
    return saved if isinstance(saved, dict) else {}


def save(section: str, values: dict[str, Any] | None) -> None:
    """Store (or with ``None`` forget) one widget's values; failures to write are not fatal."""
    path = config_path()
    try:
        everything = json.loads(path.read_text()) if path.exists() else {}
        if not isinstance(everything, dict):
            everything = {}
    except (OSError, ValueError):
        everything = {}
    if values is None:
        everything.pop(section, None)
    else:
        everything[section] = values
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(everything, indent=1, sort_keys=True))
    except OSError as exc:  # read-only home: settings just do not persist
        warnings.warn(f"napari-deepcut could not save its settings to {path}: {exc}", stacklevel=2)


# --- settings controls -------------------------------------------------------------------------


def _float_step(default: float) -> float:
    """A spin-box step (which also sets its decimals) fine enough for a field's default."""
    if default <= 0:
        return 1e-4
    return min(0.1, 10.0 ** (math.floor(math.log10(default)) - 1))


def setting_control(spec: dataclasses.Field):
    """A magicgui control for one :class:`Settings` field: combo box for choices, check box for a
    bool, spin box with the field's limits for a number, file picker for a text field (a path;
    empty = none); the field's help text as tooltip."""
    meta, default = spec.metadata, spec.default
    common = dict(name=spec.name, label=spec.name.replace("_", " "), tooltip=meta.get("help"))
    if "choices" in meta:
        return ComboBox(choices=list(meta["choices"]), value=default, **common)
    if isinstance(default, str):
        return FileEdit(mode="r", value=default or None, nullable=True, **common)
    if isinstance(default, bool):
        return CheckBox(value=default, **common)
    if isinstance(default, int):
        return SpinBox(value=default, min=meta.get("min", -_INT_MAX), max=meta.get("max", _INT_MAX), **common)
    return FloatSpinBox(
        value=default, min=meta.get("min", -1e9), max=meta.get("max", 1e9), step=_float_step(default), **common
    )


class SettingsForm:
    """Controls for a subset of the :class:`Settings` fields, split into a main and an advanced group.

    Parameters
    ----------
    names : sequence of str, optional
        Fields to show, in declaration order; default all.
    main : sequence of str
        Fields of the main group; the others go to ``advanced``.
    """

    def __init__(self, names=None, main=MAIN_SETTINGS):
        specs = [f for f in fields() if names is None or f.name in names]
        self.controls = {spec.name: setting_control(spec) for spec in specs}
        self.defaults = {spec.name: spec.default for spec in specs}
        self.main = Container(widgets=[c for n, c in self.controls.items() if n in main])
        self.advanced = Container(widgets=[c for n, c in self.controls.items() if n not in main])
        for container in (self.main, self.advanced):
            container.margins = (0, 0, 0, 0)

    def values(self) -> dict[str, Any]:
        return {name: _setting_value(control) for name, control in self.controls.items()}

    def settings(self) -> Settings:
        """The values as checked :class:`Settings` (fields not shown keep their defaults)."""
        return from_kwargs(self.values())

    def set_values(self, values: dict[str, Any]) -> None:
        """Set the known, valid entries of ``values``; anything else is ignored."""
        for name, value in values.items():
            control = self.controls.get(name)
            if control is None:
                continue
            try:
                from_kwargs({name: value})
                control.value = (value or None) if isinstance(control, FileEdit) else value
            except (TypeError, ValueError):
                continue

    def reset(self) -> None:
        self.set_values(self.defaults)

    def connect(self, callback: Callable) -> None:
        for control in self.controls.values():
            control.changed.connect(callback)


def _setting_value(control) -> Any:
    """A control's value as the setting takes it: a file picker's path as text ("" when empty)."""
    if isinstance(control, FileEdit):
        return "" if control.value is None else str(control.value)
    return control.value


# --- image layout --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageAxes:
    """How an image layer's data axes split into frames, channels and space.

    Attributes
    ----------
    shape : tuple of int
        Shape of the layer's data.
    channel_axis : int or None
        Data axis of the channels (the last one for an RGB layer).
    rgb : bool
        Whether the channels are RGB(A) (napari's ``layer.rgb``).
    time_axis : int or None
        Data axis of the frames, each segmented on its own.
    spatial_axes : tuple of int
        The 2 or 3 data axes of one frame's image or volume.
    """

    shape: tuple[int, ...]
    channel_axis: int | None
    rgb: bool
    time_axis: int | None
    spatial_axes: tuple[int, ...]

    @property
    def result_axes(self) -> tuple[int, ...]:
        """Data axes of the label image: frames then space (channels dropped)."""
        return ((self.time_axis,) if self.time_axis is not None else ()) + self.spatial_axes

    @property
    def result_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[a] for a in self.result_axes)

    @property
    def n_frames(self) -> int:
        return 1 if self.time_axis is None else self.shape[self.time_axis]

    def frame(self, data, t: int) -> np.ndarray:
        """Frame ``t`` of ``data`` (the whole array without a time axis), as numpy."""
        if self.time_axis is None:
            return np.asarray(data)
        return np.asarray(data[(slice(None),) * self.time_axis + (t,)])

    @property
    def frame_channel_axis(self) -> int | None:
        """The channel axis within one frame."""
        if self.channel_axis is None or self.rgb:
            return None if self.channel_axis is None else -1
        shift = self.time_axis is not None and self.time_axis < self.channel_axis
        return self.channel_axis - int(shift)

    @property
    def engine_rgb(self) -> bool | None:
        """``rgb`` for :func:`~napari_deepcut.image.prepare_image`: napari's choice for RGB layers,
        never for single-channel data, the engine's guess for an explicit channel axis."""
        if self.rgb:
            return True
        return None if self.channel_axis is not None else False


def image_axes(shape, rgb: bool = False, channel_axis: int | None = None, frames_are_time: bool = False) -> ImageAxes:
    """Split an image layer's data axes into frames, channels and 2 or 3 spatial axes.

    The axes left once the channels are taken out are ``(frames, *space)`` when ``frames_are_time``
    or when there are four of them, else ``space``.

    Raises
    ------
    ValueError
        When no 2D / 3D split exists, with a hint at what to change.
    """
    shape = tuple(int(s) for s in shape)
    ndim = len(shape)
    if rgb:
        channel_axis = ndim - 1
    elif channel_axis is not None and not 0 <= channel_axis < ndim:
        raise ValueError(f"channel axis {channel_axis} does not exist in an image of shape {shape}")
    others = [axis for axis in range(ndim) if axis != channel_axis]
    if frames_are_time or len(others) > 3:
        if len(others) < 3:
            raise ValueError(
                f"'frames are time' needs frames plus a 2D image, but the image has shape {shape}"
            )
        time_axis, spatial = others[0], others[1:]
    else:
        time_axis, spatial = None, others
    if len(spatial) > 3:
        raise ValueError(
            f"the image has shape {shape}: after the channels and the frames (first axis) there are "
            f"{len(spatial)} axes left, but napari-deepcut segments 2D images and 3D volumes; "
            "choose the channel axis"
        )
    if len(spatial) < 2:
        raise ValueError(f"the image has shape {shape}: it needs 2 or 3 spatial axes besides the channels")
    return ImageAxes(shape, channel_axis, bool(rgb), time_axis, tuple(spatial))


def layer_image_data(layer: Image):
    """A layer's full-resolution data (the first level of a multiscale layer)."""
    return layer.data[0] if layer.multiscale else layer.data


def unique_layer_name(viewer, base: str) -> str:
    """``base``, or ``"base [2]"``, ``"base [3]"``, ... : the first name no open layer has."""
    taken = {layer.name for layer in viewer.layers}
    if base not in taken:
        return base
    number = 2
    while f"{base} [{number}]" in taken:
        number += 1
    return f"{base} [{number}]"


# --- running jobs ------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What a job hands back to the GUI thread: a result, an error message, or cancellation."""

    data: Any = None
    metadata: dict | None = None
    error: str | None = None
    cancelled: bool = False


def run_guarded(job: Callable[[], Outcome]) -> Outcome:
    """Run ``job`` (in the worker thread) turning expected failures into an :class:`Outcome`.

    Bad input surfaces from the engine as ValueError / TypeError: its message is for the user, not
    a traceback. Anything else is a bug and propagates (napari then shows it with its traceback).
    """
    # torch's notice about sparse invariant checks is noise for a user; each run would show it.
    warnings.filterwarnings("ignore", message="Sparse invariant checks", category=UserWarning)
    try:
        return job()
    except SegmentationCancelled:
        return Outcome(cancelled=True)
    except (ValueError, TypeError) as exc:
        return Outcome(error=str(exc))
    except MemoryError:
        return Outcome(error="out of memory: use fewer nodes (n_segments, downsample) or a smaller image")


class ProgressRelay(QObject):
    """Carries progress from the worker thread to the GUI thread (queued Qt signal)."""

    progressed = Signal(float, str)

    def __init__(self, parent=None, min_interval: float = 0.05):
        super().__init__(parent)
        self._min_interval = min_interval
        self._last = 0.0

    def report(self, fraction: float, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= self._min_interval:
            self._last = now
            self.progressed.emit(float(fraction), text)


def stage_progress(relay: ProgressRelay, frame: int, n_frames: int) -> Callable[[Progress], None]:
    """The engine's progress callback for one frame of ``n_frames``."""

    def on_progress(progress: Progress) -> None:
        where = f"frame {frame + 1}/{n_frames} · " if n_frames > 1 else ""
        if progress.step:  # a step without epochs: the bar stays, the text names the step
            relay.report(float("nan"), f"{where}{progress.stage}: {progress.step}…", force=True)
            return
        relay.report(
            (frame + progress.epoch / progress.epochs) / n_frames,
            f"{where}{progress.stage}: epoch {progress.epoch}/{progress.epochs}, loss {progress.loss:.4g}",
            force=progress.epoch == progress.epochs,
        )

    return on_progress


# --- widgets -----------------------------------------------------------------------------------


def _layer_choices(layer_type) -> Callable:
    def choices(widget) -> list[tuple[str, Any]]:
        viewer = getattr(widget, "_deepcut_viewer", None)
        if viewer is None:
            return []
        return [(layer.name, layer) for layer in reversed(viewer.layers) if isinstance(layer, layer_type)]

    return choices


def layer_chooser(viewer, layer_type, name: str, label: str, tooltip: str) -> ComboBox:
    """A combo box of the viewer's layers of one type, topmost first."""
    chooser = ComboBox(name=name, label=label, tooltip=tooltip, choices=_layer_choices(layer_type), nullable=False)
    chooser._deepcut_viewer = viewer
    chooser.reset_choices()
    return chooser


class _RunWidget(QWidget):
    """Common frame: inputs, settings (main + advanced), Run / Cancel, progress, restore defaults.

    Subclasses fill :meth:`_input_widgets`, :meth:`_start_job` (GUI thread: read layers, return the
    job to run in the worker) and :meth:`_finish` (GUI thread: add the result layers).
    """

    #: Section of the settings file.
    settings_section = ""
    #: Fields of :class:`Settings` shown (None = all) and which of them are in the main group.
    setting_names: tuple[str, ...] | None = None
    main_settings: tuple[str, ...] = MAIN_SETTINGS
    run_text = "Run"

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.worker = None
        self._cancel_event = threading.Event()
        self.destroyed.connect(self._cancel_event.set)  # a closed viewer stops its runs
        self._relay = ProgressRelay(self)
        self._relay.progressed.connect(self._show_progress)
        self._started_at = 0.0

        self.image_chooser = layer_chooser(
            napari_viewer, Image, "image", "image", "The image layer to segment (the selected one by default)."
        )
        self.frames_are_time = CheckBox(
            name="frames_are_time",
            text="frames are time",
            value=False,
            tooltip="Segment each frame along the image's first axis on its own (a 2D or 3D time series). "
            "Images with 4 axes besides channels are always read this way.",
        )
        self.channel_axis = ComboBox(
            name="channel_axis",
            label="channel axis",
            choices=self._channel_choices,
            tooltip="Axis of the layer's data holding channels (none: a single channel). "
            "RGB layers use their colour axis.",
        )
        self.inputs = Container(widgets=[self.image_chooser, *self._input_widgets(), self.frames_are_time, self.channel_axis])
        self.form = SettingsForm(self.setting_names, self.main_settings)

        self.run_button = PushButton(text=self.run_text)
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress_bar = ProgressBar(min=0, max=1000, value=0, visible=False)
        self.status = Label(value="")
        self.restore_button = PushButton(
            text="Restore defaults", tooltip="Reset every setting of this widget to its default."
        )
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.restore_button.changed.connect(self.restore_defaults)

        self.advanced_section = QCollapsible("Advanced settings")
        self.advanced_section.addWidget(self.form.advanced.native)
        self.advanced_section.setVisible(len(self.form.advanced) > 0)

        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button.native)
        buttons.addWidget(self.cancel_button.native)
        layout = QVBoxLayout(self)
        layout.addWidget(self.inputs.native)
        layout.addWidget(self.form.main.native)
        layout.addWidget(self.advanced_section)
        self._add_extra_sections(layout)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar.native)
        layout.addWidget(self.status.native)
        layout.addWidget(self.restore_button.native)
        layout.addStretch(1)

        self._load_settings()
        self.form.connect(self._save_settings)
        for control in self._persisted_inputs().values():
            control.changed.connect(self._save_settings)

        self.image_chooser.changed.connect(self._on_image_changed)
        self._follow_selection()
        events = napari_viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered):
            event.connect(self.reset_choices)
        napari_viewer.layers.events.renamed.connect(self.reset_choices)
        napari_viewer.layers.selection.events.active.connect(self._follow_selection)
        self._on_image_changed()

    # hooks ----------------------------------------------------------------------------------------

    def _input_widgets(self) -> list:
        return []

    def _persisted_inputs(self) -> dict[str, Any]:
        """Input controls (besides the settings) whose values persist, by name."""
        return {}

    def _add_extra_sections(self, layout) -> None:
        pass

    def _start_job(self) -> Callable[[], Outcome]:
        raise NotImplementedError

    def _finish(self, outcome: Outcome) -> None:
        raise NotImplementedError

    # layers ---------------------------------------------------------------------------------------

    def _channel_choices(self, _widget=None) -> list:
        layer = self.image_chooser.value if hasattr(self, "image_chooser") else None
        if layer is None or layer.rgb:
            return ["none"]
        return ["none", *range(layer_image_data(layer).ndim)]

    def _on_image_changed(self, *_) -> None:
        self.channel_axis.reset_choices()
        layer = self.image_chooser.value
        self.channel_axis.enabled = layer is not None and not layer.rgb and not self.running

    def reset_choices(self, *_) -> None:
        """Refresh the layer choosers (napari calls this when layers change)."""
        for widget in self.inputs:
            if isinstance(widget, ComboBox) and widget is not self.channel_axis:
                widget.reset_choices()
        self._on_image_changed()

    def _follow_selection(self, *_) -> None:
        """Choose the viewer's active image layer when it changes (not our own affinity previews)."""
        active = self.viewer.layers.selection.active
        ours = active is not None and active.metadata.get("napari_deepcut_preview", False)
        if isinstance(active, Image) and not ours and active in self.image_chooser.choices:
            self.image_chooser.value = active

    def axes_of(self, layer: Image) -> ImageAxes:
        """How the chosen layer's axes split, as the axis options say."""
        channel = self.channel_axis.value
        return image_axes(
            layer_image_data(layer).shape,
            rgb=layer.rgb,
            channel_axis=None if channel in (None, "none") else int(channel),
            frames_are_time=self.frames_are_time.value,
        )

    def add_result_layer(self, data: np.ndarray, layer: Image, axes: ImageAxes, suffix: str, metadata: dict) -> Labels:
        """Add a new Labels layer ``"<image> <suffix>"`` (numbered if the name is taken) aligned
        with ``layer``: its scale and translate along the result's axes."""
        scale = [layer.scale[a] for a in axes.result_axes]
        translate = [layer.translate[a] for a in axes.result_axes]
        name = unique_layer_name(self.viewer, f"{layer.name} {suffix}")
        return self.viewer.add_labels(data, name=name, scale=scale, translate=translate, metadata=metadata)

    # settings -------------------------------------------------------------------------------------

    def _load_settings(self) -> None:
        saved = load_saved(self.settings_section)
        self.form.set_values(saved)
        for name, control in self._persisted_inputs().items():
            if name in saved:
                try:
                    control.value = saved[name]
                except (TypeError, ValueError):
                    pass

    def _save_settings(self, *_) -> None:
        values = self.form.values()
        values.update({name: control.value for name, control in self._persisted_inputs().items()})
        save(self.settings_section, values)

    def restore_defaults(self, *_) -> None:
        """Reset all settings to their defaults and forget the saved ones."""
        self.form.reset()
        self._reset_inputs()
        save(self.settings_section, None)

    def _reset_inputs(self) -> None:
        pass

    # running --------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.worker is not None

    def run(self, *_) -> None:
        """Check the inputs and start the job in a worker thread (errors become notifications)."""
        if self.running:
            return
        try:
            job = self._start_job()
        except (ValueError, TypeError) as exc:
            show_error(str(exc))
            return
        self._cancel_event.clear()
        self._set_running(True)
        self.worker = create_worker(run_guarded, job, _start_thread=False, _ignore_errors=True)
        self.worker.returned.connect(self._on_returned)
        self.worker.finished.connect(self._on_finished)
        self._started_at = time.monotonic()
        self.worker.start()

    def cancel(self, *_) -> None:
        """Ask the running job to stop; the engine checks after every epoch and before each step."""
        if self.running:
            self._cancel_event.set()
            self.status.value = "cancelling…"

    def _cancelled(self) -> bool:
        return self._cancel_event.is_set()

    def _on_returned(self, outcome: Outcome) -> None:
        if outcome.cancelled or self._cancel_event.is_set():
            show_info("napari-deepcut: cancelled; no layer was added")
            self.status.value = "cancelled"
        elif outcome.error is not None:
            show_error(outcome.error)
            self.status.value = "failed: " + outcome.error
        else:
            self._finish(outcome)

    def _on_finished(self) -> None:
        self.worker = None
        self._set_running(False)

    def _set_running(self, running: bool) -> None:
        for widget in (self.inputs.native, self.form.main.native, self.form.advanced.native):
            widget.setEnabled(not running)
        self.run_button.enabled = not running
        self.restore_button.enabled = not running
        self.cancel_button.enabled = running
        self.progress_bar.visible = running
        if running:
            self.progress_bar.value = 0
            self.status.value = "starting…"
        else:
            self._on_image_changed()

    def _show_progress(self, fraction: float, text: str) -> None:
        if self.running:
            if not np.isnan(fraction):  # NaN: a step without epochs, the bar stays where it is
                self.progress_bar.value = int(round(1000 * min(max(fraction, 0.0), 1.0)))
            self.status.value = text

    def _frames_job(
        self, layer, axes: ImageAxes, settings, stage: str, dtype, stage_of_frame: Callable, extra=None
    ) -> Callable[[], Outcome]:
        """The job of one stage over the layer's frames (:func:`segment_frames`), its labels of
        ``dtype`` with the result's metadata (and ``extra``). The layer's data is read here, on the
        GUI thread; the job runs on a worker."""
        data = layer_image_data(layer)
        relay, cancelled = self._relay, self._cancelled
        self._job_context = (layer, axes)

        def job() -> Outcome:
            labels, frames = segment_frames(data, layer, axes, dtype, stage_of_frame, relay, cancelled)
            return Outcome(labels, _result_metadata(settings, layer.name, stage, frames, axes) | (extra or {}))

        return job

    def _done_text(self, what: str) -> str:
        return f"{what} in {time.monotonic() - self._started_at:.1f} s"


class ForegroundWidget(_RunWidget):
    """Stage 1: foreground / background of the chosen image, as a new Labels layer
    ``"<image> foreground"`` (1 = foreground, or each object its own label with ``objects``)."""

    settings_section = "foreground"
    setting_names = tuple(f.name for f in fields() if f.name not in PARTS_ONLY)
    main_settings = (*MAIN_SETTINGS, "foreground_loss", "foreground_clusters", "objects")
    run_text = "Run"

    def _start_job(self) -> Callable[[], Outcome]:
        layer = self.image_chooser.value
        if layer is None:
            raise ValueError("Open or choose an image layer to segment first")
        axes = self.axes_of(layer)
        settings, cancelled = self.form.settings(), self._cancelled

        def stage_of_frame(prepared, t, progress):
            return foreground_stage(prepared, settings, progress, cancelled)

        dtype = np.uint8 if settings.objects == "off" else np.uint32
        return self._frames_job(layer, axes, settings, "foreground", dtype, stage_of_frame)

    def _finish(self, outcome: Outcome) -> None:
        layer, axes = self._job_context
        new = self.add_result_layer(outcome.data, layer, axes, "foreground", outcome.metadata)
        emptied, checked = _emptied_frames(outcome.metadata)
        if not outcome.data.any():
            why = ""
            if checked:
                why = (
                    ": nothing stands out from its noise (the empty-field check, min_contrast="
                    f"{outcome.metadata['settings']['min_contrast']:g}; lower it to keep what the "
                    "clustering split off)"
                )
            elif emptied:
                why = ": nothing stands out from its noise (the clustering found one region only)"
            show_warning(f"napari-deepcut: no foreground was found in '{layer.name}'{why}")
        elif emptied:
            frames = ", ".join(str(t + 1) for t in emptied)
            show_info(
                f"napari-deepcut: frame {frames} of '{layer.name}' left empty: nothing stands out "
                "from the noise there"
            )
        for note in (_frame_note(outcome.metadata, layer.name), _relief_note(outcome.metadata, layer.name)):
            if note:
                show_info(note)
        counted = outcome.metadata["settings"]["objects"] != "off" and "frames" not in outcome.metadata
        if counted:
            new.features = object_sizes(outcome.data, new.scale)  # shown on hover, and in feature tables
        self.status.value = self._done_text(
            f"added '{new.name}'" + (f" ({int(outcome.data.max())} objects)" if counted else "")
        )


class PartsWidget(_RunWidget):
    """Stage 2: parts inside a foreground Labels layer (from stage 1 or painted by hand), as a new
    Labels layer ``"<image> parts"`` (0 outside the foreground, parts 1..k largest first)."""

    settings_section = "parts"
    setting_names = tuple(f.name for f in fields() if f.name not in FOREGROUND_ONLY)
    main_settings = (*MAIN_SETTINGS, "loss")
    run_text = "Run"

    def _input_widgets(self) -> list:
        self.mask_chooser = layer_chooser(
            self.viewer, Labels, "foreground", "foreground",
            "Labels layer whose non-zero pixels are the foreground to split: stage 1's result, "
            "edited or painted by hand. It is read, never changed.",
        )
        self.parts_count = SpinBox(
            name="parts", label="parts", value=4, min=2, max=64,
            tooltip="Number of parts k to split the foreground into.",
        )
        self.auto_parts = CheckBox(
            name="auto_parts", text="find the number of parts (K-less)", value=False,
            tooltip="Find how many parts there are (at most max_parts, an advanced setting): from the "
            "eigengap of the affinities, or by the loss itself when it is K-less (cc, modularity).",
        )
        self.auto_parts.changed.connect(self._on_auto_changed)
        return [self.mask_chooser, self.parts_count, self.auto_parts]

    def _persisted_inputs(self) -> dict[str, Any]:
        return {"parts": self.parts_count, "auto_parts": self.auto_parts}

    def _reset_inputs(self) -> None:
        self.parts_count.value = 4
        self.auto_parts.value = False

    def _on_auto_changed(self, *_) -> None:
        self.parts_count.enabled = not self.auto_parts.value

    def _follow_selection(self, *_) -> None:
        super()._follow_selection()
        active = self.viewer.layers.selection.active
        is_parts = isinstance(active, Labels) and active.metadata.get("stage") == "parts"
        if isinstance(active, Labels) and not is_parts and active in self.mask_chooser.choices:
            self.mask_chooser.value = active

    def _start_job(self) -> Callable[[], Outcome]:
        layer, mask_layer = self.image_chooser.value, self.mask_chooser.value
        if layer is None:
            raise ValueError("Open or choose an image layer to segment first")
        if mask_layer is None:
            raise ValueError(
                "Choose a foreground Labels layer: run 'Foreground / background' or paint one by hand"
            )
        axes = self.axes_of(layer)
        mask = np.asarray(mask_layer.data[0] if mask_layer.multiscale else mask_layer.data)
        if mask.shape != axes.result_shape:
            raise ValueError(
                f"the foreground layer '{mask_layer.name}' has shape {mask.shape}, but the image "
                f"'{layer.name}' needs {axes.result_shape} (frames and space, without channels)"
            )
        mask = mask != 0  # a copy: edits during the run do not reach the job
        if not mask.any():
            raise ValueError(f"the foreground layer '{mask_layer.name}' is empty: paint or compute a foreground first")
        parts = "auto" if self.auto_parts.value else int(self.parts_count.value)
        settings, cancelled = self.form.settings(), self._cancelled

        def stage_of_frame(prepared, t, progress):
            frame_mask = mask[t] if axes.time_axis is not None else mask
            if not frame_mask.any():
                return None  # nothing to split in this frame
            return parts_stage(prepared, frame_mask, parts, settings, progress, cancelled)

        extra = {"requested_parts": parts, "foreground_layer": mask_layer.name}
        return self._frames_job(layer, axes, settings, "parts", np.uint16, stage_of_frame, extra)

    def _finish(self, outcome: Outcome) -> None:
        layer, axes = self._job_context
        new = self.add_result_layer(outcome.data, layer, axes, "parts", outcome.metadata)
        self.status.value = self._done_text(f"added '{new.name}' ({int(outcome.data.max())} parts)")


def object_sizes(objects: np.ndarray, scale) -> dict[str, np.ndarray]:
    """Each object's area (2D) or volume (3D) in the layer's units, as a napari feature table: an
    ``index`` column of the labels 1..N and one of their sizes."""
    pixels = np.bincount(objects.ravel())[1:]
    name = "area" if objects.ndim == 2 else "volume"
    return {"index": np.arange(1, len(pixels) + 1), name: pixels * float(np.prod(np.abs(scale)))}


def segment_frames(data, layer, axes: ImageAxes, dtype, stage_of_frame: Callable, relay, cancelled):
    """Run one stage on every frame of a layer (one frame unless it is a time series).

    ``stage_of_frame(prepared, t, progress)`` returns the frame's StageResult, or None to leave
    the frame at 0. Returns the label array of ``axes.result_shape`` and the per-frame results.
    """
    labels = np.zeros(axes.result_shape, dtype)
    stages = []
    for t in range(axes.n_frames):
        if cancelled():
            raise SegmentationCancelled("cancelled")
        prepared = prepare_image(
            axes.frame(data, t), channel_axis=axes.frame_channel_axis,
            spacing=[abs(layer.scale[a]) for a in axes.spatial_axes], rgb=axes.engine_rgb,
        )
        stage = stage_of_frame(prepared, t, stage_progress(relay, t, axes.n_frames))
        if stage is not None:
            labels[t if axes.time_axis is not None else ...] = stage.labels
        stages.append(stage)
    return labels, stages


def _foreground_facts(metadata: dict) -> list[dict | None]:
    """The foreground stage's facts per frame of a series, or of the single image as one frame."""
    return metadata["frames"] if "frames" in metadata else [metadata.get("foreground")]


def _emptied_frames(metadata: dict) -> tuple[list[int], bool]:
    """The frames (0 for a single image) left empty because nothing in them stands out from the
    noise: the clustering found one region there, or the empty-field check emptied what it found
    (``contrast_to_noise`` under ``min_contrast``); and whether the check emptied any."""
    facts = _foreground_facts(metadata)
    threshold = metadata["settings"]["min_contrast"]
    checked = [t for t, f in enumerate(facts) if f and f.get("contrast_to_noise", np.inf) < threshold]
    single = [t for t, f in enumerate(facts) if f and f.get("n_clusters") == 1]
    return sorted(checked + single), bool(checked)


def _frame_note(metadata: dict, name: str) -> str:
    """What to tell the user when a border around the image (a uniform frame, a picture frame or
    a vignette; in any frame of a series) was left out as background (``inside_frame``): where,
    and the box kept (that of the first frame named, when several are); empty when none was."""
    facts = _foreground_facts(metadata)
    framed = [t for t, f in enumerate(facts) if f and "inside_frame" in f]
    if not framed:
        return ""
    where = f" in frame {', '.join(str(t + 1) for t in framed)}" if "frames" in metadata else ""
    box = " x ".join(f"{start}-{stop - 1}" for start, stop in facts[framed[0]]["inside_frame"])
    whose = f" in frame {framed[0] + 1}" if len(framed) > 1 else ""
    return (
        f"napari-deepcut: a border around '{name}'{where} was left out as background, a frame "
        f"or vignette (kept {box}{whose}); turn off trim_frame to segment it too"
    )


def _relief_note(metadata: dict, name: str) -> str:
    """What to tell the user when the image (any frame of a series) was read as relief contrast
    and integrated along its shear (``relief_shear_degrees``); empty when it was not."""
    facts = _foreground_facts(metadata)
    relief = [t for t, f in enumerate(facts) if f and "relief_shear_degrees" in f]
    if not relief:
        return ""
    where = f" in frame {', '.join(str(t + 1) for t in relief)}" if "frames" in metadata else ""
    return (
        f"napari-deepcut: '{name}'{where} was read as relief contrast (DIC) and integrated along "
        f"its shear, {facts[relief[0]]['relief_shear_degrees']:g} degrees, before segmentation; "
        "turn off relief to segment its intensities"
    )


def _result_metadata(settings: Settings, image_name: str, stage_name: str, stages: list, axes: ImageAxes) -> dict:
    """Layer metadata: settings, version, source and per-stage facts (per frame for a series)."""
    before = (None,) * (0 if stage_name == "foreground" else 1)  # run_metadata's stage slot

    def facts(stage):
        return None if stage is None else run_metadata(settings, *before, stage).get(stage_name)

    metadata = run_metadata(settings)
    metadata.update(stage=stage_name, source_image=image_name, channel_axis=axes.channel_axis)
    if axes.time_axis is None:
        if stages and facts(stages[0]) is not None:
            metadata[stage_name] = facts(stages[0])
    else:
        metadata["time_axis"] = axes.time_axis
        metadata["frames"] = [facts(stage) for stage in stages]
    return metadata


class SuperpixelPreviewWidget(_RunWidget):
    """The graph the network will see, without training: the nodes (SLIC superpixels or pixel
    blocks) as a Labels layer of contours, and the affinity ``w_ij = exp(-|c_i - c_j|^2 / sigma)``
    of one region i to every other region as an Image layer.

    Pick the region with the "region" spin box or by clicking on the image; change ``affinity_sigma``
    (0 = automatic) and preview again to see how sigma sharpens or blurs the affinities. A time
    series previews the frame shown in the viewer.
    """

    settings_section = "preview"
    setting_names = GRAPH_SETTINGS
    main_settings = GRAPH_MAIN_SETTINGS
    run_text = "Preview superpixels"

    def __init__(self, napari_viewer):
        self.graph = None
        self.superpixel_layer: Labels | None = None
        self.affinity_layer: Image | None = None
        super().__init__(napari_viewer)
        self.progress_bar.min = self.progress_bar.max = 0  # no epochs: a busy indicator
        widget_ref = weakref.ref(self)

        def pick_on_click(viewer, event):
            widget = widget_ref()
            if widget is not None:
                widget.pick_region_at(event.position)

        self._pick_callback = pick_on_click
        napari_viewer.mouse_drag_callbacks.append(pick_on_click)
        self.destroyed.connect(lambda *_: _remove_callback(napari_viewer.mouse_drag_callbacks, pick_on_click))

    def _add_extra_sections(self, layout) -> None:
        self.region = SpinBox(
            name="region", label="region", value=0, min=0, max=0,
            tooltip="Index of the region whose affinities to all others are shown.",
        )
        self.pick_by_click = CheckBox(
            name="pick_by_click", text="click on the image picks the region", value=True,
            tooltip="While on, a click on the canvas chooses the region under the cursor.",
        )
        self.graph_info = Label(value="no preview yet")
        self.region.changed.connect(self.show_affinity)
        self.affinity_controls = Container(widgets=[self.region, self.pick_by_click, self.graph_info])
        self.affinity_controls.enabled = False
        layout.addWidget(self.affinity_controls.native)

    def _start_job(self) -> Callable[[], Outcome]:
        layer = self.image_chooser.value
        if layer is None:
            raise ValueError("Open or choose an image layer to preview first")
        axes = self.axes_of(layer)
        frame = 0
        if axes.time_axis is not None:  # the frame the viewer shows
            position = layer.world_to_data(self.viewer.dims.point)
            frame = int(np.clip(round(position[axes.time_axis]), 0, axes.n_frames - 1))
        settings = self.form.settings()
        data = layer_image_data(layer)
        self._job_context = (layer, axes, frame)

        def job() -> Outcome:
            prepared = prepare_image(
                axes.frame(data, frame), channel_axis=axes.frame_channel_axis,
                spacing=[abs(layer.scale[a]) for a in axes.spatial_axes], rgb=axes.engine_rgb,
            )
            if prepared.constant:
                raise ValueError("the image is constant: there are no regions to show")
            if settings.relief:  # the image the stages segment
                prepared = prepared.relief[0]
            return Outcome(build_graph(prepared, settings), {"settings": settings.as_dict()})

        return job

    def _finish(self, outcome: Outcome) -> None:
        layer, axes, frame = self._job_context
        graph = self.graph = outcome.data
        scale = [layer.scale[a] for a in axes.spatial_axes]
        translate = [layer.translate[a] for a in axes.spatial_axes]
        regions = (graph.node_labels + 1).astype(np.uint32)  # 0: no region
        metadata = {"napari_deepcut_preview": True, "source_image": layer.name, "frame": frame, **outcome.metadata}
        if self._reusable(self.superpixel_layer, layer.name, regions.shape):
            self.superpixel_layer.data = regions
            self.superpixel_layer.scale, self.superpixel_layer.translate = scale, translate
            self.superpixel_layer.metadata = metadata
        else:
            self.superpixel_layer = self.viewer.add_labels(
                regions, name=unique_layer_name(self.viewer, f"{layer.name} superpixels"),
                scale=scale, translate=translate, opacity=0.7, metadata=metadata,
            )
            self.superpixel_layer.contour = 1
        self._affinity_geometry = (scale, translate, layer.name)
        self.region.max = graph.n_nodes - 1
        self.region.value = min(self.region.value, graph.n_nodes - 1)
        self.affinity_controls.enabled = True
        self.graph_info.value = (
            f"{graph.n_nodes} regions, {len(graph.edges)} edges, sigma = {graph.sigma:.4g}"
            + (" (automatic)" if not outcome.metadata["settings"]["affinity_sigma"] else "")
        )
        self.show_affinity()
        self.status.value = self._done_text("preview ready")

    def _reusable(self, preview_layer, source: str, shape: tuple) -> bool:
        """Whether a preview layer of ours can take new data: still open, same image and shape."""
        return (
            _still_open(self.viewer, preview_layer)
            and preview_layer.metadata.get("source_image") == source
            and preview_layer.data.shape == shape
        )

    def region_affinities(self, region: int) -> np.ndarray:
        """``w_ij = exp(-|c_i - c_j|^2 / sigma)`` of region ``i`` to every region j, painted on the pixels."""
        graph = self.graph
        diff = graph.features.astype(np.float64) - graph.features[region]
        affinity = np.exp(-np.einsum("ij,ij->i", diff, diff) / graph.sigma).astype(np.float32)
        return graph.to_image(affinity, fill=np.float32(0))

    def show_affinity(self, *_) -> None:
        """Add or update the affinity layer for the chosen region."""
        if self.graph is None:
            return
        region = int(self.region.value)
        image = self.region_affinities(region)
        scale, translate, source = self._affinity_geometry
        metadata = {"napari_deepcut_preview": True, "source_image": source, "region": region, "sigma": self.graph.sigma}
        if self._reusable(self.affinity_layer, source, image.shape):
            self.affinity_layer.data = image
            self.affinity_layer.scale, self.affinity_layer.translate = scale, translate
            self.affinity_layer.metadata = metadata
        else:  # metadata from the start: the choosers see a preview, not an image to segment
            self.affinity_layer = self.viewer.add_image(
                image, name=unique_layer_name(self.viewer, f"{source} affinity"), scale=scale,
                translate=translate, colormap="magma", contrast_limits=(0.0, 1.0), opacity=0.8,
                metadata=metadata,
            )
        if _still_open(self.viewer, self.superpixel_layer):
            self.superpixel_layer.selected_label = region + 1

    def pick_region_at(self, world_position) -> None:
        """Choose the region under a world position (a click), if the picking is on."""
        if self.graph is None or not self.pick_by_click.value or not _still_open(self.viewer, self.superpixel_layer):
            return
        position = np.round(self.superpixel_layer.world_to_data(world_position)).astype(int)
        shape = self.graph.node_labels.shape
        position = position[-len(shape):]
        if np.all(position >= 0) and np.all(position < shape):
            region = int(self.graph.node_labels[tuple(position)])
            if region >= 0:
                self.region.value = region


def _still_open(viewer, layer) -> bool:
    # Plugins get proxies of the viewer and its layers: compare with ``in``, not ``is``.
    return layer is not None and layer in viewer.layers


def _remove_callback(callbacks: list, callback) -> None:
    if callback in callbacks:
        callbacks.remove(callback)
