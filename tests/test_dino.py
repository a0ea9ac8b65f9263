"""Deep (DINO ViT) features, offline: weights files the tests make from timm's architectures with
random weights, loaded through the same path as a user's file.

Images are small and the ViT sees few patches (``dino_patches=256``: 16 x 16 patches of 8 px), so
each run takes well under a second once the model is loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

from _synthetic import disk_image, one_torch_thread, to_rgb  # noqa: F401 (fixture)

from napari_deepcut import deep_features, segment
from napari_deepcut.deep_features import DeepFeatureError
from napari_deepcut.graph import build_graph
from napari_deepcut.image import prepare_image
from napari_deepcut.settings import from_kwargs

MODEL = "vit_small_patch8_224.dino"
FAST = {"n_segments": 100, "epochs": 30, "dino_patches": 256, "device": "cpu"}


def random_vit(name: str = "vit_small_patch8_224", seed: int = 0):
    """A timm DINO architecture with random weights (no download)."""
    torch.manual_seed(seed)
    return timm.create_model(name, pretrained=False, num_classes=0)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Random ViT-S/8 weights as DINO's release ships them: a plain state dict in a .pth file."""
    path = tmp_path_factory.mktemp("weights") / "dino_deitsmall8_pretrain.pth"
    torch.save(random_vit().state_dict(), path)
    return path


@pytest.fixture(autouse=True)
def no_hub(tmp_path, monkeypatch):
    """Empty, private caches and no downloads: nothing outside the test's folder is read."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


@pytest.fixture
def image():
    grey, _ = disk_image(shape=(64, 64), centre=(32, 30), radius=16)
    return to_rgb(grey)


# --- the pipeline ------------------------------------------------------------------------------


def test_segment_with_dino_features_end_to_end(image, weights):
    result = segment(image, parts=3, features="dino", weights=str(weights), **FAST)
    assert result.foreground.shape == image.shape[:2] and result.foreground.dtype == np.uint8
    assert result.parts.shape == image.shape[:2] and result.parts.dtype == np.uint16
    assert set(np.unique(result.foreground)) <= {0, 1} and result.foreground.any()
    assert result.parts.max() >= 2 and not result.parts[result.foreground == 0].any()

    graph = result.foreground_stage.graph
    assert graph.features.dtype == np.float32 and graph.features.shape == (graph.n_nodes, 32)
    colour = build_graph(prepare_image(image), from_kwargs({**FAST}))
    assert colour.features.shape[1] == 3
    np.testing.assert_array_equal(graph.node_labels, colour.node_labels)  # same superpixels
    assert np.isfinite(graph.features).all() and np.isfinite(graph.weights).all()

    metadata = result.metadata()
    assert metadata["settings"]["features"] == "dino"
    assert metadata["settings"]["weights"] == str(weights)
    assert metadata["settings"]["dino_model"] == MODEL
    json.dumps(metadata)


def test_pixel_nodes_are_the_patches(weights):
    image = np.random.default_rng(1).random((48, 80))
    result = segment(image, parts=2, features="dino", weights=str(weights), nodes="pixels", **FAST)
    graph = result.foreground_stage.graph
    gh, gw = deep_features.patch_grid((48, 80), 256)
    assert (gh, gw) == (12, 20) and graph.n_nodes == gh * gw
    # pixel (y, x) is in patch (y gh / h, x gw / w): here 4 x 4 pixels per patch
    np.testing.assert_array_equal(graph.node_labels[::4, ::4], np.arange(gh * gw).reshape(gh, gw))
    assert len(graph.edges) == gh * (gw - 1) + (gh - 1) * gw  # 4-neighbours on the patch grid
    assert result.parts.shape == image.shape


def test_same_seed_same_labels_on_cpu(image, weights):
    runs = []
    for _ in range(2):
        deep_features._cached_model.cache_clear()
        deep_features._last.clear()
        runs.append(segment(image, parts=2, features="dino", weights=str(weights), seed=3, **FAST))
    np.testing.assert_array_equal(runs[0].foreground, runs[1].foreground)
    np.testing.assert_array_equal(runs[0].parts, runs[1].parts)


def test_volume_slice_by_slice_and_multichannel(weights):
    rng = np.random.default_rng(0)
    volume = rng.random((3, 32, 40))
    volume[:, 8:24, 10:30] += 1
    graph = build_graph(prepare_image(volume), from_kwargs({**FAST, "features": "dino", "weights": str(weights), "nodes": "pixels"}))
    gh, gw = deep_features.patch_grid((32, 40), 256)
    assert graph.node_labels.shape == volume.shape and graph.n_nodes == 3 * gh * gw
    two_channels = rng.random((32, 32, 2))
    result = segment(two_channels, channel_axis=-1, features="dino", weights=str(weights), **FAST)
    assert result.foreground.shape == (32, 32)


# --- the features ------------------------------------------------------------------------------


def test_keys_are_the_last_blocks_key_facet(weights):
    """Against a forward hook on the last block's qkv projection during a full forward pass."""
    model = deep_features.load_model(MODEL, str(weights))
    x = torch.randn(1, 3, 64, 96)
    captured = []
    handle = model.blocks[-1].attn.qkv.register_forward_hook(lambda m, i, out: captured.append(out))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    dim = model.embed_dim
    expected = captured[0][:, 1:, dim : 2 * dim]  # keys of all heads; class token dropped
    keys = deep_features.key_features(model, x)
    assert keys.shape == (1, 8 * 12, dim)
    torch.testing.assert_close(keys, expected, rtol=1e-4, atol=1e-4)


