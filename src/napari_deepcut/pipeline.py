"""The two stages: foreground / background, then parts inside a foreground mask."""

from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import ndimage

from .baselines import eigengap_clusters, spectral_embedding, spectral_ncut
from .checks import (
    FINER_PASSES,
    MAX_FINER,
    finer_detail,
    finer_segments,
    foreground_contrast,
    outline_edge,
    retry_segments,
)
from .choice import (
    choose_foreground,
    colour_sides_step,
    dark_field_brightness,
    even_background,
    many_objects,
    objects_on_quiet_background,
)
from .cluster import Clustering, Progress, SegmentationCancelled, train_clustering
from .graph import Graph, automatic_sigma, build_graph, node_means
from .image import PreparedImage, content_box, level_background, opened_background, prepare_image
from .objects import label_objects
from .refine import ObjectRims, dim_objects, faint_objects, holes_filled, object_edges, object_holes, refine_labels
from .relief import Shear
from .settings import Settings, from_kwargs

ProgressCallback = Callable[[Progress], None]
CancelCheck = Callable[[], bool]


@dataclass
class StageResult:
    """One stage's output and what a GUI needs to show how it came about.

    Attributes
    ----------
    labels : ndarray
        The stage's label image (the input's spatial shape).
    graph : Graph or None
        Nodes, features and affinities (``graph.node_labels`` is the superpixel / block image);
        None when nothing was clustered (constant image, empty mask).
    clustering : Clustering or None
        Soft assignments per node and the loss curve.
    n_clusters : int
        Number of clusters found (non-empty).
    seconds : float
        Wall time of the stage.
    kept : str
        Foreground stage: which clustering was kept, ``"colour"`` or ``"colour + laplacian"``
        (see :func:`foreground_stage`); empty otherwise.
    background_unevenness : float
        Foreground stage: the unevenness of the background that was levelled before the stage ran
        a second time (:func:`~napari_deepcut.image.level_background`); 0 when it ran once.
    adapted_segments : int
        Foreground stage: the superpixels asked for when the stage ran again on finer superpixels
        for small objects (:func:`~napari_deepcut.checks.finer_segments`); 0 when it did not.
    retried_segments : int
        Foreground stage: the superpixels asked for when the stage ran again because it found
        nothing on fewer (:func:`~napari_deepcut.checks.retry_segments`; the last count tried); 0
        when it did not.
    contrast : float
        Foreground stage: how far the foreground found stands out from the image's noise
        (:func:`~napari_deepcut.checks.foreground_contrast`); NaN when not measured
        (``min_contrast=0``).
    finer_detail : float
        Foreground stage, when nothing was found on an image large enough for finer superpixels:
        how far its finer detail rises above what noise reaches
        (:func:`~napari_deepcut.checks.finer_detail`; under 1, the finer superpixels were not
        tried); NaN when not measured.
    inside_frame : tuple of (int, int)
        Foreground stage: first and last + 1 index along each spatial axis of the image inside a
        frame (:func:`~napari_deepcut.image.content_box`), whose outside is background; empty
        when no frame was found.
    relief : Shear or None
        The shear a relief-contrast image was integrated along before the stage
        (:func:`~napari_deepcut.relief.relief_view`); None when it was not.
    """

    labels: np.ndarray
    graph: Graph | None
    clustering: Clustering | None
    n_clusters: int
    seconds: float
    kept: str = ""
    background_unevenness: float = 0.0
    adapted_segments: int = 0
    retried_segments: int = 0
    contrast: float = float("nan")
    finer_detail: float = float("nan")
    inside_frame: tuple[tuple[int, int], ...] = ()
    relief: Shear | None = None


@dataclass
class Segmentation:
    """Result of :func:`segment`.

    Attributes
    ----------
    foreground : ndarray of uint8, or of uint32 with ``objects``
        1 = foreground, 0 = background; the input's spatial shape. With ``objects="connected"``
        or ``"split"``, objects 1..N (:func:`~napari_deepcut.objects.label_objects`).
    parts : ndarray of uint16 or None
        0 = background, parts 1..k ordered by decreasing size; None when no parts were asked for.
    foreground_stage, parts_stage : StageResult
        Details of each stage (``parts_stage`` is None without parts).
    settings : Settings
        Every setting used.
    """

    foreground: np.ndarray
    parts: np.ndarray | None
    foreground_stage: StageResult
    parts_stage: StageResult | None
    settings: Settings

    def metadata(self) -> dict:
        """Settings, version and per-stage facts, for a layer's or a file's metadata."""
        return run_metadata(self.settings, self.foreground_stage, self.parts_stage)


