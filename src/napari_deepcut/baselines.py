"""Classical clustering on the same graph, for comparison with the network."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.cluster.vq import kmeans2
from scipy.sparse.linalg import eigsh

from .cluster import Clustering
from .graph import Graph


def spectral_ncut(graph: Graph, n_clusters: int, seed: int = 0) -> Clustering:
    r"""Spectral normalized cut (Shi & Malik 2000; Ng, Jordan & Weiss 2002) on the graph's affinities.

    The k leading eigenvectors U of :math:`D^{-1/2} W D^{-1/2}` (the k smallest of the normalised
    Laplacian :math:`I - D^{-1/2} W D^{-1/2}`) embed the nodes; their rows, scaled to unit length,
    are grouped by k-means.

    Returns
    -------
    Clustering
        Hard assignments (one-hot ``assignments``), no loss history.
    """
    n = graph.n_nodes
    i, j = graph.edges[:, 0], graph.edges[:, 1]
    W = sp.coo_matrix(
        (np.concatenate([graph.weights, graph.weights]).astype(np.float64), (np.r_[i, j], np.r_[j, i])),
        shape=(n, n),
    ).tocsr()
    degree = np.asarray(W.sum(1)).ravel() + 1e-12
    scale = sp.diags(1.0 / np.sqrt(degree))
    M = scale @ W @ scale
    rng = np.random.default_rng(seed)
    if n <= max(2 * n_clusters + 1, 64):
        _, U = np.linalg.eigh(M.toarray())
        U = U[:, -n_clusters:]
    else:
        _, U = eigsh(M, k=n_clusters, which="LA", v0=rng.uniform(-1, 1, n))
    U = U / np.maximum(np.linalg.norm(U, axis=1, keepdims=True), 1e-12)
    _, labels = kmeans2(U, n_clusters, minit="++", seed=rng)
    labels = labels.astype(np.int64)
    return Clustering(np.eye(n_clusters, dtype=np.float32)[labels], labels, [])
