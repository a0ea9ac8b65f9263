"""Checks of what the foreground stage found against the image itself.

Whether a foreground stands out from the pixel noise (:func:`foreground_contrast`), whether its
outline is an edge (:func:`outline_edge`), and, when nothing was found or the objects are small,
whether finer superpixels are worth a look and how many (:func:`finer_detail`,
:func:`retry_segments`, :func:`finer_segments`). Each reads the image or the foreground's pixels
once a clustering is done; none chooses among clusters (:mod:`~napari_deepcut.choice` does).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .graph import Graph
from .image import PreparedImage, gaussian_in_threads, noise_gain, noise_level, smoothing_widths, trend_steps
from .settings import fields

_MAX_SEGMENTS = next(f for f in fields() if f.name == "n_segments").metadata["max"]
SEGMENTS_PIXELS = 256 * 256
"""The image size (pixels or voxels) ``n_segments`` is meant for: the superpixels' size there is
the finest :func:`retry_segments` looks at."""


def retry_segments(shape: tuple[int, ...], n_segments: int) -> list[int]:
    r"""The superpixel counts to look again at an image of ``shape`` with when nothing was found
    on ``n_segments``: four times as many each time, up to
    :math:`n N / N_0` for :math:`N` pixels (voxels) and :math:`N_0 = 256^2`
    (:data:`SEGMENTS_PIXELS`), superpixels as small as ``n_segments`` makes them on a 256 x 256
    image; within the setting's range. Empty for an image no larger than that.

    Objects far smaller than the superpixels are lost in their means before the graph can
    measure them, and the step to take is not known: on a field of rims (phase contrast) too
    fine a graph sees the halo and texture, so the coarser counts come first.
    """
    finest = min(n_segments * float(np.prod(shape)) / SEGMENTS_PIXELS, _MAX_SEGMENTS)
    counts = []
    count = float(n_segments)
    while count * MAX_FINER < finest:
        count *= MAX_FINER
        counts.append(int(round(count)))
    if finest >= 1.5 * (counts[-1] if counts else n_segments):  # a smaller step is not worth a pass
        counts.append(int(round(finest)))
    return counts


DETAIL_FALSE_ALARM = 1e-3
"""A bound on the chance that noise alone takes an empty image past :func:`finer_detail`'s level."""


