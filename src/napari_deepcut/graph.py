"""Image to graph: nodes (SLIC superpixels or the pixels of a downsampled image), node features and
sparse affinities ``w_ij = exp(-|c_i - c_j|^2 / sigma)`` on the edges between touching nodes.

Both kinds of node are a *node label image*: an integer array of the image's spatial shape giving the
node of every pixel (-1 outside the mask). Features, positions and edges are computed from it the same
way for both, so a new kind of node only has to produce that image.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp
from scipy import ndimage
from skimage.segmentation import slic

from .image import PreparedImage, gaussian_in_threads, noise_gain, smoothing_widths
from .settings import Settings


@dataclass(frozen=True)
class Graph:
    """A region graph of one image.

    Attributes
    ----------
    node_labels : ndarray of int64, the image's spatial shape
        Node index of every pixel; -1 where a pixel belongs to no node (outside the mask).
    features : ndarray of float32, shape (n, f)
        Mean feature vector ``c_i`` of each node (colour / intensity, then optional texture; or
        reduced DINO patch features, see :mod:`napari_deepcut.deep_features`).
    sizes : ndarray of int64, shape (n,)
        Number of pixels of each node.
    border : ndarray of int64, shape (n,)
        Number of each node's pixels lying on the image border (on the border of the mask's
        bounding box when the graph was built inside a mask).
    edges : ndarray of int64, shape (m, 2)
        Undirected edges ``(i, j)`` between touching nodes, ``i < j``, each listed once.
    weights : ndarray of float32, shape (m,)
        Affinity of each edge.
    sigma : float
        The affinity scale used.
    feature_edges : ndarray of int64, shape (m', 2)
        Long-range edges: each node to its nearest neighbours in feature space, wherever they lie
        in the image (``i < j``, unique; empty when ``feature_neighbours=0``).
    feature_weights : ndarray of float32, shape (m',)
        Their affinities, with the same formula and sigma.
    spacing : tuple of float
        Physical size of a pixel along each axis.
    """

    node_labels: np.ndarray
    features: np.ndarray
    sizes: np.ndarray
    border: np.ndarray
    edges: np.ndarray
    weights: np.ndarray
    sigma: float
    feature_edges: np.ndarray
    feature_weights: np.ndarray
    spacing: tuple[float, ...]

    @property
    def n_nodes(self) -> int:
        return len(self.sizes)

    @cached_property
    def positions(self) -> np.ndarray:
        """Centroid of each node in physical units, shape (n, ndim), float32 (computed on first use:
        only a non-zero ``position_weight`` needs it)."""
        flat = self.node_labels.ravel()
        inside = flat >= 0
        centroids = []
        for axis, (length, step) in enumerate(zip(self.node_labels.shape, self.spacing)):
            shape = [1] * self.node_labels.ndim
            shape[axis] = length
            coordinate = np.broadcast_to(np.arange(length).reshape(shape) * step, self.node_labels.shape)
            sums = np.bincount(flat[inside], weights=coordinate.ravel()[inside], minlength=self.n_nodes)
            centroids.append(sums / np.maximum(self.sizes, 1))
        return np.stack(centroids, axis=1).astype(np.float32)

    def to_image(self, node_values: np.ndarray, fill=0) -> np.ndarray:
        """Paint a per-node value onto the pixels: ``out[p] = node_values[node_labels[p]]``."""
        values = np.asarray(node_values)
        lookup = np.append(values, np.asarray(fill, values.dtype))  # index -1 -> fill
        return lookup[self.node_labels]


# --- nodes -------------------------------------------------------------------------------------


def _consecutive(labels: np.ndarray) -> np.ndarray:
    """Relabel non-negative labels to 0..n-1 in order, keeping -1."""
    valid = labels >= 0
    present = np.bincount(labels[valid].ravel()) > 0
    lookup = np.append(np.cumsum(present) - 1, -1)
    return lookup[np.where(valid, labels, -1)]


# SLIC runs on a block-averaged image when each superpixel would still cover this many pixels.
SLIC_MIN_PIXELS = 500


def slic_factors(
    shape: tuple[int, ...], spacing: tuple[float, ...], n_segments: int, min_pixels: float = SLIC_MIN_PIXELS
) -> tuple[int, ...]:
    r"""Per-axis block sizes of the working resolution of SLIC.

    For a factor :math:`f`, axis :math:`a` (pixel size :math:`s_a`) is reduced by
    :math:`f_a = \max(1, \lfloor f \min_b s_b / s_a \rfloor)` (blocks about as long along every axis
    in physical units, at most half the axis), and a superpixel then covers
    :math:`N / (K \prod_a f_a)` pixels of the reduced image (N pixels, K segments). The largest
    :math:`f` that keeps this at least ``min_pixels`` is chosen; all 1 (full resolution) when
    :math:`N / K < 2^{ndim}` ``min_pixels``, e.g. for 512 x 512 with 1000 segments. Superpixel
    boundaries are then placed to within :math:`f_a` pixels.
    """
    ratio = min(spacing) / np.asarray(spacing, float)
    per_segment = float(np.prod(shape)) / max(n_segments, 1)
    best = (1,) * len(shape)
    for f in range(2, max(shape) // 2 + 1):
        factors = tuple(max(1, min(int(f * r), length // 2)) for r, length in zip(ratio, shape))
        if per_segment / np.prod(factors) < min_pixels:
            break
        best = factors
    return best


def _block_mean(data: np.ndarray, factors: tuple[int, ...]) -> np.ndarray:
    """Mean of ``data`` ``(*spatial, C)`` over blocks of ``factors`` pixels (the last block along
    an axis may be shorter), one axis at a time: ``out[b] = mean_{k < f} data[b f + k]``."""
    for axis, f in enumerate(factors):
        if f > 1:
            data = np.moveaxis(data, axis, 0)
            n = -(-len(data) // f)
            total = np.zeros((n, *data.shape[1:]), np.float32)
            count = np.zeros((n,) + (1,) * (data.ndim - 1), np.float32)
            for k in range(f):  # strided sums: several times faster than np.add.reduceat
                part = data[k::f]
                total[: len(part)] += part
                count[: len(part)] += 1
            data = np.moveaxis(total / count, 0, axis)
    return data


def _slic(colour: np.ndarray, n_segments: int, options: dict, factors: tuple[int, ...]) -> np.ndarray:
    """SLIC on ``colour`` block-averaged by ``factors``; labels 0..n-1 (int64), repeated back to full
    resolution. ``options["compactness"]`` is read on the scale of ``colour``."""
    shape = colour.shape[:-1]
    if max(factors) > 1:
        spacing = np.asarray(options["spacing"]) * factors
        # the same Gaussian width in physical units: slic divides a scalar sigma by the spacing
        options = options | {"sigma": options["sigma"] * min(options["spacing"]) / spacing.min()}
        options["spacing"] = spacing / spacing.min()
        colour = _block_mean(colour, factors)
    # slic first stretches its input to [0, 1]; dividing the compactness by the same range keeps
    # the colour distance in the input's units, m = compactness: d = sqrt(d_c^2 + (d_s / S)^2 m^2)
    span = float(colour.max() - colour.min()) or 1.0
    options = options | {"compactness": options["compactness"] / span}
    labels = _consecutive(slic(colour, n_segments=n_segments, **options).astype(np.int64))
    if max(factors) == 1:
        return labels
    return labels[np.ix_(*[np.arange(s) // f for s, f in zip(shape, factors)])]


def superpixel_labels(
    image: PreparedImage,
    n_segments: int,
    compactness: float = 10.0,
    smoothing: float = 1.0,
    mask: np.ndarray | None = None,
    min_pixels: float = SLIC_MIN_PIXELS,
    iterations: int = 4,
) -> np.ndarray:
    """SLIC superpixels (Achanta et al. 2012) as a node label image, after ``iterations`` rounds
    of SLIC's local k-means.

    Colour distance is measured on ``image.colour``, the one the node features use: CIE Lab / 100
    for RGB images, the rescaled intensities (0-1) otherwise; ``compactness`` is read on the scale
    of Lab's L (0-100), so intensities 0-1 count as 0-100 and one value suits both. Both stages
    thus measure colour on one scale, and Lab is computed once per image.

    On large images SLIC runs on block means of the image (:func:`slic_factors`: blocks such that a
    superpixel still covers at least ``min_pixels`` pixels there; ``np.inf`` = always full
    resolution) and the labels are repeated back to full resolution. SLIC's time falls with the
    number of pixels; features are still measured on every pixel.

    Returns
    -------
    ndarray of int64, the image's spatial shape: superpixel 0..n-1, -1 outside ``mask``.
    """
    colour = image.colour
    options = dict(
        compactness=compactness / 100.0,
        sigma=smoothing,
        max_num_iter=iterations,
        spacing=np.asarray(image.spacing) / min(image.spacing),
        convert2lab=False,
        enforce_connectivity=True,
        start_label=0,
        channel_axis=-1,
    )
    if mask is None:
        factors = slic_factors(image.spatial_shape, image.spacing, n_segments, min_pixels)
        return _slic(colour, n_segments, options, factors)
    # SLIC on the mask's bounding box, cut to the mask: the segments follow the mask's edge
    # exactly, and this is several times faster than SLIC's own mask support (k-means seeding).
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    in_box = mask[box]
    n_box = max(1, round(n_segments * in_box.size / max(int(in_box.sum()), 1)))
    factors = slic_factors(in_box.shape, image.spacing, n_box, min_pixels)
    labels = np.full(mask.shape, -1, np.int64)
    labels[box] = np.where(in_box, _slic(colour[box], n_box, options, factors), -1)
    return _consecutive(labels)


def pixel_labels(
    spatial_shape: tuple[int, ...], factor: int, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel nodes: one node per ``factor``-wide block of pixels (1 = every pixel is a node).

    Returns
    -------
    node_labels : ndarray of int64, ``spatial_shape``
        Node of each pixel, -1 outside ``mask``.
    grid : ndarray of int64, the downsampled shape
        Node of each block, -1 for blocks with no pixel in the mask; its adjacency is the graph's.
    """
    grid_shape = tuple(-(-s // factor) for s in spatial_shape)
    block_of_axis = np.ix_(*[np.arange(s) // factor for s in spatial_shape])
    blocks = np.ravel_multi_index(block_of_axis, grid_shape)  # broadcasts to the full shape
    if mask is None:
        grid = np.arange(int(np.prod(grid_shape)), dtype=np.int64).reshape(grid_shape)
        return np.ascontiguousarray(blocks, np.int64), grid
    present = np.bincount(blocks[mask], minlength=int(np.prod(grid_shape))) > 0
    lookup = np.where(present, np.cumsum(present) - 1, -1)
    return np.where(mask, lookup[blocks], -1), lookup.reshape(grid_shape)


def pixel_factor(spatial_shape: tuple[int, ...], downsample: int, max_nodes: int) -> int:
    """The block size: ``downsample`` if given (>= 1), else the smallest giving <= ``max_nodes``."""
    if downsample >= 1:
        return downsample
    factor = 1
    while np.prod([-(-s // factor) for s in spatial_shape]) > max_nodes:
        factor += 1
    return factor


# --- edges -------------------------------------------------------------------------------------


def neighbour_offsets(ndim: int, connectivity: int) -> list[tuple[int, ...]]:
    """Half of the neighbourhood of a pixel: offsets in {-1, 0, 1}^ndim with at most
    ``connectivity`` non-zero entries, the first of them positive (each pair is seen once)."""
    offsets = []
    for offset in itertools.product((-1, 0, 1), repeat=ndim):
        nonzero = [o for o in offset if o]
        if nonzero and nonzero[0] > 0 and len(nonzero) <= connectivity:
            offsets.append(offset)
    return offsets


def _unique(keys: np.ndarray) -> np.ndarray:
    """``np.unique`` of an integer array, by sorting: ``np.unique`` of NumPy 2.4 hashes, ~20x slower
    on the millions of edge keys of a pixel graph."""
    keys = np.sort(keys)
    return keys[np.concatenate([[True], keys[1:] != keys[:-1]])] if keys.size else keys


def region_adjacency(labels: np.ndarray, connectivity: int = 1) -> np.ndarray:
    """Pairs of labels whose pixels touch.

    Parameters
    ----------
    labels : ndarray of int
        Label image; negative labels are not regions.
    connectivity : int
        Pixels touch along at most this many axes at once (1: 4-/6-neighbours; ndim: 8-/26-).

    Returns
    -------
    ndarray of int64, shape (m, 2): unique pairs ``(i, j)``, ``i < j``, sorted.
    """
    n = int(labels.max()) + 1 if labels.size else 0
    keys = []
    for offset in neighbour_offsets(labels.ndim, connectivity):
        a = labels[tuple(slice(max(0, -d), s - max(0, d)) for d, s in zip(offset, labels.shape))]
        b = labels[tuple(slice(max(0, d), s - max(0, -d)) for d, s in zip(offset, labels.shape))]
        touching = (a != b) & (a >= 0) & (b >= 0)
        a, b = a[touching], b[touching]
        keys.append(np.minimum(a, b).astype(np.int64) * n + np.maximum(a, b))
    keys = _unique(np.concatenate(keys)) if keys else np.empty(0, np.int64)
    return np.stack([keys // max(n, 1), keys % max(n, 1)], axis=1)


# --- features ----------------------------------------------------------------------------------


def texture_maps(colour: np.ndarray, rgb: bool) -> np.ndarray:
    """Per-pixel texture and edge responses ``(*spatial, F)`` of the colour maps (:attr:`PreparedImage.colour`)
    (scikit-image's ``multiscale_basic_features``: Gaussian-smoothed gradient magnitude and Hessian
    eigenvalues at sigmas 1..8 px, of the luminance L for RGB, else of each channel), each scaled to
    unit standard deviation."""
    from skimage.feature import multiscale_basic_features

    maps = multiscale_basic_features(
        colour[..., :1] if rgb else colour,
        intensity=False,
        edges=True,
        texture=True,
        sigma_min=1,
        sigma_max=8,
        num_sigma=3,
        channel_axis=-1,
    ).astype(np.float32)
    scale = maps.reshape(-1, maps.shape[-1]).std(0)
    return maps / np.where(scale > 0, scale, 1.0)


def feature_maps(image: PreparedImage, kind: str) -> np.ndarray:
    """Per-pixel features of the requested ``kind`` (``"colour"`` or ``"texture"``)."""
    colour = image.colour
    if kind == "colour":
        return colour
    if kind == "texture":
        # Colour keeps its weight: the texture group as a whole gets the colour group's variance.
        texture = texture_maps(colour, image.rgb)
        colour_var = colour.reshape(-1, colour.shape[-1]).var(0).sum()
        texture *= np.sqrt(colour_var / texture.shape[-1])
        return np.concatenate([colour, texture], axis=-1)
    raise ValueError(f"features must be 'colour' or 'texture', got {kind!r}")


def node_means(values: np.ndarray, node_labels: np.ndarray, n_nodes: int) -> np.ndarray:
    """Mean of per-pixel ``values`` ``(*spatial, F)`` over each node: ``c_i = mean_{p in i} v_p``."""
    flat = node_labels.ravel()
    inside = flat >= 0
    everywhere = bool(inside.all())  # then no copies of the labels and values
    nodes = flat if everywhere else flat[inside]
    counts = np.bincount(nodes, minlength=n_nodes).astype(np.float64)
    table = values.reshape(flat.size, -1)
    table = table if everywhere else table[inside]
    sums = np.stack(
        [np.bincount(nodes, weights=table[:, f], minlength=n_nodes) for f in range(table.shape[1])],
        axis=1,
    )
    return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)


def border_mask(shape: tuple[int, ...]) -> np.ndarray:
    """True on the first and last pixel along every axis (the image border)."""
    border = np.zeros(shape, bool)
    for axis in range(len(shape)):
        index = [slice(None)] * len(shape)
        for end in (0, -1):
            index[axis] = end
            border[tuple(index)] = True
    return border


# --- affinities --------------------------------------------------------------------------------


def feature_neighbours(features: np.ndarray, k: int) -> np.ndarray:
    """Edges from each node to its ``k`` nearest other nodes in feature space (a k-d tree query).

    Returns
    -------
    ndarray of int64, shape (m, 2): unique pairs ``(i, j)``, ``i < j``.
    """
    from scipy.spatial import cKDTree

    n = len(features)
    k = min(k, n - 1)
    if k < 1:
        return np.empty((0, 2), np.int64)
    _, neighbours = cKDTree(features).query(features, k=k + 1, workers=-1)
    i = np.repeat(np.arange(n), k + 1)
    j = neighbours.ravel()
    keep = i != j
    keys = _unique(np.minimum(i, j)[keep] * n + np.maximum(i, j)[keep])
    return np.stack([keys // n, keys % n], axis=1)


NOISE_FLOOR = 30.0
r"""On superpixel graphs of colour, sigma is at least this many times :func:`noise_step`.

Where an object lies in a noisy field and is small or faint, the mean squared distance between
nodes is mostly that of the noise, and correlation clustering (which repels pairs of affinity under
``cc_shift``) cut the noise into clusters and lost the object in one of them. With the floor the
noise stays one cluster and the object is another. ``benchmarks/isolated_objects.py`` (foreground
IoU without -> with the floor): single discs 2-6 noise deviations bright, 10-20 pixels in radius,
in 256 x 256 grey fields 0.296 -> 0.959; the same in red on RGB 0.415 -> 0.993; balls in
48 x 128 x 128 volumes 0.595 -> 0.988; large discs 1-2 deviations bright 0.662 -> 0.964. A floor of
100 merged discs 1 deviation bright into the background (0.644 on the large discs).

SLIC's superpixels follow the noise, so their means differ by more than the noise step: on the 24
fields of pure noise of ``benchmarks/empty_fields.py`` (seeds 0-2) sigma was 1.0-31 times it. On
the development images it was at least 185 times it (44 synthetic microscopy fields; horse 370 and
nuclei-dev 734 over their first 100), so the floor binds on none of them. Pixel nodes have their
own, lower floor (:data:`PIXEL_NOISE_FLOOR`)."""

PIXEL_NOISE_FLOOR = 8.0
r"""On pixel graphs of colour, sigma is at least this many times :func:`noise_step`.

A pixel node averages a few pixels, so two nodes of the same region differ by about the noise
step itself, and in a noisy field with one small object that is also about sigma: correlation
clustering then cut the noise into blobs. :data:`NOISE_FLOOR`'s 30 is too high here: it is
above the squared step of an object 1-2 deviations bright between nodes of 4 pixels, which then
merged with the background. ``benchmarks/isolated_objects.py --nodes pixels --downsample 2``
(without -> with the floor): small grey discs 0.069 -> 0.934, RGB 0.000 -> 0.813, balls in
volumes 0.000 -> 0.963, faint discs 0.539 -> 0.684 (30 took a third of them from 0.516 to
0.000). The pixel-node results on horse and nuclei-dev do not move.

At the default block size (single pixels on 256 x 256) a pixel's own noise is larger than a faint
disc's step, and the floor alone helped less and cost faint discs (0.006 -> 0.712, 0.000 ->
0.246, 0.000 -> 0.984, 0.466 -> 0.105). Where the floor binds (the nodes' colours differ by
little more than their noise), the colours are therefore smoothed by the ``smoothing`` Gaussian
before the node means, and the floor is set by the noise left in those means
(:func:`~napari_deepcut.image.noise_gain` of both filters): small grey discs 0.712 -> 0.891,
RGB 0.246 -> 0.962, balls 0.984 -> 0.969, faint discs 0.105 -> 0.915. The floor binds on none of
the development images, so they do not move; smoothing every pixel graph cost nuclei-dev 0.028."""


def automatic_sigma(features: np.ndarray, floor: float = 0.0) -> float:
    """The mean squared distance between the features of two nodes drawn at random,
    ``sigma = mean_{i,j} |c_i - c_j|^2 = 2 sum_f Var(c_f)``, or ``floor`` where that is larger
    (1 when both are 0).

    With this scale a typical pair of nodes has affinity ``exp(-1)``, nodes alike in colour
    approach 1 and the most different approach 0, whatever the image's units or contrast.
    """
    sigma = max(2.0 * float(features.astype(np.float64).var(0).sum()), floor)
    return sigma if sigma > 1e-12 else 1.0


def noise_step(noise: float, channels: int, sizes: np.ndarray) -> float:
    r"""The mean squared step that pixel noise alone makes between the mean colours of two nodes,
    :math:`2 C \hat\sigma^2 / \bar s`: noise of standard deviation :math:`\hat\sigma` in each
    of C channels, averaged over nodes of :math:`\bar s` pixels on average."""
    return 2.0 * channels * noise**2 / max(float(np.mean(sizes)), 1.0)


def affinity_weights(
    features: np.ndarray, edges: np.ndarray, sigma: float | None = None, floor: float = 0.0
) -> tuple[np.ndarray, float]:
    """Gaussian affinities on edges: ``w_ij = exp(-|c_i - c_j|^2 / sigma)``.

    Parameters
    ----------
    features : ndarray, shape (n, f)
        Node features ``c_i``.
    edges : ndarray of int, shape (m, 2)
    sigma : float, optional
        Scale; ``None`` or 0 picks :func:`automatic_sigma`, no less than ``floor``.
    floor : float
        Lower bound on the automatic scale (0: none); a given ``sigma`` is used as it is.

    Returns
    -------
    weights : ndarray of float32, shape (m,)
    sigma : float
    """
    diff = features[edges[:, 0]].astype(np.float64) - features[edges[:, 1]]
    dist2 = np.einsum("ij,ij->i", diff, diff)
    sigma = sigma or automatic_sigma(features, floor)
    return np.exp(-dist2 / sigma).astype(np.float32), float(sigma)


def affinity_matrix(graph: Graph, long_range_weight: float) -> sp.csr_matrix:
    r"""The graph's symmetric affinity matrix W (sparse, n x n), the one every clustering sees.

    Touching-node edges and long-range feature edges are each scaled to mean degree 1 and mixed by
    :math:`\beta` = ``long_range_weight``:
    :math:`W = (1 - \beta) W_{touch} / \bar d_{touch} + \beta W_{long} / \bar d_{long}`.
    """
    n = graph.n_nodes
    beta = long_range_weight if len(graph.feature_edges) else 0.0
    W = sp.csr_matrix((n, n), dtype=np.float64)
    for edges, weights, share in (
        (graph.edges, graph.weights, 1.0 - beta),
        (graph.feature_edges, graph.feature_weights, beta),
    ):
        if share > 0 and len(edges):
            scaled = weights.astype(np.float64) * share * n / max(2.0 * float(weights.sum()), 1e-12)
            i, j = edges[:, 0], edges[:, 1]
            W = W + sp.csr_matrix((np.r_[scaled, scaled], (np.r_[i, j], np.r_[j, i])), shape=(n, n))
    return W.tocsr()


def build_graph(
    image: PreparedImage, settings: Settings, mask: np.ndarray | None = None, long_range: bool = True
) -> Graph:
    """Turn an image (restricted to ``mask`` if given) into a region graph as ``settings`` say.

    ``long_range=False`` leaves out the long-range feature edges (their k-nearest-neighbour search
    is the costliest step on large pixel graphs), for a clustering that does not use them.

    ``n_segments`` above the number of pixels becomes that number, with a warning when no
    ``mask`` is given (a small crop segmented with the default count).

    Raises
    ------
    ValueError
        If ``mask`` leaves no pixel.
    """
    shape = image.spatial_shape
    n_pixels = int(np.prod(shape)) if mask is None else int(mask.sum())
    if n_pixels == 0:
        raise ValueError("foreground_mask is empty: there are no pixels to segment")
    patches = None
    if settings.features == "dino":
        from .deep_features import patch_features

        patches = patch_features(image, settings)
    if settings.nodes == "superpixels":
        if mask is None and settings.n_segments > n_pixels:
            warnings.warn(
                f"n_segments={settings.n_segments} is more than the image's {n_pixels} pixels: "
                f"{n_pixels} superpixels of one pixel each are used",
                stacklevel=2,
            )
        node_labels = superpixel_labels(
            image,
            min(settings.n_segments, n_pixels),
            settings.compactness,
            settings.smoothing,
            mask,
            iterations=settings.slic_iterations,
        )
        edges = region_adjacency(node_labels, settings.connectivity)
    elif settings.nodes == "pixels" and patches is not None:  # DeepCut's graph: a node per patch
        node_labels, grid = patches.patch_labels(mask)
        edges = region_adjacency(grid, settings.connectivity)
    elif settings.nodes == "pixels":
        block = pixel_factor(shape, settings.downsample, settings.max_pixel_nodes)
        node_labels, grid = pixel_labels(shape, block, mask)
        edges = region_adjacency(grid, settings.connectivity)
    else:
        raise ValueError(f"nodes must be 'superpixels' or 'pixels', got {settings.nodes!r}")

    n = int(node_labels.max()) + 1
    if patches is not None:
        features = patches.node_features(node_labels, n, settings.dino_components)
    else:
        features = node_means(feature_maps(image, settings.features), node_labels, n)
    flat = node_labels.ravel()
    sizes = np.bincount(flat[flat >= 0], minlength=n)
    region = (slice(None),) * len(shape) if mask is None else ndimage.find_objects(mask.astype(np.uint8))[0]
    edge = np.zeros(shape, bool)  # the border of the region segmented: the image, or the mask's box
    edge[region] = border_mask(node_labels[region].shape)
    on_border = node_labels[edge]
    border = np.bincount(on_border[on_border >= 0], minlength=n)
    floor = 0.0
    if patches is None and settings.features == "colour":
        factor = NOISE_FLOOR if settings.nodes == "superpixels" else PIXEL_NOISE_FLOOR
        floor = factor * noise_step(image.noise, features.shape[1], sizes)
        if settings.nodes == "pixels" and settings.smoothing > 0 and automatic_sigma(features) < floor:
            # the noise dominates the nodes' colours: average each node's neighbourhood first
            widths = smoothing_widths(settings.smoothing, image.spacing)
            smoothed = gaussian_in_threads(image.colour, [*widths, 0])
            features = node_means(smoothed, node_labels, n)
            node_noise = image.noise * noise_gain(widths, block)  # of a node's smoothed mean
            floor = factor * noise_step(node_noise, features.shape[1], np.ones(1))
    weights, sigma = affinity_weights(features, edges, settings.affinity_sigma or None, floor)
    feature_edges = feature_neighbours(features, settings.feature_neighbours if long_range else 0)
    feature_weights, _ = affinity_weights(features, feature_edges, sigma)
    return Graph(
        node_labels, features, sizes, border, edges, weights, sigma,
        feature_edges, feature_weights, image.spacing,
    )


def affinity_factors(
    features: np.ndarray, sigma: float, n_factors: int = 256, seed: int = 0
) -> np.ndarray:
    """Random Fourier features ``Z`` (Rahimi & Recht 2007) with ``Z Z^T ~ W``, the Gaussian affinity
    ``w_ij = exp(-|c_i - c_j|^2 / sigma)`` between *all* node pairs, without forming W.

    ``z(c) = sqrt(2 / D) cos(Omega c + b)``, ``Omega ~ N(0, 2 / sigma)``, ``b ~ U[0, 2 pi)``.

    Returns
    -------
    ndarray of float32, shape (n, n_factors)
    """
    rng = np.random.default_rng(seed)
    omega = rng.normal(0.0, np.sqrt(2.0 / sigma), size=(features.shape[1], n_factors))
    phase = rng.uniform(0.0, 2 * np.pi, size=n_factors)
    # in float32 throughout: ~14x faster than float64 at 262,144 nodes, within 1e-7 of it
    z = np.asarray(features, np.float32) @ omega.astype(np.float32)
    z += phase.astype(np.float32)
    np.cos(z, out=z)
    z *= np.float32(np.sqrt(2.0 / n_factors))
    return z
