"""Pictures of results: label overlays, and the method-comparison figure of ``napari-deepcut compare``.

matplotlib (Agg backend) is imported only by :func:`comparison_figure` and :func:`grey_panels`,
and Pillow only by :func:`save_small_png`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .settings import Settings


def display_rgb(image, channel_axis: int | None = None) -> np.ndarray:
    """A 2D image as float RGB in [0, 1] for display (grey repeated, channels beyond 3 dropped)."""
    from .image import prepare_image

    prepared = prepare_image(image, channel_axis=channel_axis)
    if prepared.ndim != 2:
        raise ValueError(f"only 2D images can be drawn, got spatial shape {prepared.spatial_shape}")
    data = prepared.data
    if data.shape[-1] >= 3:
        return np.ascontiguousarray(data[..., :3])
    return np.repeat(data[..., :1], 3, axis=-1)


def overlay(rgb: np.ndarray, foreground: np.ndarray, parts: np.ndarray | None = None) -> np.ndarray:
    """The image with the background dimmed, parts tinted and the foreground outlined in yellow.

    Returns
    -------
    ndarray of uint8, ``(Y, X, 3)``
    """
    from skimage.color import label2rgb
    from skimage.segmentation import find_boundaries

    foreground = np.asarray(foreground) != 0
    picture = rgb.copy()
    if parts is not None and parts.any():
        picture = label2rgb(parts, rgb, alpha=0.35, bg_label=0, bg_color=None, image_alpha=1.0)
    picture = np.where(foreground[..., None], picture, 0.35 * picture)
    picture[find_boundaries(foreground, mode="inner")] = (1.0, 0.85, 0.0)
    return np.round(np.clip(picture, 0, 1) * 255).astype(np.uint8)


def save_small_png(figure, path, dpi: float) -> None:
    """Save a matplotlib figure as a PNG of at most 256 colours (photographs in panels: about a
    third of the bytes of a full-colour PNG, with little visible loss at this size).

    Parameters
    ----------
    figure : matplotlib.figure.Figure
        The figure (its pixel size is ``figure.get_size_inches() * dpi``).
    path : str or Path
        The PNG to write; its folder is created.
    dpi : float
        Resolution.
    """
    from io import BytesIO

    from PIL import Image

    buffer = BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    picture = Image.open(buffer).convert("RGB")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    picture.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)


def grey_panels(rows: list[list[tuple[np.ndarray, str]]], path, dpi: float = 80) -> None:
    """Save rows of 2D pictures, each ``(picture, title)``, drawn in grey without axes, as a PNG
    (the figures of ``scripts/``: a step with and without it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = max(len(row) for row in rows)
    figure, axes = plt.subplots(len(rows), columns, figsize=(3.5 * columns, 3.3 * len(rows)), squeeze=False)
    for row, axis_row in zip(rows, axes):
        for ax in axis_row:
            ax.axis("off")
        for (picture, title), ax in zip(row, axis_row):
            ax.imshow(picture, cmap="gray")
            ax.set_title(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=dpi)
    plt.close(figure)


def _timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def affinity_matrix(features: np.ndarray, sigma: float) -> np.ndarray:
    """Dense affinities between all node pairs, ``w_ij = exp(-|c_i - c_j|^2 / sigma)`` (n x n:
    for figures of a few hundred / thousand superpixels only)."""
    squared = (features**2).sum(1)
    dist2 = np.maximum(squared[:, None] + squared[None, :] - 2 * features @ features.T, 0)
    return np.exp(-dist2 / sigma)


def comparison_figure(
    image,
    path,
    settings: Settings | None = None,
    channel_axis: int | None = None,
    max_matrix_nodes: int = 1500,
) -> dict[str, float]:
    """One figure comparing the ways of cutting the same image, as in the DeepCut seed deck.

    Top row: the original; its SLIC superpixels; the classical spectral normalized cut of the
    superpixel graph; the GNN on that graph; the GNN on a pixel graph (each titled with its
    seconds). Bottom row: the histogram of the superpixel graph's edge affinities
    ``w_ij = exp(-|c_i - c_j|^2 / sigma)`` and the dense superpixel affinity matrix over all pairs,
    nodes ordered by the GNN's cluster (at most ``max_matrix_nodes``, a random subset beyond).

    Returns
    -------
    dict
        Seconds of each method, by panel title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from skimage.segmentation import mark_boundaries

    from .evaluate import ncut_foreground
    from .graph import build_graph
    from .image import prepare_image
    from .pipeline import segment

    settings = settings or Settings()
    rgb = display_rgb(image, channel_axis)
    superpixel_settings = settings.replace(nodes="superpixels", clustering="gnn")
    graph, graph_seconds = _timed(build_graph, prepare_image(image, channel_axis=channel_axis), superpixel_settings)
    (ncut, _), ncut_seconds = _timed(ncut_foreground, image, superpixel_settings)
    gnn, gnn_seconds = _timed(segment, image, channel_axis=channel_axis, **superpixel_settings.as_dict())
    pixel_settings = settings.replace(nodes="pixels", clustering="gnn")
    pixels, pixel_seconds = _timed(segment, image, channel_axis=channel_axis, **pixel_settings.as_dict())
    n_pixel_nodes = pixels.foreground_stage.graph.n_nodes if pixels.foreground_stage.graph else 0

    panels = [
        ("original", rgb, None),
        (f"SLIC superpixels\n{graph.n_nodes} nodes, {graph_seconds:.1f} s", mark_boundaries(rgb, graph.node_labels + 1, color=(0, 0.9, 1), mode="inner"), None),
        (f"classical N-cut (spectral)\n{ncut_seconds:.1f} s", None, ncut),
        (f"GNN, superpixels ({settings.foreground_loss})\n{gnn_seconds:.1f} s", None, gnn.foreground),
        (f"GNN, pixels ({n_pixel_nodes} nodes)\n{pixel_seconds:.1f} s", None, pixels.foreground),
    ]
    figure = plt.figure(figsize=(17, 7.5), constrained_layout=True)
    grid = figure.add_gridspec(2, 5, height_ratios=(1.2, 1))
    for column, (title, picture, foreground) in enumerate(panels):
        ax = figure.add_subplot(grid[0, column])
        ax.imshow(picture if foreground is None else overlay(rgb, foreground))
        ax.set_title(title, fontsize=10)
        ax.axis("off")

    ax = figure.add_subplot(grid[1, :3])
    ax.hist(graph.weights, bins=50, color="C0")
    ax.set_xlabel(r"edge affinity $w_{ij} = \exp(-|c_i - c_j|^2 / \sigma)$")
    ax.set_ylabel("edges")
    ax.set_title(f"superpixel graph: {len(graph.edges)} edges, sigma = {graph.sigma:.3g}", fontsize=10)

    ax = figure.add_subplot(grid[1, 3:])
    nodes = np.arange(graph.n_nodes)
    if graph.n_nodes > max_matrix_nodes:
        nodes = np.sort(np.random.default_rng(0).choice(graph.n_nodes, max_matrix_nodes, replace=False))
    clusters = gnn.foreground_stage.clustering.labels if gnn.foreground_stage.clustering else np.zeros(graph.n_nodes, int)
    # gnn's graph is built with the same settings from the same image, so its nodes are these nodes.
    if len(clusters) != graph.n_nodes:
        clusters = np.zeros(graph.n_nodes, int)
    nodes = nodes[np.argsort(clusters[nodes], kind="stable")]
    matrix = affinity_matrix(graph.features[nodes].astype(np.float64), graph.sigma)
    shown = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    boundary = np.count_nonzero(clusters[nodes] == clusters[nodes][0])
    ax.axhline(boundary - 0.5, color="w", lw=0.8)
    ax.axvline(boundary - 0.5, color="w", lw=0.8)
    ax.set_title(f"affinities of all {len(nodes)} superpixel pairs,\nordered by GNN cluster", fontsize=10)
    ax.set_xlabel("superpixel")
    ax.set_ylabel("superpixel")
    figure.colorbar(shown, ax=ax, shrink=0.8)

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return {
        "superpixels": graph_seconds,
        "ncut": ncut_seconds,
        "gnn_superpixels": gnn_seconds,
        "gnn_pixels": pixel_seconds,
    }
