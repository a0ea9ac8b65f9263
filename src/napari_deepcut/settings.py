"""The settings of a segmentation run, shared by the Python API, the command line and the GUI.

Each field carries its default and a one-line help text; the command line turns every field into a
flag of the same name and the widgets into a control with that text as tooltip, so the three entry
points can never drift apart.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Literal

NODE_KINDS = ("superpixels", "pixels")
LOSSES = ("ncut", "mincut", "cc", "modularity")
FEATURE_KINDS = ("colour", "texture", "dino")
#: DINO vision transformers (timm names) for features="dino": ViT-S/8 (as DeepCut), S/16, B/8, B/16.
DINO_MODELS = (
    "vit_small_patch8_224.dino",
    "vit_small_patch16_224.dino",
    "vit_base_patch8_224.dino",
    "vit_base_patch16_224.dino",
)
DEVICES = ("auto", "cpu", "cuda", "mps")
CLUSTERINGS = ("gnn", "spectral")
SIDES = ("many", "always", "off")
OBJECT_LABELS = ("off", "connected", "split")


def _setting(default: Any, help: str, **limits: Any) -> Any:
    return field(default=default, metadata={"help": help, **limits})


@dataclass(frozen=True)
class Settings:
    """Every tunable of the two-stage pipeline, with its default.

    ``segment(image)`` with these defaults is the best general-purpose result we have; the fields are
    the keyword arguments of :func:`napari_deepcut.segment` and :func:`napari_deepcut.segment_parts`.
    """

    nodes: Literal["superpixels", "pixels"] = _setting(
        "superpixels",
        "Graph nodes: SLIC superpixels, or the pixels of a downsampled image.",
        choices=NODE_KINDS,
    )
    n_segments: int = _setting(
        1000, "Approximate number of superpixels (superpixel nodes).", min=2, max=100_000
    )
    retry_finer: bool = _setting(
        True,
        "Foreground stage, superpixel nodes: when nothing is found on an image of more than "
        "256 x 256 pixels (voxels), the stage runs again on four times as many superpixels, then "
        "four times that, down to the size n_segments gives them on 256 x 256, before the "
        "foreground is left empty: objects far smaller than the superpixels are lost in their means. "
        "Not when no detail finer than the superpixels rises above the image's noise.",
    )
    compactness: float = _setting(
        10.0,
        "SLIC trade-off between colour and space: higher gives rounder, more regular superpixels.",
        min=0.01,
        max=1000.0,
    )
    slic_iterations: int = _setting(
        4,
        "SLIC's k-means iterations: fewer are faster, with superpixel edges placed less exactly "
        "(edge refinement re-decides the pixels along them).",
        min=1,
        max=100,
    )
    smoothing: float = _setting(
        1.0,
        "Gaussian smoothing (pixels) before SLIC, and of pixel nodes' colours where the noise "
        "dominates them; 0 for none.",
        min=0.0,
        max=20.0,
    )
    downsample: int = _setting(
        0,
        "Pixel nodes: keep one node per block of this many pixels a side (1 = full resolution); "
        "0 picks the smallest factor giving at most max_pixel_nodes nodes.",
        min=0,
        max=64,
    )
    max_pixel_nodes: int = _setting(
        65_536, "Pixel nodes with downsample=0: upper bound on the number of nodes.", min=16
    )
    connectivity: int = _setting(
        1,
        "Graph edges between nodes whose pixels touch along an axis (1) or also diagonally (2 or 3).",
        min=1,
        max=3,
    )
    features: Literal["colour", "texture", "dino"] = _setting(
        "colour",
        "Node features: mean colour (Lab for RGB) / intensity per channel, or that plus "
        "multiscale texture and edge responses, or deep features of a DINO vision transformer "
        "(as DeepCut; needs the dino extra and the model's weights).",
        choices=FEATURE_KINDS,
    )
    dino_model: str = _setting(
        DINO_MODELS[0],
        "features='dino': the DINO vision transformer (ViT-S/8 as DeepCut, S/16, B/8, B/16).",
        choices=DINO_MODELS,
    )
    weights: str = _setting(
        "",
        "features='dino': file of the model's weights (a .pth state dict, e.g. DINO's "
        "dino_deitsmall8_pretrain.pth, or .safetensors); empty = the Hugging Face or torch hub "
        "cache, downloaded into the first once when online.",
    )
    dino_patches: int = _setting(
        4096,
        "features='dino': the image is resized, aspect kept, so the ViT sees about this many "
        "patches (4096 = 64 x 64 patches: 512 x 512 px with ViT-S/8); with nodes='pixels' the "
        "patches are the nodes.",
        min=4,
        max=65_536,
    )
    dino_components: int = _setting(
        32,
        "features='dino': principal components kept of the L2-normalised patch features "
        "(0 = all 384 / 768).",
        min=0,
        max=768,
    )
    position_weight: float = _setting(
        0.0,
        "Weight of a node's position among the network's inputs (0 = colour only).",
        min=0.0,
        max=10.0,
    )
    affinity_sigma: float = _setting(
        0.0,
        "Affinity scale sigma in w_ij = exp(-|c_i - c_j|^2 / sigma); 0 = automatic "
        "(the mean squared feature distance between two nodes).",
        min=0.0,
    )
    feature_neighbours: int = _setting(
        10,
        "Long-range edges: link each node to this many nodes of most similar features anywhere in "
        "the image (0 = only touching nodes).",
        min=0,
        max=200,
    )
    long_range_weight: float = _setting(
        0.5,
        "Share of the graph's affinity carried by the long-range edges (0 = touching nodes only).",
        min=0.0,
        max=1.0,
    )
    foreground_loss: Literal["ncut", "mincut", "cc", "modularity"] = _setting(
        "cc",
        "Foreground stage objective: correlation clustering or modularity (K-less: they find how "
        "many clusters), or a cut (relaxed normalized cut, or its MinCutPool form as DeepCut) into "
        "as many clusters as the eigengap of the affinities says; at most foreground_clusters.",
        choices=LOSSES,
    )
    foreground_clusters: int = _setting(
        8,
        "Foreground stage: most clusters the image is cut into; those weakly connected to the "
        "image border are foreground. 2 = a direct foreground / background cut.",
        min=2,
        max=64,
    )
    laplacian_features: int = _setting(
        6,
        "Foreground stage: the network clusters the image again (laplacian_runs times) with this "
        "many leading eigenvectors of the graph (smooth across regions, sharp at their "
        "boundaries) added to the colour of each node; the foreground is chosen from all the "
        "clusterings by its outline. "
        "Skipped where colour finds objects apart on a quiet background (a field of nuclei). "
        "0 = colour only, one clustering (faster).",
        min=0,
        max=64,
    )
    laplacian_runs: int = _setting(
        3,
        "Foreground stage: trainings of the network on the graph with Laplacian features, each "
        "from its own seed; the foreground is chosen among the clusters of every one. More runs "
        "find more objects whole, at the cost of one training each.",
        min=1,
        max=16,
    )
    loss: Literal["ncut", "mincut", "cc", "modularity"] = _setting(
        "ncut",
        "Parts stage objective with a given number of parts: relaxed normalized cut, its "
        "MinCutPool form (as DeepCut), correlation clustering, or modularity.",
        choices=LOSSES,
    )
    cc_shift: float = _setting(
        0.7,
        "Correlation clustering (both stages): affinities below this value become repulsive "
        "(w - shift < 0).",
        min=0.0,
        max=1.0,
    )
    max_parts: int = _setting(
        8, "K-less parts (parts='auto'): upper bound on the number of parts found.", min=2, max=64
    )
    clustering: Literal["gnn", "spectral"] = _setting(
        "gnn",
        "How the graph is cut: the graph neural network, or the classical spectral normalized cut "
        "on the same graph (a baseline).",
        choices=CLUSTERINGS,
    )
    epochs: int = _setting(300, "Maximum training epochs per stage.", min=1, max=100_000)
    learning_rate: float = _setting(0.03, "AdamW learning rate.", min=1e-6, max=1.0)
    conv_hidden: int = _setting(64, "Width of the graph convolution layer.", min=2, max=4096)
    mlp_hidden: int = _setting(32, "Width of the MLP hidden layer.", min=2, max=4096)
    patience: int = _setting(
        30,
        "Stop training when the loss has improved by less than tolerance over this many epochs.",
        min=1,
    )
    tolerance: float = _setting(
        0.02, "Relative loss improvement over patience epochs that counts as progress.", min=0.0
    )
    restarts: int = _setting(
        1,
        "Train this many times from different seeds (seed, seed + 1, ...) and keep the lowest loss.",
        min=1,
        max=100,
    )
    seed: int = _setting(0, "Random seed: the same seed gives the same result.", min=0)
    device: Literal["auto", "cpu", "cuda", "mps"] = _setting(
        "auto", "Where the network trains: auto picks CUDA, then MPS, then the CPU.", choices=DEVICES
    )
    trim_frame: bool = _setting(
        True,
        "Foreground stage: a uniform frame around the image (a scanner, screenshot or padding "
        "border), or a photo's picture frame or vignette, is background, and border contact is "
        "measured inside it.",
    )
    centre_prior: bool = _setting(
        True,
        "Foreground stage, a scene read as one object: of the candidate objects, one near the "
        "image's centre is preferred, as photographers and microscopists centre what they image "
        "(not on a dark field, whose objects lie where they fall); and one that crosses every side "
        "of the image, leaving the background in its corners, is not taken for background. Turn it "
        "off for an object far off centre.",
    )
    min_contrast: float = _setting(
        3.0,
        "Foreground stage: the foreground is kept only when, on colours smoothed over two pixels, "
        "it stands out from the background (continued under it by a smooth trend, so that "
        "vignetting or a ramp does not count) by at least this many times the noise left after "
        "that smoothing; otherwise the image is an empty field (noise, no object) and the "
        "foreground is empty, with a warning. 0 keeps every foreground.",
        min=0.0,
        max=1000.0,
    )
    min_edge: float = _setting(
        1.5,
        "Foreground stage, grey / multichannel images: the foreground is kept only when the "
        "gradient along its outline (its median, on the image smoothed over one pixel or over "
        "two, whichever is sharper) is at least this many times the image's median gradient; "
        "otherwise it is a glow without an edge, such as a lamp's uneven light, and the "
        "foreground is empty, with a warning. 0 keeps every foreground.",
        min=0.0,
        max=1000.0,
    )
    colour_sides: Literal["many", "always", "off"] = _setting(
        "many",
        "Foreground stage: after the foreground decision, each node joins the side (foreground "
        "or background) whose mean colour is nearer: in scenes of many objects (many; nuclei or "
        "cells cut by the image border, or dim ones, share the others' colour; a connected piece "
        "of the foreground is trimmed, never removed whole), in every scene "
        "(always; hurts natural photos, where background patches can match the object), or never "
        "(off).",
        choices=SIDES,
    )
    level_background: bool = _setting(
        True,
        "Foreground stage, grey and multichannel images: when the foreground is many objects and "
        "the background around them is uneven (vignetting, an off-centre lamp), that background, "
        "measured on the pixels found to be background, is subtracted and the stage runs again.",
    )
    relief: bool = _setting(
        True,
        "Grey 2D images (both stages): a relief-contrast image (DIC), whose objects are lit on "
        "one side and shadowed on the other, is integrated along its shear before segmentation, "
        "so its objects become bumps on an even background. Found from the image: light paired "
        "with shadow along one direction, most pixels at the background's grey, and an "
        "integral more skewed than the image.",
    )
    dark_field: bool = _setting(
        True,
        "Foreground stage, grey and multichannel images: on a dark field (half the image within "
        "the darkest 15 % of its intensity range, as in fluorescence) only a foreground brighter "
        "than its background is chosen, when the clustering offers one: darker regions there are "
        "holes in a dim glow, not objects.",
    )
    adapt_superpixels: bool = _setting(
        True,
        "Foreground stage, superpixel nodes: when the foreground is many objects that are small "
        "next to the superpixels (the typical object covers fewer than two), the stage runs again "
        "with up to four times as many superpixels, so that the graph resolves each object; when it "
        "asked for four times as many, the objects are measured again on the finer graph (at most "
        "three passes). Not on the integral of a relief (DIC) image, whose noise is streaks of "
        "the cells' size.",
    )
    refine: bool = _setting(
        True,
        "Post-processing (both stages): pixels of nodes on an edge between foreground and "
        "background, or between parts, are re-decided by k-means on colour among their node and "
        "the touching ones (pixel-accurate edges from superpixels or pixel blocks).",
    )
    refine_denoise: bool = _setting(
        True,
        "Edge refinement on noisy images: the colours compared are first smoothed by the "
        "narrowest Gaussian that leaves noise under a sixth of the step between the sides' local "
        "mean colours, neighbourhood by neighbourhood (where the step is large against the noise, "
        "colours are used as they are).",
    )
    object_significance: float = _setting(
        10.0,
        "Scenes of many objects: an object stays only when its excess over the ring around it, "
        "summed over the object and a band around it, is at least this many times the noise of "
        "such a sum (the specks that noise alone makes as bright as a dim object, on many small "
        "nodes, go). 0 keeps every object.",
        min=0.0,
        max=1000.0,
    )
    dim_objects: bool = _setting(
        True,
        "Scenes of many objects: pieces of the background that rise above their own surroundings "
        "by at least half the step of the dimmest object found are added as objects (dim nuclei "
        "whose superpixels the background shared).",
    )
    object_edges: bool = _setting(
        True,
        "Scenes of many objects: each object's edge is re-decided at half its own step above its "
        "surroundings (a blurred nucleus ends where it has risen half way from the background "
        "around it, whether it is dim or bright).",
    )
    object_holes: bool = _setting(
        True,
        "Scenes of many objects: each object's holes are filled when together they are no "
        "larger than the object (a cell whose centre has the background's grey, as in phase "
        "contrast).",
    )
    min_piece: float = _setting(
        0.1,
        "In an RGB photo read as one object, connected pieces of the foreground smaller than "
        "this share of the largest are dropped: specks of background of the object's colour "
        "(0: keep every piece; grey, multichannel and scenes of many objects keep them all).",
        min=0.0,
        max=1.0,
    )
    keep_largest: bool = _setting(
        False, "Post-processing: keep only the largest foreground component."
    )
    fill_holes: bool = _setting(False, "Post-processing: fill holes in the foreground.")
    objects: Literal["off", "connected", "split"] = _setting(
        "off",
        "Foreground labels: 1 for all of it (off); each connected object its own label 1..N "
        "(connected); or that with objects that touch split where the neck between them is "
        "narrower than 0.7 of the narrower one's width (split: a watershed of the distance to the "
        "background), for counting and measuring nuclei and cells. Each frame of a series is "
        "numbered on its own.",
        choices=OBJECT_LABELS,
    )

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied and checked."""
        return from_kwargs(dataclasses.asdict(self) | changes)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def fields() -> tuple[dataclasses.Field, ...]:
    """The settings' fields, in declaration order (name, type, default, ``metadata['help']``)."""
    return dataclasses.fields(Settings)


