"""Deep node features as in DeepCut: the "key" facet of the last block of a DINO vision transformer.

The image is resized (aspect ratio kept) so the ViT sees about ``dino_patches`` patches, normalised
with ImageNet's mean and standard deviation, and passed through the network; the keys of the last
block's attention, one ``D``-dimensional vector per patch (D = 384 for ViT-S, 768 for ViT-B), are
the patch features. A node's feature is the mean of the L2-normalised keys of the patches under
its pixels, normalised again and reduced by PCA; the Gaussian affinity of the rest of the engine on
unit vectors, ``exp(-|u_i - u_j|^2 / sigma) = exp(-(2 - 2 cos(u_i, u_j)) / sigma)``, is monotone in
the feature correlation DeepCut uses.

Weights come from a file the user names (``weights=PATH``: DINO's official ``.pth`` state dicts,
``.safetensors``, or a DINO training checkpoint with a ``"teacher"`` entry), else from timm's
Hugging Face cache or the torch hub cache, downloaded into the Hugging Face cache only when the
machine is online. A weights file is untrusted input: it is read with ``weights_only=True`` (or as
safetensors), never unpickled freely.

timm is an optional dependency (``pip install napari-deepcut[dino]``); this module imports it only
when deep features are asked for.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import math
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .image import PreparedImage
from .settings import DINO_MODELS, Settings

#: ImageNet statistics DINO was trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Where each model's weights are published: the Hugging Face repo timm reads, and the official
#: DINO release (file name and URL).
_DINO_FILES = {
    "vit_small_patch8_224.dino": "dino_deitsmall8_pretrain",
    "vit_small_patch16_224.dino": "dino_deitsmall16_pretrain",
    "vit_base_patch8_224.dino": "dino_vitbase8_pretrain",
    "vit_base_patch16_224.dino": "dino_vitbase16_pretrain",
}
_HF_FILE = "model.safetensors"
_ONLINE_PROBE_SECONDS = 3.0


class DeepFeatureError(ValueError):
    """Deep features cannot be computed (timm missing, weights missing, unreadable or wrong); the
    message says what to do. A ValueError, so the GUI and the command line report it as bad input."""


def hf_repo(model_name: str) -> str:
    """The Hugging Face repo timm loads ``model_name``'s weights from."""
    return f"timm/{model_name}"


def official_url(model_name: str) -> str:
    """URL of the official DINO release of ``model_name``'s weights."""
    stem = _DINO_FILES[model_name]
    return f"https://dl.fbaipublicfiles.com/dino/{stem}/{stem}.pth"


def _require_timm():
    try:
        import timm
    except ImportError as error:
        raise DeepFeatureError(
            "features='dino' needs timm, which is not installed (or does not import: "
            f"{error}): pip install 'napari-deepcut[dino]'"
        ) from None
    return timm


# --- finding the weights -----------------------------------------------------------------------


def _hf_cache_dir() -> Path:
    """huggingface_hub's cache folder, read from the environment now (its module reads it once)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    cache = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(cache).expanduser() / "huggingface" / "hub"


def _torch_hub_file(model_name: str) -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / f"{_DINO_FILES[model_name]}.pth"


def _offline_reason() -> str | None:
    """Why no download is tried (``HF_HUB_OFFLINE``, or huggingface.co cannot be reached), or None."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE"):
        return "HF_HUB_OFFLINE is set"
    try:
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            return "HF_HUB_OFFLINE is set"
    except ImportError:
        pass
    import urllib.request

    if urllib.request.getproxies() or os.environ.get("HF_ENDPOINT"):  # a proxy or a mirror
        return None
    import socket

    try:
        socket.create_connection(("huggingface.co", 443), timeout=_ONLINE_PROBE_SECONDS).close()
    except OSError as error:
        return f"huggingface.co cannot be reached ({error})"
    return None


def how_to_get_weights(model_name: str) -> str:
    """Instructions for getting ``model_name``'s weights onto a machine, and passing them."""
    return (
        f"Download them on a machine with internet, either from the official DINO release "
        f"{official_url(model_name)} or from the Hugging Face repo {hf_repo(model_name)} "
        f"(file {_HF_FILE}; `hf download {hf_repo(model_name)} {_HF_FILE}` puts it in the cache), "
        "then pass the file: weights=PATH in Python, --weights PATH on the command line, or the "
        f"'weights' setting in napari; or copy the .pth file to {_torch_hub_file(model_name)}."
    )