def test_node_features_are_pooled_patch_features():
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(6, 5))
    patches = deep_features.PatchFeatures(
        (raw / np.linalg.norm(raw, axis=1, keepdims=True)).astype(np.float32), (2, 3), (4, 6)
    )
    # 4 x 6 pixels, 2 x 3 patches of 2 x 2 pixels; node 0 = the left half, node 1 = the right.
    labels = np.zeros((4, 6), np.int64)
    labels[:, 3:] = 1
    labels[0, 0] = -1  # outside the mask
    features = patches.node_features(labels, 2, components=0)
    f = patches.features.astype(np.float64)
    # node 0: patch 0 holds 3 of its pixels, patch 3 holds 4, patches 1 / 4 hold 2 each
    mean0 = (3 * f[0] + 2 * f[1] + 4 * f[3] + 2 * f[4]) / 11
    mean1 = (2 * f[1] + 4 * f[2] + 2 * f[4] + 4 * f[5]) / 12
    expected = np.stack([mean0 / np.linalg.norm(mean0), mean1 / np.linalg.norm(mean1)])
    np.testing.assert_allclose(features, expected, rtol=1e-5)
    # PCA keeps the pairwise distances' leading structure: with k = n - 1 it keeps them all
    x = rng.normal(size=(5, 8))
    reduced = deep_features.principal_components(x, 4)
    distances = lambda a: np.linalg.norm(a[:, None] - a[None], axis=-1)
    np.testing.assert_allclose(distances(reduced), distances(x), atol=1e-9)


