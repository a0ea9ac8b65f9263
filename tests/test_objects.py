"""Each object of the foreground its own label (``objects``), and object-level matching."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_deepcut import segment
from napari_deepcut.evaluate import object_matches
from napari_deepcut.objects import label_objects

from _synthetic import one_torch_thread  # noqa: F401 (fixture)


def discs(shape, centres, radii, spacing=None) -> np.ndarray:
    """Label image of discs (balls), numbered in the order given; later ones drawn over earlier."""
    grids = np.indices(shape).astype(float)
    step = np.ones(len(shape)) if spacing is None else np.asarray(spacing, float)
    labels = np.zeros(shape, np.int32)
    for label, (centre, radius) in enumerate(zip(centres, radii), 1):
        inside = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, step)) < radius**2
        labels[inside] = label
    return labels


def test_touching_discs_are_split_at_their_neck_and_single_shapes_are_not():
    # two discs of radius 12 overlapping by 4 pixels (a neck 13 wide against 24), and a third
    # apart: connected pieces 2, split 3, each drawn disc found again
    drawn = discs((80, 120), [(40, 30), (40, 50), (40, 95)], [12, 12, 12])
    connected = label_objects(drawn > 0, split=False)
    split = label_objects(drawn > 0)
    assert connected.dtype == split.dtype == np.uint32
    assert connected.max() == 2 and split.max() == 3
    assert object_matches(split, drawn) == (3, 0, 0)
    assert np.array_equal(split > 0, drawn > 0)

    # one object each: an ellipse four times as long as wide, a bean, a rough blob, a dumbbell
    # whose neck is 0.8 of its ends' width
    yy, xx = np.mgrid[:100, :100]
    ellipse = ((yy - 50) / 10.0) ** 2 + ((xx - 50) / 40.0) ** 2 < 1
    bean = (((yy - 50) / 22.0) ** 2 + ((xx - 50) / 35.0) ** 2 < 1) & ~((yy - 80) ** 2 + (xx - 50) ** 2 < 18**2)
    noise = ndimage.gaussian_filter(np.random.default_rng(0).normal(size=(100, 100)), 2)
    rough = ndimage.gaussian_filter(((yy - 50) ** 2 + (xx - 50) ** 2 < 30**2) * 1.0, 1.5) + 0.3 * noise / noise.std() > 0.5
    pieces, _ = ndimage.label(ndimage.binary_fill_holes(rough))
    rough = pieces == np.argmax(np.bincount(pieces.ravel())[1:]) + 1  # without the specks around it
    dumbbell = discs((100, 100), [(50, 30), (50, 70)], [15, 15]) > 0
    dumbbell |= (np.abs(yy - 50) < 12) & (xx > 30) & (xx < 70)
    for shape in (ellipse, bean, rough, dumbbell):
        assert ndimage.label(shape)[1] == 1
        assert label_objects(shape).max() == 1

    assert label_objects(np.zeros((10, 10), bool)).max() == 0
    assert label_objects(np.ones((10, 10), bool)).max() == 1


def test_touching_balls_are_split_in_voxels_of_their_spacing():
    # two balls of radius 9 um overlapping by 2 um (a neck 8.5 um wide against 18), in voxels 3
    # times as deep as wide
    spacing = (3.0, 1.0, 1.0)
    drawn = discs((24, 48, 70), [(12, 24, 20), (12, 24, 36)], [9, 9], spacing)
    assert ndimage.label(drawn > 0)[1] == 1
    split = label_objects(drawn > 0, spacing)
    assert object_matches(split, drawn) == (2, 0, 0)


def test_object_matches_count_pairs_over_half_overlap():
    truth = np.zeros((20, 20), int)
    truth[2:8, 2:8], truth[10:18, 10:18], truth[2:6, 12:16] = 1, 2, 3
    found = np.zeros_like(truth)
    found[2:8, 2:9] = 5  # IoU 36/42: a match
    found[10:18, 10:13] = 7  # IoU 24/64: no match
    found[15:20, 0:4] = 9  # nothing there
    assert object_matches(found, truth) == (1, 2, 2)
    assert object_matches(truth, truth) == (3, 0, 0)
    with pytest.raises(ValueError, match="at least 0.5"):
        object_matches(found, truth, threshold=0.3)


def test_segment_numbers_each_object_and_splits_touching_ones():
    # eight discs: six apart, two overlapping into one piece (a neck 9 pixels wide against 20)
    centres = [(20, 20), (20, 60), (20, 100), (100, 20), (100, 60), (100, 100), (60, 50), (60, 68)]
    drawn = discs((120, 120), centres, [9] * 6 + [10] * 2)
    image = np.where(drawn > 0, 180.0, 40.0) + np.random.default_rng(0).normal(0, 6, drawn.shape)
    image = image.astype(np.float32)
    plain = segment(image, seed=0, epochs=100)
    connected = segment(image, seed=0, epochs=100, objects="connected")
    split = segment(image, seed=0, epochs=100, objects="split")
    assert plain.foreground.dtype == np.uint8 and plain.foreground.max() == 1
    assert np.array_equal(connected.foreground > 0, plain.foreground > 0)
    assert np.array_equal(split.foreground > 0, plain.foreground > 0)
    assert connected.foreground.max() == 7 and split.foreground.max() == 8
    assert object_matches(split.foreground, drawn) == (8, 0, 0)
    assert split.metadata()["foreground"]["objects"] == 8 and "objects" not in plain.metadata()["foreground"]
    assert np.array_equal(segment(image, seed=0, epochs=100, objects="split").foreground, split.foreground)
    with pytest.raises(ValueError, match="objects must be one of"):
        segment(image, objects="watershed")
