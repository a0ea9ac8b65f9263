"""The two stages: foreground / background, then parts inside a foreground mask."""

from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse.csgraph import connected_components

from .baselines import eigengap_clusters, spectral_embedding, spectral_ncut
from .cluster import Clustering, Progress, SegmentationCancelled, train_clustering
from .graph import Graph, automatic_sigma, build_graph, node_means
from .image import (
    PreparedImage,
    content_box,
    gaussian_in_threads,
    level_background,
    noise_gain,
    noise_level,
    opened_background,
    prepare_image,
    smoothing_widths,
    trend_steps,
)
from .refine import ObjectRims, dim_objects, faint_objects, holes_filled, object_edges, object_holes, refine_labels
from .relief import Shear
from .settings import Settings, fields, from_kwargs

ProgressCallback = Callable[[Progress], None]
CancelCheck = Callable[[], bool]


@dataclass
class StageResult:
    """One stage's output and what a GUI needs to show how it came about.

    Attributes
    ----------
    labels : ndarray
        The stage's label image (the input's spatial shape).
    graph : Graph or None
        Nodes, features and affinities (``graph.node_labels`` is the superpixel / block image);
        None when nothing was clustered (constant image, empty mask).
    clustering : Clustering or None
        Soft assignments per node and the loss curve.
    n_clusters : int
        Number of clusters found (non-empty).
    seconds : float
        Wall time of the stage.
    kept : str
        Foreground stage: which clustering was kept, ``"colour"`` or ``"colour + laplacian"``
        (see :func:`foreground_stage`); empty otherwise.
    background_unevenness : float
        Foreground stage: the unevenness of the background that was levelled before the stage ran
        a second time (:func:`~napari_deepcut.image.level_background`); 0 when it ran once.
    adapted_segments : int
        Foreground stage: the superpixels asked for when the stage ran again on finer superpixels
        for small objects (:func:`finer_segments`); 0 when it did not.
    retried_segments : int
        Foreground stage: the superpixels asked for when the stage ran again because it found
        nothing on fewer (:func:`retry_segments`; the last count tried); 0 when it did not.
    contrast : float
        Foreground stage: how far the foreground found stands out from the image's noise
        (:func:`foreground_contrast`); NaN when not measured (``min_contrast=0``).
    finer_detail : float
        Foreground stage, when nothing was found on an image large enough for finer superpixels:
        how far its finer detail rises above what noise reaches (:func:`finer_detail`; under 1,
        the finer superpixels were not tried); NaN when not measured.
    inside_frame : tuple of (int, int)
        Foreground stage: first and last + 1 index along each spatial axis of the image inside a
        frame (:func:`~napari_deepcut.image.content_box`), whose outside is background; empty
        when no frame was found.
    relief : Shear or None
        The shear a relief-contrast image was integrated along before the stage
        (:func:`~napari_deepcut.relief.relief_view`); None when it was not.
    """

    labels: np.ndarray
    graph: Graph | None
    clustering: Clustering | None
    n_clusters: int
    seconds: float
    kept: str = ""
    background_unevenness: float = 0.0
    adapted_segments: int = 0
    retried_segments: int = 0
    contrast: float = float("nan")
    finer_detail: float = float("nan")
    inside_frame: tuple[tuple[int, int], ...] = ()
    relief: Shear | None = None


@dataclass
class Segmentation:
    """Result of :func:`segment`.

    Attributes
    ----------
    foreground : ndarray of uint8
        1 = foreground, 0 = background; the input's spatial shape.
    parts : ndarray of uint16 or None
        0 = background, parts 1..k ordered by decreasing size; None when no parts were asked for.
    foreground_stage, parts_stage : StageResult
        Details of each stage (``parts_stage`` is None without parts).
    settings : Settings
        Every setting used.
    """

    foreground: np.ndarray
    parts: np.ndarray | None
    foreground_stage: StageResult
    parts_stage: StageResult | None
    settings: Settings

    def metadata(self) -> dict:
        """Settings, version and per-stage facts, for a layer's or a file's metadata."""
        return run_metadata(self.settings, self.foreground_stage, self.parts_stage)


def run_metadata(settings: Settings, *stages: StageResult | None) -> dict:
    from . import __version__

    info = {"napari_deepcut_version": __version__, "settings": settings.as_dict()}
    for name, stage in zip(("foreground", "parts"), stages):
        if stage is not None and stage.graph is not None:
            info[name] = {
                "n_nodes": stage.graph.n_nodes,
                "n_edges": len(stage.graph.edges),
                "affinity_sigma": stage.graph.sigma,
                "n_clusters": stage.n_clusters,
                "epochs_run": len(stage.clustering.loss_history),
                "final_loss": stage.clustering.loss_history[-1] if stage.clustering.loss_history else None,
                "seconds": round(stage.seconds, 3),
            }
            if stage.kept:
                info[name]["clustering_kept"] = stage.kept
            if stage.background_unevenness:
                info[name]["background_levelled"] = round(stage.background_unevenness, 3)
            if stage.adapted_segments:
                info[name]["superpixels_adapted"] = stage.adapted_segments
            if stage.retried_segments:
                info[name]["superpixels_retried"] = stage.retried_segments
            if np.isfinite(stage.contrast):
                info[name]["contrast_to_noise"] = round(stage.contrast, 1)
            if np.isfinite(stage.finer_detail):
                info[name]["finer_detail_to_noise"] = round(stage.finer_detail, 2)
            if stage.inside_frame:
                info[name]["inside_frame"] = [list(ends) for ends in stage.inside_frame]
            if stage.relief is not None:
                info[name]["relief_shear_degrees"] = round(float(np.degrees(stage.relief.angle)), 1)
    return info


# --- helpers -----------------------------------------------------------------------------------


K_LESS_LOSSES = ("cc", "modularity")


def _cluster(
    graph: Graph,
    k: int,
    find_k: bool,
    settings: Settings,
    loss: str,
    stage: str,
    progress,
    cancel,
    k_graph: Graph | None = None,
) -> Clustering:
    """Cluster the graph's nodes into ``k`` clusters, or at most ``k`` with ``find_k``: a K-less
    loss finds the number itself; otherwise the eigengap (of ``k_graph`` when given, else of
    ``graph``) picks it and the loss cuts into that many."""
    if cancel is not None and cancel():  # graph building can take a while on large images
        raise SegmentationCancelled(f"cancelled before {stage} training")
    if settings.clustering == "spectral":
        return spectral_ncut(graph, k, settings.seed, settings.long_range_weight, find_k, cancel)
    if find_k and loss not in K_LESS_LOSSES:
        spectrum = graph if k_graph is None else k_graph
        k = eigengap_clusters(spectrum, k, settings.long_range_weight, settings.seed, cancel)
    runs = [
        train_clustering(
            graph, k, settings.replace(seed=settings.seed + r), loss, stage, progress, cancel
        )
        for r in range(settings.restarts)
    ]
    return min(runs, key=lambda run: run.loss_history[-1])


def boundary_foreground(area: np.ndarray, border: np.ndarray) -> np.ndarray:
    r"""Which segments are foreground, by how weakly each is connected to the image border.

    The boundary connectivity of segment s (Zhu et al. 2014), normalised so that the whole image
    scores 1:

    .. math:: \mathrm{BndCon}_s = \frac{b_s / B}{\sqrt{a_s / A}},

    with :math:`a_s` its pixels, :math:`b_s` its pixels on the image border, A and B their totals.
    Objects of interest rarely fill the image's edge: an object away from the border scores 0, the
    background surrounding it about 1. Segments spread evenly over the image (nuclei, cells) score
    :math:`\sqrt{a_s / A}`, so there the sparser segments are the foreground. The scores are split
    in two by :func:`split_scores`; those below the split are foreground.

    Parameters
    ----------
    area, border : ndarray, shape (n,)
        Pixels of each segment, and of those on the image border; segments of area 0 are ignored.

    Returns
    -------
    ndarray of bool, shape (n,)
    """
    return split_scores(area, boundary_connectivity(area, border))


