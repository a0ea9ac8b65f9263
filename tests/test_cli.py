"""``napari-deepcut`` on small synthetic files: segment, config files, bad inputs, demo, compare."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from napari_deepcut import settings
from napari_deepcut.cli import build_parser, main

from _synthetic import FAST, disk_image, one_torch_thread, to_rgb  # noqa: F401 (fixture)


@pytest.fixture
def inputs(tmp_path):
    """A folder with a grey TIFF, an RGB PNG and an RGB JPEG, plus a grey 16-bit TIFF outside it."""
    folder = tmp_path / "in"
    folder.mkdir()
    grey, _ = disk_image()
    tifffile.imwrite(folder / "grey.tif", grey)
    iio.imwrite(folder / "colour.png", to_rgb(grey))
    iio.imwrite(folder / "photo.jpg", to_rgb(np.roll(grey, 3, axis=1)))
    (folder / "notes.txt").write_text("not an image, not picked up from a folder")
    single = tmp_path / "deep.tiff"
    tifffile.imwrite(single, grey.astype(np.uint16) * 200)
    return folder, single


def test_segment_folder_and_file(inputs, tmp_path, capsys):
    folder, single = inputs
    out = tmp_path / "out"
    status = main(["segment", str(folder), str(single), "--out", str(out), "--parts", "2", "--workers", "1", *FAST])
    assert status == 0, capsys.readouterr().err
    for stem in ("grey", "colour", "photo", "deep"):
        foreground = tifffile.imread(out / f"{stem}_foreground.tif")
        parts = tifffile.imread(out / f"{stem}_parts.tif")
        assert foreground.shape == parts.shape == (48, 56)
        assert foreground.dtype == np.uint8 and set(np.unique(foreground)) <= {0, 1}
        assert parts.dtype == np.uint16 and parts.max() <= 2
        assert np.array_equal(parts > 0, foreground > 0)
        saved = json.loads((out / f"{stem}_settings.json").read_text())
        assert saved["settings"]["epochs"] == 20 and saved["settings"]["n_segments"] == 60
        assert saved["parts"] == 2 and stem in saved["input"]
        assert set(saved["settings"]) == {f.name for f in settings.fields()}


def test_foreground_only_writes_no_parts(inputs, tmp_path):
    folder, _ = inputs
    out = tmp_path / "out"
    assert main(["segment", str(folder / "grey.tif"), "--out", str(out), *FAST]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["grey_foreground.tif", "grey_settings.json"]


def test_bad_files_are_named_and_skipped(inputs, tmp_path, capsys):
    folder, _ = inputs
    tifffile.imwrite(folder / "nan.tif", np.full((32, 32), np.nan, np.float32))
    tifffile.imwrite(folder / "toomany.tif", np.zeros((2, 3, 4, 8, 8), np.uint8), photometric="minisblack")  # 5 axes
    (folder / "broken.png").write_bytes(b"this is not a PNG")
    (folder / "headless.tif").write_bytes(b"II*\x00 truncated after its header")
    out = tmp_path / "out"
    status = main(["segment", str(folder), str(tmp_path / "missing.tif"), "--out", str(out), "--workers", "1", *FAST])
    err = capsys.readouterr().err
    assert status == 1
    for name in ("nan.tif", "toomany.tif", "broken.png", "headless.tif", "missing.tif"):
        assert name in err
    assert "NaN" in err and "cannot read headless.tif as an image" in err
    assert (out / "grey_foreground.tif").exists() and (out / "photo_foreground.tif").exists()
    assert not (out / "nan_foreground.tif").exists()


def test_existing_outputs_are_kept_without_overwrite(inputs, tmp_path, capsys):
    folder, _ = inputs
    out = tmp_path / "out"
    image = str(folder / "grey.tif")
    assert main(["segment", image, "--out", str(out), *FAST]) == 0
    marker = np.full((48, 56), 7, np.uint8)
    tifffile.imwrite(out / "grey_foreground.tif", marker)
    assert main(["segment", image, "--out", str(out), *FAST]) == 1
    assert "grey_foreground.tif exists" in capsys.readouterr().err
    assert np.array_equal(tifffile.imread(out / "grey_foreground.tif"), marker)
    assert main(["segment", image, "--out", str(out), "--overwrite", *FAST]) == 0
    assert tifffile.imread(out / "grey_foreground.tif").max() == 1


def test_config_file_and_flag_precedence(inputs, tmp_path):
    folder, _ = inputs
    config = tmp_path / "run.toml"
    config.write_text('epochs = 15\nn-segments = 50\nseed = 4\nparts = 3\n\n')
    out = tmp_path / "out"
    assert main(["segment", str(folder / "grey.tif"), "--out", str(out), "--config", str(config), "--seed", "9", "--no-progress"]) == 0
    saved = json.loads((out / "grey_settings.json").read_text())
    assert saved["settings"]["epochs"] == 15 and saved["settings"]["n_segments"] == 50
    assert saved["settings"]["seed"] == 9  # the flag wins
    assert saved["parts"] == 3 and (out / "grey_parts.tif").exists()
    # the saved file works as a config: same settings, same result
    again = tmp_path / "again"
    assert main(["segment", str(folder / "grey.tif"), "--out", str(again), "--config", str(out / "grey_settings.json"), "--no-progress"]) == 0
    assert json.loads((again / "grey_settings.json").read_text())["settings"] == saved["settings"]
    assert np.array_equal(tifffile.imread(again / "grey_parts.tif"), tifffile.imread(out / "grey_parts.tif"))


def test_bad_settings_are_usage_errors(inputs, tmp_path, capsys):
    folder, _ = inputs
    image, out = str(folder / "grey.tif"), str(tmp_path / "out")
    for flags, word in ((["--epochs", "0"], "epochs"), (["--loss", "magic"], "loss"), (["--parts", "1"], "parts")):
        with pytest.raises(SystemExit) as exit_info:
            main(["segment", image, "--out", out, *flags])
        assert exit_info.value.code == 2 and word in capsys.readouterr().err
    config = tmp_path / "bad.toml"
    config.write_text("n_segmentz = 10\n")
    with pytest.raises(SystemExit):
        main(["segment", image, "--out", out, "--config", str(config)])
    err = capsys.readouterr().err
    assert "n_segmentz" in err and "bad.toml" in err


def test_every_setting_is_a_flag_with_its_default_and_help():
    parser = build_parser()
    segment_parser = parser.subcommands["segment"]
    actions = {a.dest: a for a in segment_parser._actions}
    for spec in settings.fields():
        action = actions[spec.name]
        assert f"--{spec.name}" in action.option_strings
        if "_" in spec.name:
            assert f"--{spec.name.replace('_', '-')}" in action.option_strings
        assert spec.metadata["help"].split(":")[0] in action.help and f"default: {spec.default}" in action.help
    args = parser.parse_args(["segment", "x.tif", "--out", "o", "--n-segments", "7", "--keep_largest", "--no-fill-holes"])
    assert (args.n_segments, args.keep_largest, args.fill_holes) == (7, True, False)


def test_objects_are_written_one_label_each(tmp_path):
    # three disks side by side, as separate objects; in a series each frame is numbered alone
    grey = np.concatenate([disk_image(seed=s)[0] for s in range(3)], axis=1)
    tifffile.imwrite(tmp_path / "three.tif", grey)
    tifffile.imwrite(tmp_path / "movie.tif", np.stack([grey, np.roll(grey, 5, axis=1)]), photometric="minisblack")
    out = tmp_path / "out"
    flags = ["--out", str(out), "--objects", "split", "--workers", "1", *FAST]
    assert main(["segment", str(tmp_path / "three.tif"), *flags]) == 0
    assert main(["segment", str(tmp_path / "movie.tif"), "--frames", *flags]) == 0
    objects = tifffile.imread(out / "three_foreground.tif")
    assert objects.dtype == np.uint32 and objects.max() == 3
    assert [len(np.unique(objects[:, j * 56 : (j + 1) * 56])) for j in range(3)] == [2, 2, 2]
    frames = tifffile.imread(out / "movie_foreground.tif")
    assert frames.dtype == np.uint32 and [frame.max() for frame in frames] == [3, 3]
    assert json.loads((out / "three_settings.json").read_text())["stages"]["foreground"]["objects"] == 3


def test_time_series_frames(tmp_path):
    grey, _ = disk_image()
    series = np.stack([np.roll(grey, 4 * t, axis=1) for t in range(3)])
    tifffile.imwrite(tmp_path / "movie.tif", series, photometric="minisblack")
    out = tmp_path / "out"
    assert main(["segment", str(tmp_path / "movie.tif"), "--out", str(out), "--frames", "--parts", "2", "--workers", "1", *FAST]) == 0
    assert tifffile.imread(out / "movie_foreground.tif").shape == (3, 48, 56)
    assert tifffile.imread(out / "movie_parts.tif").dtype == np.uint16
    assert len(json.loads((out / "movie_settings.json").read_text())["stages"]) == 3


def test_demo_headless_writes_results(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--headless", "--out", str(out), "--epochs", "10", "--n_segments", "200"]) == 0
    printed = capsys.readouterr().out
    for name in ("demo_foreground.tif", "demo_parts.tif", "demo_overlay.png"):
        assert (out / name).exists() and name in printed
    foreground = tifffile.imread(out / "demo_foreground.tif")
    assert foreground.shape == (512, 512) and foreground.dtype == np.uint8  # immunohistochemistry
    assert iio.imread(out / "demo_overlay.png").shape == (512, 512, 3)


def test_compare_writes_a_figure(tmp_path, capsys):
    grey, _ = disk_image((64, 72), (32, 34), 17)
    iio.imwrite(tmp_path / "disk.png", to_rgb(grey))
    figure = tmp_path / "figures" / "compare.png"
    assert main(["compare", str(tmp_path / "disk.png"), "--out", str(figure), "--epochs", "10", "--n_segments", "80"]) == 0
    assert iio.imread(figure).ndim == 3 and "compare.png" in capsys.readouterr().out
