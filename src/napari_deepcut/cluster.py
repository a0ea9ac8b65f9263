"""Train the clustering network on one graph: seed, device, stopping rule, progress and cancel."""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from . import losses
from .gnn import ClusterNet, normalized_adjacency
from .graph import Graph, affinity_factors, affinity_matrix
from .settings import Settings


class SegmentationCancelled(Exception):
    """Raised inside a run when its ``cancel`` callable returns True."""


@dataclass(frozen=True)
class Progress:
    """What a progress callback receives: after each epoch of training, and when a step without
    epochs begins (``step`` names it, e.g. ``"refining edges"``; ``epoch`` and ``epochs`` are 0
    and ``loss`` NaN), so that a long step on a large image is not mistaken for a hang."""

    stage: str
    epoch: int
    epochs: int
    loss: float
    step: str = ""


@dataclass
class Clustering:
    """The outcome of clustering one graph.

    Attributes
    ----------
    assignments : ndarray of float32, shape (n, k)
        Soft assignment S (rows sum to 1).
    labels : ndarray of int64, shape (n,)
        ``argmax`` of each row.
    loss_history : list of float
        Loss after each epoch (empty for non-iterative methods).
    """

    assignments: np.ndarray
    labels: np.ndarray
    loss_history: list[float] = field(default_factory=list)


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA, else MPS, else CPU; an explicit device must be available."""
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if device == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if device == "cuda" and not cuda:
        raise ValueError("device='cuda' was asked for, but torch sees no CUDA device")
    if device == "mps" and not mps:
        raise ValueError("device='mps' was asked for, but torch sees no MPS device")
    if device not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'mps', got {device!r}")
    return torch.device(device)


# Below this many nodes an epoch is too short to gain from a second CPU thread, and on a busy
# machine the threads' synchronisation can make it 10-100x slower.
SINGLE_THREAD_NODES = 50_000


@contextmanager
def _cpu_threads(n: int):
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class FlatAdamW:
    r"""AdamW (Loshchilov & Hutter 2019) over one flat buffer that holds all the parameters.

    With gradient :math:`g_t` at step t (betas :math:`\beta_1, \beta_2`, rate :math:`\eta`,
    decay :math:`\lambda`), as ``torch.optim.AdamW`` computes it:

    .. math::

        \theta \leftarrow \theta (1 - \eta \lambda), \quad
        m \leftarrow \beta_1 m + (1 - \beta_1) g_t, \quad
        v \leftarrow \beta_2 v + (1 - \beta_2) g_t^2,

        \theta \leftarrow \theta - \frac{\eta}{1 - \beta_1^t}
            \frac{m}{\sqrt{v / (1 - \beta_2^t)} + \epsilon}.

    The parameters become views of one buffer and their gradients are gathered into another, so a
    step is a handful of operations on one short vector, whatever the number of layers. Torch's
    optimisers import ``torch._dynamo`` when the first one is made (2.1 s on one CPU core, and
    triton where it is installed); this one needs nothing beyond tensor operations.

    Parameters
    ----------
    parameters : iterable of torch.nn.Parameter
        All on one device and of one dtype.
    lr, betas, eps, weight_decay
        As for ``torch.optim.AdamW`` (the same defaults).
    """

    def __init__(self, parameters, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2):
        self.parameters = list(parameters)
        self.flat = torch.cat([p.detach().reshape(-1) for p in self.parameters])
        start = 0
        for p in self.parameters:  # each parameter now lives in the flat buffer
            p.data = self.flat[start : start + p.numel()].view_as(p)
            start += p.numel()
        self.grad = torch.zeros_like(self.flat)
        self.m, self.v = torch.zeros_like(self.flat), torch.zeros_like(self.flat)
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.steps = 0

    def zero_grad(self) -> None:
        for p in self.parameters:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        (beta1, beta2), lr = self.betas, self.lr
        self.steps += 1
        torch.cat([p.grad.reshape(-1) for p in self.parameters], out=self.grad)
        self.flat.mul_(1 - lr * self.weight_decay)
        self.m.lerp_(self.grad, 1 - beta1)
        self.v.mul_(beta2).addcmul_(self.grad, self.grad, value=1 - beta2)
        denominator = (self.v.sqrt() / math.sqrt(1 - beta2**self.steps)).add_(self.eps)
        self.flat.addcdiv_(self.m, denominator, value=-lr / (1 - beta1**self.steps))


def node_inputs(graph: Graph, position_weight: float) -> np.ndarray:
    """The network's input X: node features and centroids, each column standardised, positions
    scaled by ``position_weight``."""

    def standardise(a: np.ndarray) -> np.ndarray:
        a = a.astype(np.float64)
        std = a.std(0)
        return (a - a.mean(0)) / np.where(std > 0, std, 1.0)

    parts = [standardise(graph.features)]
    if position_weight > 0:
        parts.append(position_weight * standardise(graph.positions))
    return np.concatenate(parts, axis=1).astype(np.float32)


def graph_affinity(graph: Graph, settings: Settings, device: torch.device) -> losses.Affinity:
    """:func:`~napari_deepcut.graph.affinity_matrix` as a torch operator on ``device``."""
    W = affinity_matrix(graph, settings.long_range_weight)
    W.sum_duplicates()  # canonical CSR (sorted indices), as torch expects; a no-op when it is
    # 32-bit indices make the CPU's product ~1.5x faster (less memory to stream through)
    index = np.int32 if device.type == "cpu" and W.nnz < 2**31 else np.int64
    with warnings.catch_warnings():  # "CSR support is in beta": matrix products are all we use
        warnings.simplefilter("ignore", UserWarning)
        local = torch.sparse_csr_tensor(
            torch.from_numpy(W.indptr.astype(index)),
            torch.from_numpy(W.indices.astype(index)),
            torch.from_numpy(W.data.astype(np.float32)),
            W.shape,
        ).to(device)
    return losses.Affinity(local=local)


def _loss_function(graph: Graph, loss: str, settings: Settings, device: torch.device) -> Callable:
    if loss == "cc":
        # Correlation clustering needs every pair (repulsion acts at any distance): W = Z Z^T.
        Z = torch.from_numpy(affinity_factors(graph.features, graph.sigma, seed=settings.seed)).to(device)
        W = losses.Affinity(factors=Z)
        return lambda S: losses.correlation_clustering_loss(S, W, settings.cc_shift)
    W = graph_affinity(graph, settings, device)
    if loss == "ncut":
        return lambda S: losses.ncut_loss(S, W)
    if loss == "mincut":
        return lambda S: losses.mincut_loss(S, W)
    if loss == "modularity":
        return lambda S: losses.modularity_loss(S, W)
    raise ValueError(f"loss must be one of 'ncut', 'mincut', 'cc', 'modularity', got {loss!r}")


def train_clustering(
    graph: Graph,
    n_clusters: int,
    settings: Settings,
    loss: str | None = None,
    stage: str = "",
    progress: Callable[[Progress], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> Clustering:
    """Fit a :class:`~napari_deepcut.gnn.ClusterNet` to one graph by minimising a clustering loss.

    AdamW, at most ``settings.epochs`` epochs; training stops once the lowest loss has improved
    by less than ``settings.tolerance`` (relative) over the last ``settings.patience`` epochs. The weights are initialised
    from ``settings.seed`` (the caller's global torch RNG is left untouched), so a CPU run is
    repeatable bit for bit.

    Raises
    ------
    SegmentationCancelled
        As soon as ``cancel()`` returns True (checked after every epoch).
    """
    device = resolve_device(settings.device)
    small = device.type == "cpu" and graph.n_nodes < SINGLE_THREAD_NODES
    with _cpu_threads(1 if small else torch.get_num_threads()):
        return _train(graph, n_clusters, settings, loss, stage, progress, cancel, device)


def _train(graph, n_clusters, settings, loss, stage, progress, cancel, device) -> Clustering:
    loss_fn = _loss_function(graph, loss or settings.loss, settings, device)
    adjacency = normalized_adjacency(graph.edges, graph.weights, graph.n_nodes).to(device)
    x = torch.from_numpy(node_inputs(graph, settings.position_weight)).to(device)
    propagated = ClusterNet.propagate(adjacency, x)

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(settings.seed)
        model = ClusterNet(x.shape[1], n_clusters, settings.conv_hidden, settings.mlp_hidden).to(device)
    optimiser = FlatAdamW(model.parameters(), lr=settings.learning_rate)

    history: list[float] = []
    lowest: list[float] = []  # running minimum of the loss
    for epoch in range(settings.epochs):
        optimiser.zero_grad()
        value = loss_fn(model(propagated))
        value.backward()
        optimiser.step()
        history.append(value.item())
        lowest.append(min(history[-1], lowest[-1]) if lowest else history[-1])
        if progress is not None:
            progress(Progress(stage, epoch + 1, settings.epochs, history[-1]))
        if cancel is not None and cancel():
            raise SegmentationCancelled(f"cancelled at epoch {epoch + 1} of {stage or 'training'}")
        if epoch >= settings.patience:
            gain = lowest[epoch - settings.patience] - lowest[epoch]
            if gain <= settings.tolerance * abs(lowest[epoch]):
                break

    with torch.no_grad():
        S = model(propagated).cpu().numpy()
    return Clustering(S, S.argmax(1), history)
