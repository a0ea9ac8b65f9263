"""Relief contrast (DIC): images whose objects are lit on one side and shadowed on the other.

Differential interference contrast images the slope of a specimen's optical path along one
direction, the shear u: :math:`d = \\partial_u P + b`. A cell is then a bright crescent beside a
dark one on an even grey, and its mean intensity is the background's, so no clustering of
intensities finds it. Integrated along u, the image gives back P, on which cells are bumps.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import fft, ndimage

from .image import PreparedImage, percentile_rescale

RELIEF_RADII = (2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64)
"""Distances, in pixels of the image searched (at most :data:`RELIEF_SIDE` a side), at which the
pairing of light and shadow is looked for, in steps of about sqrt(2): objects from a few pixels
to over a hundred across."""
RELIEF_SIDE = 1024
"""Images larger than this along a side are searched on block means."""
RELIEF_DIRECTIONS = 16
"""Directions searched for the shear, over half a turn."""
RELIEF_PAIRING = 0.1
"""The least :func:`relief_shear` strength read as relief. Synthetic DIC fields score 0.10-0.39;
the other kinds of ``benchmarks/microscopy.py`` and nuclei-dev's fields under 0.09."""
RELIEF_FLAT = 0.5
"""The least share of a relief image's pixels within twice the noise of its background's grey
(after the slow trend): the background, and the flat tops of the cells. Synthetic DIC fields
0.63-0.94; the horse photos in grey, whose shading pairs light with shadow as relief does, under
0.36 where the other tests pass (at most 0.68 in all)."""
RELIEF_SAMPLES = 262_144
"""At most about this many pixels, on a regular grid, measure :data:`RELIEF_FLAT` and the image's
skewness."""
RELIEF_SKEW = 0.3
"""How much more skewed than the image its integral must be to be read as relief: relief is
symmetric about the background, its integral bumps on it (synthetic DIC 0.56-2.7 but for one
field of large cells; the other kinds' fields whose pairing passes by chance, at most 0.03)."""
RELIEF_STRUCTURE = 0.05
"""An image whose covariance one pixel away is under this share of its variance is noise alone."""
RELIEF_LENGTH = 2.5
"""How far the integration reaches, in units of the distance at which light and shadow pair."""
RELIEF_SMOOTHING = 0.25
"""Width of the Gaussian that smooths the integral across the shear, in units of that distance."""


@dataclasses.dataclass(frozen=True)
class Shear:
    """What :func:`relief_shear` found.

    Attributes
    ----------
    strength : float
        How clearly light and shadow pair along one direction (see :func:`relief_shear`).
    angle : float
        The shear's direction, radians from the last axis toward the first, in [0, pi).
    distance : float
        The distance, in pixels of the full image, at which they pair best.
    """

    strength: float
    angle: float
    distance: float


