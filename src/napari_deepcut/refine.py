"""Pixel-level refinement of a node labelling along its boundaries.

A superpixel (or pixel block) that straddles an object's edge takes one label as a whole. Here the
pixels of every node that touches a node of another label choose, one by one, the label of the
node, among their own and those touching it, whose mean colour is nearest to their own:

.. math:: \\ell(p) = \\ell\\big(\\arg\\min_{j \\in \\{i\\} \\cup N(i)} |x_p - \\bar x_j|^2\\big), \\quad p \\in i,

with :math:`N(i)` the nodes touching node i, :math:`x_p` the pixel's colour
and :math:`\\bar x_j` node j's mean colour. Nodes inside a region of one label keep it.
"""

from __future__ import annotations

import numpy as np

from .graph import Graph, node_means
from .image import PreparedImage


def refine_labels(graph: Graph, node_values: np.ndarray, image: PreparedImage) -> np.ndarray:
    """Paint ``node_values`` onto the pixels, re-deciding the pixels of boundary nodes by colour.

    Parameters
    ----------
    graph : Graph
        The graph the values belong to (its touching edges define the neighbours).
    node_values : ndarray of int or bool, shape (n,)
        A label per node (foreground flag, cluster or part).
    image : PreparedImage
        The image the graph was built from; colours are Lab / 100 for RGB, else intensities
        (unsmoothed: smoothing them first scored lower on the development sets).

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
    crossing = values[edges[:, 0]] != values[edges[:, 1]]
    # candidate pairs (node -> itself or a touching node) for nodes on a boundary, bigger than a pixel
    nodes = np.arange(graph.n_nodes)
    source = np.r_[nodes, edges[:, 0], edges[:, 1]]
    target = np.r_[nodes, edges[:, 1], edges[:, 0]]
    on_boundary = np.zeros(graph.n_nodes, bool)
    on_boundary[edges[crossing].ravel()] = True
    keep = on_boundary[source] & (graph.sizes[source] > 1)
    if not keep.any():
        return labels
    order = np.argsort(source[keep], kind="stable")
    source, target = source[keep][order], target[keep][order]
    degree = np.bincount(source, minlength=graph.n_nodes)
    first = np.cumsum(degree) - degree  # where each node's candidates start

    colour = image.colour
    means = node_means(colour, graph.node_labels, graph.n_nodes)

    flat = graph.node_labels.ravel()
    pixels = np.flatnonzero((flat >= 0) & (degree[np.maximum(flat, 0)] > 0))
    node = flat[pixels]
    counts = degree[node]
    total = int(counts.sum())
    group_start = np.cumsum(counts) - counts
    within = np.arange(total) - np.repeat(group_start, counts)
    candidate = target[np.repeat(first[node], counts) + within]
    difference = colour.reshape(flat.size, -1)[np.repeat(pixels, counts)] - means[candidate]
    distance = np.einsum("ij,ij->i", difference, difference)
    # the nearest candidate of each pixel: the minimum within each pixel's run
    nearest = np.minimum.reduceat(distance, group_start)
    is_nearest = distance == np.repeat(nearest, counts)
    winner = np.full(len(pixels), -1, np.int64)
    runs = np.repeat(np.arange(len(pixels)), counts)
    winner[runs[is_nearest][::-1]] = candidate[is_nearest][::-1]  # first nearest wins ties
    labels.reshape(-1)[pixels] = values[winner]  # labels is a fresh array: painted in place
    return labels
