"""The clustering network: one graph convolution, an MLP and a softmax, in plain torch."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def normalized_adjacency(edges: np.ndarray, weights: np.ndarray, n: int) -> torch.Tensor:
    r"""The GCN propagation matrix :math:`\hat A = \tilde D^{-1/2} (W + I) \tilde D^{-1/2}`
    (Kipf & Welling 2017) as a sparse n x n tensor; :math:`\tilde D` holds the row sums of W + I."""
    i, j = edges[:, 0], edges[:, 1]
    rows = np.concatenate([i, j, np.arange(n)])
    cols = np.concatenate([j, i, np.arange(n)])
    values = np.concatenate([weights, weights, np.ones(n, np.float32)]).astype(np.float64)
    degree = np.bincount(rows, weights=values, minlength=n)
    values = values / np.sqrt(degree[rows] * degree[cols])
    return torch.sparse_coo_tensor(
        torch.from_numpy(np.stack([rows, cols])), torch.from_numpy(values.astype(np.float32)), (n, n),
        check_invariants=False,
    ).coalesce()


class ClusterNet(nn.Module):
    r"""Soft cluster assignment :math:`S = softmax(MLP(\hat A X \Theta))`.

    The graph convolution's propagation :math:`\hat A X` does not depend on the weights, so it is
    computed once per graph (``propagate``) and training only runs the dense layers.

    Parameters
    ----------
    in_features : int
        Node feature size.
    n_clusters : int
        k, the width of the soft assignment.
    conv_hidden, mlp_hidden : int
        Widths of the graph convolution and of the MLP's hidden layer.
    """

    def __init__(self, in_features: int, n_clusters: int, conv_hidden: int = 64, mlp_hidden: int = 32):
        super().__init__()
        self.conv = nn.Linear(in_features, conv_hidden)
        self.mlp = nn.Sequential(
            nn.ELU(), nn.Linear(conv_hidden, mlp_hidden), nn.ELU(), nn.Linear(mlp_hidden, n_clusters)
        )

    @staticmethod
    def propagate(adjacency: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The neighbourhood aggregation of the graph convolution, :math:`\\hat A X`."""
        return torch.sparse.mm(adjacency, x)

    def forward(self, propagated: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.mlp(self.conv(propagated)), dim=-1)
