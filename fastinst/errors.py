"""Errors the engine raises for bad input; messages name the offending file or item."""


class FastInstError(Exception):
    """Base class of the engine's user-facing errors."""


class CheckpointError(FastInstError):
    """A weights file is missing, corrupt, unsafe, or does not fit the model."""


class ImageError(FastInstError):
    """An image cannot be read or decoded."""


class ImageTooLargeError(ImageError):
    """An image has more pixels than the configured limit (see :func:`fastinst.images.max_pixels`)."""
