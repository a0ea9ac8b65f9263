"""Foreground quality against reference masks: metrics, the methods compared, and the evaluation loop.

Every method gets the image only and decides by itself which of its segments are foreground; the
reference mask is used for scoring and nothing else.

Methods
-------
deepcut
    :func:`napari_deepcut.segment` (foreground stage) with the given settings.
ncut
    The same graph cut by the classical spectral normalized cut (``clustering="spectral"``) into
    ``foreground_clusters`` clusters, with the same foreground rule.
skimage-ncut
    scikit-image's documented recipe: SLIC (``n_segments=400, compactness=30``) on the 8-bit image,
    ``graph.rag_mean_color(mode="similarity")`` and ``graph.cut_normalized`` (recursive 2-way cuts,
    many segments); foreground by :func:`border_background`.
otsu
    Otsu's threshold on the grey levels; foreground by :func:`border_background`.
deck
    The seed deck's setting, re-implemented with the engine: 400 SLIC superpixels, colour + centroid
    features, GCN (1024) -> MLP (512) -> softmax over 2 clusters, MinCutPool loss, 1000 epochs, and
    background = the cluster holding the majority of the four corner pixels.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .files import IMAGE_SUFFIXES, read_image
from .graph import border_mask
from .objects import label_objects
from .settings import Settings

# --- metrics -----------------------------------------------------------------------------------


def iou(prediction, truth) -> float:
    r"""Intersection over union of two binary masks, :math:`|P \cap T| / |P \cup T|`.

    Non-zero pixels are foreground. Two empty masks agree perfectly (1.0).
    """
    p, t = np.asarray(prediction) != 0, np.asarray(truth) != 0
    if p.shape != t.shape:
        raise ValueError(f"prediction has shape {p.shape}, truth {t.shape}")
    union = np.count_nonzero(p | t)
    return 1.0 if union == 0 else np.count_nonzero(p & t) / union


def pixel_accuracy(prediction, truth) -> float:
    r"""Fraction of pixels labelled correctly, :math:`|P = T| / N` (non-zero = foreground)."""
    p, t = np.asarray(prediction) != 0, np.asarray(truth) != 0
    if p.shape != t.shape:
        raise ValueError(f"prediction has shape {p.shape}, truth {t.shape}")
    return float(np.mean(p == t)) if p.size else 1.0


def _consecutive(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels renumbered 0..n-1 in the order of their values (0, the background, stays 0), flat,
    and n."""
    values, inverse = np.unique(np.concatenate([[0], labels.ravel()]), return_inverse=True)
    return inverse[1:], len(values)