def weights_file(model_name: str, weights: str = "") -> Path:
    """The file to load ``model_name``'s weights from.

    ``weights`` if given; else the Hugging Face cache (``timm/<model_name>/model.safetensors``),
    then torch hub's checkpoint folder (the official DINO file name); else a download into the
    Hugging Face cache, tried only when the machine is online (``HF_HUB_OFFLINE`` unset and
    huggingface.co reachable within a few seconds).

    Raises
    ------
    DeepFeatureError
        When ``weights`` is not a file, or nothing is cached and nothing can be downloaded (the
        message says where to get the file and how to pass it).
    """
    if model_name not in DINO_MODELS:
        raise DeepFeatureError(f"dino_model must be one of {DINO_MODELS}, got {model_name!r}")
    if weights:
        path = Path(weights).expanduser().absolute()
        if not path.is_file():
            raise DeepFeatureError(
                f"weights file {path} {'is a folder' if path.is_dir() else 'does not exist'}. "
                + how_to_get_weights(model_name)
            )
        return path
    cache = _hf_cache_dir()
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(hf_repo(model_name), _HF_FILE, cache_dir=cache)
    except ImportError:
        cached = None
    if isinstance(cached, str) and Path(cached).is_file():
        return Path(cached)
    hub_file = _torch_hub_file(model_name)
    if hub_file.is_file():
        return hub_file
    reason = _offline_reason()
    if reason is None:
        try:
            from huggingface_hub import hf_hub_download

            return Path(hf_hub_download(hf_repo(model_name), _HF_FILE, cache_dir=cache, etag_timeout=10))
        except Exception as error:  # noqa: BLE001 (any failure to download ends in the same advice)
            reason = f"the download failed ({type(error).__name__}: {str(error).splitlines()[0]})"
    raise DeepFeatureError(
        f"features='dino' needs the weights of {model_name}, which are not on this machine "
        f"(looked in the Hugging Face cache {cache} and in {hub_file.parent}) and cannot be "
        f"downloaded: {reason}. " + how_to_get_weights(model_name)
    )


# --- reading and checking a weights file -------------------------------------------------------


def read_state_dict(path: Path) -> dict:
    """The tensors of a weights file, without running any code from it.

    ``.safetensors`` files are read with safetensors, anything else with
    ``torch.load(weights_only=True)`` (only tensors, containers and plain values;
    ``argparse.Namespace`` is also allowed, for the ``args`` entry of DINO training checkpoints).
    A DINO training checkpoint's ``"teacher"`` entry (or a ``"model"`` / ``"state_dict"`` entry) is
    taken, and the ``module.`` / ``backbone.`` prefixes are removed (keys outside ``backbone.``,
    the DINO projection head, are dropped).

    Raises
    ------
    DeepFeatureError
        Naming the file, when it is unreadable, holds Python objects, or is not a dict of tensors.
    """
    import torch

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device="cpu")
        except Exception as error:  # noqa: BLE001 (whatever the reason, the file is unusable)
            raise DeepFeatureError(f"cannot read weights file {path} as safetensors: {error}") from None
    else:
        allow = getattr(torch.serialization, "safe_globals", None)
        try:
            with allow([argparse.Namespace]) if allow else contextlib.nullcontext():
                state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 (whatever the reason, the file is unusable)
            text = str(error)
            found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
            if found:
                raise DeepFeatureError(
                    f"refused to load weights file {path}: it is not a plain state dict of tensors "
                    f"(it holds a {found.group(1)}), and napari-deepcut never unpickles Python objects "
                    "from a weights file. Save the weights with torch.save(model.state_dict(), path), "
                    "or use a .safetensors file."
                ) from None
            detail = re.search(r"WeightsUnpickler error: *\n*(.+)", text)
            reason = detail.group(1).strip() if detail else (text.splitlines() or [type(error).__name__])[0]
            raise DeepFeatureError(f"cannot read weights file {path} as a torch checkpoint: {reason}") from None
    if not isinstance(state, dict):
        raise DeepFeatureError(f"weights file {path} holds a {type(state).__name__}, not a state dict of tensors")
    for entry in ("teacher", "model", "state_dict"):
        if isinstance(state.get(entry), dict):
            state = state[entry]
            break
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if any(k.startswith("backbone.") for k in state):
        state = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise DeepFeatureError(f"weights file {path}: entry {bad[0]!r} is not a tensor; expected a state dict of tensors")
    return state


def _guess_model(state: dict) -> str | None:
    """The DINO model whose embedding width and patch size the file's patch embedding has."""
    weight = state.get("patch_embed.proj.weight")
    if weight is None or weight.ndim != 4:
        return None
    size = {384: "small", 768: "base"}.get(int(weight.shape[0]))
    name = f"vit_{size}_patch{int(weight.shape[-1])}_224.dino"
    return name if name in DINO_MODELS else None


