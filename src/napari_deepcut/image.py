"""Input images: check them and bring them to one layout, ``(*spatial, channels)`` floats in [0, 1]."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class PreparedImage:
    """An image checked and normalised for graph building.

    Attributes
    ----------
    data : ndarray, float32, shape ``(*spatial, C)``
        Intensities in [0, 1]: RGB scaled by its dtype's range, other channels each rescaled between
        their 1st and 99.8th percentiles.
    rgb : bool
        Whether the channels are red, green, blue (colour features then use CIE Lab); False for
        grey or one colour's shades stored as RGB, kept as one channel.
    spacing : tuple of float
        Physical size of a pixel / voxel along each spatial axis.
    constant : bool
        Whether the image holds a single value (nothing to segment).
    """

    data: np.ndarray
    rgb: bool
    spacing: tuple[float, ...]
    constant: bool

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return self.data.shape[:-1]

    @property
    def ndim(self) -> int:
        return self.data.ndim - 1

    @cached_property
    def colour(self) -> np.ndarray:
        """Per-pixel colour ``(*spatial, C)``, float32: CIE Lab / 100 for RGB (computed once, on
        first use: node features and edge refinement of both stages share it), else ``data``."""
        if not self.rgb:
            return self.data
        from skimage.color import rgb2lab

        return (rgb2lab(self.data, channel_axis=-1) / 100.0).astype(np.float32)


def _percentile_rescale(channel: np.ndarray, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    # Percentiles of a strided sample: as robust as the full array, and fast on large images.
    flat = channel.reshape(-1)
    sample = flat[:: max(1, flat.size // 1_000_000)]
    lo, hi = np.percentile(sample, [low, high])
    if hi <= lo:
        lo, hi = float(flat.min()), float(flat.max())
    if hi <= lo:
        return np.zeros(channel.shape, np.float32)
    return np.clip((channel.astype(np.float32) - lo) / (hi - lo), 0.0, 1.0)


def _grey_channel(array: np.ndarray) -> int | None:
    """The channel holding the one signal of a colour image whose channels that vary are equal
    everywhere: grey stored as RGB, or shades of one colour (a fluorescence channel in green);
    None for a colour image."""
    varying = [c for c in range(array.shape[-1]) if array[..., c].min() != array[..., c].max()]
    if not varying:
        return None
    first = array[..., varying[0]]
    return varying[0] if all(np.array_equal(first, array[..., c]) for c in varying[1:]) else None


def prepare_image(
    image, channel_axis: int | None = None, spacing=None, rgb: bool | None = None
) -> PreparedImage:
    """Check an image and return it as ``(*spatial, C)`` float32 in [0, 1].

    Parameters
    ----------
    image : array_like
        2D or 3D, grayscale, RGB(A) or multichannel; any real dtype.
    channel_axis : int, optional
        Axis holding channels. ``None``: an array of 3 or more dimensions whose last axis has length
        3 or 4 is RGB(A), as napari guesses; any other array is grayscale 2D or 3D.
    spacing : sequence of float, optional
        Pixel / voxel size per spatial axis (e.g. a napari layer's ``scale``); default all 1.
    rgb : bool, optional
        Force (or forbid) reading the channel axis as RGB(A). Default: RGB when the channel axis
        has length 3 or 4 and was guessed, or was given with length 3 or 4 and dtype uint8. An
        RGB image whose varying channels are equal everywhere (grey, or shades of one colour) is
        read as that one channel, rescaled as grey.

    Raises
    ------
    TypeError
        If ``image`` is not a real numeric array.
    ValueError
        For NaN / inf values, fewer than 2 pixels along a spatial axis, more than 3 spatial
        dimensions, or a ``channel_axis`` / ``spacing`` that does not fit the image.
    """
    array = np.asarray(image)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise TypeError(f"image must be a real numeric array, got dtype {array.dtype}")
    if array.ndim < 2:
        raise ValueError(f"image must have at least 2 dimensions, got shape {array.shape}")

    if channel_axis is None:
        if rgb is None:
            rgb = array.ndim >= 3 and array.shape[-1] in (3, 4)
        if rgb:
            channel_axis = -1
    if channel_axis is not None:
        if not -array.ndim <= channel_axis < array.ndim:
            raise ValueError(f"channel_axis={channel_axis} is out of range for shape {array.shape}")
        array = np.moveaxis(array, channel_axis, -1)
        if rgb is None:
            rgb = array.shape[-1] in (3, 4) and array.dtype == np.uint8
    else:
        array = array[..., None]
        rgb = False
    if rgb and array.shape[-1] not in (3, 4):
        raise ValueError(f"an RGB(A) image needs 3 or 4 channels, got {array.shape[-1]}")
    if rgb and array.shape[-1] == 4:
        array = array[..., :3]  # alpha carries no colour
    signal = _grey_channel(array) if rgb else None
    if signal is not None:
        # Grey stored as RGB (microscopy exports, screenshots) or one colour's shades: the signal
        # is rescaled like any grey channel, where Lab's L would squeeze the dark range (L is
        # linear in the luminance below 0.9 %, about sRGB 23 / 255), in which dim fluorescence lies.
        array, rgb = array[..., signal : signal + 1], False

    spatial = array.shape[:-1]
    if len(spatial) > 3:
        raise ValueError(
            f"image has {len(spatial)} spatial dimensions (shape {np.shape(image)}); napari-deepcut "
            "segments 2D images and 3D volumes: name the channel axis with channel_axis, or segment "
            "a time series frame by frame"
        )
    if len(spatial) < 2 or min(spatial) < 2:
        raise ValueError(f"image must be at least 2 pixels along each spatial axis, got {spatial}")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise ValueError("image contains NaN or infinite values; replace them before segmenting")

    if spacing is None:
        spacing = (1.0,) * len(spatial)
    spacing = tuple(float(s) for s in np.ravel(spacing))
    if len(spacing) != len(spatial):
        raise ValueError(f"spacing has {len(spacing)} values for {len(spatial)} spatial axes")
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing must be positive and finite, got {spacing}")

    constant = bool(array.min() == array.max())
    if constant:
        warnings.warn("the image is constant: there is nothing to segment", stacklevel=3)
        data = np.zeros(array.shape, np.float32)
    elif rgb and array.dtype == np.uint8:
        data = array.astype(np.float32) / 255.0
    elif rgb:
        # One scale for all three channels keeps hue.
        data = _percentile_rescale(array)
    else:
        data = np.stack([_percentile_rescale(array[..., c]) for c in range(array.shape[-1])], -1)
    return PreparedImage(data=np.ascontiguousarray(data, np.float32), rgb=bool(rgb), spacing=spacing, constant=constant)


def content_box(
    image: PreparedImage, tolerance: float = 0.06, contrast: float = 0.1, max_fraction: float = 0.05
) -> tuple[slice, ...]:
    """The image inside a uniform frame: borders of scanners, screenshots, padding or stitching.

    From each end of each spatial axis, outer lines (rows, columns, planes) are peeled while they
    are uniform: every channel's standard deviation along the line below ``tolerance``. The
    peeled band counts as a frame only when it is also distinct from the first line inside it
    (some channel's mean differs by more than ``contrast``), so a plain, evenly lit background is
    never taken for a frame. At most ``max_fraction`` of the axis is peeled from each end.
    Intensities are those of :func:`prepare_image`, in [0, 1].

    Returns
    -------
    tuple of slice
        One slice per spatial axis; the whole image when there is no frame.
    """
    data = image.data
    box = []
    for axis in range(image.ndim):
        lines = np.moveaxis(data, axis, 0)
        length = lines.shape[0]
        limit = max(1, int(max_fraction * length))
        ends = []
        for ordered in (lines, lines[::-1]):
            flat = ordered[: limit + 1].reshape(min(limit + 1, length), -1, data.shape[-1])
            uniform = flat.std(axis=1).max(axis=1) < tolerance
            width = int(np.argmin(uniform)) if not uniform.all() else 0  # leading uniform lines
            width = min(width, limit)
            if width:
                frame = flat[:width].reshape(-1, data.shape[-1]).mean(0)
                if np.abs(frame - flat[width].mean(0)).max() <= contrast:
                    width = 0
            ends.append(width)
        box.append(slice(ends[0], length - ends[1]))
    return tuple(box)
