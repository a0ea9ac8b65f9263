"""napari-deepcut: annotation-free segmentation by graph neural network clustering (DeepCut).

>>> from napari_deepcut import segment, segment_parts
>>> result = segment(image, parts="auto")          # foreground, then parts
>>> parts = segment_parts(image, edited_mask, parts=4)
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("napari-deepcut")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"

from .cluster import Progress, SegmentationCancelled
from .pipeline import Segmentation, segment, segment_parts
from .settings import Settings

__all__ = [
    "Progress",
    "Segmentation",
    "SegmentationCancelled",
    "Settings",
    "__version__",
    "segment",
    "segment_parts",
]
