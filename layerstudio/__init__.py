"""LayerStudio: generate, decompose and edit images as stacks of transparent layers.

The public core is the document model: :class:`Layer`, :class:`LayerStack` and
:class:`BlendMode`. ``LayerStack.save``/``LayerStack.load`` read and write PSD, OpenRaster and
ZIP bundles.
"""

from importlib.metadata import PackageNotFoundError, version

from .blend import BlendMode
from .document import GroupInfo, Layer, LayerStack
from .errors import ImageTooLargeError, InvalidInputError, LayerStudioError

try:
    __version__ = version("layerstudio")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["BlendMode", "GroupInfo", "ImageTooLargeError", "InvalidInputError", "Layer",
           "LayerStack", "LayerStudioError", "__version__"]