def run_metadata(settings: Settings, *stages: StageResult | None) -> dict:
    from . import __version__

    info = {"napari_deepcut_version": __version__, "settings": settings.as_dict()}
    for name, stage in zip(("foreground", "parts"), stages):
        if stage is not None and stage.graph is not None:
            info[name] = {
                "n_nodes": stage.graph.n_nodes,
                "n_edges": len(stage.graph.edges),
                "affinity_sigma": stage.graph.sigma,
                "n_clusters": stage.n_clusters,
                "epochs_run": len(stage.clustering.loss_history),
                "final_loss": stage.clustering.loss_history[-1] if stage.clustering.loss_history else None,
                "seconds": round(stage.seconds, 3),
            }
            if stage.kept:
                info[name]["clustering_kept"] = stage.kept
            if stage.background_unevenness:
                info[name]["background_levelled"] = round(stage.background_unevenness, 3)
            if stage.adapted_segments:
                info[name]["superpixels_adapted"] = stage.adapted_segments
            if stage.retried_segments:
                info[name]["superpixels_retried"] = stage.retried_segments
            if np.isfinite(stage.contrast):
                info[name]["contrast_to_noise"] = round(stage.contrast, 1)
            if np.isfinite(stage.finer_detail):
                info[name]["finer_detail_to_noise"] = round(stage.finer_detail, 2)
            if stage.inside_frame:
                info[name]["inside_frame"] = [list(ends) for ends in stage.inside_frame]
            if stage.relief is not None:
                info[name]["relief_shear_degrees"] = round(float(np.degrees(stage.relief.angle)), 1)
            if name == "foreground" and settings.objects != "off":
                info[name]["objects"] = int(stage.labels.max())
    return info


# --- helpers -----------------------------------------------------------------------------------


K_LESS_LOSSES = ("cc", "modularity")


def _cluster(
    graph: Graph,
    k: int,
    find_k: bool,
    settings: Settings,
    loss: str,
    stage: str,
    progress,
    cancel,
    k_graph: Graph | None = None,
) -> Clustering:
    """Cluster the graph's nodes into ``k`` clusters, or at most ``k`` with ``find_k``: a K-less
    loss finds the number itself; otherwise the eigengap (of ``k_graph`` when given, else of
    ``graph``) picks it and the loss cuts into that many."""
    if cancel is not None and cancel():  # graph building can take a while on large images
        raise SegmentationCancelled(f"cancelled before {stage} training")
    if settings.clustering == "spectral":
        return spectral_ncut(graph, k, settings.seed, settings.long_range_weight, find_k, cancel)
    if find_k and loss not in K_LESS_LOSSES:
        spectrum = graph if k_graph is None else k_graph
        k = eigengap_clusters(spectrum, k, settings.long_range_weight, settings.seed, cancel)
    runs = [
        train_clustering(
            graph, k, settings.replace(seed=settings.seed + r), loss, stage, progress, cancel
        )
        for r in range(settings.restarts)
    ]
    return min(runs, key=lambda run: run.loss_history[-1])


def pixel_means(source: Graph, target: Graph, values: np.ndarray) -> np.ndarray:
    """Per-node values of ``source`` carried to the nodes of ``target`` (another graph of the same
    image): each target node takes the mean over its pixels of their source node's value. One
    column at a time, so no (pixels x columns) table is held."""
    labels = np.where(source.node_labels >= 0, target.node_labels, -1)
    columns = [node_means(values[source.node_labels, c], labels, target.n_nodes) for c in range(values.shape[1])]
    return np.concatenate(columns, 1)


def with_laplacian_features(
    graph: Graph, count: int, settings: Settings, cancel=None, source: Graph | None = None
) -> Graph:
    r"""The graph with :func:`~napari_deepcut.baselines.spectral_embedding` (``count`` leading
    eigenvectors, rows of unit length) appended to its node features, scaled so that both parts
    have the same total variance, :math:`\sum_f \mathrm{Var}(u_f) = \sum_f \mathrm{Var}(c_f)`;
    sigma is chosen again (:func:`~napari_deepcut.graph.automatic_sigma`), no less than twice the
    graph's, so that a noise floor of the colour graph (:data:`~napari_deepcut.graph.NOISE_FLOOR`)
    carries over: doubling is what the appended variance does to the mean squared distance.

    Colour alone joins an object to any region of its colour, however far; the eigenvectors keep
    apart what the graph's boundaries separate. With ``source`` (superpixels of the same image,
    for pixel nodes), the eigenvectors are those of ``source``, carried to the nodes by
    :func:`pixel_means`: a pixel lattice's leading eigenvectors are smooth waves across the whole
    image rather than its boundaries, and they take seconds to find on 10^5 nodes.
    """
    base = graph if source is None else source
    embedding = spectral_embedding(base, count, settings.long_range_weight, settings.seed, cancel)
    if source is not None:
        embedding = pixel_means(source, graph, embedding)
    colour = graph.features.astype(np.float64)
    spread = embedding.var(0).sum()
    embedding *= np.sqrt(colour.var(0).sum() / spread) if spread > 0 else 0.0
    features = np.concatenate([colour, embedding], 1).astype(np.float32)
    return dataclasses.replace(graph, features=features, sigma=automatic_sigma(features, 2.0 * graph.sigma))