def boundary_connectivity(area, border) -> np.ndarray:
    r""":math:`\mathrm{BndCon}_s` of each segment (see :func:`boundary_foreground`); 0 where a
    segment is empty."""
    area = np.asarray(area, np.float64)
    border = np.asarray(border, np.float64)
    share = np.sqrt(area / max(area.sum(), 1.0))
    return np.divide(border / max(border.sum(), 1.0), share, out=np.zeros_like(share), where=share > 0)


def score_order(area, score) -> np.ndarray:
    """Indices of the segments of non-zero area, sorted by score (ties: smaller area first)."""
    area, score = np.asarray(area), np.asarray(score)
    present = np.flatnonzero(area > 0)
    return present[np.lexsort((area[present], score[present]))]


def split_scores(area, score) -> np.ndarray:
    r"""The segments below Otsu's split of their scores, with the areas as counts.

    Sorted by score (ties: smaller first), the segments are cut where the between-class variance
    :math:`\omega_0 \omega_1 (\mu_0 - \mu_1)^2` is largest, with :math:`\omega` the area
    share and :math:`\mu` the area-weighted mean score of each side. Weighting by area keeps a
    sliver (an object's rim, a speck) from deciding alone where the split falls, as it did when
    the split was at the largest gap between consecutive scores. With two segments the lower one
    is below (ties: the smaller); a single segment is not.

    Parameters
    ----------
    area, score : ndarray, shape (n,)
        Segments of area 0 are ignored.

    Returns
    -------
    ndarray of bool, shape (n,)
    """
    area = np.asarray(area, np.float64)
    score = np.asarray(score, np.float64)
    order = score_order(area, score)
    weight, score = area[order], score[order]
    below_split = np.zeros(len(area), bool)
    if len(order) < 2:
        return below_split
    below = np.cumsum(weight)[:-1]  # omega_0 * A for a split after each position
    above = weight.sum() - below
    mass = np.cumsum(weight * score)[:-1]
    between = below * above * (mass / below - (np.dot(weight, score) - mass) / above) ** 2
    below_split[order[: int(np.argmax(between)) + 1]] = True
    return below_split


def cut_contrast(graph: Graph, inside: np.ndarray) -> float:
    r"""Mean colour step across the outline of a set of nodes,

    .. math:: C = \frac{1}{|E_{cut}|} \sum_{(i, j) \in E_{cut}} \frac{|c_i - c_j|}{\sqrt{\sigma}},

    over the touching edges with one end inside and one outside, with the graph's node features
    :math:`c` and affinity scale :math:`\sigma`. An outline that follows an object's edges crosses
    strong steps; one through a region of even colour crosses weak ones. The steps are not squared,
    so a few very strong edges do not make up for a long stretch of outline through an even region.
    0 when no edge is cut.
    """
    edges = graph.edges
    cut = inside[edges[:, 0]] != inside[edges[:, 1]]
    if not cut.any():
        return 0.0
    difference = graph.features[edges[cut, 0]] - graph.features[edges[cut, 1]]
    return float(np.sqrt(np.einsum("ij,ij->i", difference, difference)).mean() / np.sqrt(graph.sigma))


def outline_score(
    graph: Graph,
    inside: np.ndarray,
    enclosed: np.ndarray | None = None,
    centrality: np.ndarray | None = None,
    sides: list[np.ndarray] | None = None,
) -> float:
    r"""How well a set of nodes stands out as one object:

    .. math:: S = C \, (1 - \lambda^2 b) \sqrt{a (1 - a)} \, o \, m,

    with C its :func:`cut_contrast`, b the share of the image border's pixels inside it, a the
    share of the image's area, o its :func:`open_outline` given ``enclosed`` (1 without) and m
    its :func:`centre_share` given the nodes' ``centrality`` (1 without). A crisp outline (C)
    around something that does not fill the image's edge (b), is neither a speck nor most of the
    image (a), is not cut off from more of the same object (o) and lies toward the centre (m).
    The border term was squared before the centre prior took over part of its work; unsquared,
    a close-up's object, which holds much of the border, is no longer ruled out.

    :math:`\lambda` is 1, except for a set that reaches every side of the image given the nodes
    on each (``sides``, :func:`image_sides`): then it is the share of the nodes left out that
    their largest connected piece holds (:func:`largest_piece`). An object filling the frame
    leaves its background in the corners, in pieces, and holding the border is then no sign of
    background; a set that leaves one piece (a field reaching every side under a band of sky)
    is charged as before. On the first 100 horse photos cropped inside the horse's bounding box
    (``benchmarks/framing.py``) this took the foreground IoU from 0.584 to 0.679.
    """
    area = graph.sizes[inside].sum() / max(graph.sizes.sum(), 1)
    border = graph.border[inside].sum() / max(graph.border.sum(), 1)
    if sides is not None and all(inside[side].any() for side in sides):
        border *= largest_piece(graph, ~inside) ** 2
    score = cut_contrast(graph, inside) * (1.0 - border) * np.sqrt(area * (1.0 - area))
    if enclosed is not None:
        score *= open_outline(graph, inside, enclosed)
    if centrality is not None:
        score *= centre_share(graph, inside, centrality)
    return score


def largest_piece(graph: Graph, inside: np.ndarray) -> float:
    """The share of a set of nodes' area that its largest connected piece holds; 1 when empty."""
    if not inside.any():
        return 1.0
    area = _piece_areas(graph, inside)
    return float(area.max() / area.sum())


def image_sides(graph: Graph) -> list[np.ndarray]:
    """The nodes on each side of the image (of the region the graph covers, when it was built
    inside a mask): two sides per spatial axis, first and last, each an array of node indices."""
    sides = []
    for axis, ends in enumerate(_covered_box(graph)):
        for end in ends:
            side = np.take(graph.node_labels, end, axis=axis)
            sides.append(np.unique(side[side >= 0]))
    return sides


def _covered_box(graph: Graph) -> list[tuple[int, int]]:
    """First and last index along each spatial axis of the pixels the graph's nodes cover (the
    whole image, or the box of the mask it was built inside)."""
    covered = graph.node_labels >= 0
    box = []
    for axis in range(covered.ndim):
        present = np.flatnonzero(covered.any(axis=tuple(a for a in range(covered.ndim) if a != axis)))
        box.append((int(present[0]), int(present[-1])))
    return box


CENTRE_WIDTH = 0.5
"""Width of the centre prior's Gaussian (:func:`node_centrality`), in half-extents of the image:
a quarter of the image's width and height."""


def node_centrality(graph: Graph) -> np.ndarray:
    r"""How central each node lies: a Gaussian of its centroid's offset from the centre of the
    image (of the region the graph covers, when it was built inside a mask),

    .. math:: g_i = \exp\Big(-\sum_d \frac{(x_{i,d} - \bar x_d)^2}{2 \, s^2 \, h_d^2}\Big),

    with :math:`h_d` half the extent along axis d, so the prior has the image's aspect, and
    s = :data:`CENTRE_WIDTH`.

    Returns
    -------
    ndarray of float64, shape (n,)
    """
    offsets = np.zeros(graph.n_nodes)
    for axis, ((first, last), step) in enumerate(zip(_covered_box(graph), graph.spacing)):
        low, high = first * step, last * step
        half = max((high - low + step) / 2, step)
        offsets += ((graph.positions[:, axis] - (low + high) / 2) / half) ** 2
    return np.exp(-offsets / (2 * CENTRE_WIDTH**2))