def from_kwargs(kwargs: dict[str, Any]) -> Settings:
    """Build checked :class:`Settings` from keyword arguments.

    Raises
    ------
    TypeError
        For an unknown setting name.
    ValueError
        For a value outside its choices or range, naming the setting.
    """
    known = {f.name: f for f in fields()}
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise TypeError(f"unknown setting(s) {', '.join(map(repr, unknown))}; known: {', '.join(known)}")
    values = {}
    for name, value in kwargs.items():
        spec = known[name]
        default = spec.default
        meta = spec.metadata
        if isinstance(default, bool):
            if not isinstance(value, (bool, int)):
                raise TypeError(f"{name} must be True or False, got {value!r}")
            value = bool(value)
        elif isinstance(default, (int, float)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number, got {value!r}")
            if isinstance(default, int):
                if value != int(value):
                    raise ValueError(f"{name} must be a whole number, got {value!r}")
                value = int(value)
            else:
                value = float(value)
            if value != value:  # NaN
                raise ValueError(f"{name} must be a number, got NaN")
            if "min" in meta and value < meta["min"]:
                raise ValueError(f"{name} must be >= {meta['min']}, got {value}")
            if "max" in meta and value > meta["max"]:
                raise ValueError(f"{name} must be <= {meta['max']}, got {value}")
        elif isinstance(default, str) and "choices" not in meta:  # a path
            value = os.fspath(value) if isinstance(value, os.PathLike) else value
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a string, got {value!r}")
        if "choices" in meta and value not in meta["choices"]:
            raise ValueError(f"{name} must be one of {meta['choices']}, got {value!r}")
        values[name] = value
    return Settings(**values)
