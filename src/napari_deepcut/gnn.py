"""The clustering network: one graph convolution, an MLP and a softmax, in plain torch."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

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


def _softmax_(z: torch.Tensor) -> torch.Tensor:
    """Row softmax in place (torch's kernel is slow on CPU for the few columns we have)."""
    z.sub_(z.amax(1, keepdim=True)).exp_()
    return z.div_(z.sum(1, keepdim=True))


def _elu_(z: torch.Tensor) -> torch.Tensor:
    r"""ELU (alpha = 1) in place, :math:`\max(z, 0) + \exp(\min(z, 0)) - 1`. Torch's ``elu`` goes
    through ``expm1``, which we measured 1.4-6.5x slower than ``exp`` on one CPU (the two forms
    differ by < 1e-7)."""
    negative = z.clamp_max(0).exp_().sub_(1)
    return z.clamp_min_(0).add_(negative)


_POOLS: dict[int, ThreadPoolExecutor] = {}  # by number of threads


def _in_parallel(work: Callable[[list[slice]], object], n: int, rows: int, workers: int) -> list:
    """``work(blocks)`` on ``workers`` contiguous runs of the row blocks ``[0, rows)``,
    ``[rows, 2 rows)``, ... of n rows, each run in its own thread with single-threaded torch ops;
    the results in run order. One parallel region per call instead of one per operation: on a busy
    machine, each of torch's parallel regions waits for the slowest thread."""
    blocks = [slice(start, start + rows) for start in range(0, n, rows)]
    workers = max(1, min(workers, len(blocks)))
    runs = [blocks[len(blocks) * w // workers : len(blocks) * (w + 1) // workers] for w in range(workers)]
    if workers == 1:
        return [work(blocks)]
    if workers not in _POOLS:
        _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="napari-deepcut")
    grad_mode, threads = torch.is_grad_enabled(), torch.get_num_threads()

    def in_thread(run):
        with torch.set_grad_enabled(grad_mode):  # grad mode is per thread
            return work(run)

    torch.set_num_threads(1)  # the worker threads see it too
    try:
        return list(_POOLS[workers].map(in_thread, runs))
    finally:
        torch.set_num_threads(threads)


class _ClusterMLP(torch.autograd.Function):
    r""":math:`S = softmax(ELU(ELU(X W_1^T + b_1) W_2^T + b_2) W_3^T + b_3)` with a hand-written
    backward, one block of rows at a time.

    Autograd's version runs every layer over all n rows, so each n x 64 intermediate makes a round
    trip to main memory several times per epoch. Here forward and backward walk through blocks of
    ``rows`` rows that stay in the CPU cache (``workers`` threads, each on its own run of blocks);
    the activations :math:`A_1, A_2` are written once into reused buffers, and the ELU's
    derivative is read off its output, :math:`ELU'(z) = \min(ELU(z), 0) + 1` (alpha = 1). With
    :math:`G_3 = S \odot (G - (G \odot S) 1 1^T)` (softmax backward for the incoming gradient G):
    :math:`\nabla W_3 = G_3^T A_2`, :math:`G_2 = (G_3 W_3) \odot ELU'(Z_2)`,
    :math:`\nabla W_2 = G_2^T A_1`, :math:`G_1 = (G_2 W_2) \odot ELU'(Z_1)`,
    :math:`\nabla W_1 = G_1^T X`, and each bias gradient is the column sum of its :math:`G`.
    The sums over rows of :math:`\nabla W_1, \nabla W_2` and their biases are taken block by
    block and added in block order, so they are the same bit for bit on any number of threads.
    """

    @staticmethod
    def forward(ctx, x, rows, workers, A1, A2, w1, b1, w2, b2, w3, b3):
        S = torch.empty(len(x), len(w3), dtype=x.dtype, device=x.device)

        def run(blocks):
            for block in blocks:
                a1 = _elu_(torch.addmm(b1, x[block], w1.T, out=A1[block]))
                a2 = _elu_(torch.addmm(b2, a1, w2.T, out=A2[block]))
                torch.addmm(b3, a2, w3.T, out=S[block])

        _in_parallel(run, len(x), rows, workers)
        _softmax_(S)
        ctx.rows, ctx.workers = rows, workers
        ctx.save_for_backward(x, A1, A2, S, w1, w2, w3)
        return S

    @staticmethod
    def backward(ctx, G):
        x, A1, A2, S, w1, w2, w3 = ctx.saved_tensors
        G3 = S * (G - (G * S).sum(1, keepdim=True))
        gx = torch.empty_like(x) if ctx.needs_input_grad[0] else None

        def run(blocks):  # each block's share of the weight gradients
            shares = []
            for block in blocks:
                a1, a2 = A1[block], A2[block]
                g2 = (G3[block] @ w3).mul_(a2.clamp_max(0).add_(1))
                g1 = (g2 @ w2).mul_(a1.clamp_max(0).add_(1))
                shares.append((g1.T @ x[block], g1.sum(0), g2.T @ a1, g2.sum(0)))
                if gx is not None:
                    torch.mm(g1, w1, out=gx[block])
            return shares

        # summed in block order, whichever thread computed each block: the gradients, and so
        # the training, do not depend on the number of threads
        shares = [share for run in _in_parallel(run, len(x), ctx.rows, ctx.workers) for share in run]
        gw1, gb1, gw2, gb2 = shares[0]
        for share in shares[1:]:
            for total, part in zip((gw1, gb1, gw2, gb2), share):
                total += part
        return gx, None, None, None, None, gw1, gb1, gw2, gb2, G3.T @ A2, G3.sum(0)


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
        self._activations: tuple[torch.Tensor, torch.Tensor] | None = None

    @staticmethod
    def propagate(adjacency: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        r"""The neighbourhood aggregation of the graph convolution, :math:`\hat A X`."""
        return torch.sparse.mm(adjacency, x)

    def forward(self, propagated: torch.Tensor) -> torch.Tensor:
        """S for the rows of ``propagated``. The hidden activations live in buffers reused from one
        call to the next (fresh n x 64 arrays every epoch cost page faults): backpropagate each
        call's output before the next call (torch raises an error otherwise)."""
        n = len(propagated)
        conv, hidden, out = self.conv, self.mlp[1], self.mlp[3]
        buffers = self._activations
        if buffers is None or len(buffers[0]) != n or buffers[0].device != propagated.device:
            options = {"dtype": propagated.dtype, "device": propagated.device}
            buffers = torch.empty(n, len(conv.weight), **options), torch.empty(n, len(hidden.weight), **options)
            self._activations = buffers
        # CPU: blocks of ~512 KiB of first-layer activations, one run of them per torch thread;
        # other devices: all rows at once.
        if propagated.device.type == "cpu":
            rows, workers = max(256, 2**17 // len(conv.weight)), torch.get_num_threads()
        else:
            rows, workers = max(n, 1), 1
        return _ClusterMLP.apply(
            propagated, rows, workers, *buffers,
            conv.weight, conv.bias, hidden.weight, hidden.bias, out.weight, out.bias,
        )
