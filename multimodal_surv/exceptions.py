"""Exceptions raised by multimodal_surv.

Both subclass :class:`ValueError`, so code that catches ``ValueError`` keeps
working; catch these to handle a bad CT input or a bad checkpoint specifically.
"""

from __future__ import annotations

__all__ = ["CTReadError", "WeightsMismatchError"]


class CTReadError(ValueError):
    """A CT reference could not be read as one finite 3-D volume.

    Subclasses :class:`ValueError`; the message names the reference, what was
    wrong and what to do about it.
    """


class WeightsMismatchError(ValueError):
    """A state dict does not match the backbone it is loaded into."""
