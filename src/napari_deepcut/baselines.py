"""Classical clustering on the same graph, for comparison with the network."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.cluster.vq import kmeans2
from scipy.sparse.linalg import lobpcg

from .cluster import Clustering
from .graph import Graph, affinity_matrix


def spectral_ncut(
    graph: Graph, n_clusters: int, seed: int = 0, long_range_weight: float = 0.0
) -> Clustering:
    r"""Spectral normalized cut (Shi & Malik 2000; Ng, Jordan & Weiss 2002) on the graph's affinities.

    W is the same affinity matrix the network is trained on
    (:func:`~napari_deepcut.graph.affinity_matrix`). The k leading eigenvectors U of
    :math:`D^{-1/2} W D^{-1/2}` (the k smallest of the normalised
    Laplacian :math:`I - D^{-1/2} W D^{-1/2}`) embed the nodes; their rows, scaled to unit length,
    are grouped by k-means.

    Returns
    -------
    Clustering
        Hard assignments (one-hot ``assignments``), no loss history.
    """
    n = graph.n_nodes
    W = affinity_matrix(graph, long_range_weight)
    scale = sp.diags(1.0 / np.sqrt(np.asarray(W.sum(1)).ravel() + 1e-12))
    M = scale @ W @ scale
    rng = np.random.default_rng(seed)
    if n <= 3000:
        _, U = np.linalg.eigh(M.toarray())
        U = U[:, -n_clusters:]
    else:  # LOBPCG copes with the repeated eigenvalue 1 of graphs with several components
        _, U = lobpcg(M, rng.standard_normal((n, n_clusters)), largest=True, tol=1e-5, maxiter=500)
    U = U / np.maximum(np.linalg.norm(U, axis=1, keepdims=True), 1e-12)
    _, labels = kmeans2(U, n_clusters, minit="++", seed=rng)
    labels = labels.astype(np.int64)
    return Clustering(np.eye(n_clusters, dtype=np.float32)[labels], labels, [])
