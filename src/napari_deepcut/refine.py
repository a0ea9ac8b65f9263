"""Pixel-level refinement of a node labelling along its boundaries.

A superpixel (or pixel block) that straddles an object's edge takes one label as a whole, and its
mean colour lies between the two sides. Here the pixels of every node that touches a node of
another label are re-decided by a few steps of k-means inside the node's neighbourhood
:math:`\\bar N(i) = \\{i\\} \\cup N(i)` (the node and the nodes touching it): each label l present
there has the local mean colour of its pixels,

.. math:: \\mu_{i,l} = \\operatorname{mean} \\{ x_q : q \\in \\bar N(i), \\ \\ell(q) = l \\},

and each pixel p of node i takes the label of the nearest local mean,
:math:`\\ell(p) = \\arg\\min_l |x_p - \\mu_{i,l}|^2`; the means are then measured again on the
new labels. The pixels start from their node's label. Nodes inside a region of one label keep it.

The means are trimmed: a re-decided pixel whose colour lies near the midpoint of its two nearest
means (:data:`EDGE_BAND`) is the blurred edge itself, and is left out of the next means. Counted,
such pixels pull both means toward the midpoint, the more so where edges make up more of a
neighbourhood (small objects, 3D), and the edge drifts outward.

On a noisy image single pixels would flip at random, so the colours compared are first smoothed
just enough for the step between the local means of each neighbourhood (:func:`denoising_levels`):
a faint object is smoothed more than a bright one in the same image, and a clean image is used as
it is.

In a scene of many objects, :func:`faint_objects` drops the objects that do not stand out from the
noise, :func:`dim_objects` then adds the objects the clustering left in the
background, :func:`object_edges` re-edges each connected object on its own, half way between
its median colour and that of a ring around it, and :func:`object_holes` fills each object's
holes when they are no larger than the object.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy import ndimage

from .graph import Graph
from .image import PreparedImage, gaussian_in_threads, noise_gain, noise_level, smoothing_widths


EDGE_BAND = {2: 1 / 8, 3: 1 / 4}
r"""Half-width of the band around the midpoint of the two nearest local means, as a share of the
step between them, whose pixels are left out of the next means; per number of spatial axes. A
pixel p with nearest mean :math:`\mu_1` and second :math:`\mu_2` is at distance

.. math:: t_p = \frac{|x_p - \mu_2|^2 - |x_p - \mu_1|^2}{2 \, |\mu_1 - \mu_2|}

from the plane halfway between them; in 2D it is left out when :math:`t_p < |\mu_1 - \mu_2| / 8`.
On synthetic microscopy (``benchmarks/microscopy.py``, engine at 5e4241e) that took foreground
IoU from 0.887 to 0.898 over all kinds (3D 0.873 -> 0.898, objects of a few pixels 0.706 ->
0.772) and left nuclei-dev's mean unchanged; twice as wide (1/4) took nuclei-dev from 0.793 to
0.788 (engine at 12d5b46), whose references lie on the outer edge of the blur, though it helped
every synthetic 2D field (+0.005 to +0.027 on four kinds of object size and blur).

A volume's edges make up more of each neighbourhood (a ball's shell of width w holds about
3 w / r of it, a disc's ring 2 w / r), so the same blur pulls the local means further, and in 3D
the band is 1/4. On five kinds of synthetic volume (objects of radius 3-6, 6-12 or 12-20 voxels;
point-spread width 1, 1.5 or 2.5 voxels, or 2.5 times wider along z; three volumes each; engine
at 12d5b46, script outside the repository) 1/4 scored 0.797 / 0.958 / 0.801 / 0.959 / 0.806
against 0.737 / 0.957 / 0.753 / 0.957 / 0.769 with 1/8: never lower, and most where the blur is
wide against the objects. Otsu's threshold there: 0.777 / 0.945 / 0.843 / 0.951 / 0.828."""

SIGMAS = (0.5, 0.7, 1.0, 1.5, 2.0, 3.0)
"""The Gaussian widths (pixels) :func:`denoising_levels` chooses from, narrowest first."""


def denoising_levels(noise: float, steps: np.ndarray, spacing: tuple[float, ...], margin: float = 6.0) -> np.ndarray:
    r"""For each step between two mean colours, the narrowest Gaussian of :data:`SIGMAS` after
    which the noise left is at most ``1 / margin`` of it,

    .. math:: \hat\sigma \, \|g_s\|_2 \le \Delta / 6 ,

    with :math:`\|g_s\|_2` the factor by which a Gaussian of width s scales white noise. With six,
    a pixel is put on the wrong side of the midpoint between two means with probability
    :math:`\Phi(-3) \approx 0.1 \%`. Widths are in units of the finest pixel spacing, so
    anisotropic voxels are smoothed over the same physical distance along every axis
    (:func:`smoothing_widths`).

    Returns
    -------
    ndarray of int, the shape of ``steps``
        Index into :data:`SIGMAS` per step: -1 (no smoothing) where the image is clean enough as it
        is; the widest where none suffices.
    """
    steps = np.asarray(steps, float)
    gains = [noise_gain(smoothing_widths(sigma, spacing)) for sigma in SIGMAS]
    enough = noise * np.asarray(gains) <= steps[..., None] / margin  # (..., sigmas)
    level = np.where(enough.any(-1), enough.argmax(-1), len(SIGMAS) - 1)
    return np.where(noise <= steps / margin, -1, level)


