"""Metrics, the mask-free foreground rules, and ``napari-deepcut evaluate`` on a tiny synthetic set."""

from __future__ import annotations

import csv
import math

import imageio.v3 as iio
import numpy as np
import pytest

from napari_deepcut import evaluate as ev
from napari_deepcut.cli import main
from napari_deepcut.settings import Settings

from _synthetic import FAST, disk_image, one_torch_thread, to_rgb  # noqa: F401 (fixture)


def test_iou_and_accuracy_known_values():
    truth = np.zeros((4, 4), bool)
    truth[:2] = True  # 8 pixels
    assert ev.iou(truth, truth) == 1.0
    assert ev.pixel_accuracy(truth, truth) == 1.0
    assert ev.iou(~truth, truth) == 0.0
    assert ev.pixel_accuracy(~truth, truth) == 0.0
    half = np.zeros((4, 4), bool)
    half[:1] = True  # 4 of the 8
    assert ev.iou(half, truth) == pytest.approx(0.5)
    assert ev.pixel_accuracy(half, truth) == pytest.approx(12 / 16)
    # masks are "non-zero = foreground", any dtype
    assert ev.iou(truth.astype(np.uint8) * 255, truth) == 1.0
    empty = np.zeros((4, 4))
    assert ev.iou(empty, empty) == 1.0
    with pytest.raises(ValueError, match="shape"):
        ev.iou(np.zeros((2, 2)), np.zeros((3, 3)))


def test_border_background_generalises_the_two_cluster_rule():
    labels = np.zeros((20, 20), int)
    labels[5:15, 5:15] = 1  # an object away from the border
    labels[0:3, 0:20] = 2  # a strip along the top: all border
    background = ev.border_background(labels)
    assert not background[10, 10]
    assert background[0, 0] and background[1, 5]
    # two segments: the one the engine's argmax rule picks
    two = (labels == 1).astype(int)
    assert np.array_equal(ev.border_background(two), two == 0)


def test_corner_vote_and_tie():
    clusters = np.zeros((10, 10), int)
    clusters[:, 7:] = 1
    assert ev.corner_background(clusters) == 0  # 2 corners each: the larger cluster
    clusters[:5, :] = 1
    assert ev.corner_background(clusters) == 1  # 3 corners of 4


@pytest.mark.parametrize("method", ["otsu", "deepcut", "ncut"])
@pytest.mark.parametrize("kind", ["grey", "rgb", "rgba"])
def test_methods_find_a_disk(method, kind):
    grey, mask = disk_image()
    image = {"grey": grey, "rgb": to_rgb(grey), "rgba": np.dstack([to_rgb(grey), np.full(grey.shape, 255, np.uint8)])}[kind]
    foreground, _ = ev.METHODS[method](image, Settings(epochs=40, n_segments=100))
    assert foreground.shape == mask.shape and foreground.dtype == bool
    # ~27 pixels per superpixel on 48 x 56 pixels: coarse edges; a threshold has none
    assert ev.iou(foreground, mask) > (0.95 if method == "otsu" else 0.6)


def test_skimage_ncut_finds_a_disk():
    # (on much smaller images cut_normalized's default threshold often makes no cut at all)
    grey, mask = disk_image((200, 240), (100, 110), 50)
    foreground, _ = ev.skimage_ncut_foreground(to_rgb(grey), Settings())
    assert foreground.shape == mask.shape and foreground.dtype == bool
    assert ev.iou(foreground, mask) > 0.9


def test_deck_runs_with_the_corner_vote(monkeypatch):
    grey, mask = disk_image()
    # 1000 epochs of a 1024-wide network are too slow for a unit test
    monkeypatch.setitem(ev.DECK_SETTINGS, "epochs", 30)
    foreground, _ = ev.deck_foreground(grey, Settings())
    assert foreground.shape == mask.shape and foreground.dtype == bool
    # the corner vote makes the corners background whatever the clusters look like
    assert not foreground[0, 0] or not foreground[-1, -1]


def _dataset(tmp_path, n=3):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for i in range(n):
        grey, mask = disk_image(centre=(22 + i, 24 + 2 * i), seed=i)
        iio.imwrite(images / f"img{i}.{'jpg' if i == 0 else 'png'}", to_rgb(grey) if i % 2 == 0 else grey)
        iio.imwrite(masks / f"img{i}.png", mask.astype(np.uint8) * 255)
    iio.imwrite(images / "no_mask.png", to_rgb(grey))  # not scored
    return images, masks


def test_evaluate_command_writes_table_csv_and_plot(tmp_path, capsys):
    images, masks = _dataset(tmp_path)
    out = tmp_path / "eval"
    status = main(["evaluate", "--images", str(images), "--masks", str(masks), "--methods", "otsu,deepcut",
                   "--limit", "2", "--out", str(out), "--worst", "0", *FAST])
    assert status == 0
    table = capsys.readouterr().out
    assert "| otsu | 2 |" in table and "| deepcut | 2 |" in table and "mIoU" in table
    rows = list(csv.DictReader(open(out / "scores.csv")))
    assert {r["method"] for r in rows} == {"otsu", "deepcut"} and len(rows) == 4
    assert all(float(r["iou"]) > 0.95 for r in rows if r["method"] == "otsu")
    assert all(0 <= float(r["iou"]) <= 1 for r in rows)
    assert (out / "scores.png").stat().st_size > 1000
    assert "otsu" in (out / "summary.md").read_text()
    assert not list(out.glob("worst-*.png"))  # --worst 0


