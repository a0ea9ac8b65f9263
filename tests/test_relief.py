"""Relief contrast (DIC): detection of the shear, integration, and segmentation through it."""

import numpy as np
import pytest
from _synthetic import cells, dic
from scipy import ndimage

from napari_deepcut import segment
from napari_deepcut.image import prepare_image
from napari_deepcut.relief import (
    integrate_relief,
    relief_shear,
    relief_view,
    smooth_trend,
)


def iou(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return (a & b).sum() / max((a | b).sum(), 1)


@pytest.mark.parametrize("angle", [0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4])
def test_the_shear_is_found_and_the_integral_gives_back_the_path(angle):
    path, mask = cells()
    image = dic(path, angle).astype(np.float64)
    shear = relief_shear(image)
    assert shear.strength > 0.1
    assert abs(shear.angle - angle) < 0.2  # one of 16 directions
    # the cells come back as bumps: its brightest pixels, as many as the cells', are the cells
    # (the integral forgets beyond a few cells, so each bump trails a shallow dip along the shear)
    integral = integrate_relief(image, shear)
    assert np.corrcoef(integral.ravel(), path.ravel())[0, 1] > 0.8
    assert iou(integral > np.quantile(integral, 1 - mask.mean()), mask) > 0.75
    # mirrored, the relief is lit from the other side: the same bumps, not dips
    mirrored = image[::-1, ::-1].copy()
    integral = integrate_relief(mirrored, relief_shear(mirrored))
    assert np.corrcoef(integral.ravel(), path[::-1, ::-1].ravel())[0, 1] > 0.8


def test_a_dic_field_is_segmented_through_its_integral():
    path, mask = cells(seed=2)
    image = dic(path, np.pi / 4, seed=3)
    result = segment(image, parts=2, seed=0)
    assert iou(result.foreground, mask) > 0.7
    facts = result.metadata()
    assert facts["foreground"]["relief_shear_degrees"] == pytest.approx(45.0)
    assert facts["parts"]["relief_shear_degrees"] == pytest.approx(45.0)
    # the intensities alone: a cell's mean is the background's grey
    assert iou(segment(image, relief=False, seed=0).foreground, mask) < 0.5


def test_a_relief_integral_is_not_looked_at_on_finer_superpixels():
    """Integrated along the shear, pixel noise becomes streaks of the cells' size. Twenty cells
    on 512 x 512 are read as many objects smaller than the superpixels; finer superpixels would
    resolve the streaks and take them for cells (IoU 0.33 with those passes, in
    ``benchmarks/RESULTS.md``). On the superpixels asked for, the cells are found."""
    path, mask = cells((512, 512), 20, seed=1)
    result = segment(dic(path, np.pi / 4, seed=11), seed=0)
    facts = result.metadata()["foreground"]
    assert facts["relief_shear_degrees"] == pytest.approx(45.0)
    assert "superpixels_adapted" not in facts
    assert iou(result.foreground, mask) > 0.75


def test_a_dic_field_under_uneven_light_is_found_too():
    path, mask = cells(seed=6)
    image = dic(path, 3 * np.pi / 4, seed=7).astype(np.float64)
    image += 60 * np.linspace(-0.5, 0.5, image.shape[1])[None, :] ** 2 + 40 * np.linspace(-0.5, 0.5, image.shape[0])[:, None]
    result = segment(np.clip(image, 0, 255).astype(np.uint8), seed=0)
    assert result.metadata()["foreground"]["relief_shear_degrees"] == pytest.approx(135.0)
    assert iou(result.foreground, mask) > 0.7


def test_the_slow_trend_is_the_fitted_quadratic():
    rows, cols = np.indices((90, 130)) / 100.0
    surface = 3 + rows - 2 * cols + 0.5 * rows * cols + cols**2
    np.testing.assert_allclose(smooth_trend(surface), surface, atol=1e-3)
    np.testing.assert_allclose(smooth_trend(np.full((5, 300), 2.0)), 2.0)  # too thin to fit


def test_images_that_are_not_relief_are_left_as_they_are():
    path, mask = cells(seed=4)
    noise = np.random.default_rng(5).normal(0, 0.03, path.shape)
    blurred = ndimage.gaussian_filter(mask.astype(float), 1.5)
    rows, cols = np.indices(path.shape)
    fields = {
        "noise alone": 0.5 + noise,
        "fluorescence": 0.1 + 0.8 * blurred + noise,
        "bright-field": 0.9 - 0.6 * blurred + noise,
        "phase contrast": 0.5 - 0.4 * (path - ndimage.gaussian_filter(path, 3)) + noise,
        # a grating pairs light with dark across its stripes, like relief, but its integral is
        # stripes again, not bumps
        "stripes": 0.5 + 0.3 * np.sin(2 * np.pi * (rows + cols) / 16) + noise,
    }
    for name, field in fields.items():
        prepared = prepare_image(field.astype(np.float32))
        assert relief_view(prepared)[1] is None, name
    relief = dic(path, 0.0)
    rgb = np.repeat(relief[..., None], 3, -1)
    rgb[..., 0] = 255 - rgb[..., 0]  # colour: RGB images are not searched
    assert relief_view(prepare_image(rgb))[1] is None
    assert relief_view(prepare_image(np.stack([relief] * 4)))[1] is None  # a volume
    assert relief_view(prepare_image(relief))[1] is not None
