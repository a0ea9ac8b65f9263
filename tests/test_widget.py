"""The napari dock widgets in a real viewer (run under Xvfb: ``xvfb-run -a python -m pytest``).

Images are small and training short (n_segments 100, 30 epochs), so each run takes well under a
second once torch is warm.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import pytest

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari.layers import Image, Labels  # noqa: E402

from napari_deepcut import _widget, samples  # noqa: E402
from napari_deepcut._widget import image_axes, unique_layer_name  # noqa: E402

# Without a display Qt aborts the whole process, so viewer tests skip instead (CI runs xvfb-run -a).
NO_DISPLAY = sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
needs_display = pytest.mark.skipif(NO_DISPLAY, reason="no display for a napari viewer: run under xvfb-run -a")

FAST = {"n_segments": 100, "epochs": 30}
PLUGIN = "napari-deepcut"


@pytest.fixture(autouse=True)
def config_dir(tmp_path, monkeypatch):
    """Keep saved widget settings out of the user's config directory."""
    monkeypatch.setenv("NAPARI_DEEPCUT_CONFIG_DIR", str(tmp_path / "config"))
    return tmp_path / "config"


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny graphs train fastest on one thread (and do not stall on a busy CI machine)."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def notifications(monkeypatch):
    """Errors, warnings and infos the widgets show, as (kind, message) pairs."""
    shown = []
    for kind in ("error", "warning", "info"):
        monkeypatch.setattr(_widget, f"show_{kind}", lambda message, kind=kind: shown.append((kind, message)))
    return shown