def test_masks_that_label_their_objects_are_scored_object_by_object(tmp_path, capsys):
    # two fields of three disks, two of them touching; the reference labels each disk
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    yy, xx = np.mgrid[:60, :90]
    labels = np.zeros((60, 90), np.uint8)
    for label, (y, x) in enumerate([(30, 18), (30, 38), (30, 72)], 1):  # 1 and 2 overlap
        labels[(yy - y) ** 2 + (xx - x) ** 2 < 11**2] = label
    for i in range(2):
        noise = np.random.default_rng(i).normal(0, 6, labels.shape)
        iio.imwrite(images / f"f{i}.png", np.clip(50 + 150 * (labels > 0) + noise, 0, 255).astype(np.uint8))
        iio.imwrite(masks / f"f{i}.png", labels)
    assert ev.object_f1(labels > 0, labels) == 1.0  # split at the neck, each disk matched
    assert ev.object_f1(np.zeros_like(labels), labels) == 0.0
    assert ev.object_f1(np.zeros_like(labels), np.zeros_like(labels)) == 1.0

    out = tmp_path / "eval"
    assert main(["evaluate", "--images", str(images), "--masks", str(masks), "--methods", "otsu",
                 "--out", str(out), "--worst", "0", *FAST]) == 0
    table = capsys.readouterr().out
    assert "object F1 |" in table and "| otsu | 2 |" in table
    rows = list(csv.DictReader(open(out / "scores.csv")))
    expected = [ev.object_f1(ev.METHODS["otsu"](iio.imread(images / f"f{i}.png"), Settings())[0], labels) for i in range(2)]
    assert [float(r["object_f1"]) for r in rows] == pytest.approx(expected, abs=1e-6)
    assert min(expected) > 0.8  # Otsu finds the disks; a speck of noise may add an object

    (tmp_path / "binary").mkdir()
    binary = _dataset(tmp_path / "binary", n=1)  # one foreground value: no object score
    scores = ev.evaluate(ev.find_pairs(*binary), ["otsu"], Settings(), show_progress=False)
    assert math.isnan(scores[0].object_f1) and "object F1" not in ev.format_table(ev.summarise(scores, ["otsu"]))


def test_worst_scores_are_the_lowest_without_failures():
    scores = [ev.Score(name, "m", value, 0.5, 0.1) for name, value in
              [("a", 0.9), ("b", 0.2), ("c", math.nan), ("d", 0.2), ("e", 0.5)]]
    scores.append(ev.Score("z", "other", 0.0, 0.0, 0.1))
    assert [s.image for s in ev.worst_scores(scores, "m", 3)] == ["b", "d", "e"]
    assert len(ev.worst_scores(scores, "m", 10)) == 4
    assert ev.worst_scores(scores, "m", 0) == []


def test_evaluate_worst_draws_one_row_per_worst_image(tmp_path, capsys):
    images, masks = _dataset(tmp_path)
    out = tmp_path / "eval"
    status = main(["evaluate", "--images", str(images), "--masks", str(masks), "--methods", "deepcut,otsu",
                   "--worst", "2", "--out", str(out), *FAST])
    assert status == 0
    assert "worst-deepcut.png" in capsys.readouterr().err
    for method in ("deepcut", "otsu"):
        path = out / f"worst-{method}.png"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        picture = iio.imread(path)
        assert picture.shape[0] == round(2 * ev.WORST_ROW_INCHES * ev.WORST_DPI)  # 2 rows of 3 images
        assert picture.shape[1] == round(3 * 1.25 * ev.WORST_ROW_INCHES * ev.WORST_DPI)
        assert 5_000 < path.stat().st_size < 300_000


def test_evaluate_rejects_negative_worst(tmp_path):
    images, masks = _dataset(tmp_path, n=1)
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--images", str(images), "--masks", str(masks), "--worst", "-1"])
    assert exit_info.value.code == 2


def test_evaluate_perfect_and_inverted_predictions(tmp_path, monkeypatch):
    images, masks = _dataset(tmp_path)
    truth = {p.stem: ev.read_mask(p) for p in masks.iterdir()}
    # stand-in methods that look up the answer: the loop must score them 1 and 0
    order = [name for name in sorted(truth) for _ in range(2)]
    lookup = iter(order)
    monkeypatch.setitem(ev.METHODS, "perfect", lambda image, s: (truth[next(lookup)], ""))
    monkeypatch.setitem(ev.METHODS, "inverted", lambda image, s: (~truth[next(lookup)], ""))
    scores = ev.evaluate(ev.find_pairs(images, masks), ["perfect", "inverted"], Settings(), show_progress=False)
    rows = {r["method"]: r for r in ev.summarise(scores, ["perfect", "inverted"])}
    assert rows["perfect"]["mIoU"] == 1.0 and rows["perfect"]["accuracy"] == 1.0
    assert rows["inverted"]["mIoU"] == 0.0 and rows["inverted"]["accuracy"] == 0.0
    assert rows["inverted"]["better_side"] == 1.0  # a perfect cut, wrong side called foreground


def test_a_failing_method_scores_nan_and_the_rest_go_on(tmp_path, monkeypatch, capsys):
    images, masks = _dataset(tmp_path, n=2)

    def broken(image, settings):
        raise RuntimeError("boom")

    monkeypatch.setitem(ev.METHODS, "broken", broken)
    scores = ev.evaluate(ev.find_pairs(images, masks), ["broken", "otsu"], Settings(), show_progress=False)
    assert all(math.isnan(s.iou) and "boom" in s.note for s in scores if s.method == "broken")
    assert all(s.iou > 0.7 for s in scores if s.method == "otsu")
    assert "| broken | 0 |" in ev.format_table(ev.summarise(scores, ["broken", "otsu"]))


def test_evaluate_command_rejects_unknown_method(tmp_path):
    images, masks = _dataset(tmp_path, n=1)
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--images", str(images), "--masks", str(masks), "--methods", "magic"])
    assert exit_info.value.code == 2