def check_state_dict(state: dict, expected: dict, path: Path, model_name: str) -> None:
    """Raise a :class:`DeepFeatureError` naming ``path`` and the first key that is missing, has
    the wrong shape, or is unexpected (keys in the model's order, then the file's)."""
    problems = []
    for key, tensor in expected.items():
        if key not in state:
            problems.append(f"key {key!r} is missing")
        elif tuple(state[key].shape) != tuple(tensor.shape):
            problems.append(
                f"key {key!r} has shape {tuple(state[key].shape)}, the model needs {tuple(tensor.shape)}"
            )
    problems += [f"unexpected key {key!r}" for key in state if key not in expected]
    if problems:
        guess = _guess_model(state)
        hint = f" The file looks like {guess}: set dino_model='{guess}'." if guess and guess != model_name else ""
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise DeepFeatureError(
            f"weights file {path} is not a state dict of {model_name}: {problems[0]}{more}.{hint}"
        )


@functools.lru_cache(maxsize=2)
def _cached_model(model_name: str, path: str, mtime_ns: int, size: int, device: str):
    import torch

    timm = _require_timm()
    model = timm.create_model(model_name, pretrained=False, num_classes=0, dynamic_img_size=True)
    state = read_state_dict(Path(path))
    check_state_dict(state, model.state_dict(), Path(path), model_name)
    model.load_state_dict(state)
    return model.eval().requires_grad_(False).to(torch.device(device))


def model_key(model_name: str, weights: str = "", device: str = "cpu") -> tuple:
    """What identifies a loaded model: its name, weights file (resolved path, modification time,
    size) and device."""
    _require_timm()
    path = weights_file(model_name, weights)
    stat = path.stat()
    return model_name, str(path.resolve()), stat.st_mtime_ns, stat.st_size, str(device)


def load_model(model_name: str, weights: str = "", device: str = "cpu"):
    """The DINO ViT ``model_name`` with its weights, in eval mode on ``device``.

    Loaded once per process for each :func:`model_key` (the two most recent are kept): a time
    series or a batch reuses it.
    """
    return _cached_model(*model_key(model_name, weights, device))


# --- patch features ----------------------------------------------------------------------------