def refine_labels(
    graph: Graph, node_values: np.ndarray, image: PreparedImage, iterations: int = 3, denoise: bool = True
) -> np.ndarray:
    """Paint ``node_values`` onto the pixels, re-deciding the pixels of boundary nodes by colour.

    Parameters
    ----------
    graph : Graph
        The graph the values belong to (its touching edges define the neighbourhoods).
    node_values : ndarray of int or bool, shape (n,)
        A label per node (foreground flag, cluster or part).
    image : PreparedImage
        The image the graph was built from; colours are Lab / 100 for RGB, else intensities.
    iterations : int
        Most k-means steps (it stops earlier when no pixel changes). One step re-decides the pixels
        against the nodes' own labels. On the first 40 nuclei-dev images (engine at b4f5ad0),
        foreground mIoU was 0.746 with one step, 0.751 with three, 0.749 with eight, and 0.726
        with the former rule (the nearest single node's mean).
    denoise : bool
        Compare each re-decided pixel's colour smoothed by :func:`denoising_levels` for the image's
        noise (:func:`~napari_deepcut.image.noise_level`) and the smallest step between two
        labels' local means in its node's neighbourhood, measured on the nodes' own labels (no
        smoothing where the step is large against the noise). On synthetic microscopy
        (``benchmarks/microscopy.py``) this took foreground IoU from 0.903 to 0.906 over all kinds
        (a tenfold brightness range 0.797 -> 0.816, low signal to noise 0.895 -> 0.908) against one
        width for the whole image, set by the step between the labels' global means, which left
        faint objects unsmoothed beside bright ones.

    Returns
    -------
    ndarray, the image's spatial shape
        The label of every pixel (pixels outside the graph's nodes get 0).
    """
    values = np.asarray(node_values)
    labels = graph.to_image(values, fill=0)
    edges = graph.edges
    if len(edges) == 0:
        return labels
    codes, label_of_node = np.unique(values, return_inverse=True)
    n, n_labels = graph.n_nodes, len(codes)
    on_boundary = np.zeros(n, bool)
    on_boundary[edges[label_of_node[edges[:, 0]] != label_of_node[edges[:, 1]]].ravel()] = True
    on_boundary &= graph.sizes > 1  # a one-pixel node has nothing to split
    if not on_boundary.any():
        return labels

    # the neighbourhoods of the boundary nodes: one row each, a 1 for every node in it
    nodes = np.arange(n)
    near = sp.csr_matrix(
        (
            np.ones(2 * len(edges) + n, np.float32),
            (np.r_[edges[:, 0], edges[:, 1], nodes], np.r_[edges[:, 1], edges[:, 0], nodes]),
        ),
        shape=(n, n),
    )[on_boundary]
    involved = np.asarray(near.sum(0)).ravel() > 0  # nodes whose pixels enter a local mean

    # One entry per pixel in the narrowest dtypes: on a large volume most pixels are involved,
    # and these arrays, not the image, set the peak memory. The pixels of involved nodes off the
    # boundary never move: their sums per (node, label) are taken once. A node's pixels all move
    # or all stay, so the two sets of sums share no key, and adding them is exact.
    flat = graph.node_labels.ravel()
    index_type = np.int32 if flat.size < 2**31 else np.int64
    key_type = np.int32 if n * n_labels < 2**31 else np.int64
    label_of_node = label_of_node.astype(np.uint8 if n_labels < 256 else np.int32)
    colours = image.colour.reshape(flat.size, -1)
    still = np.flatnonzero(_of_nodes(flat, involved & ~on_boundary)).astype(index_type)
    node = flat[still].astype(key_type)
    fixed = _key_sums(node * n_labels + label_of_node[node], colours[still], n * n_labels)
    del still, node
    pixels = np.flatnonzero(_of_nodes(flat, on_boundary)).astype(index_type)  # those that move
    node = flat[pixels].astype(key_type)
    colour = colours[pixels]
    label = label_of_node[node]
    row = (np.cumsum(on_boundary, dtype=np.int32) - 1)[node]  # each moving pixel's neighbourhood
    in_band = np.zeros(len(pixels), bool)  # pixels on the blurred edge, left out of the means
    if denoise:
        mean, count = _local_means(near, node * n_labels + label, colour, in_band, n_labels, fixed)
        level = denoising_levels(image.noise, _smallest_steps(mean, count), image.spacing).astype(np.int8)
        _denoise(colour, pixels, level[row], image.colour, image.spacing)
    for _ in range(iterations):
        mean, count = _local_means(near, node * n_labels + label, colour, in_band, n_labels, fixed)
        new, band = _nearest_labels(colour, mean.astype(np.float32), count > 0, row, EDGE_BAND[image.ndim])
        if np.array_equal(new, label) and np.array_equal(band, in_band):
            break
        label, in_band = new, band
    labels.reshape(-1)[pixels] = codes[label]
    return labels