def test_safetensors_file_gives_the_same_features(image, weights, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file(torch.load(weights, weights_only=True), path)
    settings = {**FAST, "features": "dino"}
    a = build_graph(prepare_image(image), from_kwargs({**settings, "weights": str(weights)}))
    b = build_graph(prepare_image(image), from_kwargs({**settings, "weights": str(path)}))
    np.testing.assert_array_equal(a.features, b.features)


def test_dino_training_checkpoint_teacher_is_used(image, weights, tmp_path):
    """DINO's full checkpoints: student / teacher with ``backbone.`` and head keys, argparse args."""
    state = torch.load(weights, weights_only=True)
    teacher = {f"backbone.{k}": v for k, v in state.items()}
    teacher["head.last_layer.weight"] = torch.zeros(4, 3)
    path = tmp_path / "checkpoint.pth"
    torch.save({"teacher": teacher, "student": {}, "epoch": 100, "args": argparse.Namespace(arch="vit_small")}, path)
    loaded = deep_features.read_state_dict(path)
    assert set(loaded) == set(state)
    result = segment(image, features="dino", weights=str(path), **FAST)
    assert result.foreground.shape == image.shape[:2]


def test_model_is_loaded_once_per_file_and_device(weights, tmp_path):
    first = deep_features.load_model(MODEL, str(weights))
    assert deep_features.load_model(MODEL, str(weights)) is first
    copy = tmp_path / "copy.pth"
    copy.write_bytes(weights.read_bytes())
    assert deep_features.load_model(MODEL, str(copy)) is not first


# --- bad weights -------------------------------------------------------------------------------


def test_missing_weights_file_is_named(image, tmp_path):
    missing = tmp_path / "nowhere" / "dino.pth"
    with pytest.raises(ValueError, match=f"{missing}.*does not exist") as error:
        segment(image, features="dino", weights=str(missing), **FAST)
    assert "dl.fbaipublicfiles.com" in str(error.value)


def test_wrong_key_or_shape_names_file_and_key(image, weights, tmp_path):
    state = torch.load(weights, weights_only=True)
    renamed = dict(state)
    renamed["blocks.3.attn.qkv.kernel"] = renamed.pop("blocks.3.attn.qkv.weight")
    path = tmp_path / "renamed.pth"
    torch.save(renamed, path)
    with pytest.raises(DeepFeatureError, match=f"{path}.*'blocks.3.attn.qkv.weight' is missing"):
        segment(image, features="dino", weights=str(path), **FAST)

    reshaped = dict(state, **{"norm.weight": torch.ones(100)})
    path = tmp_path / "reshaped.pth"
    torch.save(reshaped, path)
    with pytest.raises(DeepFeatureError, match=r"reshaped.pth.*'norm.weight' has shape \(100,\), the model needs \(384,\)"):
        segment(image, features="dino", weights=str(path), **FAST)

    extra = dict(state, **{"head.weight": torch.ones(3)})
    path = tmp_path / "extra.pth"
    torch.save(extra, path)
    with pytest.raises(DeepFeatureError, match="extra.pth.*unexpected key 'head.weight'"):
        segment(image, features="dino", weights=str(path), **FAST)


def test_weights_of_another_model_are_recognised(image, tmp_path):
    path = tmp_path / "s16.pth"
    torch.save(random_vit("vit_small_patch16_224").state_dict(), path)
    with pytest.raises(DeepFeatureError, match="'pos_embed' has shape.*dino_model='vit_small_patch16_224.dino'"):
        segment(image, features="dino", weights=str(path), **FAST)
    result = segment(image, features="dino", dino_model="vit_small_patch16_224.dino", weights=str(path), **FAST)
    assert result.foreground.shape == image.shape[:2]


def test_pickled_objects_are_refused(image, tmp_path):
    module = tmp_path / "module.pth"
    torch.save(torch.nn.Linear(2, 2), module)
    with pytest.raises(DeepFeatureError, match=f"refused to load weights file {module}.*Linear"):
        segment(image, features="dino", weights=str(module), **FAST)
    arbitrary = tmp_path / "object.pth"
    torch.save({"blocks.0.norm1.weight": torch.ones(3), "payload": subprocess.Popen}, arbitrary)
    with pytest.raises(DeepFeatureError, match="refused to load"):
        segment(image, features="dino", weights=str(arbitrary), **FAST)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(DeepFeatureError, match=f"cannot read weights file {garbage}"):
        segment(image, features="dino", weights=str(garbage), **FAST)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 16)
    with pytest.raises(DeepFeatureError, match=f"cannot read weights file {broken} as safetensors"):
        segment(image, features="dino", weights=str(broken), **FAST)


# --- no weights given: the caches --------------------------------------------------------------


def test_offline_with_empty_cache_says_how_to_get_the_weights(image):
    start = time.perf_counter()
    with pytest.raises(DeepFeatureError) as error:
        segment(image, features="dino", **FAST)
    assert time.perf_counter() - start < 10
    message = str(error.value)
    assert "HF_HUB_OFFLINE" in message
    assert deep_features.official_url(MODEL) in message
    assert "https://dl.fbaipublicfiles.com/dino/dino_deitsmall8_pretrain/dino_deitsmall8_pretrain.pth" in message
    assert "timm/vit_small_patch8_224.dino" in message and "--weights PATH" in message


def test_weights_are_found_in_the_caches(image, weights, tmp_path):
    from safetensors.torch import save_file

    # Hugging Face cache layout, as timm / huggingface_hub leave it after a download
    commit = "0" * 40
    repo = tmp_path / "hf-cache" / "models--timm--vit_small_patch8_224.dino"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    save_file(torch.load(weights, weights_only=True), snapshot / "model.safetensors")
    assert deep_features.weights_file(MODEL) == snapshot / "model.safetensors"
    assert segment(image, features="dino", **FAST).foreground.shape == image.shape[:2]
    # torch hub's folder, under the official file name
    hub = tmp_path / "torch-home" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / "dino_deitsmall16_pretrain.pth").write_bytes(b"")
    assert deep_features.weights_file("vit_small_patch16_224.dino") == hub / "dino_deitsmall16_pretrain.pth"


