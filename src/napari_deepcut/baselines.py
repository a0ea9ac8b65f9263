"""Classical clustering on the same graph, for comparison with the network."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.cluster.vq import kmeans2
from scipy.sparse.linalg import lobpcg

from .cluster import Clustering
from .graph import Graph, affinity_matrix


def spectral_ncut(
    graph: Graph,
    n_clusters: int,
    seed: int = 0,
    long_range_weight: float = 0.0,
    find_k: bool = False,
) -> Clustering:
    r"""Spectral normalized cut (Shi & Malik 2000; Ng, Jordan & Weiss 2002) on the graph's affinities.

    W is the same affinity matrix the network is trained on
    (:func:`~napari_deepcut.graph.affinity_matrix`). The k leading eigenvectors U of
    :math:`D^{-1/2} W D^{-1/2}` (the k smallest of the normalised
    Laplacian :math:`I - D^{-1/2} W D^{-1/2}`) embed the nodes; their rows, scaled to unit length,
    are grouped by k-means.

    With ``find_k`` (the classical K-less counterpart of correlation clustering), ``n_clusters``
    is an upper bound and k is chosen by the eigengap heuristic (von Luxburg 2007): the leading
    eigenvalues :math:`\lambda_1 \ge \lambda_2 \ge \dots` give
    :math:`k = rg\max_{2 \le k \le K} (\lambda_k - \lambda_{k+1})`.

    Returns
    -------
    Clustering
        Hard assignments (one-hot ``assignments``, ``n_clusters`` columns), no loss history.
    """
    n = graph.n_nodes
    W = affinity_matrix(graph, long_range_weight)
    scale = sp.diags(1.0 / np.sqrt(np.asarray(W.sum(1)).ravel() + 1e-12))
    M = scale @ W @ scale
    rng = np.random.default_rng(seed)
    wanted = min(n_clusters + 1 if find_k else n_clusters, n)
    if n <= 3000:
        values, U = np.linalg.eigh(M.toarray())
        values, U = values[-wanted:], U[:, -wanted:]
    else:  # LOBPCG copes with the repeated eigenvalue 1 of graphs with several components
        values, U = lobpcg(M, rng.standard_normal((n, wanted)), largest=True, tol=1e-5, maxiter=500)
    order = np.argsort(values)[::-1]  # decreasing eigenvalues
    values, U = values[order], U[:, order]
    k = n_clusters
    if find_k and len(values) > 2:
        k = int(np.argmax(values[1:-1] - values[2:])) + 2
    U = U[:, :k]
    U = U / np.maximum(np.linalg.norm(U, axis=1, keepdims=True), 1e-12)
    _, labels = kmeans2(U, k, minit="++", seed=rng)
    labels = labels.astype(np.int64)
    return Clustering(np.eye(n_clusters, dtype=np.float32)[labels], labels, [])