def _nearest_labels(colour, mean, present, row, band_width, chunk: int = 1 << 20) -> tuple[np.ndarray, np.ndarray]:
    """For each pixel, of colour ``colour[i]`` in neighbourhood ``row[i]``: the nearest of
    the labels ``present`` there, by squared distance to their ``mean`` colour (rows, labels, C;
    ties go to the first label), and whether it lies in the band around the midpoint of its two
    nearest means, ``band_width`` of their step to either side (:data:`EDGE_BAND`). Pixels are
    taken ``chunk`` at a time, so that the distances of a large volume never all sit in memory
    at once.

    Returns
    -------
    nearest : ndarray of uint8 (int32 beyond 255 labels)
    band : ndarray of bool
    """
    n_labels = mean.shape[1]
    step = ((mean[:, :, None] - mean[:, None]) ** 2).sum(-1)  # squared, per row and label pair
    dtype = np.uint8 if n_labels < 256 else np.int32
    nearest = np.zeros(len(row), dtype)
    band = np.zeros(len(row), bool)
    for start in range(0, len(row), chunk):
        part = slice(start, min(start + chunk, len(row)))
        rows, pixel_colour = row[part], colour[part]
        if n_labels == 2:  # the foreground stage: the two distances' order says it all
            near, far = (_distances(pixel_colour, mean[:, index], present[:, index], rows) for index in (0, 1))
            first = far < near  # strict: the first label wins ties
            near, far = np.minimum(near, far), np.maximum(near, far)
            nearest[part] = first
            band[part] = np.isfinite(far) & (far - near < 2 * band_width * step[rows, 0, 1])
            continue
        best = second_best = np.full(len(rows), np.inf, np.float32)
        first = second = np.zeros(len(rows), dtype)
        for index in map(dtype, range(n_labels)):  # a loop over labels, not pixels
            distance = _distances(pixel_colour, mean[:, index], present[:, index], rows)
            closer = distance < best  # strict: the first label wins ties
            between = ~closer & (distance < second_best)
            second_best = np.where(closer, best, np.where(between, distance, second_best))
            second = np.where(closer, first, np.where(between, index, second))
            best, first = np.where(closer, distance, best), np.where(closer, index, first)
        nearest[part] = first
        band[part] = np.isfinite(second_best) & (second_best - best < 2 * band_width * step[rows, first, second])
    return nearest, band


def _distances(colour, mean, present, rows) -> np.ndarray:
    """Squared distance of each pixel's ``colour`` to the ``mean`` (rows, C) of its row ``rows``;
    infinite where the label is not ``present`` there."""
    difference = colour - mean[rows]
    distance = np.einsum("ij,ij->i", difference, difference)
    distance[~present[rows]] = np.inf
    return distance


def _denoise(colour, pixels, level, source, spacing) -> None:
    """Replace, in place, the ``colour`` of each pixel (flat index ``pixels``) whose smoothing
    ``level`` is not -1 by ``source`` (spatial..., C) smoothed at that width of :data:`SIGMAS`;
    one filter per width used."""
    for index in np.unique(level[level >= 0]):
        chosen = np.flatnonzero(level == index)
        colour[chosen] = _smoothed_at(source, pixels[chosen], smoothing_widths(SIGMAS[index], spacing))