def finer_detail(image: PreparedImage, n_segments: int) -> float:
    r"""How far the image's detail finer than ``n_segments`` superpixels rises above the noise,
    over the height that noise alone reaches: the colours x smoothed by a Gaussian g of width
    :data:`CONTRAST_WIDTH`, minus their mean u over a box of the superpixels' side (which takes
    away the background and its trend, and what is as large as a superpixel), at its highest
    over the channels c and the pixels p, over the pixel noise :math:`\hat\sigma_c` as that
    filter scales it,

    .. math:: z = \max_{c, p} \frac{|(g - u * g) * x_c|_p}{\hat\sigma_c \, \|g - u * g\|_2},
              \qquad d = z / \sqrt{2 \ln(N C / \alpha)} ,

    for N pixels and C channels. Noise alone reaches a height t at a given pixel with a chance
    under :math:`e^{-t^2/2}`, so the denominator of d anywhere in the image with a chance under
    :math:`\alpha` (:data:`DETAIL_FALSE_ALARM`); smoothing only makes its pixels fewer
    independent draws. Pixels closer to the border than three widths are left out, where the
    filter's mirrored edge raises the noise. Objects smaller than the superpixels, which
    :func:`retry_segments` looks for, rise above it (``benchmarks/RESULTS.md``, at 1024 x 1024:
    1.3 on discs of radius 5 as bright as the noise's spread, 2.8 on phase contrast, 6.7 on DIC);
    fields of noise, graded or not, stay under it (0.56-0.85), but for some of few counts, whose
    Poisson noise grows with the signal (1.00 and 1.04 of 84 fields). Noise that is not white,
    which the estimate from neighbouring pixels understates, only raises d. Infinite when a
    channel has no measurable noise.
    """
    sampling = np.asarray(image.spacing, float) / min(image.spacing)
    pixels = int(np.prod(image.spatial_shape))
    side = (pixels * float(np.prod(sampling)) / max(n_segments, 1)) ** (1 / image.ndim)
    box = [max(1, 2 * int(round(side / s / 2)) + 1) for s in sampling]  # odd, in pixels per axis
    widths = smoothing_widths(CONTRAST_WIDTH, image.spacing)
    impulse = np.zeros([b + 2 * int(np.ceil(4 * w)) + 2 for b, w in zip(box, widths)], np.float64)
    impulse[tuple(n // 2 for n in impulse.shape)] = 1.0
    response = ndimage.gaussian_filter(impulse, widths)
    gain = float(np.linalg.norm(response - ndimage.uniform_filter(response, box)))
    inner = tuple(
        slice(min(m, (n - 1) // 2), n - min(m, (n - 1) // 2))
        for n, m in zip(image.spatial_shape, (int(np.ceil(3 * w)) for w in widths))
    )
    highest = 0.0
    for channel in np.moveaxis(image.colour, -1, 0):  # one filtered channel in memory at a time
        noise = noise_level(channel[..., None])
        if noise == 0:
            return float("inf")
        detail = gaussian_in_threads(channel, widths)
        detail -= ndimage.uniform_filter(detail, box)
        highest = max(highest, float(np.abs(detail[inner]).max()) / (noise * gain))
        del detail
    return highest / float(np.sqrt(2 * np.log(pixels * image.colour.shape[-1] / DETAIL_FALSE_ALARM)))


OBJECT_SUPERPIXELS = 2.0
"""The superpixels a typical object should cover for the graph to resolve it (:func:`finer_segments`)."""
MAX_FINER = 4.0
"""At most this many times the superpixels when :func:`finer_segments` asks for more."""
FINER_PASSES = 3
"""At most this many finer passes: another follows a pass :data:`MAX_FINER` capped, since objects
that were far smaller than the superpixels are measured too large (each spans whole nodes)."""


def finer_segments(mask: np.ndarray, graph: Graph, n_segments: int) -> int:
    r"""How many superpixels to ask for so that a foreground of small objects is resolved; 0 when
    it already is.

    The typical object is the one a foreground pixel belongs to, on average: with :math:`a_o` the
    pixels of each connected object, its size is :math:`\bar a = \sum_o a_o^2 / \sum_o a_o`
    (specks barely count). With :math:`\bar s` the mean superpixel size, when
    :math:`\bar a < 2 \bar s` (:data:`OBJECT_SUPERPIXELS`) the count is scaled by
    :math:`\min(2 \bar s / \bar a, 4)` (:data:`MAX_FINER`; within the setting's range): an
    object of a few pixels then has nodes of its own instead of being a fraction of one whose
    mean colour is mostly background.

    Parameters
    ----------
    mask : ndarray of bool
        The foreground found on ``graph``.
    graph : Graph
        The superpixel graph it was found on.
    n_segments : int
        The superpixels asked for then.
    """
    objects, count = ndimage.label(mask)
    if count == 0:
        return 0
    area = np.bincount(objects.ravel())[1:].astype(np.float64)
    typical = (area**2).sum() / area.sum()
    superpixel = float(graph.sizes.mean())
    finer = int(round(n_segments * min(OBJECT_SUPERPIXELS * superpixel / typical, MAX_FINER)))
    finer = min(finer, _MAX_SEGMENTS)
    return finer if finer > n_segments else 0


CONTRAST_WIDTH = 2.0
"""Width of the Gaussian :func:`foreground_contrast` smooths by, in units of the finest spacing."""


def foreground_contrast(image: PreparedImage, foreground: np.ndarray) -> float:
    r"""How far a foreground stands out from the image's noise: with the colours x smoothed by a
    Gaussian g of width :data:`CONTRAST_WIDTH`, the step between the foreground F and the
    background B, net of the background's trend t (:func:`~napari_deepcut.image.trend_steps`: a
    quadratic in the pixel coordinates fitted to the background), over the noise left after that
    smoothing,

    .. math:: z = \frac{| \overline{(g * x - t)}_F - \overline{(g * x - t)}_B |}{\hat\sigma \, \|g\|_2},

    with :math:`\hat\sigma` the pixel noise (:func:`~napari_deepcut.image.noise_level`) and
    :math:`\|g\|_2` the factor by which g scales it (:func:`~napari_deepcut.image.noise_gain`).
    An object keeps its step through the smoothing, and stands out from the background around it
    continued under it. A foreground cut out of an empty field follows blobs of noise a few pixels
    wide, whose step the smoothing mostly removes; one cut out of a graded or vignetted empty
    field is its brighter side, which the trend explains. With the check off
    (``benchmarks/empty_fields.py --fields 6 --limit 100``), z was 0.7-1.4 on the 13 of 48
    fields of pure noise that the clustering split and 0.0-0.6 on 36 fields of noise on a ramp
    or vignetting (without the trend 34 of them were over 3, up to 19.8); grey, Poisson and RGB,
    2D and 3D, 128-1024 pixels a side, superpixel and pixel nodes. With object edges
    (:func:`~napari_deepcut.refine.object_edges`) it was 0.9-1.3 on the 9 split and 0.0-0.8 on
    the graded ones. It was at least 4.7 on the
    first 100 horse photos, 92 on nuclei-dev and 30 on the synthetic microscopy kinds (low
    signal to noise; 12.3 on phase contrast). Infinite on an image without measurable noise, or with a side empty."""
    if image.noise == 0 or foreground.all() or not foreground.any():
        return float("inf")
    widths = smoothing_widths(CONTRAST_WIDTH, image.spacing)
    # one smoothed channel in memory at a time
    smoothed = (gaussian_in_threads(channel, widths) for channel in np.moveaxis(image.colour, -1, 0))
    return float(np.linalg.norm(trend_steps(smoothed, foreground)) / (image.noise * noise_gain(widths)))


EDGE_WIDTHS = (1.0, 2.0)
"""Widths of the Gaussians whose derivatives :func:`outline_edge` takes, in units of the finest spacing."""


def outline_edge(image: PreparedImage, foreground: np.ndarray) -> float:
    r"""How sharp a foreground's outline is: with :math:`|\nabla (g * x)|` the gradient of the
    colours x smoothed by a Gaussian g (central differences, summed over the channels in
    quadrature), its median over the outline O (foreground pixels with a background neighbour;
    the image border is not an outline) over its median over the whole image I, at the sharper
    of the widths :data:`EDGE_WIDTHS`:

    .. math:: e = \max_g \frac{\operatorname{median}_O |\nabla (g * x)|}{\operatorname{median}_I |\nabla (g * x)|} .

    An object has an edge, however blurred by the optics; the bright side of a lamp's uneven
    light fades over hundreds of pixels, and its outline is as flat as the rest of the image.
    The wider Gaussian keeps the edge of a faint object above the noise; the narrower, the edge
    of a small one above the texture around it. Measured (``benchmarks/RESULTS.md``): 1.25-1.36
    on the lamp's light taken for the object in unevenly lit 1024 x 1024 fields of small cells;
    at least 3.1 on single discs as faint as the noise, 4.9 on DIC at 256 x 256, 2.5 on
    nuclei-dev, 1.87 on the 327 horse photos and 1.42 on their grey versions (1.56 but for one
    whose foreground is wrong anyway). Infinite when a side is empty or the image is flat.
    """
    outline = foreground & ~ndimage.binary_erosion(foreground, border_value=1)
    if not outline.any() or foreground.all():
        return float("inf")
    ratios = []
    for width in EDGE_WIDTHS:
        widths = smoothing_widths(width, image.spacing)
        squares = np.zeros(image.spatial_shape, np.float32)
        for channel in np.moveaxis(image.colour, -1, 0):
            smoothed = gaussian_in_threads(channel, widths)
            for axis in range(smoothed.ndim):
                squares += np.gradient(smoothed, axis=axis) ** 2
            del smoothed
        # the image's median from a regular sample of about a million pixels: as robust, faster
        flat = squares.reshape(-1)
        typical = float(np.median(flat[:: max(1, flat.size // 1_000_000)]))
        ratios.append(np.sqrt(np.median(squares[outline]) / typical) if typical > 0 else float("inf"))
    return float(max(ratios))