def object_matches(prediction, truth, threshold: float = 0.5) -> tuple[int, int, int]:
    r"""Objects of two label images (0 = background, objects 1..N) matched one to one.

    A predicted object p and a true object t match when :math:`|p \cap t| / |p \cup t| >`
    ``threshold``; above 0.5 each object has at most one match, so no assignment is needed. The
    object-level F1 is :math:`2\,TP / (2\,TP + FP + FN)`.

    Returns
    -------
    tp, fp, fn : int
        Matched pairs, predicted objects without a match, true objects without a match.
    """
    if threshold < 0.5:
        raise ValueError(f"threshold must be at least 0.5 for one-to-one matches, got {threshold}")
    p, t = np.asarray(prediction), np.asarray(truth)
    if p.shape != t.shape:
        raise ValueError(f"prediction has shape {p.shape}, truth {t.shape}")
    (p, n_p), (t, n_t) = _consecutive(p), _consecutive(t)
    both = (p > 0) & (t > 0)
    pairs, overlap = np.unique(p[both].astype(np.int64) * n_t + t[both], return_counts=True)  # overlapping only
    size_p, size_t = np.bincount(p, minlength=n_p), np.bincount(t, minlength=n_t)
    union = size_p[pairs // n_t] + size_t[pairs % n_t] - overlap
    tp = int(np.count_nonzero(overlap > threshold * union))
    return tp, n_p - 1 - tp, n_t - 1 - tp


# --- choosing the foreground without the mask ------------------------------------------------


def border_background(labels: np.ndarray) -> np.ndarray:
    """Background pixels of a segmentation with any number of segments, by the engine's
    boundary-connectivity rule (:func:`napari_deepcut.choice.boundary_foreground`): the segments
    most connected to the image border, on the high side of Otsu's split of that score, are
    background.

    Returns
    -------
    ndarray of bool, ``labels.shape``
    """
    from .choice import boundary_foreground

    labels = np.asarray(labels)
    _, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.reshape(labels.shape)
    area = np.bincount(inverse.ravel())
    border = np.bincount(inverse[border_mask(labels.shape)], minlength=len(area))
    return ~boundary_foreground(area, border)[inverse]


def corner_background(cluster_image: np.ndarray) -> int:
    """The seed deck's rule: the cluster holding most of the image's corner pixels is background.

    A tie (2 corners each) goes to the larger cluster.
    """
    image = np.asarray(cluster_image)
    corners = [image[tuple(0 if i == 0 else -1 for i in idx)] for idx in np.ndindex(*(2,) * image.ndim)]
    values, votes = np.unique(np.asarray(corners), return_counts=True)
    winners = values[votes == votes.max()]
    if len(winners) == 1:
        return int(winners[0])
    return int(max(winners, key=lambda v: np.count_nonzero(image == v)))


# --- methods -----------------------------------------------------------------------------------

DECK_SETTINGS = dict(
    nodes="superpixels",
    n_segments=400,
    features="colour",
    position_weight=1.0,
    feature_neighbours=0,  # the deck's graph: touching superpixels only
    long_range_weight=0.0,
    conv_hidden=1024,
    mlp_hidden=512,
    foreground_loss="mincut",
    foreground_clusters=2,
    clustering="gnn",
    epochs=1000,
    patience=1_000_000,  # the deck trains for a fixed 1000 epochs
    restarts=1,
)
"""Settings that make the engine the seed deck's model (other settings, e.g. seed, still apply)."""

SKIMAGE_SLIC = dict(n_segments=400, compactness=30)
"""scikit-image's normalized-cut example: SLIC parameters."""


def _grey_or_rgb_uint8(prepared) -> np.ndarray:
    """The prepared image as 8-bit RGB (grey repeated), the input scikit-image's recipe expects."""
    data = prepared.data
    rgb = data if prepared.rgb else np.repeat(data.mean(-1, keepdims=True), 3, axis=-1)
    return np.round(rgb * 255).astype(np.uint8)


def deepcut_foreground(image, settings: Settings) -> tuple[np.ndarray, str]:
    """The engine's foreground with ``settings``."""
    from .image import prepare_image
    from .pipeline import foreground_stage

    prepared = prepare_image(image)
    return foreground_stage(prepared, settings).labels.astype(bool), ""


def ncut_foreground(image, settings: Settings) -> tuple[np.ndarray, str]:
    """The engine's graph, cut by the spectral normalized cut (``clustering="spectral"``);
    foreground by the engine's boundary-connectivity rule."""
    from .image import prepare_image
    from .pipeline import foreground_stage

    prepared = prepare_image(image)
    return foreground_stage(prepared, settings.replace(clustering="spectral")).labels.astype(bool), ""


def skimage_ncut_foreground(image, settings: Settings) -> tuple[np.ndarray, str]:
    """scikit-image SLIC + ``rag_mean_color`` + ``cut_normalized``; :func:`border_background`."""
    from skimage import graph as skgraph
    from skimage.segmentation import slic

    from .image import prepare_image

    prepared = prepare_image(image)
    if prepared.constant:
        return np.zeros(prepared.spatial_shape, bool), ""
    rgb = _grey_or_rgb_uint8(prepared)
    labels = slic(rgb, start_label=1, channel_axis=-1, **SKIMAGE_SLIC)
    rag = skgraph.rag_mean_color(rgb, labels, mode="similarity")
    segments = skgraph.cut_normalized(labels, rag, rng=settings.seed)
    return ~border_background(segments), ""


def otsu_foreground(image, settings: Settings) -> tuple[np.ndarray, str]:
    """Otsu's threshold on grey levels (luminance for RGB); foreground by :func:`border_background`."""
    from skimage.color import rgb2gray
    from skimage.filters import threshold_otsu

    from .image import prepare_image

    prepared = prepare_image(image)
    if prepared.constant:
        return np.zeros(prepared.spatial_shape, bool), ""
    grey = rgb2gray(prepared.data) if prepared.rgb else prepared.data.mean(-1)
    bright = grey > threshold_otsu(grey)
    return ~border_background(bright), ""


def deck_foreground(image, settings: Settings) -> tuple[np.ndarray, str]:
    """The seed deck's setting (:data:`DECK_SETTINGS`); background by the four corners' vote."""
    from .image import prepare_image
    from .pipeline import clean_foreground, foreground_stage

    deck = settings.replace(**DECK_SETTINGS)
    prepared = prepare_image(image)
    stage = foreground_stage(prepared, deck)
    if stage.graph is None:
        return stage.labels.astype(bool), ""
    clusters = stage.graph.to_image(stage.clustering.labels, fill=-1)
    foreground = clusters != corner_background(clusters)
    return clean_foreground(foreground, deck.keep_largest, deck.fill_holes), ""


METHODS: dict[str, Callable[[np.ndarray, Settings], tuple[np.ndarray, str]]] = {
    "deepcut": deepcut_foreground,
    "ncut": ncut_foreground,
    "skimage-ncut": skimage_ncut_foreground,
    "otsu": otsu_foreground,
    "deck": deck_foreground,
}

METHOD_NOTES = {
    "deepcut": "GNN on the engine's graph (settings as given), foreground by boundary connectivity",
    "ncut": "spectral normalized cut on the same graph into foreground_clusters clusters, "
    "foreground by boundary connectivity",
    "skimage-ncut": "skimage SLIC(400, compactness 30) + rag_mean_color + cut_normalized, "
    "foreground by boundary connectivity",
    "otsu": "Otsu threshold on grey levels, foreground by boundary connectivity",
    "deck": "seed deck's setting: 400 superpixels, GCN 1024 / MLP 512, MinCutPool loss, "
    "1000 epochs, background by corner vote",
}


# --- data sets and the evaluation loop ---------------------------------------------------------


def find_pairs(images_dir, masks_dir, limit: int | None = None) -> list[tuple[Path, Path]]:
    """Images and their masks, matched by file stem (``images/ID.jpg`` <-> ``masks/ID.png``),
    sorted by name; the first ``limit`` pairs if given.

    Raises
    ------
    ValueError
        If a folder is missing or no image has a mask.
    """
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    for folder in (images_dir, masks_dir):
        if not folder.is_dir():
            raise ValueError(f"{folder} is not a folder")
    masks = {p.stem: p for p in masks_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    pairs = [
        (p, masks[p.stem])
        for p in sorted(images_dir.iterdir())
        if p.suffix.lower() in IMAGE_SUFFIXES and p.stem in masks
    ]
    if not pairs:
        raise ValueError(f"no image in {images_dir} has a mask of the same name in {masks_dir}")
    return pairs[:limit] if limit else pairs


def read_mask(path) -> np.ndarray:
    """A reference mask: non-zero = foreground (first channel of a colour mask)."""
    return read_reference(path) != 0


def read_reference(path) -> np.ndarray:
    """A reference as stored: 0 = background, and either one value for the foreground or one
    label per object (first channel of a colour mask)."""
    mask = read_image(path)
    if mask.ndim == 3 and mask.shape[-1] in (3, 4):
        mask = mask[..., 0]
    return mask


def object_f1(prediction, reference) -> float:
    r"""Object-level F1 of a foreground against a reference of labelled objects: the prediction's
    objects split apart (:func:`~napari_deepcut.objects.label_objects`) and matched one to one at
    IoU over 0.5 (:func:`object_matches`), :math:`2\,TP / (2\,TP + FP + FN)`; 1 when both hold
    no object."""
    tp, fp, fn = object_matches(label_objects(np.asarray(prediction) != 0), reference)
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


@dataclass
class Score:
    """One method on one image."""

    image: str
    method: str
    iou: float
    accuracy: float
    seconds: float
    note: str = ""
    iou_other_side: float = math.nan
    """IoU of the complement of the prediction: a diagnostic telling a good cut with the wrong side
    called foreground (high) from a bad cut (low)."""
    object_f1: float = math.nan
    """:func:`object_f1`, where the reference labels its objects one by one (else NaN)."""


def evaluate(
    pairs: list[tuple[Path, Path]],
    methods: list[str],
    settings: Settings,
    show_progress: bool = True,
) -> list[Score]:
    """Run every method on every image and score its foreground against the mask.

    Where a mask labels its objects one by one (more than one non-zero value), each foreground is
    also scored object by object (:func:`object_f1`). A method that fails on an image scores NaN
    there and its error goes into ``note``. Seconds are wall time of the method alone (reading
    files and the object score excluded).
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}")
    iterator = pairs
    if show_progress:
        try:
            from tqdm import tqdm

            iterator = tqdm(pairs, unit="image", desc="evaluate", file=sys.stderr)
        except ImportError:
            pass
    scores = []
    for image_path, mask_path in iterator:
        try:
            image, reference = read_image(image_path), read_reference(mask_path)
        except ValueError as error:
            scores += [Score(image_path.name, m, math.nan, math.nan, math.nan, str(error)) for m in methods]
            continue
        truth = reference != 0
        objects = len(np.unique(reference)) > 2  # labelled one by one, not one foreground value
        for method in methods:
            start = time.perf_counter()
            try:
                prediction, note = METHODS[method](image, settings)
                seconds = time.perf_counter() - start
                scores.append(
                    Score(image_path.name, method, iou(prediction, truth), pixel_accuracy(prediction, truth),
                          seconds, note, iou(~np.asarray(prediction, bool), truth),
                          object_f1(prediction, reference) if objects else math.nan)
                )
            except Exception as error:  # a failing method must not end the evaluation
                scores.append(Score(image_path.name, method, math.nan, math.nan, math.nan, f"{type(error).__name__}: {error}"))
    return scores


def summarise(scores: list[Score], methods: list[str]) -> list[dict]:
    """Per method: images scored, mean IoU (mIoU), its standard error, mean pixel accuracy, mean
    seconds per image, failures, the diagnostic mean of ``max(IoU, IoU of the complement)`` (the
    score had the method always picked the better side as foreground), and the mean object F1 over
    the images whose masks label their objects (NaN without such masks)."""
    rows = []
    for method in methods:
        mine = [s for s in scores if s.method == method]
        good = [s for s in mine if not math.isnan(s.iou)]
        ious = np.array([s.iou for s in good])
        f1 = [s.object_f1 for s in good if not math.isnan(s.object_f1)]  # masks of labelled objects
        rows.append(
            {
                "method": method,
                "images": len(good),
                "mIoU": float(ious.mean()) if good else math.nan,
                "sem": float(ious.std(ddof=1) / math.sqrt(len(good))) if len(good) > 1 else math.nan,
                "accuracy": float(np.mean([s.accuracy for s in good])) if good else math.nan,
                "seconds": float(np.mean([s.seconds for s in good])) if good else math.nan,
                "failed": len(mine) - len(good),
                "better_side": float(np.mean([max(s.iou, s.iou_other_side) for s in good])) if good else math.nan,
                "object_f1": float(np.mean(f1)) if f1 else math.nan,
            }
        )
    return rows


def format_table(rows: list[dict]) -> str:
    """The summary as a markdown table (* the better-side column is a diagnostic, not a score: it
    looks at the mask to pick the side), with an object F1 column where masks label objects."""
    objects = any(not math.isnan(r.get("object_f1", math.nan)) for r in rows)
    lines = [
        "| method | images | foreground mIoU | pixel accuracy | s / image | failed | mIoU, better side* |"
        + (" object F1 |" if objects else ""),
        "|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if objects else ""),
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['images']} | {r['mIoU']:.3f} ± {r['sem']:.3f} | {r['accuracy']:.3f} "
            f"| {r['seconds']:.2f} | {r['failed']} | {r['better_side']:.3f} |"
            + (f" {r['object_f1']:.3f} |" if objects else "")
        )
    return "\n".join(lines)


def write_scores_csv(scores: list[Score], path) -> None:
    """One row per (image, method): iou, accuracy, seconds, iou_other_side, object_f1, note."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "method", "iou", "accuracy", "seconds", "iou_other_side", "object_f1", "note"])
        for s in scores:
            writer.writerow([s.image, s.method, f"{s.iou:.6f}", f"{s.accuracy:.6f}", f"{s.seconds:.4f}",
                             f"{s.iou_other_side:.6f}", f"{s.object_f1:.6f}", s.note])


def plot_scores(scores: list[Score], methods: list[str], path, title: str = "") -> None:
    """Box plots (with the individual images as dots) of IoU and pixel accuracy per method."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(3 + 1.6 * len(methods), 4), constrained_layout=True)
    rng = np.random.default_rng(0)
    for ax, metric, label in zip(axes, ("iou", "accuracy"), ("foreground IoU", "pixel accuracy"), strict=True):
        data = [[getattr(s, metric) for s in scores if s.method == m and not math.isnan(s.iou)] for m in methods]
        ax.boxplot([d if d else [math.nan] for d in data], showfliers=False)
        ax.set_xticks(range(1, len(methods) + 1), methods, rotation=30, ha="right")
        for k, values in enumerate(data, start=1):
            ax.scatter(k + rng.uniform(-0.15, 0.15, len(values)), values, s=6, alpha=0.5, color="C1")
        ax.set_ylabel(label)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(axis="y", alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- where it fails ----------------------------------------------------------------------------

WORST_ROW_INCHES = 2.4
"""Height of one row of :func:`plot_worst` (inches; 3 panels of ``WORST_ROW_INCHES * 1.25`` wide)."""

WORST_DPI = 80
"""Resolution of :func:`plot_worst` figures: ``WORST_ROW_INCHES * WORST_DPI`` pixels per row."""


def worst_scores(scores: list[Score], method: str, n: int) -> list[Score]:
    """The ``n`` images that ``method`` scored lowest IoU on, worst first (ties by name); images it
    failed on (NaN) are left out."""
    mine = [s for s in scores if s.method == method and not math.isnan(s.iou)]
    return sorted(mine, key=lambda s: (s.iou, s.image))[: max(n, 0)]


def plot_worst(
    pairs: list[tuple[Path, Path]],
    scores: list[Score],
    method: str,
    settings: Settings,
    path,
    n: int = 6,
) -> list[str]:
    """A figure of the ``n`` images ``method`` does worst on, to show where it fails.

    One row per image, worst first: the image (titled with its file name), the reference mask and
    the method's foreground, each drawn over the image (background dimmed, foreground outlined).
    Predictions are not kept by :func:`evaluate`, so the method runs again on these images only
    (``n`` runs, same settings); the IoU in the title is this run's, and the evaluation's is added
    when the two differ.

    Parameters
    ----------
    pairs : list of (Path, Path)
        The evaluated (image, mask) files, as given to :func:`evaluate`.
    scores : list of Score
        :func:`evaluate`'s scores.
    method : str
        A key of :data:`METHODS`.
    settings : Settings
        The settings of the evaluation.
    path : str or Path
        The PNG to write, ``WORST_ROW_INCHES * WORST_DPI`` pixels high per row.
    n : int
        Rows at most.

    Returns
    -------
    list of str
        File names of the images drawn, worst first; empty (and nothing written) when ``method``
        scored no image.
    """
    from .figures import display_rgb, overlay, save_small_png

    worst = worst_scores(scores, method, n)
    if not worst:
        return []
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = {image.name: (image, mask) for image, mask in pairs}
    width = 1.25 * WORST_ROW_INCHES
    fig, axes = plt.subplots(
        len(worst), 3, figsize=(3 * width, len(worst) * WORST_ROW_INCHES), squeeze=False, constrained_layout=True
    )
    for row, score in zip(axes, worst, strict=True):
        for ax in row:
            ax.axis("off")
        image_path, mask_path = files[score.image]
        row[0].set_title(score.image, fontsize=9)
        try:
            image, truth = read_image(image_path), read_mask(mask_path)
            rgb = display_rgb(image)
            row[0].imshow(rgb)
            row[1].imshow(overlay(rgb, truth))
            row[1].set_title(f"reference ({100 * truth.mean():.0f} % foreground)", fontsize=9)
            prediction = np.asarray(METHODS[method](image, settings)[0], bool)
        except Exception as error:  # noqa: BLE001 (one image that cannot be drawn must not end the figure)
            row[2].text(0.5, 0.5, f"{type(error).__name__}: {error}", ha="center", va="center", wrap=True, fontsize=8)
            continue
        now = iou(prediction, truth)
        title = f"{method}: IoU {now:.2f} (other side {iou(~prediction, truth):.2f})"
        if abs(now - score.iou) > 0.005:
            title += f"\nIoU in the evaluation {score.iou:.2f}"
        row[2].imshow(overlay(rgb, prediction))
        row[2].set_title(title, fontsize=9)
    save_small_png(fig, path, WORST_DPI)
    plt.close(fig)
    return [s.image for s in worst]