def test_without_timm_the_message_names_the_extra(image, monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm -> ImportError
    with pytest.raises(DeepFeatureError, match=r"pip install 'napari-deepcut\[dino\]'"):
        segment(image, features="dino", **FAST)


def test_core_imports_and_runs_without_timm():
    code = (
        "import sys; sys.modules['timm'] = None\n"
        "import numpy as np, napari_deepcut, napari_deepcut.cli, napari_deepcut.graph\n"
        "r = napari_deepcut.segment(np.random.default_rng(0).random((24, 24)), n_segments=20, epochs=5)\n"
        "assert r.foreground.shape == (24, 24)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=os.environ.copy(), timeout=120)


# --- settings, command line, GUI ---------------------------------------------------------------


def test_settings_check_the_new_fields(tmp_path):
    assert from_kwargs({"weights": tmp_path}).weights == str(tmp_path)
    with pytest.raises(TypeError, match="weights must be a string"):
        from_kwargs({"weights": 3})
    with pytest.raises(ValueError, match="dino_model must be one of"):
        from_kwargs({"dino_model": "vit_huge"})
    with pytest.raises(ValueError, match="features must be one of"):
        from_kwargs({"features": "deep"})
    with pytest.raises(ValueError, match="dino_patches must be >= 4"):
        from_kwargs({"dino_patches": 1})


def test_cli_weights_flag(tmp_path, weights, capsys):
    import imageio.v3 as iio

    from napari_deepcut.cli import main

    grey, _ = disk_image()
    iio.imwrite(tmp_path / "photo.png", to_rgb(grey))
    out = tmp_path / "out"
    flags = ["--features", "dino", "--dino-patches", "256", "--n_segments", "60", "--epochs", "20",
             "--device", "cpu", "--workers", "1", "--no-progress"]
    status = main(["segment", str(tmp_path / "photo.png"), "--out", str(out), "--parts", "2", "--weights", str(weights), *flags])
    assert status == 0, capsys.readouterr().err
    saved = json.loads((out / "photo_settings.json").read_text())
    assert saved["settings"]["weights"] == str(weights) and saved["settings"]["features"] == "dino"
    assert (out / "photo_parts.tif").exists()

    missing = tmp_path / "missing.pth"
    status = main(["segment", str(tmp_path / "photo.png"), "--out", str(tmp_path / "out2"), "--weights", str(missing), *flags])
    err = capsys.readouterr().err
    assert status == 1 and str(missing) in err and "Traceback" not in err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_features_match_cpu(image, weights):
    settings = {**FAST, "features": "dino", "weights": str(weights)}
    cpu = deep_features.patch_features(prepare_image(image), from_kwargs(settings))
    gpu = deep_features.patch_features(prepare_image(image), from_kwargs({**settings, "device": "cuda"}))
    np.testing.assert_allclose(gpu.features, cpu.features, atol=1e-3)


def test_widget_weights_picker(make_napari_viewer, qtbot, weights, tmp_path, monkeypatch):
    pytest.importorskip("napari")
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        pytest.skip("no display for a napari viewer: run under xvfb-run -a")
    from magicgui.widgets import FileEdit

    from napari_deepcut import _widget

    monkeypatch.setenv("NAPARI_DEEPCUT_CONFIG_DIR", str(tmp_path / "config"))
    viewer = make_napari_viewer()
    grey, _ = disk_image()
    viewer.add_image(to_rgb(grey), name="photo", rgb=True)
    _, widget = viewer.window.add_plugin_dock_widget("napari-deepcut", "Foreground / background")
    control = widget.form.controls["weights"]
    assert isinstance(control, FileEdit) and widget.form.settings().weights == ""
    widget.form.set_values({**FAST, "n_segments": 60, "features": "dino", "weights": str(weights)})
    assert widget.form.settings().weights == str(weights)
    widget.run()
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    layer = viewer.layers["photo foreground"]
    assert layer.metadata["settings"]["weights"] == str(weights)
    assert json.loads(_widget.config_path().read_text())["foreground"]["weights"] == str(weights)
    widget.restore_defaults()
    assert control.value is None and widget.form.settings().weights == ""