def _of_nodes(flat: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Whether each pixel (node index, -1 for none) belongs to a ``chosen`` node."""
    return np.where(flat >= 0, chosen[flat], False)


def _smoothed_at(colour: np.ndarray, flat_pixels: np.ndarray, widths: tuple[float, ...]) -> np.ndarray:
    """``colour`` (spatial..., C) smoothed by a Gaussian of ``widths`` (per spatial axis), at the
    pixels ``flat_pixels`` (flat indices) only: the filter runs on their bounding box, widened by
    the kernel's reach so that the values are those of the whole image smoothed."""
    spatial = colour.shape[:-1]
    strides = [int(np.prod(spatial[axis + 1 :])) for axis in range(len(spatial))]

    def coordinate(axis):  # one axis at a time: a full set of coordinates is several index arrays
        return flat_pixels // strides[axis] % spatial[axis]

    box = []
    for axis, width in enumerate(widths):
        reach = int(4.0 * width + 0.5)  # scipy's kernel radius at truncate=4
        along = coordinate(axis)
        box.append(slice(max(0, int(along.min()) - reach), min(spatial[axis], int(along.max()) + reach + 1)))
    smoothed = gaussian_in_threads(colour[tuple(box)], [*widths, 0])
    inside = flat_pixels  # the flat index within the box, built axis by axis
    if smoothed.shape[:-1] != spatial:
        inside = np.zeros(len(flat_pixels), np.int64)
        for axis, part in enumerate(box):
            inside = inside * (part.stop - part.start) + (coordinate(axis) - part.start)
    return smoothed.reshape(-1, colour.shape[-1])[inside]


def _local_means(near, key, colour, left_out, n_labels, fixed=0.0) -> tuple[np.ndarray, np.ndarray]:
    """Mean colour of each label over each neighbourhood (rows of ``near``; pixels keyed by
    ``node * n_labels + label``), without the pixels ``left_out``; where those are all of a
    label's pixels in a neighbourhood, with them. ``fixed``: the :func:`_key_sums` of pixels
    of other nodes, added to these.

    Returns
    -------
    mean : ndarray, shape (rows, n_labels, C)
    count : ndarray, shape (rows, n_labels)
        Pixels of each label in each neighbourhood, those left out included.
    """
    size = near.shape[1] * n_labels

    def sums(columns):  # per neighbourhood
        return (near @ columns.reshape(near.shape[1], -1)).reshape(near.shape[0], n_labels, -1)

    every = sums(_key_sums(key, colour, size) + fixed)
    chosen = every
    if left_out.any():  # few pixels: their sums are taken away
        out = np.flatnonzero(left_out)
        kept = every - sums(_key_sums(key[out], colour[out], size))
        chosen = np.where(kept[..., :1] > 0.5, kept, every)
    return chosen[..., 1:] / np.maximum(chosen[..., :1], 1), every[..., 0]


def _key_sums(keys: np.ndarray, colours: np.ndarray, size: int) -> np.ndarray:
    """Pixel count and colour sums per key (``size`` keys): shape (size, 1 + C), float64."""
    return np.stack([np.bincount(keys, minlength=size), *[np.bincount(keys, c, size) for c in colours.T]], -1)


def _smallest_steps(mean: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Per neighbourhood, the smallest distance between the local mean colours of two labels
    present in it (``mean`` (rows, labels, C), ``count`` (rows, labels))."""
    distance = np.sqrt(((mean[:, :, None] - mean[:, None]) ** 2).sum(-1))  # (rows, labels, labels)
    present = count > 0
    pair = present[:, :, None] & present[:, None] & ~np.eye(mean.shape[1], dtype=bool)
    return np.where(pair, distance, np.inf).min((1, 2))


OBJECT_BAND = 3.0
"""Half-width, in units of the finest pixel spacing, of the band around each object's edge that
:func:`object_edges` re-decides; objects narrower than two bands (no pixel deeper than
``2 * OBJECT_BAND`` from their edge) are left as they are."""
OBJECT_RING = 5.0
"""Width of the ring just beyond that band whose median is an object's surroundings."""
OBJECT_REACH = OBJECT_BAND + OBJECT_RING
"""How far beyond an object (finest pixel spacings) the steps of a scene of many objects look."""
OBJECT_SMOOTHING = 0.7
"""The narrowest Gaussian (of :data:`SIGMAS`) :func:`object_edges` smooths by: pixels at an edge lie
near the threshold whatever the step, so their noise, however small against it, makes the edge
ragged. On synthetic microscopy (``benchmarks/microscopy.py``, masks of the engine at 91189cf
re-edged) 0.5, 0.7 and 1.0 gave 0.927, 0.931 and 0.930 over the kinds, no smoothing where the
noise allows it 0.922 (0.917 before re-edging)."""


def object_edges(mask: np.ndarray, image: PreparedImage, rims: ObjectRims | None = None) -> np.ndarray:
    r"""Each object of a scene of many objects re-edged at half its own step above its own
    surroundings.

    The colours are projected on the step between the two sides' mean colours,
    :math:`v_p = (x_p - m_B) \cdot (m_F - m_B) / |m_F - m_B|` (the intensity itself, up to scale,
    for grey), on the intensities as rescaled before they are clipped to [0, 1]
    (:meth:`~napari_deepcut.image.PreparedImage.channels`): an object beyond the percentile the
    rescaling clips at (the brightest of many objects of a tenfold range of brightness) keeps the
    depth of its step, which clipped would put its edge too far out. For each connected object o, with :math:`F_o` the
    median of v over the object and :math:`B_o` its median over a ring :data:`OBJECT_RING` wide
    just beyond a band of :data:`OBJECT_BAND` around the object's edge, the pixels of that band
    (inside and outside, outside pixels going to the nearest object) are foreground when

    .. math:: v_p > (F_o + B_o) / 2 ,

    with v smoothed, object by object, by the narrowest Gaussian that leaves the noise under a
    sixth of :math:`F_o - B_o` (:func:`denoising_levels`), and at least by
    :data:`OBJECT_SMOOTHING`. A blurred object's edge lies where it has risen half way from its
    surroundings; :func:`refine_labels` compares pixels with the mean colours of whole node
    neighbourhoods, in which bright and dim objects, their blurred rims and an uneven background
    mix. Objects without a band's width of interior (a few pixels across, whose medians are
    mostly rim) and objects no brighter, along the projection, than their ring are left as they
    are.

    Parameters
    ----------
    mask : ndarray of bool
        The foreground, the image's spatial shape.
    image : PreparedImage
        The image segmented (levelled, if it was).
    rims : ObjectRims, optional
        :meth:`ObjectRims.of` this mask, when the caller has it; else built here.

    Returns
    -------
    ndarray of bool
    """
    mask = np.asarray(mask, bool)
    value = _projected(mask, image, unclipped=True)
    if value is None:
        return mask
    rims = ObjectRims.of(mask, image.spacing, rims)
    objects, count, distance, owner = rims.objects, rims.count, rims.distance, rims.owner
    ring = ~mask & (distance > OBJECT_BAND) & (distance <= OBJECT_REACH)
    level_f = _label_medians(value, objects, count)
    level_b = _label_medians(value, np.where(ring, owner, 0), count)
    deep = np.zeros(count + 1, bool)
    deep[objects[mask & (distance >= 2 * OBJECT_BAND - 1)]] = True  # a pixel two bands deep
    usable = deep & np.isfinite(level_b) & (level_f > level_b)
    band = np.where(mask, distance < OBJECT_BAND, distance <= OBJECT_BAND)
    band &= usable[owner]
    pixels = np.flatnonzero(band)
    of = owner.reshape(-1)[pixels]
    del rims, distance, owner, ring, band
    # the noise left after smoothing under a sixth of each object's step (the projection keeps
    # at most all of the noise), and never less than the narrowest smoothing
    level = denoising_levels(image.noise, np.maximum(level_f - level_b, 0.0), image.spacing)[of]
    level = np.maximum(level, SIGMAS.index(OBJECT_SMOOTHING))
    compared = value.reshape(-1, 1)[pixels]
    _denoise(compared, pixels, level, value[..., None], image.spacing)
    out = mask.copy()
    out.reshape(-1)[pixels] = compared[:, 0] > (level_f[of] + level_b[of]) / 2
    return out


def _label_medians(values: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """Median of float32 ``values`` over each label 1..``count`` of ``labels`` (NaN for a label
    without pixels; index 0 is NaN too), from one sort of the labelled pixels.

    Each pixel is one 64-bit key, its label above its value's bits made to sort as the values do
    (negative floats' bits inverted, positive ones' sign bit set), so a plain sort (several times
    faster than an argsort by two keys) orders the labels and, within each, the values."""
    chosen = labels > 0
    bits = values[chosen].astype(np.float32, copy=False).view(np.uint32)
    keys = labels[chosen].astype(np.uint64) << np.uint64(32)
    keys |= np.where(bits >> 31, ~bits, bits | np.uint32(1 << 31))
    del bits
    keys.sort()
    sizes = np.bincount((keys >> np.uint64(32)).astype(np.intp), minlength=count + 1)
    start = np.cumsum(sizes) - sizes
    present = sizes > 0
    low = start[present] + (sizes[present] - 1) // 2
    high = start[present] + sizes[present] // 2

    def value_at(index):
        bits = keys[index].astype(np.uint32)  # the low 32 bits
        return np.where(bits >> 31, bits & np.uint32((1 << 31) - 1), ~bits).view(np.float32).astype(np.float64)

    medians = np.full(count + 1, np.nan)
    medians[present] = (value_at(low) + value_at(high)) / 2
    return medians


def faint_objects(
    mask: np.ndarray, image: PreparedImage, min_significance: float, rims: ObjectRims | None = None
) -> np.ndarray:
    r"""A scene of many objects without the objects that do not stand out from the noise.

    An object o here is a connected piece of the foreground grown by :data:`OBJECT_BAND` (pieces
    that close are one object: a dim nucleus clustered pixel by pixel falls apart into fragments
    that only together stand out). Along the projection v of :func:`object_edges`, with
    :math:`B_o` the median of v over the ring of :func:`object_edges` around it and
    :math:`\hat\sigma_v` the noise of v (:func:`~napari_deepcut.image.noise_level`), the object
    stays when its excess over its surroundings, summed over its :math:`n_o` pixels, stands out
    from the noise of such a sum:

    .. math:: z_o = \frac{\sum_{p \in o} (v_p - B_o)}{\hat\sigma_v \sqrt{n_o}} \ge z_{min} .

    The band counts the blur around a small bright object, and dilutes the specks that noise alone
    makes as bright as a dim object on many small nodes (pixel blocks of a large image), picked
    for their brightness: on a 2048 x 2048 field of 40 nuclei clustered on 262,144 pixel blocks
    the clustering kept 1,054 such specks. An object without a ring (it fills its surroundings) or
    on noise-free pixels stays.

    Parameters
    ----------
    mask : ndarray of bool
        The foreground, the image's spatial shape.
    image : PreparedImage
        The image segmented (levelled, if it was).
    min_significance : float
        :math:`z_{min}`; 0 keeps every object.
    rims : ObjectRims, optional
        :meth:`ObjectRims.of` this mask, when the caller has it; else built here.

    Returns
    -------
    ndarray of bool
    """
    mask = np.asarray(mask, bool)
    value = _projected(mask, image) if min_significance > 0 else None
    if value is None:
        return mask
    rims = ObjectRims.of(mask, image.spacing, rims)
    grown = mask | (rims.distance <= OBJECT_BAND)
    objects, count = ndimage.label(grown, np.ones((3,) * mask.ndim))
    grown_from = np.zeros(rims.count + 1, np.int32)  # each piece's object
    grown_from[rims.objects[mask]] = objects[mask]
    ring = np.where(~grown & (rims.distance <= OBJECT_REACH), grown_from[rims.owner], 0)
    del rims, grown
    area = np.bincount(objects.reshape(-1), minlength=count + 1)
    excess = np.bincount(objects.reshape(-1), value.reshape(-1), count + 1) - area * _label_medians(value, ring, count)
    with np.errstate(divide="ignore", invalid="ignore"):
        # NaN (no ring; no noise and no excess) is not faint
        faint = excess / (noise_level(value[..., None]) * np.sqrt(area)) < min_significance
    faint[0] = False
    return mask & ~faint[objects]


def dim_objects(mask: np.ndarray, image: PreparedImage, rims: ObjectRims | None = None) -> np.ndarray:
    r"""Objects of a scene of many objects that the clustering left in the background, added.

    A dim nucleus a few superpixels wide shares each of them with the background around it, and
    their mean colours fall nearer the background's than the bright nuclei's. Along the projection
    v of :func:`object_edges`, with B the median of v over the background beyond the objects'
    surroundings and :math:`\Delta = \min_o (F_o - B)` the step of the dimmest object found
    (:math:`F_o` its median; objects two bands deep), the candidates are the connected pieces C of
    the background, more than :data:`OBJECT_BAND` from the objects, where v smoothed exceeds
    :math:`B + \Delta / 2`. Such a piece is an object when

    .. math:: F_C - B_C \ge \Delta / 2 ,

    with :math:`F_C` its median and :math:`B_C` the median over a ring around it as in
    :func:`object_edges` (the objects found left out), when it is two bands deep and no larger
    than the largest object found, and when it is brightest inside itself, not on its rim. Half
    the dimmest step is where :func:`object_edges` puts that object's own edge. The ring keeps out
    the brighter side of an uneven background, which does not rise above its own surroundings; the
    peak keeps out the glow around bright objects, brightest where it is cut off a band from them.
    v is smoothed as for a step of :math:`\Delta` (:func:`denoising_levels`), at least by
    :data:`OBJECT_SMOOTHING`, so the noise of an empty stretch of background stays far under the
    threshold.

    Parameters
    ----------
    mask : ndarray of bool
        The foreground, the image's spatial shape.
    image : PreparedImage
        The image segmented (levelled, if it was).
    rims : ObjectRims, optional
        :meth:`ObjectRims.of` this mask, when the caller has it; else built here.

    Returns
    -------
    ndarray of bool
        The foreground with the objects added (their edges as found here: :func:`object_edges`
        re-edges them).
    """
    mask = np.asarray(mask, bool)
    value = _projected(mask, image)
    if value is None:
        return mask
    rims = ObjectRims.of(mask, image.spacing, rims)
    objects, count, distance = rims.objects, rims.count, rims.distance
    beyond = ~mask & (distance > OBJECT_REACH)
    if not beyond.any():
        return mask
    level_b = float(np.median(value[beyond]))
    deep = np.unique(objects[mask & (distance >= 2 * OBJECT_BAND - 1)])
    steps = _label_medians(value, objects, count)[deep[deep > 0]] - level_b
    if not (steps > 0).any():
        return mask
    half = float(steps[steps > 0].min()) / 2
    level = max(int(denoising_levels(image.noise, np.float64(2 * half), image.spacing)), SIGMAS.index(OBJECT_SMOOTHING))
    smoothed = gaussian_in_threads(value, smoothing_widths(SIGMAS[level], image.spacing))
    candidate = (smoothed > level_b + half) & ~mask & (distance > OBJECT_BAND)
    largest = np.bincount(objects.reshape(-1))[1:].max()
    del beyond, rims, distance, objects
    around = ObjectRims.of(candidate, image.spacing)
    if around.count == 0:
        return mask
    pieces, n, apart, owner = around.objects, around.count, around.distance, around.owner
    del around
    ring = ~candidate & ~mask & (apart > OBJECT_BAND) & (apart <= OBJECT_REACH)
    # the brightest pixel of each piece: inside an object, on the rim of the glow of objects
    # found (cut off where it comes within a band of them)
    flat = np.flatnonzero(candidate)
    keys = pieces.reshape(-1)[flat]
    order = np.lexsort((smoothed.reshape(-1)[flat], keys))
    peak = flat[order[np.cumsum(np.bincount(keys, minlength=n + 1)[1:]) - 1]]
    del smoothed, flat, keys, order
    peaks_inside = np.concatenate([[False], apart.reshape(-1)[peak] > 0])
    level_f, level_ring = _label_medians(value, pieces, n), _label_medians(value, np.where(ring, owner, 0), n)
    area = np.bincount(pieces.reshape(-1), minlength=n + 1)
    added = np.zeros(n + 1, bool)
    added[pieces[candidate & (apart >= 2 * OBJECT_BAND - 1)]] = True  # two bands deep
    added &= np.isfinite(level_ring) & (level_f - level_ring >= half) & peaks_inside
    added &= area <= largest
    added[0] = False
    return mask | added[pieces]


def holes_filled(mask: np.ndarray) -> np.ndarray:
    """``ndimage.binary_fill_holes(mask)``, the same pixels, by one labelling of the background
    (the pieces that do not reach the image's border are holes) instead of a dilation run to
    convergence: 0.8 s against 3.0 s on a 48 x 1024 x 1024 volume of 1,500 nuclei."""
    background, count = ndimage.label(~np.asarray(mask, bool))
    outside = np.zeros(count + 1, bool)
    for axis in range(background.ndim):
        for end in (0, -1):
            outside[np.take(background, end, axis=axis)] = True
    return mask | ~outside[background]


def object_holes(mask: np.ndarray) -> np.ndarray:
    r"""A scene of many objects with each object's holes filled, when together they are no
    larger than the object.

    With :math:`h_o` the pixels of the holes of a connected piece o of the foreground (background
    it encloses) and :math:`a_o` its own pixels, the holes are filled when :math:`h_o \le a_o`.
    Nuclei and cells have no holes, but a cell whose centre has the background's colour (phase
    contrast: a dark rim around a centre at the background's grey) is found as a ring. A ring of
    touching objects around a stretch of background larger than themselves keeps it.

    Parameters
    ----------
    mask : ndarray of bool
        The foreground, the image's spatial shape.

    Returns
    -------
    ndarray of bool
    """
    mask = np.asarray(mask, bool)
    filled = holes_filled(mask)
    pieces, count = ndimage.label(filled)
    own = np.bincount(pieces[mask], minlength=count + 1)
    holes = np.bincount(pieces[filled & ~mask], minlength=count + 1)
    return np.where((holes <= own)[pieces], filled, mask)


def _projected(mask: np.ndarray, image: PreparedImage, unclipped: bool = False) -> np.ndarray | None:
    r"""The colours projected on the step between the two sides' mean colours,
    :math:`v_p = (x_p - m_B) \cdot (m_F - m_B) / |m_F - m_B|`, from
    :meth:`~napari_deepcut.image.PreparedImage.channels` (``unclipped`` or not); None without two
    distinct sides."""
    if mask.all() or not mask.any():
        return None
    side = mask.reshape(-1).view(np.uint8)  # sums per side, channel by channel: no copies of a side
    sums = np.stack([np.bincount(side, channel.reshape(-1), 2) for channel in image.channels(unclipped)], -1)
    centre_b, centre_f = sums / np.bincount(side, minlength=2)[:, None]
    step = np.linalg.norm(centre_f - centre_b)
    if step == 0:
        return None
    direction = ((centre_f - centre_b) / step).astype(np.float32)
    value = np.zeros(mask.shape, np.float32)
    for channel, base, weight in zip(image.channels(unclipped), centre_b.astype(np.float32), direction):
        value += (channel - base) * weight
    return value


@dataclass(frozen=True)
class ObjectRims:
    """The objects of a mask and a distance transform to their outermost pixels, shared by the
    steps of a scene of many objects while the mask stays the same.

    Build it with :meth:`of`; :meth:`fits` tells whether it is still that of a mask. The steps
    look no further than :data:`OBJECT_REACH` from an object's rim, so distances are exact up to
    there and beyond it only known to be larger: the transform runs on the mask's bounding box
    grown by that reach, cut into slabs (each grown by the reach) that threads transform at once.

    Attributes
    ----------
    mask : ndarray of bool
        The mask (not copied: callers do not change it in place).
    objects : ndarray of int32
        Its connected pieces (joined along any axis or diagonal), labelled 1..``count``.
    count : int
        Number of objects.
    distance : ndarray of float32
        Inside the mask the depth below its outermost pixels (0 on them), outside the distance to
        the nearest object; in units of the finest pixel spacing. Beyond the reach: larger than
        it, or infinite.
    owner : ndarray of int32
        The object each pixel belongs to, or lies nearest within the reach (0 beyond it).
    """

    mask: np.ndarray
    objects: np.ndarray
    count: int
    distance: np.ndarray
    owner: np.ndarray

    def fits(self, mask: np.ndarray) -> bool:
        """Whether these are the rims of ``mask`` (an equal mask)."""
        return self.mask.shape == mask.shape and np.array_equal(self.mask, mask)

    @classmethod
    def of(
        cls, mask: np.ndarray, spacing: tuple[float, ...], rims: ObjectRims | None = None, threads: int | None = None
    ) -> ObjectRims:
        """The rims of ``mask``: ``rims`` when they fit it, else built on ``threads`` threads
        (default: torch's CPU threads)."""
        if rims is not None and rims.fits(mask):
            return rims
        objects, count = ndimage.label(mask, np.ones((3,) * mask.ndim))
        distance, owner = np.full(mask.shape, np.inf, np.float32), np.zeros(mask.shape, np.int32)
        if count == 0:
            return cls(mask, objects, 0, distance, owner)
        sampling = tuple(s / min(spacing) for s in spacing)
        halo = [int(OBJECT_REACH / s) + 1 for s in sampling]  # pixels per axis beyond the reach
        box = _grown_box(mask, halo)
        inside, pieces = mask[box], objects[box]
        axis = int(np.argmax([n / h for n, h in zip(inside.shape, halo)]))  # fewest pixels in halos
        if threads is None:
            import torch

            threads = torch.get_num_threads()
        slabs = max(1, min(threads, inside.shape[axis] // (4 * halo[axis])))
        bounds = np.linspace(0, inside.shape[axis], slabs + 1).astype(int)

        def transform(slab: int) -> None:
            low, high = bounds[slab], bounds[slab + 1]
            grown = slice(max(low - halo[axis], 0), min(high + halo[axis], inside.shape[axis]))
            near, owned = _rims_of(_along(inside, axis, grown), _along(pieces, axis, grown), sampling)
            core = slice(low - grown.start, high - grown.start)
            within = (*box[:axis], slice(box[axis].start + low, box[axis].start + high), *box[axis + 1 :])
            distance[within], owner[within] = _along(near, axis, core), _along(owned, axis, core)

        if slabs == 1:
            transform(0)
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(slabs) as pool:  # scipy's transform runs without the GIL
                list(pool.map(transform, range(slabs)))
        return cls(mask, objects, count, distance, owner)


def _along(array: np.ndarray, axis: int, part: slice) -> np.ndarray:
    """``array`` cut to ``part`` along ``axis`` (a view)."""
    return array[(slice(None),) * axis + (part,)]


def _rims_of(inside: np.ndarray, pieces: np.ndarray, sampling: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Distance to the outermost pixels of ``inside`` (a mask, labelled ``pieces``), and the
    piece each pixel belongs to or lies nearest; infinite and 0 where it has none."""
    rim = inside & ~ndimage.binary_erosion(inside, border_value=1)
    if not rim.any():
        return np.full(inside.shape, np.inf), np.where(inside, pieces, 0)
    near, indices = ndimage.distance_transform_edt(~rim, sampling=sampling, return_indices=True)
    del rim
    return near, np.where(inside, pieces, pieces[tuple(indices)])


def _grown_box(mask: np.ndarray, margins: list[int]) -> tuple[slice, ...]:
    """The bounding box of a non-empty ``mask``, grown by ``margins`` pixels per axis (clipped)."""
    box = []
    for axis, margin in enumerate(margins):
        present = np.flatnonzero(mask.any(tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(max(present[0] - margin, 0), present[-1] + 1 + margin))
    return tuple(box)