def patch_grid(shape: tuple[int, int], max_patches: int) -> tuple[int, int]:
    """Patches along each axis, ``(gh, gw)``: ``g = floor(s * sqrt(max_patches / (h w)))`` per
    axis (at least 1), so the aspect ratio is kept and ``gh * gw <= max_patches``."""
    h, w = shape
    scale = math.sqrt(max_patches / (h * w))
    gh = min(max(1, math.floor(h * scale)), max_patches)
    gw = max(1, min(math.floor(w * scale), max_patches // gh))
    return gh, gw


def vit_input(data: np.ndarray, grid: tuple[int, int], patch: int):
    """Slices ``(S, h, w, C)`` in [0, 1] as the ViT's input ``(S, 3, gh p, gw p)``: resized
    (bilinear, antialiased), grey or multichannel (C != 3) as the channels' mean on all three,
    then normalised, ``(x - mean) / std`` with ImageNet's statistics."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(data)).permute(0, 3, 1, 2)
    if x.shape[1] != 3:
        x = x.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    size = (grid[0] * patch, grid[1] * patch)
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def key_features(model, x):
    """The "key" facet of the last block, ``(S, n_patches, D)``: the keys of all heads side by side,
    ``k = W_k LN(z) + b_k`` with ``z`` the tokens entering the last block (class token dropped;
    keys are per-token, so computing them on the patch tokens alone is exact)."""
    import torch

    last = model.blocks[-1]
    with torch.inference_mode():
        (tokens,) = model.forward_intermediates(
            x, indices=[len(model.blocks) - 2], intermediates_only=True, output_fmt="NLC", stop_early=True
        )
        qkv = last.attn.qkv(last.norm1(tokens))
    width = qkv.shape[-1] // 3
    return qkv[..., width : 2 * width]


@dataclass(frozen=True)
class PatchFeatures:
    """Features of the ViT's patches and where each pixel falls in the patch grid.

    Attributes
    ----------
    features : ndarray of float32, shape (n_patches, D)
        L2-normalised keys, patches in C order of ``grid_shape``.
    grid_shape : tuple of int
        ``(gh, gw)``, or ``(depth, gh, gw)`` for a volume (processed slice by slice along axis 0).
    spatial_shape : tuple of int
        The image's shape.
    """

    features: np.ndarray
    grid_shape: tuple[int, ...]
    spatial_shape: tuple[int, ...]

    def pixel_patches(self) -> np.ndarray:
        """Patch index of every pixel, the image's shape: pixel ``y`` of ``h`` lies in patch row
        ``floor(y gh / h)`` (the image is resized to the patch grid's size)."""
        axes = [np.arange(s) * g // s for s, g in zip(self.spatial_shape, self.grid_shape)]
        return np.ravel_multi_index(np.ix_(*axes), self.grid_shape)

    def patch_labels(self, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Patches as nodes (DeepCut's graph): the node label image and the grid of nodes (-1 for
        patches with no pixel in ``mask``), as :func:`~napari_deepcut.graph.pixel_labels`."""
        patches = self.pixel_patches()
        n = int(np.prod(self.grid_shape))
        if mask is None:
            return patches.astype(np.int64), np.arange(n, dtype=np.int64).reshape(self.grid_shape)
        present = np.bincount(patches[mask], minlength=n) > 0
        lookup = np.where(present, np.cumsum(present) - 1, -1)
        return np.where(mask, lookup[patches], -1), lookup.reshape(self.grid_shape)

    def node_features(self, node_labels: np.ndarray, n_nodes: int, components: int) -> np.ndarray:
        r"""Features of the nodes of ``node_labels``, shape (n, d).

        :math:`\bar f_i = \sum_p A_{ip} f_p / \sum_p A_{ip}`, with :math:`A_{ip}` the number of
        node i's pixels in patch p (a sparse node x patch count matrix), normalised
        :math:`u_i = \bar f_i / |\bar f_i|`, then projected on the ``components`` leading
        principal axes of the u's, :math:`c_i = V^T (u_i - \bar u)` (0 = no projection).
        """
        flat = node_labels.ravel()
        inside = flat >= 0
        patches = self.pixel_patches().ravel()[inside]
        counts = sp.csr_matrix(
            (np.ones(len(patches), np.float32), (flat[inside], patches)),
            shape=(n_nodes, len(self.features)),
        )  # duplicates (pixels of one node in one patch) are summed
        sums = np.asarray(counts @ self.features, np.float64)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        unit = sums / np.where(norms > 0, norms, 1.0)
        return principal_components(unit, components).astype(np.float32)


def principal_components(x: np.ndarray, k: int) -> np.ndarray:
    """``x`` centred and projected on its ``k`` leading principal axes (eigenvectors of the
    covariance, only the ``k`` needed computed); each axis's sign is fixed so that its largest
    coefficient is positive. ``k = 0`` or ``k >= x.shape[1]`` returns ``x`` unchanged."""
    from scipy.linalg import eigh

    d = x.shape[1]
    if k <= 0 or k >= d:
        return x
    centred = x - x.mean(0)
    _, vectors = eigh(centred.T @ centred, subset_by_index=[d - k, d - 1])
    axes = vectors[:, ::-1]
    sign = np.sign(axes[np.abs(axes).argmax(0), np.arange(k)])
    return centred @ (axes * sign)


# One image's patch features, so the parts stage reuses the foreground stage's.
_last: dict = {}
_last_lock = threading.Lock()


def patch_features(image: PreparedImage, settings: Settings) -> PatchFeatures:
    """DINO key features of an image's patches (computed once per image and settings: the last
    result is kept, so the parts stage does not run the ViT again).

    A 2D image is resized to ``patch_grid(image.spatial_shape, settings.dino_patches)`` patches
    (:func:`patch_grid`); a 3D volume is processed slice by slice along its first axis, each slice
    with that many patches.
    The ViT runs on ``settings.device`` (as the clustering network).
    """
    from .cluster import resolve_device

    device = resolve_device(settings.device)
    loaded = model_key(settings.dino_model, settings.weights, str(device))
    spatial = image.spatial_shape
    grid = patch_grid(spatial[-2:], settings.dino_patches)
    digest = hashlib.blake2b(image.data.tobytes(), digest_size=16).hexdigest()
    key = (digest, image.data.shape, loaded, grid)
    with _last_lock:
        if _last.get("key") == key:
            return _last["value"]
    model = _cached_model(*loaded)
    slices = image.data if image.ndim == 3 else image.data[None]
    patch = model.patch_embed.patch_size[0]
    chunks = []
    for start in range(len(slices)):  # one slice per pass bounds the attention's memory
        x = vit_input(slices[start : start + 1], grid, patch).to(device)
        keys = key_features(model, x)
        keys = keys / keys.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        chunks.append(keys.reshape(-1, keys.shape[-1]).float().cpu().numpy())
    value = PatchFeatures(
        np.concatenate(chunks), ((len(slices),) if image.ndim == 3 else ()) + grid, spatial
    )
    with _last_lock:
        _last.update(key=key, value=value)
    return value