def two_tone_disc(size: int = 64, seed: int = 0) -> np.ndarray:
    """RGB test image: a disc, red on the left and blue on the right, on a noisy grey background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    image = np.full((size, size, 3), 90.0) + rng.normal(0, 6, (size, size, 3))
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3.2) ** 2
    image[disc & (xx < size / 2)] = (220, 40, 40)
    image[disc & (xx >= size / 2)] = (40, 60, 220)
    return np.clip(image, 0, 255).astype(np.uint8)


def open_widget(viewer, name: str, **settings):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    widget.form.set_values({**FAST, **settings})
    return widget


def run_and_wait(qtbot, widget, timeout: int = 20_000) -> None:
    widget.run()
    qtbot.waitUntil(lambda: not widget.running, timeout=timeout)
    print("status:", widget.status.value)


def layer_names(viewer) -> list[str]:
    return [layer.name for layer in viewer.layers]


# --- pure helpers --------------------------------------------------------------------------------


def test_image_axes_split_frames_channels_space():
    rgb = image_axes((40, 50, 3), rgb=True)
    assert rgb.spatial_axes == (0, 1) and rgb.result_shape == (40, 50) and rgb.engine_rgb
    volume = image_axes((10, 40, 50))
    assert volume.time_axis is None and volume.spatial_axes == (0, 1, 2)
    series = image_axes((10, 40, 50), frames_are_time=True)
    assert series.time_axis == 0 and series.n_frames == 10 and series.result_shape == (10, 40, 50)
    channels = image_axes((5, 2, 40, 50), channel_axis=1)  # (t, c, y, x): 3 axes left, a volume
    assert channels.result_axes == (0, 2, 3) and channels.frame_channel_axis == 1
    series_channels = image_axes((5, 2, 40, 50), channel_axis=1, frames_are_time=True)
    assert series_channels.frame_channel_axis == 0 and series_channels.spatial_axes == (2, 3)
    assert image_axes((4, 6, 40, 50)).time_axis == 0  # four axes: frames of volumes
    with pytest.raises(ValueError, match="2D images and 3D volumes"):
        image_axes((2, 3, 4, 40, 50))
    with pytest.raises(ValueError, match="frames plus a 2D image"):
        image_axes((40, 50), frames_are_time=True)


def test_manifest_is_valid_and_names_the_widgets():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution(PLUGIN)
    manifest.validate_imports()
    names = {widget.display_name for widget in manifest.contributions.widgets}
    assert {"Foreground / background", "Parts", "Superpixel preview"} <= names
    assert {"coffee", "immunohistochemistry", "blobs_3d"} <= {s.key for s in manifest.contributions.sample_data}


# --- the two stages --------------------------------------------------------------------------------


@needs_display
def test_foreground_then_parts_keeps_hand_edits(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    image = viewer.add_image(two_tone_disc(), name="disc", rgb=True, scale=(0.5, 0.25), translate=(3, 4))
    foreground_widget = open_widget(viewer, "Foreground / background", seed=3)
    assert foreground_widget.image_chooser.value is image

    shown = []  # (progress bar, status) as the GUI showed them
    foreground_widget._relay.progressed.connect(
        lambda *_: shown.append((foreground_widget.progress_bar.value, foreground_widget.status.value))
    )
    run_and_wait(qtbot, foreground_widget)
    assert any(text == "foreground: refining edges…" for _, text in shown)  # a step is named
    assert any(text.startswith("foreground: epoch") for _, text in shown)
    bars = [bar for bar, _ in shown]
    assert bars == sorted(bars)  # a step without epochs leaves the bar where it was
    foreground = viewer.layers["disc foreground"]
    assert isinstance(foreground, Labels)
    assert foreground.data.shape == (64, 64) and foreground.data.dtype == np.uint8
    np.testing.assert_allclose(foreground.scale, (0.5, 0.25))
    np.testing.assert_allclose(foreground.translate, (3, 4))
    assert foreground.metadata["settings"]["seed"] == 3
    assert foreground.metadata["settings"]["epochs"] == 30
    assert "napari_deepcut_version" in foreground.metadata
    assert foreground.metadata["foreground"]["n_nodes"] > 10
    assert foreground.data[32, 32] == 1 and foreground.data[2, 2] == 0  # disc found

    # A hand edit: erase the left half of the foreground.
    foreground.data[:, :32] = 0
    foreground.refresh()
    edited = foreground.data.copy()

    parts_widget = open_widget(viewer, "Parts")
    assert parts_widget.mask_chooser.value is foreground
    parts_widget.parts_count.value = 2
    run_and_wait(qtbot, parts_widget)
    parts = viewer.layers["disc parts"]
    assert parts.data.dtype == np.uint16 and parts.data.shape == (64, 64)
    assert not parts.data[:, :32].any()  # nothing where the edit removed foreground
    assert np.array_equal(parts.data > 0, edited > 0)
    assert parts.metadata["requested_parts"] == 2 and parts.metadata["stage"] == "parts"
    np.testing.assert_allclose(parts.scale, (0.5, 0.25))

    # A rerun never writes over the edited layer: it adds a numbered one.
    run_and_wait(qtbot, foreground_widget)
    assert "disc foreground [2]" in layer_names(viewer)
    assert np.array_equal(viewer.layers["disc foreground"].data, edited)
    assert viewer.layers["disc foreground [2]"].data[:, :32].any()


@needs_display
def test_objects_get_a_label_each_and_parts_run_inside_them(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    yy, xx = np.mgrid[:64, :96]
    drawn = sum((yy - 32) ** 2 + (xx - x) ** 2 < 10**2 for x in (14, 48, 82))
    noise = np.random.default_rng(0).normal(0, 5, drawn.shape)
    viewer.add_image((40 + 150 * drawn + noise).astype(np.float32), name="cells", scale=(0.5, 0.5))
    foreground_widget = open_widget(viewer, "Foreground / background")
    assert foreground_widget.form.controls["objects"] in list(foreground_widget.form.main)  # not under "advanced"
    foreground_widget.form.set_values({"objects": "split"})
    run_and_wait(qtbot, foreground_widget)
    objects = viewer.layers["cells foreground"]
    assert objects.data.dtype == np.uint32 and objects.data.max() == 3
    assert objects.metadata["foreground"]["objects"] == 3
    assert "(3 objects)" in foreground_widget.status.value
    sizes = objects.features  # each object's area in the layer's units, shown on hover
    assert list(sizes["index"]) == [1, 2, 3]
    np.testing.assert_allclose(sizes["area"], [np.count_nonzero(objects.data == k) * 0.25 for k in (1, 2, 3)])

    parts_widget = open_widget(viewer, "Parts")
    assert parts_widget.mask_chooser.value is objects
    parts_widget.parts_count.value = 2
    run_and_wait(qtbot, parts_widget)
    assert np.array_equal(viewer.layers["cells parts"].data > 0, objects.data > 0)


@needs_display
def test_parts_without_k(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(two_tone_disc(), name="disc", rgb=True)
    mask = np.zeros((64, 64), np.uint8)
    mask[12:52, 12:52] = 1  # painted by hand
    viewer.add_labels(mask, name="painted")
    parts_widget = open_widget(viewer, "Parts")
    parts_widget.auto_parts.value = True
    assert not parts_widget.parts_count.enabled
    run_and_wait(qtbot, parts_widget)
    parts = viewer.layers["disc parts"]
    assert parts.metadata["requested_parts"] == "auto"
    assert not parts.data[mask == 0].any() and parts.data.max() >= 1


@needs_display
def test_cancel_stops_quickly_and_adds_nothing(make_napari_viewer, qtbot, notifications):
    viewer = make_napari_viewer()
    viewer.add_image(two_tone_disc(), name="disc", rgb=True)
    widget = open_widget(viewer, "Foreground / background", epochs=100_000, patience=100_000)
    widget.run()
    assert widget.running and not widget.run_button.enabled and widget.cancel_button.enabled
    assert not widget.form.main.native.isEnabled()
    qtbot.waitUntil(lambda: "epoch" in widget.status.value, timeout=10_000)
    pressed = time.monotonic()
    widget.cancel_button.native.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=5_000)
    assert time.monotonic() - pressed < 2.0
    assert layer_names(viewer) == ["disc"]
    assert widget.run_button.enabled and widget.form.main.native.isEnabled()
    assert any(kind == "info" and "cancelled" in message for kind, message in notifications)


@needs_display
def test_bad_inputs_notify_and_change_nothing(make_napari_viewer, qtbot, notifications):
    viewer = make_napari_viewer()
    foreground_widget = open_widget(viewer, "Foreground / background")
    parts_widget = open_widget(viewer, "Parts")

    foreground_widget.run()  # no image layer at all
    assert not foreground_widget.running and notifications[-1][0] == "error"

    viewer.add_image(np.zeros((1, 40), np.float32) + np.arange(40), name="line")
    run_and_wait(qtbot, foreground_widget)
    assert notifications[-1][0] == "error" and "2 pixels" in notifications[-1][1]

    nans = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    nans[3, 3] = np.nan
    viewer.add_image(nans, name="nans")
    run_and_wait(qtbot, foreground_widget)
    assert notifications[-1][0] == "error" and "NaN" in notifications[-1][1]

    viewer.add_labels(np.zeros((10, 10), np.uint8), name="wrong shape")
    parts_widget.image_chooser.value = viewer.layers["nans"]
    parts_widget.run()
    assert not parts_widget.running and "shape" in notifications[-1][1]

    viewer.add_labels(np.zeros((32, 32), np.uint8), name="empty")
    parts_widget.mask_chooser.value = viewer.layers["empty"]
    parts_widget.run()
    assert not parts_widget.running and "empty" in notifications[-1][1]

    assert layer_names(viewer) == ["line", "nans", "wrong shape", "empty"]


@needs_display
def test_an_empty_field_says_why_its_foreground_is_empty(make_napari_viewer, qtbot, notifications):
    viewer = make_napari_viewer()
    # a blank well under uneven light: the clustering cuts off its brighter side, which the
    # empty-field check measures from the background's trend
    ramp = 80 + 40 * np.indices((96, 96))[1] / 95.0
    viewer.add_image(np.random.default_rng(0).normal(ramp, 5).astype(np.float32), name="blank well")
    widget = open_widget(viewer, "Foreground / background")
    run_and_wait(qtbot, widget)
    result = viewer.layers["blank well foreground"]
    assert not result.data.any() and result.metadata["foreground"]["contrast_to_noise"] < 3
    kind, message = notifications[-1]
    assert kind == "warning" and "blank well" in message and "stands out from its noise" in message
    assert "the empty-field check, min_contrast=3" in message

    # the default superpixels: the noise floor of the affinities leaves the field one cluster
    viewer.add_image(np.random.default_rng(1).normal(100, 10, (256, 256)).astype(np.float32), name="well 2")
    widget.image_chooser.value = viewer.layers["well 2"]
    widget.form.controls["n_segments"].value = 1000
    run_and_wait(qtbot, widget)
    result = viewer.layers["well 2 foreground"]
    assert not result.data.any() and result.metadata["foreground"]["n_clusters"] == 1
    kind, message = notifications[-1]
    assert kind == "warning" and "stands out from its noise" in message and "one region only" in message


@needs_display
def test_a_frame_left_out_is_said(make_napari_viewer, qtbot, notifications):
    viewer = make_napari_viewer()
    framed = two_tone_disc()
    framed[:3], framed[-3:], framed[:, :3], framed[:, -3:] = 0, 0, 0, 0  # a black frame, 3 pixels
    viewer.add_image(framed, name="framed", rgb=True)
    run_and_wait(qtbot, open_widget(viewer, "Foreground / background"))
    assert viewer.layers["framed foreground"].metadata["foreground"]["inside_frame"] == [[3, 61], [3, 61]]
    kind, message = notifications[-1]
    assert kind == "info" and "around 'framed' was left out as background" in message
    assert "(kept 3-60 x 3-60)" in message
    assert "trim_frame" in message


def test_the_frame_note_names_the_frames_of_a_series():
    series = {"frames": [{"n_clusters": 3}, None, {"inside_frame": [[2, 30], [1, 31]]}]}
    assert "around 'cells' in frame 3 was left out" in _widget._frame_note(series, "cells")
    assert "kept 2-29 x 1-30" in _widget._frame_note(series, "cells")
    assert _widget._frame_note({"foreground": {"n_clusters": 2}}, "cells") == ""
    series["frames"][0]["inside_frame"] = [[4, 28], [4, 28]]  # boxes differ: the first is named
    assert "in frame 1, 3 was left out" in _widget._frame_note(series, "cells")
    assert "kept 4-27 x 4-27 in frame 1)" in _widget._frame_note(series, "cells")


@needs_display
def test_a_relief_image_integrated_is_said(make_napari_viewer, qtbot, notifications):
    from _synthetic import cells, dic

    viewer = make_napari_viewer()
    path, _ = cells(shape=(128, 128), count=10, seed=2)
    viewer.add_image(dic(path, np.pi / 4, seed=3), name="dic")
    run_and_wait(qtbot, open_widget(viewer, "Foreground / background"))
    assert viewer.layers["dic foreground"].metadata["foreground"]["relief_shear_degrees"] == 45.0
    kind, message = notifications[-1]
    assert kind == "info" and "'dic' was read as relief contrast (DIC)" in message


def test_the_relief_note_says_where_an_image_was_integrated():
    assert "'cells' was read as relief contrast (DIC)" in _widget._relief_note({"foreground": {"relief_shear_degrees": 45.0}}, "cells")
    assert "along its shear, 45 degrees" in _widget._relief_note({"foreground": {"relief_shear_degrees": 45.0}}, "cells")
    series = {"frames": [{"n_clusters": 3}, {"relief_shear_degrees": 22.5}]}
    assert "'cells' in frame 2 was read" in _widget._relief_note(series, "cells")
    assert _widget._relief_note({"foreground": {"n_clusters": 2}}, "cells") == ""


# --- volumes, time series, samples -----------------------------------------------------------------


@needs_display
def test_volume_uses_layer_scale_as_spacing(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    volume = samples.blob_volume(shape=(12, 32, 32), spacing=(2.0, 1.0, 1.0))
    viewer.add_image(volume, name="volume", scale=(2.0, 1.0, 1.0))
    widget = open_widget(viewer, "Foreground / background")
    run_and_wait(qtbot, widget)
    foreground = viewer.layers["volume foreground"]
    assert foreground.data.shape == (12, 32, 32)
    np.testing.assert_allclose(foreground.scale, (2.0, 1.0, 1.0))
    assert 0 < foreground.data.mean() < 0.6


@needs_display
def test_channel_axis_of_a_multichannel_layer(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    disc = two_tone_disc(40).astype(np.float32)
    viewer.add_image(np.moveaxis(disc[..., :2], -1, 0), name="two channels", scale=(7.0, 0.5, 0.5))
    widget = open_widget(viewer, "Foreground / background")
    assert widget.channel_axis.choices == ("none", 0, 1, 2)
    widget.channel_axis.value = 0
    run_and_wait(qtbot, widget)
    foreground = viewer.layers["two channels foreground"]
    assert foreground.data.shape == (40, 40) and foreground.metadata["channel_axis"] == 0
    np.testing.assert_allclose(foreground.scale, (0.5, 0.5))


@needs_display
def test_time_series_frame_by_frame(make_napari_viewer, qtbot, notifications):
    viewer = make_napari_viewer()
    viewer.add_image(samples.blob_timelapse(n_frames=3, shape=(40, 40)), name="movie", scale=(5.0, 0.5, 0.5))
    foreground_widget = open_widget(viewer, "Foreground / background")
    foreground_widget.frames_are_time.value = True
    run_and_wait(qtbot, foreground_widget)
    foreground = viewer.layers["movie foreground"]
    assert foreground.data.shape == (3, 40, 40)
    np.testing.assert_allclose(foreground.scale, (5.0, 0.5, 0.5))
    assert len(foreground.metadata["frames"]) == 3 and foreground.metadata["time_axis"] == 0
    assert all(frame.any() for frame in foreground.data)

    parts_widget = open_widget(viewer, "Parts")
    parts_widget.frames_are_time.value = True
    parts_widget.parts_count.value = 2
    run_and_wait(qtbot, parts_widget)
    parts = viewer.layers["movie parts"]
    assert parts.data.shape == (3, 40, 40)
    assert np.array_equal(parts.data > 0, foreground.data > 0)

    preview_widget = open_widget(viewer, "Superpixel preview")
    preview_widget.frames_are_time.value = True
    viewer.dims.set_current_step(0, 2)
    run_and_wait(qtbot, preview_widget)
    regions = viewer.layers["movie superpixels"]
    assert regions.data.shape == (40, 40) and regions.metadata["frame"] == 2

    blank = np.random.default_rng(0).normal(100, 10, (40, 40))  # a frame of pure noise
    viewer.add_image(np.stack([blank, viewer.layers["movie"].data[1] * 1.0]), name="with a blank frame")
    foreground_widget.image_chooser.value = viewer.layers["with a blank frame"]
    run_and_wait(qtbot, foreground_widget)
    result = viewer.layers["with a blank frame foreground"].data
    assert not result[0].any() and result[1].any()
    kind, message = notifications[-1]
    assert kind == "info" and "frame 1 of 'with a blank frame' left empty" in message


@needs_display
def test_sample_data_opens(make_napari_viewer):
    viewer = make_napari_viewer()
    for key in ("coffee", "immunohistochemistry", "cell", "blobs_3d", "blobs_timelapse"):
        viewer.open_sample(PLUGIN, key)
    assert all(isinstance(layer, Image) for layer in viewer.layers)
    assert viewer.layers["coffee"].rgb and viewer.layers["blobs 3D"].ndim == 3
    np.testing.assert_allclose(viewer.layers["blobs 3D"].scale, (2.0, 1.0, 1.0))


# --- preview, settings -------------------------------------------------------------------------------


@needs_display
def test_superpixel_preview_and_affinities(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(two_tone_disc(), name="disc", rgb=True, scale=(2.0, 2.0))
    widget = open_widget(viewer, "Superpixel preview")
    assert set(_widget.GRAPH_MAIN_SETTINGS) <= set(widget.form.controls) <= set(_widget.GRAPH_SETTINGS)
    run_and_wait(qtbot, widget)
    regions, affinity = viewer.layers["disc superpixels"], viewer.layers["disc affinity"]
    assert regions.contour == 1 and regions.data.min() >= 1
    assert 20 < regions.data.max() <= 140
    np.testing.assert_allclose(regions.scale, (2.0, 2.0))
    own = regions.data == widget.region.value + 1
    np.testing.assert_allclose(affinity.data[own], 1.0)
    assert 0.0 <= affinity.data.min() and affinity.data.max() <= 1.0

    widget.pick_region_at((2 * 32, 2 * 20))  # a click in world coordinates, inside the disc
    assert widget.region.value == regions.data[32, 20] - 1
    assert affinity.data[32, 20] == pytest.approx(1.0)
    assert affinity.data[2, 2] < 0.5  # the background is far from the red half of the disc

    widget.form.controls["affinity_sigma"].value = 10.0  # a huge sigma: everything looks alike
    run_and_wait(qtbot, widget)
    assert layer_names(viewer) == ["disc", "disc superpixels", "disc affinity"]  # updated in place
    assert viewer.layers["disc affinity"].data.min() > 0.5


@needs_display
def test_settings_persist_and_restore_defaults(make_napari_viewer, config_dir):
    viewer = make_napari_viewer()
    widget = open_widget(viewer, "Parts")
    widget.form.controls["loss"].value = "cc"
    widget.parts_count.value = 6
    saved = json.loads((config_dir / "widget-settings.json").read_text())["parts"]
    assert saved["loss"] == "cc" and saved["parts"] == 6 and saved["epochs"] == 30

    again = _widget.PartsWidget(viewer)  # a new session reads them back
    assert again.form.controls["loss"].value == "cc" and again.parts_count.value == 6
    tooltip = again.form.controls["n_segments"].tooltip
    assert tooltip == _widget.Settings.__dataclass_fields__["n_segments"].metadata["help"]

    again.restore_defaults()
    assert again.form.controls["loss"].value == "ncut" and again.parts_count.value == 4
    assert again.form.controls["epochs"].value == 300
    assert "parts" not in json.loads((config_dir / "widget-settings.json").read_text())
    again.close()
    again.deleteLater()


@needs_display
def test_unique_layer_names(make_napari_viewer):
    viewer = make_napari_viewer()
    assert unique_layer_name(viewer, "a foreground") == "a foreground"
    viewer.add_labels(np.zeros((4, 4), np.uint8), name="a foreground")
    viewer.add_labels(np.zeros((4, 4), np.uint8), name="a foreground [2]")
    assert unique_layer_name(viewer, "a foreground") == "a foreground [3]"


@needs_display
def test_training_after_napari_opened_its_window_does_not_crash():
    """With napari's OpenGL loaded first, torch's lazy import of triton (via torch._dynamo, on the
    first optimiser step) crashed the process on CPU-only machines; the plugin prevents it."""
    import subprocess
    import textwrap

    script = textwrap.dedent(
        """
        import numpy as np, napari
        viewer = napari.Viewer(show=False)
        viewer.add_image(np.random.rand(32, 32))
        from napari_deepcut import _widget, segment
        segment(np.random.rand(32, 32), epochs=2)
        print("trained")
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "trained" in run.stdout, run.stderr[-2000:]