def _pass_progress(progress: ProgressCallback | None, index: int, count: int) -> ProgressCallback | None:
    """Report training pass ``index`` of ``count`` as one run of ``count`` times the epochs."""
    if progress is None or count == 1:
        return progress
    return lambda p: progress(dataclasses.replace(p, epoch=index * p.epochs + p.epoch, epochs=count * p.epochs))


def _begin_step(step: str, stage: str, progress: ProgressCallback | None, cancel: CancelCheck | None) -> None:
    """Say that ``step`` of ``stage`` begins, after a last look at ``cancel``: the steps around
    training (graph building, edge refinement) take seconds on large images and volumes."""
    if cancel is not None and cancel():
        raise SegmentationCancelled(f"cancelled before {stage}: {step}")
    if progress is not None:
        progress(Progress(stage, 0, 0, float("nan"), step))


def drop_small_pieces(mask: np.ndarray, share: float) -> np.ndarray:
    r"""The foreground of a scene read as one object without its small pieces: a connected piece p
    of area :math:`a_p` stays when

    .. math:: a_p \ge s \, \max_q a_q ,

    s = ``share`` (``min_piece``). Background that shares the object's colour (a patch of ground as
    dark as the horse, a bright rim of surf) joins the object's clusters but lies apart from it in
    pieces much smaller than the object. Scenes of many objects are not passed here: there a small
    piece is a small object. ``share`` 0 keeps every piece."""
    if share <= 0 or not mask.any():
        return mask
    pieces, count = ndimage.label(mask, ndimage.generate_binary_structure(mask.ndim, mask.ndim))
    if count < 2:
        return mask
    area = np.bincount(pieces.ravel())
    area[0] = 0
    return (area >= share * area.max())[pieces]


def clean_foreground(mask: np.ndarray, keep_largest: bool, fill_holes: bool) -> np.ndarray:
    """Optional post-processing of a binary mask: keep its largest component, fill its holes."""
    if keep_largest and mask.any():
        components, n = ndimage.label(mask)
        if n > 1:
            sizes = np.bincount(components.ravel())
            sizes[0] = 0
            mask = components == sizes.argmax()
    if fill_holes:
        mask = holes_filled(mask)
    return mask