def smooth_trend(grey: np.ndarray, degree: int = 2) -> np.ndarray:
    """The image's slow trend (uneven light): the polynomial of ``degree`` in the pixel
    coordinates fitted to it by least squares, on block means of at most 64 a side (relief
    averages to the background, so its objects barely move the fit)."""
    block = max(1, int(np.ceil(max(grey.shape) / 64)))
    if min(grey.shape) < block:  # too thin to fit across
        return np.full_like(grey, grey.mean())
    cut = [n - n % block for n in grey.shape]
    means = grey[: cut[0], : cut[1]].reshape(cut[0] // block, block, cut[1] // block, block).mean((1, 3))
    axes = [np.linspace(-1.0, 1.0, n) for n in grey.shape]  # pixel coordinates
    centres = [axis[: c].reshape(-1, block).mean(1) for axis, c in zip(axes, cut)]  # block centres
    powers = [(i, j) for i in range(degree + 1) for j in range(degree + 1 - i)]
    design = np.stack([np.multiply.outer(centres[0] ** i, centres[1] ** j).ravel() for i, j in powers], 1)
    coefficients = np.linalg.lstsq(design, means.ravel(), rcond=None)[0]
    trend = sum(c * np.multiply.outer(axes[0] ** i, axes[1] ** j) for c, (i, j) in zip(coefficients, powers))
    return trend.astype(grey.dtype, copy=False)


def _autocovariance(grey: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """The autocovariance of a 2D image at ``shifts`` (rows, columns; pixels, interpolated): the
    mean over the overlapping pixels of the product of the image, less its mean, with itself
    shifted. Zero-padded to twice its size, so shifts do not wrap around."""
    values = grey - grey.mean()
    padded = [2 * n for n in values.shape]
    sums = fft.irfft2(np.abs(fft.rfft2(values, s=padded)) ** 2, s=padded)
    # negative shifts index from the end of the padded array
    sampled = ndimage.map_coordinates(sums, shifts, order=1, mode="grid-wrap")
    overlap = np.prod([n - np.abs(d) for n, d in zip(values.shape, shifts)], axis=0)
    return sampled / np.maximum(overlap, 1.0)


def relief_shear(grey: np.ndarray) -> Shear:
    r"""Whether a 2D image is relief contrast, and its shear.

    With :math:`\rho(r, \theta)` the image's autocovariance at a shift of r pixels in direction
    θ, over its mean one pixel away (the variance without the pixel noise, which would make a
    noisy image look flat), after its slow trend is subtracted (:func:`smooth_trend`), relief
    pairs each bright side with a dark one along the shear, and each bright side with more of
    itself across it:

    .. math:: s = \max_r \min\big(-\min_\theta \rho(r, \theta), \ \max_\theta \rho(r, \theta)\big),

    at r in :data:`RELIEF_RADII` and :data:`RELIEF_DIRECTIONS` directions. Blobs of any kind
    correlate with their neighbourhood in every direction, and dark rims with bright halos
    (phase contrast) anti-correlate in every direction: both give s near 0. The shear is the
    direction of the least ρ at the best r.
    """
    factor = max(1, int(np.ceil(max(grey.shape) / RELIEF_SIDE)))  # block means of at most that side
    if factor > 1:
        cut = tuple(n - n % factor for n in grey.shape)
        grey = grey[: cut[0], : cut[1]].reshape(cut[0] // factor, factor, cut[1] // factor, factor).mean((1, 3))
    grey = np.asarray(grey, np.float64)
    if min(grey.shape) < 8 or grey.std() == 0:
        return Shear(0.0, 0.0, 0.0)
    grey = grey - smooth_trend(grey)  # uneven light correlates in every direction
    angles = np.arange(RELIEF_DIRECTIONS) * np.pi / RELIEF_DIRECTIONS
    radii = [r for r in RELIEF_RADII if 2 * r < min(grey.shape)]
    distances = np.repeat([1.0, *radii], len(angles))
    shifts = np.stack([distances * np.tile(np.sin(angles), len(radii) + 1),
                       distances * np.tile(np.cos(angles), len(radii) + 1)])
    covariance = _autocovariance(grey, shifts).reshape(len(radii) + 1, len(angles))
    # the covariance one pixel away: the image's variance without its pixel noise (none left:
    # noise alone, nothing pairs)
    near = float(covariance[0].mean())
    if near <= RELIEF_STRUCTURE * grey.var():
        return Shear(0.0, 0.0, 0.0)
    rho = covariance[1:] / near
    best = Shear(0.0, 0.0, 0.0)
    for radius, row in zip(radii, rho):
        strength = min(-row.min(), row.max())
        if strength > best.strength:
            best = Shear(float(strength), float(angles[np.argmin(row)]), float(radius * factor))
    return best


def integrate_relief(grey: np.ndarray, shear: Shear) -> np.ndarray:
    r"""The optical path behind a relief image, by integrating along its shear u.

    In Fourier space, with :math:`k_u` the frequency along u (radians per pixel),

    .. math:: \hat P(k) = \hat d(k) \, \frac{-i k_u}{k_u^2 + \ell^{-2}} \, e^{-(w k_v)^2 / 2},

    the derivative inverted where :math:`|k_u| \gg 1/\ell` and damped below: the integral
    forgets beyond about ℓ = :data:`RELIEF_LENGTH` times the pairing distance, so noise and an
    uneven background do not pile up into streaks along u. The image, less its slow trend (the
    background, :func:`smooth_trend`), is padded with zeros by 6ℓ, so its edges do not wrap
    around. Integrated, pixel noise becomes streaks along u, thinner than the objects, so the
    integral is smoothed across u (:math:`k_v`, the frequency across) by a Gaussian of width w =
    :data:`RELIEF_SMOOTHING` times the pairing distance. The sign is chosen so the objects are
    bumps (positive skew: relief objects are few on a large background).
    """
    values = np.asarray(grey, np.float32)
    values = values - smooth_trend(values)
    length = RELIEF_LENGTH * max(shear.distance, 1.0)
    padded = np.pad(values, [(0, min(n, int(np.ceil(6 * length)))) for n in values.shape])
    rows = 2 * np.pi * fft.fftfreq(padded.shape[0]).astype(np.float32)
    cols = 2 * np.pi * fft.rfftfreq(padded.shape[1]).astype(np.float32)
    along = rows[:, None] * np.float32(np.sin(shear.angle)) + cols[None, :] * np.float32(np.cos(shear.angle))
    across = rows[:, None] * np.float32(np.cos(shear.angle)) - cols[None, :] * np.float32(np.sin(shear.angle))
    width = RELIEF_SMOOTHING * max(shear.distance, 1.0)
    response = -1j * along / (along**2 + np.float32(length**-2)) * np.exp(-0.5 * (width * across) ** 2)
    path = fft.irfft2(fft.rfft2(padded) * response, s=padded.shape)[: values.shape[0], : values.shape[1]]
    if _skewness(path) < 0:
        path = -path
    return np.asarray(path, np.float32)


def _skewness(values: np.ndarray) -> float:
    """The sample skewness, the third central moment over the cubed standard deviation."""
    centred = values.astype(np.float64).ravel() - values.mean()
    spread = centred.std()
    return float((centred**3).mean() / spread**3) if spread > 0 else 0.0


def relief_view(image: PreparedImage) -> tuple[PreparedImage, Shear | None]:
    """The image to segment: a relief image (DIC) integrated along its shear, else the image.

    A grey 2D image is relief when light and shadow pair along one direction
    (:func:`relief_shear`, strength at least :data:`RELIEF_PAIRING`), most of it lies at its
    background's grey (:data:`RELIEF_FLAT`), and its integral (:func:`integrate_relief`) is more
    skewed than it by at least :data:`RELIEF_SKEW`. The
    integral, rescaled between its percentiles as any grey image, replaces the image for every
    later step (graph, decision, edges). RGB, multichannel and 3D images are left as they are.

    Returns
    -------
    image : PreparedImage
    shear : Shear or None
        The shear integrated along; None when the image was left as it is.
    """
    if image.rgb or image.ndim != 2 or image.data.shape[-1] != 1 or image.constant:
        return image, None
    grey = image.data[..., 0]
    step = max(1, int(np.sqrt(grey.size / RELIEF_SAMPLES)))  # a regular grid suffices for shares
    flat = grey[::step, ::step] - smooth_trend(grey[::step, ::step])
    if (np.abs(flat - np.median(flat)) < 2 * image.noise).mean() < RELIEF_FLAT:
        return image, None
    shear = relief_shear(grey)
    if shear.strength < RELIEF_PAIRING:
        return image, None
    path = integrate_relief(grey, shear)
    if _skewness(path) - abs(_skewness(flat)) < RELIEF_SKEW:
        return image, None
    return dataclasses.replace(image, data=percentile_rescale(path)[..., None], source=None, levels=None), shear