def centre_share(graph: Graph, inside: np.ndarray, centrality: np.ndarray) -> float:
    r"""The centre prior: how much more central (:func:`node_centrality`) a set of nodes lies
    than the image as a whole, by area,

    .. math:: m = \frac{\sum_{i \in F} a_i g_i \,/\, \sum_{i \in F} a_i}{\sum_i a_i g_i \,/\, \sum_i a_i}.

    Above 1 for an object at the centre, below 1 for a band along an edge of the image (a row of
    trees, the sky), 1 for an empty set."""
    if not inside.any():
        return 1.0
    area = graph.sizes.astype(np.float64)
    whole = np.average(centrality, weights=area)
    return float(np.average(centrality[inside], weights=area[inside]) / max(whole, 1e-12))


def open_outline(graph: Graph, inside: np.ndarray, enclosed: np.ndarray) -> float:
    r"""The share of an outline that faces the background: of the touching edges with one end
    ``inside`` and one outside, those whose outer node is not ``enclosed``,

    .. math:: o = 1 - \frac{|\{(i, j) \in E_{cut} : j \notin F, \ j \in N\}|}{|E_{cut}|},

    with N the enclosed nodes: those of the clusters left out that touch no image border. A
    region the scene encloses is rarely background beside an object; it is more of the object.
    An object whose parts differ more from each other than from the background (saturated
    bands, a colour wheel) otherwise loses to one of its parts, whose outline against the others
    crosses the strongest steps. 1 when no edge is cut.
    """
    edges = graph.edges
    cut = inside[edges[:, 0]] != inside[edges[:, 1]]
    if not cut.any():
        return 1.0
    outer = np.where(inside[edges[cut, 0]], edges[cut, 1], edges[cut, 0])
    return float(1.0 - enclosed[outer].mean())


def border_ordered_splits(graph: Graph, labels: np.ndarray, n_clusters: int) -> list[np.ndarray]:
    r"""The splits of a clustering along its clusters' :math:`\mathrm{BndCon}_s`: sorted by it
    (ties: smaller first), the first j clusters are foreground, for j = 1 .. K - 1.

    Returns
    -------
    list of ndarray of bool, shape (n_clusters,)
    """
    area = np.bincount(labels, weights=graph.sizes, minlength=n_clusters)
    score = boundary_connectivity(area, np.bincount(labels, weights=graph.border, minlength=n_clusters))
    order = score_order(area, score)
    splits = []
    for j in range(1, len(order)):
        foreground = np.zeros(n_clusters, bool)
        foreground[order[:j]] = True
        splits.append(foreground)
    return splits


def pixel_means(source: Graph, target: Graph, values: np.ndarray) -> np.ndarray:
    """Per-node values of ``source`` carried to the nodes of ``target`` (another graph of the same
    image): each target node takes the mean over its pixels of their source node's value. One
    column at a time, so no (pixels x columns) table is held."""
    labels = np.where(source.node_labels >= 0, target.node_labels, -1)
    columns = [node_means(values[source.node_labels, c], labels, target.n_nodes) for c in range(values.shape[1])]
    return np.concatenate(columns, 1)


def with_laplacian_features(
    graph: Graph, count: int, settings: Settings, cancel=None, source: Graph | None = None
) -> Graph:
    r"""The graph with :func:`~napari_deepcut.baselines.spectral_embedding` (``count`` leading
    eigenvectors, rows of unit length) appended to its node features, scaled so that both parts
    have the same total variance, :math:`\sum_f \mathrm{Var}(u_f) = \sum_f \mathrm{Var}(c_f)`;
    sigma is chosen again (:func:`~napari_deepcut.graph.automatic_sigma`), no less than twice the
    graph's, so that a noise floor of the colour graph (:data:`~napari_deepcut.graph.NOISE_FLOOR`)
    carries over: doubling is what the appended variance does to the mean squared distance.

    Colour alone joins an object to any region of its colour, however far; the eigenvectors keep
    apart what the graph's boundaries separate. With ``source`` (superpixels of the same image,
    for pixel nodes), the eigenvectors are those of ``source``, carried to the nodes by
    :func:`pixel_means`: a pixel lattice's leading eigenvectors are smooth waves across the whole
    image rather than its boundaries, and they take seconds to find on 10^5 nodes.
    """
    base = graph if source is None else source
    embedding = spectral_embedding(base, count, settings.long_range_weight, settings.seed, cancel)
    if source is not None:
        embedding = pixel_means(source, graph, embedding)
    colour = graph.features.astype(np.float64)
    spread = embedding.var(0).sum()
    embedding *= np.sqrt(colour.var(0).sum() / spread) if spread > 0 else 0.0
    features = np.concatenate([colour, embedding], 1).astype(np.float32)
    return dataclasses.replace(graph, features=features, sigma=automatic_sigma(features, 2.0 * graph.sigma))


def _pass_progress(progress: ProgressCallback | None, index: int, count: int) -> ProgressCallback | None:
    """Report training pass ``index`` of ``count`` as one run of ``count`` times the epochs."""
    if progress is None or count == 1:
        return progress
    return lambda p: progress(dataclasses.replace(p, epoch=index * p.epochs + p.epoch, epochs=count * p.epochs))


def _begin_step(step: str, stage: str, progress: ProgressCallback | None, cancel: CancelCheck | None) -> None:
    """Say that ``step`` of ``stage`` begins, after a last look at ``cancel``: the steps around
    training (graph building, edge refinement) take seconds on large images and volumes."""
    if cancel is not None and cancel():
        raise SegmentationCancelled(f"cancelled before {stage}: {step}")
    if progress is not None:
        progress(Progress(stage, 0, 0, float("nan"), step))


def _pieces(graph: Graph, labels: np.ndarray) -> np.ndarray:
    """Connected piece of every node: the components of the touching edges within a label."""
    edges = graph.edges[labels[graph.edges[:, 0]] == labels[graph.edges[:, 1]]]
    ones = np.ones(len(edges), np.int8)
    adjacency = sparse.coo_matrix((ones, (edges[:, 0], edges[:, 1])), shape=(graph.n_nodes,) * 2)
    return connected_components(adjacency, directed=False)[1]


def _piece_areas(graph: Graph, inside: np.ndarray) -> np.ndarray:
    """Pixels of each connected piece of a set of nodes (0 for the pieces outside it)."""
    return np.bincount(_pieces(graph, inside.astype(np.int64))[inside], graph.sizes[inside])


def piece_connectivity(graph: Graph, labels: np.ndarray, n_clusters: int) -> np.ndarray:
    r"""Boundary connectivity of each cluster, taken piece by piece: the area-weighted mean of
    :math:`\mathrm{BndCon}_p` over the connected pieces p of the cluster,

    .. math:: S_s = \sum_{p \subset s} \frac{a_p}{a_s} \, \mathrm{BndCon}_p .

    A cluster of nuclei scatters over the image in many pieces; a few are cut by the border, so the
    cluster as a whole touches the border as much as the background does, but most of its pieces
    do not touch it at all.
    """
    piece = _pieces(graph, labels)
    area = np.bincount(piece, graph.sizes).astype(np.float64)
    score = boundary_connectivity(area, np.bincount(piece, graph.border))
    cluster = np.zeros(len(area), np.int64)
    cluster[piece] = labels
    total = np.bincount(cluster, area, n_clusters)
    return np.bincount(cluster, area * score, n_clusters) / np.maximum(total, 1.0)


