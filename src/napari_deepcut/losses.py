"""Clustering objectives on a soft assignment ``S`` (n x k, rows sum to 1), all in sparse form.

The graph is given by its undirected edges ``(i, j)`` (each listed once) and weights ``w_ij``; with
``d_i = sum_j w_ij`` the degrees. No n x n matrix is ever formed:

``Tr(S^T A S) = 2 sum_{edges} w_ij <s_i, s_j>``  and  ``Tr(S^T D S) = sum_i d_i |s_i|^2``.
"""

from __future__ import annotations

import math

import torch


def association(S: torch.Tensor, edges: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``Tr(S^T A S) = sum_ij A_ij <s_i, s_j>`` for a symmetric sparse A given by its edges."""
    return 2.0 * (weights * (S[edges[:, 0]] * S[edges[:, 1]]).sum(1)).sum()


def _orthogonality(S: torch.Tensor) -> torch.Tensor:
    r""":math:`\| S^T S / \|S^T S\|_F - I_k / \sqrt{k} \|_F`: 0 for crisp clusters of equal size."""
    k = S.shape[1]
    gram = S.T @ S
    identity = torch.eye(k, dtype=S.dtype, device=S.device) / math.sqrt(k)
    return torch.linalg.matrix_norm(gram / torch.linalg.matrix_norm(gram).clamp_min(1e-12) - identity)


def ncut_loss(
    S: torch.Tensor, edges: torch.Tensor, weights: torch.Tensor, degree: torch.Tensor
) -> torch.Tensor:
    r"""Relaxed normalized cut (Shi & Malik 2000), each cluster normalised by its own volume
    (the soft N-cut of Tang et al. 2018).

    .. math::

        L = \frac{1}{k} \sum_{c=1}^{k} \frac{cut(c)}{vol(c)}
          = \frac{1}{k} \sum_c \frac{s_c^T A (1 - s_c)}{d^T s_c}
          = 1 - \frac{1}{k} \sum_c \frac{s_c^T A s_c}{d^T s_c}

    where :math:`s_c` is column c of S. For one-hot S it is exactly the discrete normalized cut.
    Unlike the MinCutPool form (:func:`mincut_loss`) it lets clusters differ in size (a small
    object on a large background): each cluster pays for the weight it cuts relative to its own
    volume, so splitting a uniform region costs more than following a colour edge; an empty or
    uniformly smeared cluster scores 1, the worst value.
    """
    k = S.shape[1]
    i, j = edges[:, 0], edges[:, 1]
    within = 2.0 * (weights[:, None] * S[i] * S[j]).sum(0)  # s_c^T A s_c, one per cluster
    volume = degree @ S  # d^T s_c
    return 1.0 - (within / volume.clamp_min(1e-12)).sum() / k


def mincut_loss(
    S: torch.Tensor, edges: torch.Tensor, weights: torch.Tensor, degree: torch.Tensor
) -> torch.Tensor:
    r"""Relaxed normalized cut with an orthogonality term, in the MinCutPool form (Bianchi et al.
    2020) that DeepCut trains with.

    .. math::

        L = -\frac{Tr(S^T A S)}{Tr(S^T D S)}
            + \left\| \frac{S^T S}{\|S^T S\|_F} - \frac{I_k}{\sqrt{k}} \right\|_F

    The orthogonality term favours clusters of equal size: on a sparse local graph a balanced
    straight cut through a uniform region can score better than the object's true boundary, which
    is why :func:`ncut_loss` is the default.
    """
    cut = -association(S, edges, weights) / (degree * (S * S).sum(1)).sum().clamp_min(1e-12)
    return cut + _orthogonality(S)


def correlation_clustering_loss(S: torch.Tensor, Z: torch.Tensor, shift: float) -> torch.Tensor:
    r"""Correlation clustering over all node pairs, with affinities factorised as ``W = Z Z^T``.

    Shifting the affinities by ``shift`` makes the low ones repulsive, ``W' = W - shift 1 1^T``:

    .. math::

        L = -\frac{1}{n^2} \sum_{ij} W'_{ij} \langle s_i, s_j \rangle
          = -\frac{1}{n^2} \left( \|Z^T S\|_F^2 - shift \, \|S^T 1\|^2 \right)

    Pairs with ``w_ij > shift`` pull together, the others push apart, so the number of clusters is
    found, not given: ``k`` is only an upper bound and unused clusters stay empty ("K-less").
    """
    n = S.shape[0]
    attraction = (Z.T @ S).square().sum()
    repulsion = shift * S.sum(0).square().sum()
    return -(attraction - repulsion) / (n * n)


def modularity_loss(
    S: torch.Tensor,
    edges: torch.Tensor,
    weights: torch.Tensor,
    degree: torch.Tensor,
    collapse_weight: float = 0.1,
) -> torch.Tensor:
    r"""Spectral modularity with the collapse regulariser of DMoN (Tsitsulin et al. 2023).

    .. math::

        L = -\frac{1}{2m} \left( Tr(S^T A S) - \frac{\|S^T d\|^2}{2m} \right)
            + \lambda \left( \frac{\sqrt{k}}{n} \left\| \textstyle\sum_i s_i \right\| - 1 \right)

    with ``2m = sum_i d_i``. The regulariser uses the cluster sizes ``sum_i s_i`` (a sum over
    nodes): it is 0 for equal clusters and grows to ``sqrt(k) - 1`` when all nodes collapse into one.
    """
    n, k = S.shape
    two_m = degree.sum().clamp_min(1e-12)
    modularity = (association(S, edges, weights) - (S.T @ degree).square().sum() / two_m) / two_m
    collapse = math.sqrt(k) / n * torch.linalg.vector_norm(S.sum(0)) - 1.0
    return -modularity + collapse_weight * collapse
