"""Which clusters of a clustering are the foreground, and what kind of scene the image holds.

The foreground stage clusters the graph's nodes several times; this module scores the splits of
those clusterings into foreground and background (boundary connectivity, the outline's contrast,
the centre prior) and reads the scene from them: many objects on an even background, or one
object; a dark field. Every function works on a :class:`~napari_deepcut.graph.Graph` and node
arrays; none trains a network.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from .graph import Graph, node_means
from .image import PreparedImage


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
