"""The engine's fast paths give what the plain computation gives: SLIC at a reduced working
resolution and on the cached Lab, the blocked network with its hand-written backward, the optimiser over one flat
buffer, the clusters' inner weight with its gradient from the forward's products, sort-based
unique, threaded Gaussian filters, separable upsampling of block levels, the nearest of two
labels in edge refinement, Lanczos for the leading eigenvectors."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.sparse.csgraph import connected_components
from skimage.data import astronaut
from skimage.segmentation import slic

from napari_deepcut import baselines, graph, refine, segment
from napari_deepcut.cluster import SINGLE_THREAD_NODES, FlatAdamW
from napari_deepcut.gnn import ClusterNet, _ClusterMLP
from napari_deepcut.image import _linear_upsampled, gaussian_in_threads, prepare_image
from napari_deepcut.losses import Affinity
from napari_deepcut.settings import Settings

# --- SLIC working resolution ---------------------------------------------------------------------


def test_slic_factors_follow_pixels_per_superpixel():
    assert graph.slic_factors((512, 512), (1.0, 1.0), 1000) == (1, 1)  # 262 pixels per superpixel
    assert graph.slic_factors((2048, 2048), (1.0, 1.0), 1000) == (2, 2)  # 4194 -> 1049
    assert graph.slic_factors((2048, 2048), (1.0, 1.0), 100) == (9, 9)  # 41943 -> 518
    assert graph.slic_factors((2048, 2048), (1.0, 1.0), 1000, np.inf) == (1, 1)
    # coarse axes are reduced less: blocks about as long along every axis in physical units
    assert graph.slic_factors((64, 512, 512), (4.0, 1.0, 1.0), 1000) == (1, 5, 5)
    assert graph.slic_factors((256, 256, 256), (1.0, 1.0, 1.0), 1000) == (3, 3, 3)
    assert graph.slic_factors((4, 4000), (1.0, 1.0), 2) == (2, 8)  # at most half an axis


def test_block_mean_averages_partial_blocks_too():
    data = np.random.default_rng(0).random((7, 5, 2)).astype(np.float32)
    small = graph._block_mean(data, (2, 3))
    assert small.shape == (4, 2, 2)
    for i in range(4):
        for j in range(2):
            block = data[2 * i : 2 * i + 2, 3 * j : 3 * j + 3]
            assert np.allclose(small[i, j], block.reshape(-1, 2).mean(0), atol=1e-6)


def test_superpixels_on_the_cached_lab_match_slic_converting_itself():
    """SLIC on ``image.colour`` (Lab / 100, computed once per image) gives what SLIC's own Lab
    conversion gives for an RGB image spanning 0-1."""
    prepared = prepare_image(astronaut())
    assert prepared.data.min() == 0.0 and prepared.data.max() == 1.0
    ours = graph.superpixel_labels(prepared, 1000, compactness=10.0, iterations=4)
    theirs = slic(prepared.data, n_segments=1000, compactness=10.0, sigma=1.0, max_num_iter=4,
                  convert2lab=True, enforce_connectivity=True, start_label=0, channel_axis=-1)
    assert np.array_equal(ours, graph._consecutive(theirs.astype(np.int64)))


def test_slic_compactness_is_read_in_the_colour_units():
    """SLIC stretches its input to [0, 1]: ``_slic`` undoes that, so scaling the colour and the
    compactness together, or shifting the colour, leaves the superpixels unchanged; a crop of low
    contrast is not stretched to full contrast."""
    colour = np.random.default_rng(0).random((96, 96, 1)).astype(np.float32)
    colour[:, 48:] += 0.5
    options = dict(compactness=0.1, sigma=1.0, max_num_iter=4, spacing=np.ones(2), convert2lab=False,
                   enforce_connectivity=True, start_label=0, channel_axis=-1)
    base = graph._slic(colour, 50, options, (1, 1))
    assert np.array_equal(graph._slic(colour * 4 + 2, 50, options | {"compactness": 0.4}, (1, 1)), base)
    assert not np.array_equal(graph._slic(colour * 4, 50, options, (1, 1)), base)


def _large_disk(shape=(480, 480)):
    rng = np.random.default_rng(0)
    yy, xx = np.indices(shape)
    truth = (yy - 230) ** 2 + (xx - 250) ** 2 < 130**2
    image = np.where(truth[..., None], [200, 70, 50], [40, 110, 190]) + rng.normal(0, 12, (*shape, 3))
    return np.clip(image, 0, 255).astype(np.uint8), truth


def _ceiling(labels, truth) -> float:
    """IoU of the best foreground made of whole superpixels."""
    inside = np.bincount(labels[labels >= 0], weights=truth[labels >= 0])
    size = np.bincount(labels[labels >= 0])
    best = np.append(inside * 2 > size, False)[labels]
    return (best & truth).sum() / (best | truth).sum()


@pytest.mark.parametrize("masked", [False, True])
def test_superpixels_at_reduced_resolution_match_full_resolution(masked):
    image, truth = _large_disk()
    prepared = prepare_image(image)
    mask = None
    if masked:
        mask = np.zeros(truth.shape, bool)
        mask[60:420, 40:440] = True
    assert graph.slic_factors(truth.shape, (1.0, 1.0), 40) == (3, 3)
    reduced = graph.superpixel_labels(prepared, 40, mask=mask)
    full = graph.superpixel_labels(prepared, 40, mask=mask, min_pixels=np.inf)
    assert reduced.shape == truth.shape and reduced.dtype == np.int64
    n = reduced.max() + 1
    assert np.array_equal(np.unique(reduced[reduced >= 0]), np.arange(n))  # consecutive
    assert abs(n - (full.max() + 1)) <= 0.2 * n
    if masked:
        assert np.array_equal(reduced >= 0, mask)
    else:  # SLIC's connectivity survives the upsampling
        assert all(ndimage.label(reduced == i)[1] == 1 for i in range(n))
    assert _ceiling(reduced, truth) >= _ceiling(full, truth) - 0.01


def test_the_default_slic_iterations_keep_the_superpixel_ceiling():
    """SLIC's k-means settles in a few iterations: the default number places superpixel edges as
    well as ten do, while one iteration leaves the superpixels on their starting grid."""
    image, truth = _large_disk()
    prepared = prepare_image(image)

    def ceiling(iterations):
        settings = Settings(n_segments=40, slic_iterations=iterations)
        return _ceiling(graph.build_graph(prepared, settings, long_range=False).node_labels, truth)

    ten = ceiling(10)
    assert ceiling(1) < ten - 0.1
    assert ceiling(Settings().slic_iterations) >= ten - 0.01


# --- the network -------------------------------------------------------------------------------


@pytest.mark.parametrize("n, k, d", [(7, 2, 3), (5000, 4, 1)])
def test_blocked_network_matches_autograd(n, k, d):
    torch.manual_seed(0)
    net = ClusterNet(d, k)
    plain = copy.deepcopy(net)
    x, upstream = torch.randn(n, d), torch.randn(n, k)
    S = net(x)  # 5000 rows: three blocks, the last one partial
    (S * upstream).sum().backward()
    S_plain = torch.softmax(plain.mlp(plain.conv(x)), -1)
    (S_plain * upstream).sum().backward()
    assert torch.allclose(S, S_plain, atol=1e-6)
    for p, q in zip(net.parameters(), plain.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-5 * q.grad.abs().max().item())


def test_blocked_network_gradient_is_exact():
    torch.manual_seed(0)
    net = ClusterNet(3, 3, 8, 5).double()
    x = torch.randn(40, 3, dtype=torch.double, requires_grad=True)

    def run(x, *weights):  # blocks of 16 rows; fresh activation buffers for every evaluation
        buffers = torch.empty(40, 8, dtype=torch.double), torch.empty(40, 5, dtype=torch.double)
        return _ClusterMLP.apply(x, 16, 1, *buffers, *weights)

    assert torch.autograd.gradcheck(run, (x, *net.parameters()), fast_mode=True)


def test_blocked_network_on_several_threads_matches_one_thread():
    torch.manual_seed(0)
    start = ClusterNet(3, 2)
    x, upstream = torch.randn(9000, 3), torch.randn(9000, 2)  # 5 blocks of 2048 rows
    before = torch.get_num_threads()
    runs = []
    for threads in (1, 3):
        net = copy.deepcopy(start)
        torch.set_num_threads(threads)
        try:
            S = net(x)
            (S * upstream).sum().backward()
        finally:
            torch.set_num_threads(before)
        runs.append((S.detach(), [p.grad for p in net.parameters()]))
    (S1, grads1), (S3, grads3) = runs
    assert torch.equal(S1, S3)  # every row is computed alike, whichever thread runs it
    for p, q in zip(grads1, grads3):  # each block's share is summed in block order
        assert torch.equal(p, q)


def test_training_on_many_nodes_gives_the_same_result_on_one_and_two_threads():
    """A graph over SINGLE_THREAD_NODES trains on every thread; the seed still fixes the result."""
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[:256, :256]
    image = ((rows - 128) ** 2 + (cols - 100) ** 2 < 60**2) * 0.5 + rng.normal(0, 0.05, (256, 256))
    settings = dict(seed=0, nodes="pixels", downsample=1, laplacian_features=0, epochs=40)
    before = torch.get_num_threads()
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        try:
            results.append(segment(image, parts=2, **settings))
        finally:
            torch.set_num_threads(before)
    one, two = results
    assert one.foreground_stage.graph.n_nodes > SINGLE_THREAD_NODES
    for stage in ("foreground_stage", "parts_stage"):
        first, second = getattr(one, stage).clustering, getattr(two, stage).clustering
        assert first.loss_history == second.loss_history
        assert np.array_equal(first.assignments, second.assignments)
    assert np.array_equal(one.foreground, two.foreground) and np.array_equal(one.parts, two.parts)


def test_a_second_call_before_backward_is_an_error_not_a_wrong_gradient():
    net = ClusterNet(3, 2)
    first = net(torch.randn(50, 3))
    net(torch.randn(50, 3))  # overwrites the shared activation buffers
    with pytest.raises(RuntimeError, match="inplace"):
        first.sum().backward()


def test_flat_adamw_steps_as_torch_adamw_bit_for_bit():
    torch.manual_seed(0)
    start = ClusterNet(4, 3, 16, 8)
    x = torch.randn(300, 4)
    runs = []
    for make in (lambda p: FlatAdamW(p, lr=0.03), lambda p: torch.optim.AdamW(p, lr=0.03, foreach=False)):
        net = copy.deepcopy(start)
        optimiser = make(net.parameters())
        for _ in range(50):
            optimiser.zero_grad()
            S = net(x)
            (S[:, 0] * x[:, 0]).mean().add(S.square().mean()).backward()
            optimiser.step()
        runs.append([p.detach().clone() for p in net.parameters()])
    for flat, plain in zip(*runs):
        assert torch.equal(flat, plain)


def test_training_does_not_load_torch_compiler():
    # torch's own optimisers import torch._dynamo (seconds, and triton where installed)
    import subprocess
    import sys

    code = (
        "import sys, numpy as np; from napari_deepcut import segment; "
        "segment(np.random.default_rng(0).random((32, 32)), epochs=3); "
        "print('torch._dynamo' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


# --- losses ------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
@pytest.mark.parametrize("parts", ["local", "factors", "both"])
def test_within_cluster_weight_and_gradient_match_autograd(parts):
    rng = np.random.default_rng(0)
    n, k = 300, 3
    i, j = rng.integers(0, n, (2, 2000))
    dense = np.zeros((n, n), np.float32)
    dense[i, j] = dense[j, i] = rng.random(2000).astype(np.float32)
    local = torch.from_numpy(dense).to_sparse_csr() if parts != "factors" else None
    factors = torch.from_numpy(rng.normal(size=(n, 16)).astype(np.float32)) if parts != "local" else None
    W = Affinity(local=local, factors=factors, local_scale=0.7, factor_scale=0.2)
    weights = torch.tensor([1.0, -2.0, 0.5])
    S = torch.softmax(torch.from_numpy(rng.normal(size=(n, k)).astype(np.float32)), 1).requires_grad_()
    (W.within(S) * weights).sum().backward()
    fast = S.grad.clone()
    S.grad = None
    plain = (S * (W @ S)).sum(0)
    (plain * weights).sum().backward()
    assert torch.allclose(W.within(S.detach()), plain.detach(), rtol=1e-5)
    assert torch.allclose(fast, S.grad, rtol=1e-4, atol=1e-5 * S.grad.abs().max().item())


# --- edges -------------------------------------------------------------------------------------


def test_unique_by_sorting_matches_numpy():
    keys = np.random.default_rng(0).integers(0, 1000, 5000)
    assert np.array_equal(graph._unique(keys), np.unique(keys))
    assert graph._unique(np.empty(0, np.int64)).size == 0


# --- filters and interpolation -----------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, widths",
    [((1100, 1000, 1), (1.5, 1.5, 0)), ((20, 256, 256, 1), (0.5, 1.5, 1.5, 0)), ((1024, 1030, 3), (0, 2.0, 0))],
)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_threaded_gaussian_is_scipys_bit_for_bit(shape, widths, threads):
    array = np.random.default_rng(0).random(shape, np.float32)
    assert np.array_equal(gaussian_in_threads(array, widths, threads), ndimage.gaussian_filter(array, widths))


@pytest.mark.parametrize(
    "levels, block, shape", [((5, 9, 9), (10, 30, 30), (48, 256, 260)), ((7, 11), (37, 37), (256, 400)), ((1, 4), (50, 60), (50, 230))]
)
def test_separable_upsampling_matches_linear_zoom(levels, block, shape):
    values = np.random.default_rng(0).random(levels)
    zoomed = ndimage.zoom(values, block, order=1, mode="nearest", grid_mode=True)[tuple(slice(0, n) for n in shape)]
    upsampled = _linear_upsampled(values, block, shape)
    assert upsampled.shape == shape and upsampled.dtype == np.float32
    assert np.allclose(upsampled, zoomed, rtol=0, atol=2e-7)


def _nearest_labels_one_by_one(colour, mean, present, row, band_width):
    """The plain rule: per pixel, labels by distance (first wins ties), and the band test."""
    nearest, band = [], []
    for c, r in zip(colour, row):
        distance = [((c - mean[r, label]) ** 2).sum() if present[r, label] else np.inf for label in range(mean.shape[1])]
        order = np.argsort(distance, kind="stable")
        first, second = order[0], order[1] if len(order) > 1 else order[0]
        step = ((mean[r, first] - mean[r, second]) ** 2).sum()
        nearest.append(first)
        band.append(len(order) > 1 and np.isfinite(distance[second]) and distance[second] - distance[first] < 2 * band_width * step)
    return np.array(nearest), np.array(band)


@pytest.mark.parametrize("labels, channels", [(2, 1), (2, 3), (3, 3), (1, 1)])
def test_nearest_labels_follow_the_plain_rule(labels, channels):
    rng = np.random.default_rng(0)
    rows, pixels = 50, 3000
    mean = (rng.integers(0, 4, (rows, labels, channels)) / 4).astype(np.float32)  # ties, too
    present = rng.random((rows, labels)) < 0.8
    present[np.arange(rows), rng.integers(0, labels, rows)] = True
    row = rng.integers(0, rows, pixels).astype(np.int32)
    colour = (rng.integers(0, 8, (pixels, channels)) / 8).astype(np.float32)
    nearest, band = refine._nearest_labels(colour, mean, present, row, 0.125, chunk=1000)
    plain_nearest, plain_band = _nearest_labels_one_by_one(colour, mean, present, row, 0.125)
    assert np.array_equal(nearest, plain_nearest)
    assert np.array_equal(band, plain_band)


# --- leading eigenvectors --------------------------------------------------------------------------


def _eigenpairs(graph_, count):
    return baselines._leading_eigenpairs(graph_, count, 0.3, np.random.default_rng(0))


def test_lanczos_gives_the_dense_solvers_eigenpairs_with_one_sign(monkeypatch):
    built = graph.build_graph(prepare_image(astronaut()[::2, ::2]), Settings(n_segments=300))
    values, vectors = _eigenpairs(built, 7)
    monkeypatch.setattr(baselines, "_lanczos", lambda *args: None)  # what it falls back to
    dense_values, dense_vectors = _eigenpairs(built, 7)
    assert np.all(np.diff(values) <= 0) and np.isclose(values[0], 1.0)
    assert np.allclose(values, dense_values, atol=1e-10)
    assert np.allclose(vectors, dense_vectors, atol=1e-8)  # the same sign too
    largest = vectors[np.abs(vectors).argmax(0), np.arange(7)]
    assert (largest > 0).all()


def test_a_graph_of_several_components_keeps_its_repeated_eigenvalue_one():
    """Two separate squares, touching edges only: the eigenvalue 1 is double, which Lanczos finds
    unreliably, so the dense solver answers."""
    image = np.zeros((40, 60), np.uint8)
    image[5:35, 5:25], image[5:35, 35:55] = 200, 90
    mask = image > 0
    built = graph.build_graph(prepare_image(image), Settings(n_segments=40), mask=mask, long_range=False)
    assert connected_components(graph.affinity_matrix(built, 0.3) > 0, directed=False)[0] == 2
    values, _ = _eigenpairs(built, 3)
    assert np.allclose(values[:2], 1.0) and values[2] < 1.0 - 1e-6
