"""The foreground's objects, each with a label of its own (``objects="connected"`` or ``"split"``)."""

from __future__ import annotations

import itertools

import numpy as np
from scipy import ndimage

OBJECT_NECK = 0.7
"""Touching objects are split where the neck between them is narrower than this share of the
narrower object's width (:func:`label_objects`)."""
NECK_SOFTENING = 2.0
"""Pixels (of the finest spacing) added to every distance before the neck's share is taken: a
narrow part of one object (the arm of a crescent) then needs a deeper neck to be cut off, while
necks between objects many pixels wide keep nearly their share (``benchmarks/RESULTS.md``)."""


def label_objects(mask: np.ndarray, spacing=None, split: bool = True) -> np.ndarray:
    r"""Each connected object of a foreground its own label, 1..N; with ``split``, touching
    objects apart.

    Objects are the connected pieces of ``mask`` (pixels that share a face, an edge or a corner).
    With ``split``, objects that touch along a neck are separated. With d the distance from each
    pixel to the background (in units of the finest ``spacing``) and

    .. math:: f = \ln(d + s),

    s = :data:`NECK_SOFTENING`, a peak p of d is the centre of an object of its own when its
    dynamic, its height above the highest saddle c of f on any path to a higher peak, is

    .. math:: f_p - f_c > -\ln \nu ,

    :math:`\nu` = :data:`OBJECT_NECK`: when the neck joining it to a wider object is narrower, in
    :math:`d + s`, than :math:`\nu` of its own width. A single object, round, elongated or
    bean-shaped, has no such neck and keeps one label; the peaks that pixel steps and a rough
    outline make along the ridge of its distance transform differ by far less. One watershed of
    -d from every peak of d gives the basins; they meet in the order of their saddles, highest
    first, and a basin whose peak's dynamic is too small joins the object of the higher peak it
    met (the h-maxima of f, without a morphological reconstruction of the whole image or a
    second watershed). Objects are numbered in raster order: of their first pixel, or split, of
    their highest peak.

    Parameters
    ----------
    mask : ndarray of bool
        The foreground (2D or 3D).
    spacing : sequence of float, optional
        Physical size of a pixel (voxel) along each axis; isotropic when omitted.
    split : bool
        Whether touching objects are split; else the connected pieces are the objects.

    Returns
    -------
    ndarray of uint32
        0 for the background, objects 1..N.
    """
    mask = np.asarray(mask, bool)
    full = ndimage.generate_binary_structure(mask.ndim, mask.ndim)
    if not split:
        return ndimage.label(mask, full, output=np.uint32)[0]
    if not mask.any():
        return np.zeros(mask.shape, np.uint32)
    from skimage.morphology import local_maxima
    from skimage.segmentation import watershed

    sampling = np.ones(mask.ndim) if spacing is None else np.asarray(spacing, float)
    distance = ndimage.distance_transform_edt(mask, sampling=sampling / sampling.min()).astype(np.float32)
    peaks, n_peaks = ndimage.label(local_maxima(distance, connectivity=mask.ndim) & mask, full)
    basins = watershed(-distance, peaks, mask=mask, connectivity=full)
    peak = np.zeros(n_peaks + 1, np.float32)  # each basin's peak: the distance at its maximum
    peak[peaks[peaks > 0]] = distance[peaks > 0]
    del peaks
    height = np.log(distance + NECK_SOFTENING)
    del distance
    object_of = _merged_basins(basins, np.log(peak + NECK_SOFTENING), height, -np.log(OBJECT_NECK))
    return object_of[basins]


def _merged_basins(basins: np.ndarray, peak: np.ndarray, height: np.ndarray, h: float) -> np.ndarray:
    """The object (1..N, uint32) of each basin 0..n of ``height`` (0 stays 0): a basin whose
    ``peak`` stands no more than ``h`` above the highest saddle to a higher peak joins that
    peak's object; the highest peak of each connected piece keeps one of its own."""
    count = len(peak) - 1
    # saddles: of each pair of touching basins, the highest of the lower sides of their touching pixels
    pairs, saddles = [], []
    for step in itertools.product((-1, 0, 1), repeat=basins.ndim):
        if step <= (0,) * basins.ndim:  # each neighbour direction once
            continue
        here = tuple(slice(max(-s, 0), n - max(s, 0)) for s, n in zip(step, basins.shape))
        there = tuple(slice(max(s, 0), n - max(-s, 0)) for s, n in zip(step, basins.shape))
        a, b = basins[here], basins[there]
        touching = (a != b) & (a > 0) & (b > 0)
        a, b = a[touching].astype(np.int64), b[touching].astype(np.int64)
        pairs.append(np.minimum(a, b) * (count + 1) + np.maximum(a, b))
        saddles.append(np.minimum(height[here][touching], height[there][touching]))
    pairs, saddles = np.concatenate(pairs), np.concatenate(saddles)
    order = np.lexsort((-saddles, pairs))
    pairs, saddles = pairs[order], saddles[order]
    first = np.flatnonzero(np.r_[True, pairs[1:] != pairs[:-1]])[: len(pairs)]  # each pair's highest
    pairs, saddles = pairs[first], saddles[first]
    # Components meet in the order of their saddles, highest first. At each meeting the lower
    # peak has met a higher one: its dynamic is its height above that saddle, and under h its
    # object joins the higher one's.
    flooded = np.arange(count + 1)  # the flooding's components: every meeting joins them
    joined = np.arange(count + 1)  # the objects: only shallow meetings join them
    top = np.arange(count + 1)  # the basin of each flooding component's highest peak

    def root(parent: np.ndarray, i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for index in np.argsort(-saddles, kind="stable"):
        a = root(flooded, int(pairs[index] // (count + 1)))
        b = root(flooded, int(pairs[index] % (count + 1)))
        if a == b:
            continue
        low, high = (a, b) if peak[top[a]] < peak[top[b]] else (b, a)
        if peak[top[low]] - saddles[index] <= h:
            joined[root(joined, top[low])] = root(joined, top[high])
        flooded[low] = high
    objects = np.array([root(joined, i) for i in range(count + 1)])
    _, renumbered = np.unique(objects, return_inverse=True)  # 0 stays 0: basin 0 is its own root
    return renumbered.astype(np.uint32)
