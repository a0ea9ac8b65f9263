"""Image files in and label files out, for the command line and batch runs.

TIFF goes through tifffile (any dtype, any number of axes); PNG and JPEG through imageio (a
dependency of scikit-image).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

TIFF_SUFFIXES = (".tif", ".tiff")
IMAGE_SUFFIXES = TIFF_SUFFIXES + (".png", ".jpg", ".jpeg")


def is_image_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` has one of the suffixes read here (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def find_images(inputs) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Expand files and folders into the list of image files to process.

    A folder contributes its image files (not recursively), sorted by name; a file is taken as
    given. Order of ``inputs`` is kept and repeats are dropped.

    Returns
    -------
    images : list of Path
    problems : list of (Path, str)
        Inputs that are missing, empty folders, or files of an unsupported type, with the reason.
    """
    images: list[Path] = []
    problems: list[tuple[Path, str]] = []
    seen = set()
    for entry in map(Path, inputs):
        if entry.is_dir():
            found = sorted(p for p in entry.iterdir() if p.is_file() and is_image_file(p))
            if not found:
                problems.append((entry, f"no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder"))
        elif entry.is_file():
            if is_image_file(entry):
                found = [entry]
            else:
                problems.append((entry, f"not a supported image type ({', '.join(IMAGE_SUFFIXES)})"))
                found = []
        else:
            problems.append((entry, "no such file or folder"))
            found = []
        for path in found:
            key = path.resolve()
            if key not in seen:
                seen.add(key)
                images.append(path)
    return images, problems


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file into an array (TIFF: every page / axis as stored; PNG / JPEG: (Y, X) or
    (Y, X, C)).

    Raises
    ------
    ValueError
        If the file cannot be read as an image (the message names the file).
    """
    path = Path(path)
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            import tifffile

            array = tifffile.imread(path)
        else:
            import imageio.v3 as iio

            array = iio.imread(path, plugin="pillow")
            if array.ndim == 3 and array.shape[-1] == 2:  # grey + alpha: alpha carries no image
                array = array[..., 0]
    except Exception as error:  # every reader has its own exception types
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"cannot read {path.name} as an image: {reason}") from error
    array = np.asarray(array)
    if array.size == 0:  # tifffile returns an empty array for a file whose pages cannot be found
        raise ValueError(f"cannot read {path.name} as an image: no pixels could be read from it")
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{path.name} holds {array.dtype} values, not a real-valued image")
    return array


def write_labels(path: str | os.PathLike, labels: np.ndarray) -> None:
    """Write a label image as a zlib-compressed TIFF, dtype kept."""
    import tifffile

    # label images are never colour: a (3, y, x) stack must not be stored as planar RGB
    tifffile.imwrite(path, np.asarray(labels), photometric="minisblack", compression="zlib")


def write_json(path: str | os.PathLike, data: dict) -> None:
    """Write ``data`` as indented JSON (numpy scalars converted)."""

    def default(value):
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
        if isinstance(value, Path):
            return str(value)
        raise TypeError(f"cannot write {type(value).__name__} to JSON")

    Path(path).write_text(json.dumps(data, indent=2, default=default) + "\n")


def read_config(path: str | os.PathLike) -> dict:
    """Read a settings file: TOML (``.toml``) or JSON (anything else, e.g. the
    ``<stem>_settings.json`` written next to every output, so a run can be repeated).

    Either the settings sit at the top level, or under a ``settings`` table (other top-level
    keys than ``parts``, ``channel_axis`` and ``spacing`` are then ignored, as they describe a past
    run). Keys may use dashes for underscores.

    Returns
    -------
    dict
        Setting names (underscored) to values, plus ``parts`` / ``channel_axis`` / ``spacing`` if
        the file gives them.

    Raises
    ------
    ValueError
        If the file cannot be read or parsed (the message names the file).
    """
    path = Path(path)
    try:
        text = path.read_text()
        if path.suffix.lower() == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python < 3.11
                import tomli as tomllib
            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except Exception as error:
        raise ValueError(f"cannot read the config file {path}: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"the config file {path} must hold a table of settings")
    data = {key.replace("-", "_"): value for key, value in data.items()}
    if isinstance(data.get("settings"), dict):
        config = {key.replace("-", "_"): value for key, value in data["settings"].items()}
        for key in ("parts", "channel_axis", "spacing"):
            if key in data:
                config.setdefault(key, data[key])
        return config
    return data
