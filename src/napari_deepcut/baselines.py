"""Classical clustering on the same graph, for comparison with the network."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.cluster.vq import kmeans2
from scipy.linalg import eigh
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh, lobpcg

from .cluster import Clustering, SegmentationCancelled
from .graph import Graph, affinity_matrix


def _leading_eigenpairs(graph: Graph, count: int, long_range_weight: float, rng, cancel=None) -> tuple:
    r"""The ``count`` largest eigenvalues (decreasing) and eigenvectors of
    :math:`D^{-1/2} W D^{-1/2}`, W the graph's affinity matrix. ``cancel()`` returning True stops
    the iterative solver at its next product (:class:`~napari_deepcut.cluster.SegmentationCancelled`).

    Up to 3000 nodes: Lanczos (ARPACK) when the graph is one component, else the dense solver;
    beyond: LOBPCG. Each eigenvector's sign, arbitrary by nature, is fixed by making its largest
    entry (in absolute value) positive, so every solver and LAPACK build gives the same vectors.
    """
    n = graph.n_nodes
    W = affinity_matrix(graph, long_range_weight)
    scale = sp.diags(1.0 / np.sqrt(np.asarray(W.sum(1)).ravel() + 1e-12))
    M = scale @ W @ scale
    count = min(count, n)
    pairs = _lanczos(M, W, count, rng) if n <= 3000 else None
    if pairs is None and n <= 3000:
        pairs = eigh(M.toarray(), subset_by_index=[n - count, n - 1])
    elif pairs is None:  # LOBPCG copes with the repeated eigenvalue 1 of graphs with several components
        operator = M
        if cancel is not None:  # checked at every product, so a GUI's Cancel stops it within ms
            product = lambda X: _product(M, X, cancel)  # noqa: E731
            operator = LinearOperator(M.shape, matvec=product, matmat=product, dtype=M.dtype)
        pairs = lobpcg(operator, rng.standard_normal((n, count)), largest=True, tol=1e-5, maxiter=500)
    values, vectors = pairs
    order = np.argsort(values)[::-1]
    vectors = vectors[:, order]
    largest = vectors[np.abs(vectors).argmax(0), np.arange(len(order))]
    return values[order], vectors * np.where(largest < 0, -1.0, 1.0)


def _lanczos(M, W, count: int, rng) -> tuple | None:
    """The leading eigenpairs of M by ARPACK's Lanczos iteration (~7x faster than the dense solver
    at 840 nodes, to machine precision); None when the graph has several components (its
    eigenvalue 1 is then repeated, which Lanczos finds unreliably), when ``count`` is too close to
    n for ARPACK, or when it does not converge."""
    n = M.shape[0]
    if count >= n - 1 or connected_components(W > 0, directed=False)[0] > 1:
        return None
    try:
        return eigsh(M, k=count, which="LA", v0=rng.standard_normal(n))
    except ArpackNoConvergence:
        return None


def _product(M, X, cancel):
    if cancel():
        raise SegmentationCancelled("cancelled while finding the number of clusters")
    return M @ X


def _largest_gap(values: np.ndarray, max_k: int) -> int:
    """k in 2..max_k with the largest gap lambda_k - lambda_{k+1} (eigenvalues decreasing)."""
    values = values[: max_k + 1]
    if len(values) < 3:
        return max(min(max_k, len(values)), 1)
    return int(np.argmax(values[1:-1] - values[2:])) + 2


def spectral_embedding(
    graph: Graph, count: int, long_range_weight: float = 0.0, seed: int = 0, cancel=None
) -> np.ndarray:
    r"""The nodes' coordinates on the ``count`` leading eigenvectors of :math:`D^{-1/2} W D^{-1/2}`
    (W the affinity matrix every clustering sees), each row scaled to unit length.

    These are the smoothest functions on the graph, the relaxed solutions of its normalized cut
    (Shi & Malik 2000): they change little inside a region and jump across its weak edges, so nodes
    on the same side of the graph's boundaries lie close together (Ng, Jordan & Weiss 2002). Used as
    node features, they are the Laplacian positional encodings of graph networks (Dwivedi et al.
    2020). ``cancel``: see :func:`_leading_eigenpairs`.

    Returns
    -------
    ndarray of float64, shape (n, min(count, n))
    """
    _, U = _leading_eigenpairs(graph, count, long_range_weight, np.random.default_rng(seed), cancel)
    return U / np.maximum(np.linalg.norm(U, axis=1, keepdims=True), 1e-12)


def eigengap_clusters(
    graph: Graph, max_k: int, long_range_weight: float = 0.0, seed: int = 0, cancel=None
) -> int:
    r"""The number of clusters of a graph by the eigengap heuristic (von Luxburg 2007).

    With :math:`\lambda_1 \ge \lambda_2 \ge \dots` the eigenvalues of
    :math:`D^{-1/2} W D^{-1/2}` (W the affinity matrix every clustering sees),
    :math:`k = \arg\max_{2 \le k \le K} (\lambda_k - \lambda_{k+1})`: k well-separated groups give k
    eigenvalues near 1 and a drop after them. ``cancel``: see :func:`_leading_eigenpairs`.
    """
    values, _ = _leading_eigenpairs(graph, max_k + 1, long_range_weight, np.random.default_rng(seed), cancel)
    return _largest_gap(values, max_k)


def spectral_ncut(
    graph: Graph,
    n_clusters: int,
    seed: int = 0,
    long_range_weight: float = 0.0,
    find_k: bool = False,
    cancel=None,
) -> Clustering:
    r"""Spectral normalized cut (Shi & Malik 2000; Ng, Jordan & Weiss 2002) on the graph's affinities.

    W is the same affinity matrix the network is trained on
    (:func:`~napari_deepcut.graph.affinity_matrix`). The k leading eigenvectors U of
    :math:`D^{-1/2} W D^{-1/2}` (the k smallest of the normalised
    Laplacian :math:`I - D^{-1/2} W D^{-1/2}`) embed the nodes; their rows, scaled to unit length,
    are grouped by k-means. With ``find_k``, ``n_clusters`` is an upper bound and k comes from the
    same eigenvalues by the eigengap (:func:`eigengap_clusters`). ``cancel``: see
    :func:`_leading_eigenpairs`.

    Returns
    -------
    Clustering
        Hard assignments (one-hot ``assignments``, ``n_clusters`` columns), no loss history.
    """
    rng = np.random.default_rng(seed)
    count = n_clusters + 1 if find_k else n_clusters
    values, U = _leading_eigenpairs(graph, count, long_range_weight, rng, cancel)
    k = _largest_gap(values, n_clusters) if find_k else n_clusters
    U = U[:, :k]
    U = U / np.maximum(np.linalg.norm(U, axis=1, keepdims=True), 1e-12)
    _, labels = kmeans2(U, k, minit="++", seed=rng)
    labels = labels.astype(np.int64)
    return Clustering(np.eye(n_clusters, dtype=np.float32)[labels], labels, [])