def foreground_clusters(
    graph: Graph, labels: np.ndarray, n_clusters: int, touching: bool = True
) -> np.ndarray:
    r"""Foreground clusters of a node clustering, by :func:`boundary_foreground`.

    When that foreground is :func:`many_objects` (``touching`` as there), the clusters are scored
    piece by piece instead (:func:`piece_connectivity`) and split again by :func:`split_scores`: a
    scene of many objects (nuclei, cells, coins) is judged by its objects, one of one object (a
    photo) by its clusters.

    Returns
    -------
    ndarray of bool, shape (n_clusters,)
    """
    area = np.bincount(labels, weights=graph.sizes, minlength=n_clusters)
    border = np.bincount(labels, weights=graph.border, minlength=n_clusters)
    foreground = boundary_foreground(area, border)
    if many_objects(graph, foreground[labels], touching):
        foreground = split_scores(area, piece_connectivity(graph, labels, n_clusters))
    return foreground


def _side_means(graph: Graph, inside: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The node features (float64) and the area-weighted mean features of the foreground
    (``inside``) and background nodes; both sides must be non-empty."""
    features = graph.features.astype(np.float64)
    centre_f = np.average(features[inside], 0, graph.sizes[inside])
    centre_b = np.average(features[~inside], 0, graph.sizes[~inside])
    return features, centre_f, centre_b


EVEN_BACKGROUND = 0.25
"""A background is even when its colour spread is under this share of the squared step between
the two sides' mean colours (:func:`even_background`)."""


def background_spread(graph: Graph, inside: np.ndarray) -> float:
    r"""The background's colour spread against the step between the sides: with :math:`m_F, m_B`
    the area-weighted mean features of the foreground (``inside``) and background nodes,

    .. math:: \frac{\sum_{i \notin F} a_i |c_i - m_B|^2}{\sum_{i \notin F} a_i \, |m_F - m_B|^2} ;

    0 with a side empty."""
    if inside.all() or not inside.any():
        return 0.0
    features, centre_f, centre_b = _side_means(graph, inside)
    spread = np.average(((features[~inside] - centre_b) ** 2).sum(1), weights=graph.sizes[~inside])
    return float(spread / max(((centre_f - centre_b) ** 2).sum(), np.finfo(np.float64).tiny))


def even_background(graph: Graph, inside: np.ndarray) -> bool:
    """Whether the nodes outside ``inside`` are one even background next to the step between the
    sides: their :func:`background_spread` is under :data:`EVEN_BACKGROUND` (the background's
    standard deviation under half the step). A field of nuclei or cells lies on an even
    background; a photo's background is grass, trees and sky. On the development sets (engine at
    076736e) the ratio is at most 0.05 on the 87 nuclei-dev fields read as many objects, and
    0.75-13 on the three horse photos read so (a dark horse in pieces with fence and shadows)."""
    return background_spread(graph, inside) < EVEN_BACKGROUND


MANY_OBJECTS = 0.5
"""A foreground is many objects when no connected piece of it holds this share of its area."""
CROWDED_OBJECTS = 0.8
"""On a quiet background (:data:`QUIET_BACKGROUND`), a foreground is many objects when no
connected piece of it holds this share of its area: a field where some objects touch."""
QUIET_BACKGROUND = 0.05
"""A background is quiet when its :func:`background_spread` is under this (its standard deviation
under 0.22 of the step). At 33f5da2, of the foregrounds first chosen whose largest piece holds
0.5-0.8 of the area, the nuclei-dev fields' backgrounds spread 0.000-0.024 (one field, 0.56),
the horse photos' (first 160) 0.08-12.5."""


def many_objects(graph: Graph, inside: np.ndarray, touching: bool = True) -> bool:
    """Whether a set of nodes is many objects: none of its connected pieces holds
    :data:`MANY_OBJECTS` of its area; or, with ``touching``, on a quiet background
    (:data:`QUIET_BACKGROUND`), none holds :data:`CROWDED_OBJECTS` of it and the pieces besides
    the largest are many objects. Nuclei that touch join into one piece, through the dim nodes
    between them; in a field of nuclei such a piece can hold over half the foreground."""
    if inside.all() or not inside.any():
        return False
    piece_area = np.sort(_piece_areas(graph, inside))
    if piece_area[-1] < MANY_OBJECTS * piece_area.sum():
        return True
    others = piece_area[:-1]
    return bool(
        touching
        and piece_area[-1] < CROWDED_OBJECTS * piece_area.sum()
        and others.size > 0
        and others[-1] < MANY_OBJECTS * others.sum()
        and background_spread(graph, inside) < QUIET_BACKGROUND
    )


def objects_on_quiet_background(graph: Graph, inside: np.ndarray) -> bool:
    """Whether a foreground is many objects apart (:func:`many_objects`, touching objects not
    read as many) on a quiet background (:data:`QUIET_BACKGROUND`): a field of nuclei or cells.
    Colour settles such a field, so the foreground stage does not cluster it a second time with
    the Laplacian features, which split a flat background into smooth pieces and are not kept
    there (:func:`choose_foreground`). On the development sets (engine at 29a869e) it holds on 89
    of the 100 nuclei-dev fields, none of the 327 horse photos and 2 of their grey versions."""
    return many_objects(graph, inside, touching=False) and background_spread(graph, inside) < QUIET_BACKGROUND


DARK_FIELD = 0.15
"""A grey or multichannel image is a dark field when the median brightness of its nodes is under
this, on intensities rescaled to [0, 1] (:func:`dark_field_brightness`). The fluorescence fields
of nuclei-dev lie at 0.000-0.106. Grey versions of the horse photos: 5 of 327 lie under 0.15, 26
under 0.25, and at 0.25 three photos of a dark horse in a dim scene lost their horse."""


def dark_field_brightness(image: PreparedImage, graph: Graph) -> np.ndarray | None:
    r"""Each node's brightness (mean intensity over the channels) when ``image`` is a dark field,
    else None.

    A dark field is a grey or multichannel image (not RGB) whose area-weighted median node
    brightness is under :data:`DARK_FIELD`: fluorescence and dark-field illumination, where the
    objects give off the light and the background is its absence. There a foreground darker than
    its background is holes in a dim glow, not objects (:func:`choose_foreground`). RGB is left
    alone: photos of a dark animal in a dim scene are common. On nuclei-dev (engine at acd763f)
    the medians of the grey fields are 0.000-0.106 for fluorescence and 0.85-0.93 for bright
    field (dark objects on a bright background, also left alone). One fluorescence field had a
    darker foreground: the dark holes of a dim field, whose reference is a bright speck.
    """
    if image.rgb or graph.n_nodes < 2:
        return None
    values = image.data.mean(-1, keepdims=True)
    brightness = node_means(values, graph.node_labels, graph.n_nodes)[:, 0]
    order = np.argsort(brightness, kind="stable")
    weight = np.cumsum(graph.sizes[order])
    median = brightness[order[np.searchsorted(weight, weight[-1] / 2.0)]]
    return brightness if median < DARK_FIELD else None


def _brighter(graph: Graph, brightness: np.ndarray | None, inside: np.ndarray) -> bool:
    """Whether the nodes ``inside`` are brighter on average (by area) than the rest; always true
    without ``brightness`` or with a side empty."""
    if brightness is None or inside.all() or not inside.any():
        return True
    area = graph.sizes
    inner = np.average(brightness[inside], weights=area[inside])
    return bool(inner > np.average(brightness[~inside], weights=area[~inside]))


def choose_foreground(
    graph: Graph,
    labelings: list[np.ndarray],
    n_clusters: int,
    brightness: np.ndarray | None = None,
    touching: bool = True,
    centre: bool = True,
) -> tuple[int, np.ndarray]:
    r"""The foreground of the foreground stage, from one or more clusterings of the same graph.

    Each clustering is split by :func:`foreground_clusters`, and of those splits the one whose
    outline has the highest :func:`cut_contrast` is kept (ties: the first clustering). When it is
    many objects (:func:`many_objects`) on an even background (:func:`even_background`) it is the
    answer. Otherwise the scene is one object, and
    the answer is the split with the highest :func:`outline_score` among the
    :func:`border_ordered_splits` of every clustering, the clusters left out that touch no image
    border counting as enclosed (:func:`open_outline`), and with ``centre`` the score weighed by
    the centre prior (:func:`centre_share`) except on a dark field, whose objects (fluorescence)
    lie wherever they fall, not where someone framed them: the object is then rarely all the
    clusters below one Otsu split of the border scores (a band of trees crossing the image scores
    low too, a close-up's object touches the border). With the centre prior, a split that
    reaches every side of the image and leaves the rest in pieces has a weaker border term
    (:func:`outline_score`, :func:`image_sides`): an object filling the frame. Both are priors on
    how a scene was framed, so they go together.

    With ``brightness`` (a dark field, :func:`dark_field_brightness`), a foreground so chosen that
    is darker than its background is chosen again among those brighter than theirs, if any.

    Parameters
    ----------
    labelings : list of ndarray of int, shape (n,)
        The cluster of every node, per clustering.
    brightness : ndarray of float, shape (n,), optional
        Each node's brightness, given on a dark field.
    touching : bool
        Whether touching objects on a quiet background are many objects (:func:`many_objects`).
    centre : bool
        Whether the centre prior weighs the outline score of one object, and a split reaching
        every side of the image has a weaker border term (never on a dark field).

    Returns
    -------
    index : int
        The clustering the foreground comes from.
    foreground : ndarray of bool, shape (n_clusters,)
        Its foreground clusters.
    """
    centrality = node_centrality(graph) if centre and brightness is None else None
    sides = image_sides(graph) if centrality is not None else None
    index, split = _choose(graph, labelings, n_clusters, lambda inside: True, touching, centrality, sides)
    if brightness is None or _brighter(graph, brightness, split[labelings[index]]):
        return index, split
    brighter = _choose(
        graph, labelings, n_clusters, lambda inside: _brighter(graph, brightness, inside), touching, centrality, sides
    )
    return brighter or (index, split)


def _choose(
    graph: Graph,
    labelings: list[np.ndarray],
    n_clusters: int,
    allowed,
    touching: bool,
    centrality: np.ndarray | None,
    sides: list[np.ndarray] | None,
) -> tuple[int, np.ndarray] | None:
    """:func:`choose_foreground` among the foregrounds (node masks) that ``allowed`` accepts; None
    when it accepts none."""
    splits = [foreground_clusters(graph, labels, n_clusters, touching) for labels in labelings]
    options = [
        (cut_contrast(graph, split[labels]), index)
        for index, (split, labels) in enumerate(zip(splits, labelings))
        if allowed(split[labels])
    ]
    if options:
        _, index = max(options, key=lambda option: option[0])  # ties: the first
        inside = splits[index][labelings[index]]
        if many_objects(graph, inside, touching) and even_background(graph, inside):
            return index, splits[index]
    untouched = [np.bincount(labels, graph.border, n_clusters) == 0 for labels in labelings]
    candidates = [
        (
            outline_score(graph, split[labels], (untouched[candidate] & ~split)[labels], centrality, sides),
            candidate,
            split,
        )
        for candidate, labels in enumerate(labelings)
        for split in border_ordered_splits(graph, labels, n_clusters)
        if allowed(split[labels])
    ]
    if not candidates:
        return (index, splits[index]) if options else None
    _, index, split = max(candidates, key=lambda c: c[0])  # ties: the first
    return index, split


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


def colour_sides_step(graph: Graph, inside: np.ndarray) -> np.ndarray:
    r"""One k-means step between the two sides of a foreground decision, node by node, in the
    space of the node features (mean colour by default): with :math:`m_F, m_B` the area-weighted
    mean features of the foreground and background nodes, node i is foreground when

    .. math:: |c_i - m_F| < |c_i - m_B| .

    Nuclei cut by the image border score high on border contact but share the other nuclei's
    colour; dim nuclei fall in a cluster with the background, yet their nodes are nearer the
    nuclei's mean. The decision stays as it was when a side would be left empty.

    The step trims the foreground's connected pieces (a halo around a nucleus, background let
    through beside it) but does not remove a piece whole: an object that the clustering found
    and the border rule kept stays, however dim next to the brightest ones (whose colour makes
    most of :math:`m_F`). On synthetic microscopy with a tenfold range of brightness
    (``benchmarks/microscopy.py``) this took foreground IoU from 0.749 to 0.797.

    A dim object lies between the background and the objects. A piece P whose mean lies beyond
    the background, seen from the objects,

    .. math:: \sum_{i \in P} a_i (c_i - m_B) \cdot (m_F - m_B) < 0 ,

    is not one (a patch of tissue paler than the background beside dark-stained nuclei): it is
    trimmed node by node like the rest, and goes whole when none of its nodes is nearer
    :math:`m_F`. On nuclei-dev this took one histology field from 0.585 to 0.754 and changed no
    other; the synthetic microscopy kinds and horse did not change.

    Parameters
    ----------
    inside : ndarray of bool, shape (n,)
        The foreground decision, per node.

    Returns
    -------
    ndarray of bool, shape (n,)
    """
    if inside.all() or not inside.any():
        return inside
    features, centre_f, centre_b = _side_means(graph, inside)
    moved = ((features - centre_f) ** 2).sum(1) < ((features - centre_b) ** 2).sum(1)
    piece = _pieces(graph, inside.astype(np.int64))
    n_pieces = piece.max() + 1
    trimmed = np.bincount(piece[inside & moved], minlength=n_pieces) > 0  # keeps some nodes
    along = (features[inside] - centre_b) @ (centre_f - centre_b)  # 0 at the background's mean
    beyond = np.bincount(piece[inside], graph.sizes[inside] * along, minlength=n_pieces) < 0
    moved |= inside & ~trimmed[piece] & ~beyond[piece]
    return moved if not moved.all() else inside


def drop_small_pieces(mask: np.ndarray, share: float) -> np.ndarray:
    r"""The foreground of a scene read as one object without its small pieces: a connected piece p
    of area :math:`a_p` stays when

    .. math:: a_p \ge s \, \max_q a_q ,

    s = ``share`` (``min_piece``). Background that shares the object's colour (a patch of ground as
    dark as the horse, a bright rim of surf) joins the object's clusters but lies apart from it in
    pieces much smaller than the object. Scenes of many objects are not passed here: there a small
    piece is a small object. ``share`` 0 keeps every piece."""
    if share <= 0 or not mask.any():
        return mask
    pieces, count = ndimage.label(mask, ndimage.generate_binary_structure(mask.ndim, mask.ndim))
    if count < 2:
        return mask
    area = np.bincount(pieces.ravel())
    area[0] = 0
    return (area >= share * area.max())[pieces]


def clean_foreground(mask: np.ndarray, keep_largest: bool, fill_holes: bool) -> np.ndarray:
    """Optional post-processing of a binary mask: keep its largest component, fill its holes."""
    if keep_largest and mask.any():
        components, n = ndimage.label(mask)
        if n > 1:
            sizes = np.bincount(components.ravel())
            sizes[0] = 0
            mask = components == sizes.argmax()
    if fill_holes:
        mask = holes_filled(mask)
    return mask


def _ordered_parts(cluster_image: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """Map the cluster ids 1..k of a label image (0 = none) to parts 1..K, largest first; empty
    clusters disappear."""
    area = np.bincount(cluster_image.ravel(), minlength=k + 1)[1:]
    order = np.argsort(-area, kind="stable")
    present = order[area[order] > 0]
    lookup = np.zeros(k + 1, np.uint16)
    lookup[present + 1] = np.arange(1, len(present) + 1)
    return lookup[cluster_image], len(present)


def _check_parts(parts) -> None:
    if isinstance(parts, str):
        if parts != "auto":
            raise ValueError(f"parts must be an integer >= 2 or 'auto', got {parts!r}")
    elif isinstance(parts, bool) or not isinstance(parts, (int, np.integer)):
        raise TypeError(f"parts must be an integer >= 2 or 'auto', got {parts!r}")
    elif parts < 2:
        raise ValueError(f"parts must be at least 2 (or 'auto'), got {parts}")


# --- stages ------------------------------------------------------------------------------------


def foreground_stage(
    image: PreparedImage,
    settings: Settings,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
) -> StageResult:
    """Stage 1: cluster the whole image (``foreground_loss``, at most ``foreground_clusters``
    clusters); foreground clusters are those weakly connected to the image border, or for one
    object those with the best outline (:func:`choose_foreground`). With ``trim_frame``, a uniform
    frame around the image, or a photo's picture frame or vignette
    (:func:`~napari_deepcut.image.content_box`), is background and the border is the frame's
    inside.

    With ``laplacian_features`` (network clustering only), the network clusters the graph again
    with its leading eigenvectors among the node features (:func:`with_laplacian_features`),
    ``laplacian_runs`` times from different seeds, and :func:`choose_foreground` picks from all
    the clusterings; unless the first clustering's foreground is objects apart on a quiet
    background (:func:`objects_on_quiet_background`). Colour alone suits scenes whose objects
    differ in colour from all of the background (nuclei); the eigenvectors, scenes where an
    object shares its colour with some of it (a dark horse, dark trees). Each run of a K-less
    loss settles on its own clusters; the outline score picks well among more of them (horse,
    327 photos, seeds 0-2: 0.697 with one run, 0.711 with two, 0.716 with three).

    With ``level_background``, a grey or multichannel scene of many objects whose background
    turns out uneven is segmented a second time with that background subtracted
    (:func:`~napari_deepcut.image.level_background`): objects in the dim corners of a vignetted
    field then stand out as much as those in its bright centre. A grey or multichannel scene
    whose first foreground has at least three pieces, one of them over half of it (not many
    objects, or many only as touching objects: :func:`many_objects`), is segmented again with a
    background from a morphological opening wider than those pieces subtracted
    (:func:`~napari_deepcut.image.opened_background`), and that result is kept when it is many
    objects none of which holds half of it, on an even background: a lamp spot whose brightness
    joined the objects inside it into one object. That pass does not read touching objects as
    many: the opening leaves bright rims around large dark holes, which join into such a crowd.

    With ``dark_field``, on a grey or multichannel dark field (fluorescence) the foreground is
    brighter than the background (:func:`dark_field_brightness`).

    With ``relief``, a grey 2D image in relief contrast (DIC) is first integrated along its shear
    (:func:`~napari_deepcut.relief.relief_view`), and the stage segments the integral.

    In an RGB photo read as one object, connected pieces of the foreground smaller than
    ``min_piece`` of the largest are dropped (:func:`drop_small_pieces`). Grey and multichannel
    scenes keep them: there a small piece is as likely a cell cut by the image border.

    With ``adapt_superpixels``, a scene of many objects smaller than two superpixels each is
    segmented again, on the levelled image if it was levelled, with more superpixels
    (:func:`finer_segments`); when that count was capped, the objects found on the finer graph are
    measured again, for at most :data:`FINER_PASSES` passes. Not on the integral of a relief
    image: integrated along the shear, its pixel noise becomes streaks of the cells' size, which
    finer superpixels resolve and take for cells, and which the pixel noise measured on the
    integral (from neighbouring pixels) understates: fourfold per pixel, twentyfold after
    smoothing over two pixels (``benchmarks/RESULTS.md``).

    In a scene of many objects, objects whose excess over their surroundings, summed, is under
    ``object_significance`` times its noise are dropped, with a warning when none is left
    (:func:`~napari_deepcut.refine.faint_objects`); then, with ``dim_objects``, pieces of the
    background that rise above their own surroundings by half the step of the dimmest object
    found are added
    (:func:`~napari_deepcut.refine.dim_objects`), with ``object_edges`` each object is
    re-edged half way up its own step (:func:`~napari_deepcut.refine.object_edges`), and with
    ``object_holes`` its holes are filled when they are no larger than it
    (:func:`~napari_deepcut.refine.object_holes`).

    When the clustering finds a single region the foreground is empty, with a warning (an empty
    field, whose noise the floor of the affinity scale keeps together:
    :data:`~napari_deepcut.graph.NOISE_FLOOR`, :data:`~napari_deepcut.graph.PIXEL_NOISE_FLOOR`).
    Otherwise, with ``min_contrast`` > 0, a foreground that does not stand out from the image's
    noise by that much (:func:`foreground_contrast`, net of the background's smooth trend) is
    emptied, with a warning: an empty field holds no object, though the clustering may split its
    noise in two, or cut off the bright side of its uneven illumination. With ``min_edge`` > 0, a
    foreground of a grey or multichannel image whose outline has no edge (:func:`outline_edge`)
    is emptied too, with a warning: the bright side of a lamp's light that stands out from a
    quadratic trend, or a split of noise.

    With ``retry_finer``, when the foreground of an image larger than 256 x 256 pixels comes out
    empty, the stage runs again on more superpixels, coarse to fine (:func:`retry_segments`),
    until a foreground is kept; the warnings are the last run's. Objects far smaller than the
    superpixels are lost in their means before they can be measured, so a large field is looked
    at more finely before it is called empty: unless no detail finer than the superpixels rises
    above what noise reaches (:func:`finer_detail`), as in a field of noise, graded or not, where
    the finer runs would cost ten times the first for nothing."""
    retries = retry_segments(image.spatial_shape, settings.n_segments)
    if not (settings.retry_finer and settings.nodes == "superpixels" and retries):
        return _find_foreground(image, settings, progress, cancel)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _find_foreground(image, settings, progress, cancel)
    if result.labels.any() or image.constant:
        retries = []
    else:
        _begin_step("nothing found: looking for detail finer than the superpixels", "foreground", progress, cancel)
        detail = finer_detail(image, settings.n_segments)
        result.finer_detail = detail
        if detail < 1:
            retries = []  # nothing there for finer superpixels to find
    for segments in retries:
        _begin_step(f"nothing found: looking again on {segments} superpixels", "foreground", progress, cancel)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = _find_foreground(image, settings.replace(n_segments=segments), progress, cancel)
        result.retried_segments, result.finer_detail = segments, detail
        if result.labels.any():
            break
    for caught_warning in caught:
        warnings.warn(caught_warning.message, stacklevel=3)
    result.seconds = time.perf_counter() - start
    return result


def _find_foreground(image: PreparedImage, settings: Settings, progress, cancel) -> StageResult:
    """:func:`foreground_stage` on ``settings.n_segments`` superpixels, without a retry."""
    start = time.perf_counter()
    if image.constant:
        return StageResult(np.zeros(image.spatial_shape, np.uint8), None, None, 0, 0.0)
    image, shear = image.relief if settings.relief else (image, None)
    result, many, apart, _ = _foreground_pass(image, settings, progress, cancel, "foreground")
    unevenness = 0.0
    if settings.level_background and not apart:
        # a lamp spot taken with its objects for one object: level by an opening wider than them
        node_size = float(result.graph.sizes.mean())  # smaller pieces are specks of edge refinement
        opened, measured = opened_background(image, result.labels.astype(bool), node_size)
        if opened is not None:
            second, _, apart_now, even = _foreground_pass(
                opened, settings, progress, cancel, "foreground, background opened", touching=False
            )
            if apart_now and even:
                image, unevenness, result, many = opened, measured, second, True
    if settings.level_background and many:
        levelled, measured = level_background(image, result.labels.astype(bool))
        if levelled is not None:
            image, unevenness = levelled, measured
            result, *_ = _foreground_pass(image, settings, progress, cancel, "foreground, background levelled")
    # Not on a relief integral: its noise, integrated along the shear, is streaks of the cells'
    # size, which finer superpixels resolve and the pixel noise measured does not account for.
    if settings.adapt_superpixels and settings.nodes == "superpixels" and many and shear is None:
        segments = settings.n_segments
        for _ in range(FINER_PASSES):
            finer = finer_segments(result.labels.astype(bool), result.graph, segments)
            if not finer:
                break
            finer_settings = settings.replace(n_segments=finer)
            result, *_ = _foreground_pass(image, finer_settings, progress, cancel, "foreground, finer superpixels")
            result.adapted_segments = finer
            if finer < round(MAX_FINER * segments):  # not capped: the objects were measured
                break
            segments = finer
    significance = settings.object_significance
    steps = [  # the steps of a scene of many objects: name, whether it runs, the step
        ("dropping faint objects", significance > 0, lambda m, r: faint_objects(m, image, significance, r)),
        ("finding dim objects", settings.dim_objects, lambda m, r: dim_objects(m, image, r)),
        ("re-edging objects", settings.object_edges, lambda m, r: object_edges(m, image, r)),
    ]
    all_faint = False
    if many and (settings.object_holes or any(on for _, on, _ in steps)):
        mask = result.labels.astype(bool)
        rims = None  # one distance transform, shared while the steps leave the mask as it was
        for name, on, step in steps:
            if on:
                _begin_step(name, "foreground", progress, cancel)
                if rims is None or not rims.fits(mask):
                    rims = None  # freed before the next is built
                    rims = ObjectRims.of(mask, image.spacing)
                mask = step(mask, rims)
        del rims
        if settings.object_holes:
            _begin_step("filling objects' holes", "foreground", progress, cancel)
            mask = object_holes(mask)
        all_faint = significance > 0 and not mask.any()
        result.labels = clean_foreground(mask, settings.keep_largest, settings.fill_holes).astype(np.uint8)
    result.background_unevenness = unevenness
    result.relief = shear
    if result.n_clusters == 1 and not result.labels.any():
        warnings.warn(
            "the clustering found one region only (nothing in the image differs from the rest by "
            "more than its noise): the foreground is empty",
            stacklevel=4,
        )
    elif all_faint:
        warnings.warn(
            f"no object stands out from the image's noise (each object found sums to less than "
            f"object_significance={settings.object_significance:g} times the noise): the "
            f"foreground is empty",
            stacklevel=4,
        )
    elif settings.min_contrast > 0:
        result.contrast = foreground_contrast(image, result.labels.astype(bool))
        if result.contrast < settings.min_contrast:
            warnings.warn(
                f"no object stands out from the image's noise (the foreground found is "
                f"{result.contrast:.1f} times the noise from the background and its trend, under "
                f"min_contrast={settings.min_contrast:g}): the foreground is left empty",
                stacklevel=4,
            )
            result.labels = np.zeros_like(result.labels)
    if settings.min_edge > 0 and not image.rgb and result.labels.any():
        edge = outline_edge(image, result.labels.astype(bool))
        if edge < settings.min_edge:
            warnings.warn(
                f"the foreground found has no edge (the gradient along its outline is {edge:.2f} "
                f"times the image's typical gradient, under min_edge={settings.min_edge:g}): a "
                f"smooth glow is not an object, so the foreground is left empty",
                stacklevel=4,
            )
            result.labels = np.zeros_like(result.labels)
    result.seconds = time.perf_counter() - start
    return result


def _foreground_pass(
    image: PreparedImage, settings: Settings, progress, cancel, stage: str, touching: bool = True
) -> tuple[StageResult, bool, bool, bool]:
    """One run of the foreground stage on ``image``, reading ``touching`` objects on a quiet
    background as many objects or not (:func:`many_objects`); also whether its foreground is many
    objects, whether it is so without reading touching objects, and whether its background is
    even (:func:`even_background`)."""
    inside, frame = None, ()
    if settings.trim_frame:
        box = content_box(image)
        if any(b.start > 0 or b.stop < n for b, n in zip(box, image.spatial_shape)):
            inside = np.zeros(image.spatial_shape, bool)
            inside[box] = True
            frame = tuple((b.start, b.stop) for b in box)
    # Correlation clustering compares all pairs through random Fourier features, so it needs no
    # long-range edges; the eigenvectors do (those of the graph every clustering sees). Under
    # pixel nodes they come from a superpixel graph of the same image, built below.
    second_pass = settings.clustering == "gnn" and 0 < settings.laplacian_features
    on_pixels = settings.nodes == "pixels"
    uses_edges = settings.clustering == "spectral" or settings.foreground_loss != "cc"
    _begin_step("building the graph", stage, progress, cancel)
    graph = build_graph(image, settings, mask=inside, long_range=uses_edges or (second_pass and not on_pixels))
    k = min(settings.foreground_clusters, max(graph.n_nodes, 2))
    second_pass &= graph.n_nodes > settings.laplacian_features + 1
    passes = 1 + settings.laplacian_runs if second_pass else 1
    loss = settings.foreground_loss
    clusterings = [
        _cluster(graph, k, True, settings, loss, stage, _pass_progress(progress, 0, passes), cancel)
    ]
    brightness = dark_field_brightness(image, graph) if settings.dark_field else None
    choice = None
    if second_pass:  # not where colour has settled it: there the eigenvectors would not be kept
        labels = clusterings[0].labels
        choice = choose_foreground(graph, [labels], k, brightness, touching, settings.centre_prior)
        second_pass = not objects_on_quiet_background(graph, choice[1][labels])
    if second_pass:
        source = None
        if on_pixels:
            superpixels = settings.replace(nodes="superpixels", n_segments=min(settings.n_segments, graph.n_nodes))
            source = build_graph(image, superpixels, mask=inside)
        embedded = with_laplacian_features(graph, settings.laplacian_features, settings, cancel, source)
        for run in range(settings.laplacian_runs):  # seeds apart from those of each run's restarts
            run_settings = settings.replace(seed=settings.seed + run * settings.restarts)
            run_progress = _pass_progress(progress, 1 + run, passes)
            clusterings.append(_cluster(embedded, k, True, run_settings, loss, stage, run_progress, cancel))
    if choice is None or len(clusterings) > 1:
        choice = choose_foreground(
            graph, [c.labels for c in clusterings], k, brightness, touching, settings.centre_prior
        )
    index, is_foreground = choice
    clustering, kept = clusterings[index], "colour + laplacian" if index else "colour"
    on_foreground = is_foreground[clustering.labels]  # per node
    many = many_objects(graph, on_foreground, touching)
    sides = settings.colour_sides
    if sides == "always" or (sides == "many" and many):
        on_foreground = colour_sides_step(graph, on_foreground)
    if settings.refine:
        _begin_step("refining edges", stage, progress, cancel)
        foreground = refine_labels(graph, on_foreground, image, denoise=settings.refine_denoise)
    else:
        foreground = graph.to_image(on_foreground, fill=False)
    if image.rgb and not many:
        foreground = drop_small_pieces(foreground, settings.min_piece)
    foreground = clean_foreground(foreground, settings.keep_largest, settings.fill_holes)
    n_found = len(np.unique(clustering.labels))
    result = StageResult(foreground.astype(np.uint8), graph, clustering, n_found, 0.0, kept, inside_frame=frame)
    many = many_objects(graph, on_foreground, touching)
    apart = many_objects(graph, on_foreground, touching=False)
    return result, many, apart, even_background(graph, on_foreground)


def parts_stage(
    image: PreparedImage,
    foreground_mask: np.ndarray,
    parts: int | str,
    settings: Settings,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
) -> StageResult:
    """Stage 2: cluster the nodes inside ``foreground_mask`` into ``parts`` parts.

    With ``parts="auto"`` the number is found, at most ``settings.max_parts``: by the loss itself
    when it is K-less (``cc``, ``modularity``), else by the eigengap of the graph's affinities
    (:func:`~napari_deepcut.baselines.eigengap_clusters`) before the loss cuts into that many. On
    pixel nodes that eigengap is taken on a superpixel graph of the same mask. With ``relief``, a
    relief-contrast image is integrated first, as in :func:`foreground_stage`.
    """
    start = time.perf_counter()
    _check_parts(parts)
    mask = np.asarray(foreground_mask)
    if mask.shape != image.spatial_shape:
        raise ValueError(
            f"foreground_mask has shape {mask.shape}, but the image's spatial shape is {image.spatial_shape}"
        )
    mask = mask != 0
    if not mask.any():
        raise ValueError("foreground_mask is empty: paint or compute a foreground first")
    if image.constant:
        return StageResult(mask.astype(np.uint16), None, None, 1, 0.0)
    image, shear = image.relief if settings.relief else (image, None)
    k = settings.max_parts if parts == "auto" else int(parts)
    _begin_step("building the graph", "parts", progress, cancel)
    graph = build_graph(image, settings, mask=mask)
    if graph.n_nodes < 2:
        warnings.warn("the foreground holds a single node: it is one part", stacklevel=3)
        return StageResult(mask.astype(np.uint16), graph, None, 1, time.perf_counter() - start)
    k = min(k, graph.n_nodes)
    k_graph = None
    finds_k_by_eigengap = settings.clustering == "gnn" and settings.loss not in K_LESS_LOSSES
    if parts == "auto" and settings.nodes == "pixels" and finds_k_by_eigengap:
        # the pixel lattice's many smooth modes flatten the spectrum: k is read from the
        # superpixels of the same mask (parts.py, K-less on pixels: 0.73 -> 0.82 part mIoU)
        k_graph = build_graph(image, settings.replace(nodes="superpixels"), mask=mask)
    clustering = _cluster(graph, k, parts == "auto", settings, settings.loss, "parts", progress, cancel, k_graph)
    clusters = clustering.labels + 1  # 0 stays "no part"
    if settings.refine:
        _begin_step("refining edges", "parts", progress, cancel)
        clusters = refine_labels(graph, clusters, image, denoise=settings.refine_denoise)
    else:
        clusters = graph.to_image(clusters, fill=0)
    clusters[~mask] = 0  # pixel blocks may straddle the mask's edge
    labels, n_found = _ordered_parts(clusters, k)
    return StageResult(labels, graph, clustering, n_found, time.perf_counter() - start, relief=shear)


# --- public API --------------------------------------------------------------------------------


def segment(
    image,
    parts: int | str | None = None,
    *,
    channel_axis: int | None = None,
    spacing=None,
    rgb: bool | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
    **settings,
) -> Segmentation:
    """Segment an image without annotations: foreground / background, then optionally its parts.

    The image becomes a graph (SLIC superpixels or downsampled pixels as nodes, affinities
    ``w_ij = exp(-|c_i - c_j|^2 / sigma)`` between touching nodes); a small graph neural network
    trained on this one image minimises a clustering loss, and the argmax of its soft assignment is
    the segmentation (DeepCut, Aflalo et al. 2023).

    Parameters
    ----------
    image : array_like
        2D or 3D; grayscale, RGB(A) or multichannel; any real dtype.
    parts : int, "auto" or None
        Parts inside the foreground: k >= 2, or "auto" to let correlation clustering find how many.
        None (default): foreground only.
    channel_axis : int, optional
        Channel axis. None: a last axis of length 3 or 4 (on 3+ dimensions) is RGB(A).
    spacing : sequence of float, optional
        Physical pixel / voxel size per spatial axis (anisotropic volumes).
    rgb : bool, optional
        Whether the channel axis is RGB(A) (as napari's ``layer.rgb``); default guessed.
    progress : callable, optional
        Called with a :class:`~napari_deepcut.cluster.Progress` after every epoch, and as each
        step without epochs begins (building the graph, refining edges).
    cancel : callable, optional
        Polled after every epoch and before each step; returning True raises
        :class:`~napari_deepcut.cluster.SegmentationCancelled`.
    **settings
        Any field of :class:`~napari_deepcut.settings.Settings` (``nodes``, ``n_segments``,
        ``downsample``, ``loss``, ``seed``, ``device``, ...).

    Returns
    -------
    Segmentation

    Raises
    ------
    ValueError, TypeError
        On bad input, naming the parameter at fault.
    """
    config = from_kwargs(settings)
    if parts is not None:
        _check_parts(parts)
    prepared = prepare_image(image, channel_axis=channel_axis, spacing=spacing, rgb=rgb)
    first = foreground_stage(prepared, config, progress, cancel)
    second = None
    if parts is not None:
        if first.labels.any():
            second = parts_stage(prepared, first.labels, parts, config, progress, cancel)
        else:
            if not prepared.constant:  # a constant image was already warned about
                warnings.warn("no foreground was found, so there are no parts", stacklevel=2)
            second = StageResult(np.zeros(prepared.spatial_shape, np.uint16), None, None, 0, 0.0)
    return Segmentation(
        foreground=first.labels,
        parts=None if second is None else second.labels,
        foreground_stage=first,
        parts_stage=second,
        settings=config,
    )


def segment_parts(
    image,
    foreground_mask,
    parts: int | str = 4,
    *,
    channel_axis: int | None = None,
    spacing=None,
    rgb: bool | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
    **settings,
) -> np.ndarray:
    """Split a given foreground (from :func:`segment`, or painted by hand) into parts.

    Only the pixels inside ``foreground_mask`` become graph nodes, so the parts follow the mask
    exactly, edits included.

    Parameters
    ----------
    image : array_like
        As for :func:`segment`.
    foreground_mask : array_like
        Non-zero = foreground; the image's spatial shape.
    parts : int or "auto"
        Number of parts k >= 2, or "auto" (K-less correlation clustering, at most ``max_parts``).
    **settings
        As for :func:`segment`.

    Returns
    -------
    ndarray of uint16
        0 outside the mask, parts 1..k inside, largest first.
    """
    config = from_kwargs(settings)
    _check_parts(parts)
    prepared = prepare_image(image, channel_axis=channel_axis, spacing=spacing, rgb=rgb)
    return parts_stage(prepared, foreground_mask, parts, config, progress, cancel).labels