def _ordered_parts(cluster_image: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """Map the cluster ids 1..k of a label image (0 = none) to parts 1..K, largest first; empty
    clusters disappear."""
    area = np.bincount(cluster_image.ravel(), minlength=k + 1)[1:]
    order = np.argsort(-area, kind="stable")
    present = order[area[order] > 0]
    lookup = np.zeros(k + 1, np.uint16)
    lookup[present + 1] = np.arange(1, len(present) + 1)
    return lookup[cluster_image], len(present)


def _check_parts(parts) -> None:
    if isinstance(parts, str):
        if parts != "auto":
            raise ValueError(f"parts must be an integer >= 2 or 'auto', got {parts!r}")
    elif isinstance(parts, bool) or not isinstance(parts, (int, np.integer)):
        raise TypeError(f"parts must be an integer >= 2 or 'auto', got {parts!r}")
    elif parts < 2:
        raise ValueError(f"parts must be at least 2 (or 'auto'), got {parts}")


# --- stages ------------------------------------------------------------------------------------


def foreground_stage(
    image: PreparedImage,
    settings: Settings,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
) -> StageResult:
    """Stage 1: cluster the whole image (``foreground_loss``, at most ``foreground_clusters``
    clusters); foreground clusters are those weakly connected to the image border, or for one
    object those with the best outline (:func:`~napari_deepcut.choice.choose_foreground`). With
    ``trim_frame``, a uniform frame around the image, or a photo's picture frame or vignette
    (:func:`~napari_deepcut.image.content_box`), is background and the border is the frame's
    inside.

    With ``laplacian_features`` (network clustering only), the network clusters the graph again
    with its leading eigenvectors among the node features (:func:`with_laplacian_features`),
    ``laplacian_runs`` times from different seeds, and
    :func:`~napari_deepcut.choice.choose_foreground` picks from all the clusterings; unless the
    first clustering's foreground is objects apart on a quiet background
    (:func:`~napari_deepcut.choice.objects_on_quiet_background`). Colour alone suits scenes whose
    objects differ in colour from all of the background (nuclei); the eigenvectors, scenes where an
    object shares its colour with some of it (a dark horse, dark trees). Each run of a K-less loss
    settles on its own clusters; the outline score picks well among more of them (horse, 327
    photos, seeds 0-2: 0.697 with one run, 0.711 with two, 0.716 with three).

    With ``level_background``, a grey or multichannel scene of many objects whose background turns
    out uneven is segmented a second time with that background subtracted
    (:func:`~napari_deepcut.image.level_background`): objects in the dim corners of a vignetted
    field then stand out as much as those in its bright centre. A grey or multichannel scene whose
    first foreground has at least three pieces, one of them over half of it (not many objects, or
    many only as touching objects: :func:`~napari_deepcut.choice.many_objects`), is segmented again
    with a background from a morphological opening wider than those pieces subtracted
    (:func:`~napari_deepcut.image.opened_background`), and that result is kept when it is many
    objects none of which holds half of it, on an even background: a lamp spot whose brightness
    joined the objects inside it into one object. That pass does not read touching objects as many:
    the opening leaves bright rims around large dark holes, which join into such a crowd.

    With ``dark_field``, on a grey or multichannel dark field (fluorescence) the foreground is
    brighter than the background (:func:`~napari_deepcut.choice.dark_field_brightness`).

    With ``relief``, a grey 2D image in relief contrast (DIC) is first integrated along its shear
    (:func:`~napari_deepcut.relief.relief_view`), and the stage segments the integral.

    In an RGB photo read as one object, connected pieces of the foreground smaller than
    ``min_piece`` of the largest are dropped (:func:`drop_small_pieces`). Grey and multichannel
    scenes keep them: there a small piece is as likely a cell cut by the image border.

    With ``adapt_superpixels``, a scene of many objects smaller than two superpixels each is
    segmented again, on the levelled image if it was levelled, with more superpixels
    (:func:`~napari_deepcut.checks.finer_segments`); when that count was capped, the objects found
    on the finer graph are measured again, for at most :data:`~napari_deepcut.checks.FINER_PASSES`
    passes. Not on the integral of a relief image: integrated along the shear, its pixel noise
    becomes streaks of the cells' size, which finer superpixels resolve and take for cells, and
    which the pixel noise measured on the integral (from neighbouring pixels) understates: fourfold
    per pixel, twentyfold after smoothing over two pixels (``benchmarks/RESULTS.md``).

    In a scene of many objects, objects whose excess over their surroundings, summed, is under
    ``object_significance`` times its noise are dropped, with a warning when none is left
    (:func:`~napari_deepcut.refine.faint_objects`); then, with ``dim_objects``, pieces of the
    background that rise above their own surroundings by half the step of the dimmest object
    found are added
    (:func:`~napari_deepcut.refine.dim_objects`), with ``object_edges`` each object is
    re-edged half way up its own step (:func:`~napari_deepcut.refine.object_edges`), and with
    ``object_holes`` its holes are filled when they are no larger than it
    (:func:`~napari_deepcut.refine.object_holes`).

    When the clustering finds a single region the foreground is empty, with a warning (an empty
    field, whose noise the floor of the affinity scale keeps together:
    :data:`~napari_deepcut.graph.NOISE_FLOOR`, :data:`~napari_deepcut.graph.PIXEL_NOISE_FLOOR`).
    Otherwise, with ``min_contrast`` > 0, a foreground that does not stand out from the image's
    noise by that much (:func:`~napari_deepcut.checks.foreground_contrast`, net of the background's
    smooth trend) is emptied, with a warning: an empty field holds no object, though the clustering
    may split its noise in two, or cut off the bright side of its uneven illumination. With
    ``min_edge`` > 0, a foreground of a grey or multichannel image whose outline has no edge
    (:func:`~napari_deepcut.checks.outline_edge`) is emptied too, with a warning: the bright side
    of a lamp's light that stands out from a quadratic trend, or a split of noise.

    With ``retry_finer``, when the foreground of an image larger than 256 x 256 pixels comes out
    empty, the stage runs again on more superpixels, coarse to fine
    (:func:`~napari_deepcut.checks.retry_segments`), until a foreground is kept; the warnings are
    the last run's. Objects far smaller than the superpixels are lost in their means before they
    can be measured, so a large field is looked at more finely before it is called empty: unless no
    detail finer than the superpixels rises above what noise reaches
    (:func:`~napari_deepcut.checks.finer_detail`), as in a field of noise, graded or not, where the
    finer runs would cost ten times the first for nothing.

    Last, with ``objects="connected"`` or ``"split"``, each object of the foreground gets a label
    of its own, 1..N, touching objects split apart with ``"split"``
    (:func:`~napari_deepcut.objects.label_objects`)."""
    retries = retry_segments(image.spatial_shape, settings.n_segments)
    if not (settings.retry_finer and settings.nodes == "superpixels" and retries):
        return _labelled(_find_foreground(image, settings, progress, cancel), image, settings, progress, cancel)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _find_foreground(image, settings, progress, cancel)
    if result.labels.any() or image.constant:
        retries = []
    else:
        _begin_step("nothing found: looking for detail finer than the superpixels", "foreground", progress, cancel)
        detail = finer_detail(image, settings.n_segments)
        result.finer_detail = detail
        if detail < 1:
            retries = []  # nothing there for finer superpixels to find
    for segments in retries:
        _begin_step(f"nothing found: looking again on {segments} superpixels", "foreground", progress, cancel)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = _find_foreground(image, settings.replace(n_segments=segments), progress, cancel)
        result.retried_segments, result.finer_detail = segments, detail
        if result.labels.any():
            break
    for caught_warning in caught:
        warnings.warn(caught_warning.message, stacklevel=3)
    result.seconds = time.perf_counter() - start
    return _labelled(result, image, settings, progress, cancel)


def _labelled(result: StageResult, image: PreparedImage, settings: Settings, progress, cancel) -> StageResult:
    """The foreground stage's result with each object its own label, as ``settings.objects``
    says (:func:`~napari_deepcut.objects.label_objects`); as it was with ``objects="off"``."""
    if settings.objects == "off":
        return result
    start = time.perf_counter()
    _begin_step("labelling objects", "foreground", progress, cancel)
    result.labels = label_objects(result.labels, image.spacing, split=settings.objects == "split")
    result.seconds += time.perf_counter() - start
    return result


def _find_foreground(image: PreparedImage, settings: Settings, progress, cancel) -> StageResult:
    """:func:`foreground_stage` on ``settings.n_segments`` superpixels, without a retry."""
    start = time.perf_counter()
    if image.constant:
        return StageResult(np.zeros(image.spatial_shape, np.uint8), None, None, 0, 0.0)
    image, shear = image.relief if settings.relief else (image, None)
    result, many, apart, _ = _foreground_pass(image, settings, progress, cancel, "foreground")
    unevenness = 0.0
    if settings.level_background and not apart:
        # a lamp spot taken with its objects for one object: level by an opening wider than them
        node_size = float(result.graph.sizes.mean())  # smaller pieces are specks of edge refinement
        opened, measured = opened_background(image, result.labels.astype(bool), node_size)
        if opened is not None:
            second, _, apart_now, even = _foreground_pass(
                opened, settings, progress, cancel, "foreground, background opened", touching=False
            )
            if apart_now and even:
                image, unevenness, result, many = opened, measured, second, True
    if settings.level_background and many:
        levelled, measured = level_background(image, result.labels.astype(bool))
        if levelled is not None:
            image, unevenness = levelled, measured
            result, *_ = _foreground_pass(image, settings, progress, cancel, "foreground, background levelled")
    # Not on a relief integral: its noise, integrated along the shear, is streaks of the cells'
    # size, which finer superpixels resolve and the pixel noise measured does not account for.
    if settings.adapt_superpixels and settings.nodes == "superpixels" and many and shear is None:
        segments = settings.n_segments
        for _ in range(FINER_PASSES):
            finer = finer_segments(result.labels.astype(bool), result.graph, segments)
            if not finer:
                break
            finer_settings = settings.replace(n_segments=finer)
            result, *_ = _foreground_pass(image, finer_settings, progress, cancel, "foreground, finer superpixels")
            result.adapted_segments = finer
            if finer < round(MAX_FINER * segments):  # not capped: the objects were measured
                break
            segments = finer
    significance = settings.object_significance
    steps = [  # the steps of a scene of many objects: name, whether it runs, the step
        ("dropping faint objects", significance > 0, lambda m, r: faint_objects(m, image, significance, r)),
        ("finding dim objects", settings.dim_objects, lambda m, r: dim_objects(m, image, r)),
        ("re-edging objects", settings.object_edges, lambda m, r: object_edges(m, image, r)),
    ]
    all_faint = False
    if many and (settings.object_holes or any(on for _, on, _ in steps)):
        mask = result.labels.astype(bool)
        rims = None  # one distance transform, shared while the steps leave the mask as it was
        for name, on, step in steps:
            if on:
                _begin_step(name, "foreground", progress, cancel)
                if rims is None or not rims.fits(mask):
                    rims = None  # freed before the next is built
                    rims = ObjectRims.of(mask, image.spacing)
                mask = step(mask, rims)
        del rims
        if settings.object_holes:
            _begin_step("filling objects' holes", "foreground", progress, cancel)
            mask = object_holes(mask)
        all_faint = significance > 0 and not mask.any()
        result.labels = clean_foreground(mask, settings.keep_largest, settings.fill_holes).astype(np.uint8)
    result.background_unevenness = unevenness
    result.relief = shear
    if result.n_clusters == 1 and not result.labels.any():
        warnings.warn(
            "the clustering found one region only (nothing in the image differs from the rest by "
            "more than its noise): the foreground is empty",
            stacklevel=4,
        )
    elif all_faint:
        warnings.warn(
            f"no object stands out from the image's noise (each object found sums to less than "
            f"object_significance={settings.object_significance:g} times the noise): the "
            f"foreground is empty",
            stacklevel=4,
        )
    elif settings.min_contrast > 0:
        result.contrast = foreground_contrast(image, result.labels.astype(bool))
        if result.contrast < settings.min_contrast:
            warnings.warn(
                f"no object stands out from the image's noise (the foreground found is "
                f"{result.contrast:.1f} times the noise from the background and its trend, under "
                f"min_contrast={settings.min_contrast:g}): the foreground is left empty",
                stacklevel=4,
            )
            result.labels = np.zeros_like(result.labels)
    if settings.min_edge > 0 and not image.rgb and result.labels.any():
        edge = outline_edge(image, result.labels.astype(bool))
        if edge < settings.min_edge:
            warnings.warn(
                f"the foreground found has no edge (the gradient along its outline is {edge:.2f} "
                f"times the image's typical gradient, under min_edge={settings.min_edge:g}): a "
                f"smooth glow is not an object, so the foreground is left empty",
                stacklevel=4,
            )
            result.labels = np.zeros_like(result.labels)
    result.seconds = time.perf_counter() - start
    return result


def _foreground_pass(
    image: PreparedImage, settings: Settings, progress, cancel, stage: str, touching: bool = True
) -> tuple[StageResult, bool, bool, bool]:
    """One run of the foreground stage on ``image``, reading ``touching`` objects on a quiet
    background as many objects or not (:func:`~napari_deepcut.choice.many_objects`); also whether
    its foreground is many objects, whether it is so without reading touching objects, and whether
    its background is even (:func:`~napari_deepcut.choice.even_background`)."""
    inside, frame = None, ()
    if settings.trim_frame:
        box = content_box(image)
        if any(b.start > 0 or b.stop < n for b, n in zip(box, image.spatial_shape)):
            inside = np.zeros(image.spatial_shape, bool)
            inside[box] = True
            frame = tuple((b.start, b.stop) for b in box)
    # Correlation clustering compares all pairs through random Fourier features, so it needs no
    # long-range edges; the eigenvectors do (those of the graph every clustering sees). Under
    # pixel nodes they come from a superpixel graph of the same image, built below.
    second_pass = settings.clustering == "gnn" and 0 < settings.laplacian_features
    on_pixels = settings.nodes == "pixels"
    uses_edges = settings.clustering == "spectral" or settings.foreground_loss != "cc"
    _begin_step("building the graph", stage, progress, cancel)
    graph = build_graph(image, settings, mask=inside, long_range=uses_edges or (second_pass and not on_pixels))
    k = min(settings.foreground_clusters, max(graph.n_nodes, 2))
    second_pass &= graph.n_nodes > settings.laplacian_features + 1
    passes = 1 + settings.laplacian_runs if second_pass else 1
    loss = settings.foreground_loss
    clusterings = [
        _cluster(graph, k, True, settings, loss, stage, _pass_progress(progress, 0, passes), cancel)
    ]
    brightness = dark_field_brightness(image, graph) if settings.dark_field else None
    choice = None
    if second_pass:  # not where colour has settled it: there the eigenvectors would not be kept
        labels = clusterings[0].labels
        choice = choose_foreground(graph, [labels], k, brightness, touching, settings.centre_prior)
        second_pass = not objects_on_quiet_background(graph, choice[1][labels])
    if second_pass:
        source = None
        if on_pixels:
            superpixels = settings.replace(nodes="superpixels", n_segments=min(settings.n_segments, graph.n_nodes))
            source = build_graph(image, superpixels, mask=inside)
        embedded = with_laplacian_features(graph, settings.laplacian_features, settings, cancel, source)
        for run in range(settings.laplacian_runs):  # seeds apart from those of each run's restarts
            run_settings = settings.replace(seed=settings.seed + run * settings.restarts)
            run_progress = _pass_progress(progress, 1 + run, passes)
            clusterings.append(_cluster(embedded, k, True, run_settings, loss, stage, run_progress, cancel))
    if choice is None or len(clusterings) > 1:
        choice = choose_foreground(
            graph, [c.labels for c in clusterings], k, brightness, touching, settings.centre_prior
        )
    index, is_foreground = choice
    clustering, kept = clusterings[index], "colour + laplacian" if index else "colour"
    on_foreground = is_foreground[clustering.labels]  # per node
    many = many_objects(graph, on_foreground, touching)
    sides = settings.colour_sides
    if sides == "always" or (sides == "many" and many):
        on_foreground = colour_sides_step(graph, on_foreground)
    if settings.refine:
        _begin_step("refining edges", stage, progress, cancel)
        foreground = refine_labels(graph, on_foreground, image, denoise=settings.refine_denoise)
    else:
        foreground = graph.to_image(on_foreground, fill=False)
    if image.rgb and not many:
        foreground = drop_small_pieces(foreground, settings.min_piece)
    foreground = clean_foreground(foreground, settings.keep_largest, settings.fill_holes)
    n_found = len(np.unique(clustering.labels))
    result = StageResult(foreground.astype(np.uint8), graph, clustering, n_found, 0.0, kept, inside_frame=frame)
    many = many_objects(graph, on_foreground, touching)
    apart = many_objects(graph, on_foreground, touching=False)
    return result, many, apart, even_background(graph, on_foreground)


def parts_stage(
    image: PreparedImage,
    foreground_mask: np.ndarray,
    parts: int | str,
    settings: Settings,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
) -> StageResult:
    """Stage 2: cluster the nodes inside ``foreground_mask`` into ``parts`` parts.

    With ``parts="auto"`` the number is found, at most ``settings.max_parts``: by the loss itself
    when it is K-less (``cc``, ``modularity``), else by the eigengap of the graph's affinities
    (:func:`~napari_deepcut.baselines.eigengap_clusters`) before the loss cuts into that many. On
    pixel nodes that eigengap is taken on a superpixel graph of the same mask. With ``relief``, a
    relief-contrast image is integrated first, as in :func:`foreground_stage`.
    """
    start = time.perf_counter()
    _check_parts(parts)
    mask = np.asarray(foreground_mask)
    if mask.shape != image.spatial_shape:
        raise ValueError(
            f"foreground_mask has shape {mask.shape}, but the image's spatial shape is {image.spatial_shape}"
        )
    mask = mask != 0
    if not mask.any():
        raise ValueError("foreground_mask is empty: paint or compute a foreground first")
    if image.constant:
        return StageResult(mask.astype(np.uint16), None, None, 1, 0.0)
    image, shear = image.relief if settings.relief else (image, None)
    k = settings.max_parts if parts == "auto" else int(parts)
    _begin_step("building the graph", "parts", progress, cancel)
    graph = build_graph(image, settings, mask=mask)
    if graph.n_nodes < 2:
        warnings.warn("the foreground holds a single node: it is one part", stacklevel=3)
        return StageResult(mask.astype(np.uint16), graph, None, 1, time.perf_counter() - start)
    k = min(k, graph.n_nodes)
    k_graph = None
    finds_k_by_eigengap = settings.clustering == "gnn" and settings.loss not in K_LESS_LOSSES
    if parts == "auto" and settings.nodes == "pixels" and finds_k_by_eigengap:
        # the pixel lattice's many smooth modes flatten the spectrum: k is read from the
        # superpixels of the same mask (parts.py, K-less on pixels: 0.73 -> 0.82 part mIoU)
        k_graph = build_graph(image, settings.replace(nodes="superpixels"), mask=mask)
    clustering = _cluster(graph, k, parts == "auto", settings, settings.loss, "parts", progress, cancel, k_graph)
    clusters = clustering.labels + 1  # 0 stays "no part"
    if settings.refine:
        _begin_step("refining edges", "parts", progress, cancel)
        clusters = refine_labels(graph, clusters, image, denoise=settings.refine_denoise)
    else:
        clusters = graph.to_image(clusters, fill=0)
    clusters[~mask] = 0  # pixel blocks may straddle the mask's edge
    labels, n_found = _ordered_parts(clusters, k)
    return StageResult(labels, graph, clustering, n_found, time.perf_counter() - start, relief=shear)


# --- public API --------------------------------------------------------------------------------


def segment(
    image,
    parts: int | str | None = None,
    *,
    channel_axis: int | None = None,
    spacing=None,
    rgb: bool | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
    **settings,
) -> Segmentation:
    """Segment an image without annotations: foreground / background, then optionally its parts.

    The image becomes a graph (SLIC superpixels or downsampled pixels as nodes, affinities
    ``w_ij = exp(-|c_i - c_j|^2 / sigma)`` between touching nodes); a small graph neural network
    trained on this one image minimises a clustering loss, and the argmax of its soft assignment is
    the segmentation (DeepCut, Aflalo et al. 2023).

    Parameters
    ----------
    image : array_like
        2D or 3D; grayscale, RGB(A) or multichannel; any real dtype.
    parts : int, "auto" or None
        Parts inside the foreground: k >= 2, or "auto" to let correlation clustering find how many.
        None (default): foreground only.
    channel_axis : int, optional
        Channel axis. None: a last axis of length 3 or 4 (on 3+ dimensions) is RGB(A).
    spacing : sequence of float, optional
        Physical pixel / voxel size per spatial axis (anisotropic volumes).
    rgb : bool, optional
        Whether the channel axis is RGB(A) (as napari's ``layer.rgb``); default guessed.
    progress : callable, optional
        Called with a :class:`~napari_deepcut.cluster.Progress` after every epoch, and as each
        step without epochs begins (building the graph, refining edges).
    cancel : callable, optional
        Polled after every epoch and before each step; returning True raises
        :class:`~napari_deepcut.cluster.SegmentationCancelled`.
    **settings
        Any field of :class:`~napari_deepcut.settings.Settings` (``nodes``, ``n_segments``,
        ``downsample``, ``loss``, ``seed``, ``device``, ...).

    Returns
    -------
    Segmentation

    Raises
    ------
    ValueError, TypeError
        On bad input, naming the parameter at fault.
    """
    config = from_kwargs(settings)
    if parts is not None:
        _check_parts(parts)
    prepared = prepare_image(image, channel_axis=channel_axis, spacing=spacing, rgb=rgb)
    first = foreground_stage(prepared, config, progress, cancel)
    second = None
    if parts is not None:
        if first.labels.any():
            second = parts_stage(prepared, first.labels, parts, config, progress, cancel)
        else:
            if not prepared.constant:  # a constant image was already warned about
                warnings.warn("no foreground was found, so there are no parts", stacklevel=2)
            second = StageResult(np.zeros(prepared.spatial_shape, np.uint16), None, None, 0, 0.0)
    return Segmentation(
        foreground=first.labels,
        parts=None if second is None else second.labels,
        foreground_stage=first,
        parts_stage=second,
        settings=config,
    )


def segment_parts(
    image,
    foreground_mask,
    parts: int | str = 4,
    *,
    channel_axis: int | None = None,
    spacing=None,
    rgb: bool | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
    **settings,
) -> np.ndarray:
    """Split a given foreground (from :func:`segment`, or painted by hand) into parts.

    Only the pixels inside ``foreground_mask`` become graph nodes, so the parts follow the mask
    exactly, edits included.

    Parameters
    ----------
    image : array_like
        As for :func:`segment`.
    foreground_mask : array_like
        Non-zero = foreground; the image's spatial shape.
    parts : int or "auto"
        Number of parts k >= 2, or "auto" (K-less correlation clustering, at most ``max_parts``).
    **settings
        As for :func:`segment`.

    Returns
    -------
    ndarray of uint16
        0 outside the mask, parts 1..k inside, largest first.
    """
    config = from_kwargs(settings)
    _check_parts(parts)
    prepared = prepare_image(image, channel_axis=channel_axis, spacing=spacing, rgb=rgb)
    return parts_stage(prepared, foreground_mask, parts, config, progress, cancel).labels
