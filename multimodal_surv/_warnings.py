"""Warnings attributed to the user's line, not to a wrapper inside a library."""

from __future__ import annotations

import os
import sys
import warnings

__all__ = ["warn_user"]


def _skipped_folders() -> tuple[str, ...]:
    """This package, scikit-learn (its ``_fit_context`` / ``set_output`` wrappers) and
    joblib (``ColumnTransformer`` and ``Pipeline`` steps run through its ``Parallel``)."""
    names = (__name__.split(".")[0], "sklearn", "joblib")
    files = (getattr(sys.modules.get(n), "__file__", None) for n in names)
    return tuple(os.path.dirname(f) + os.sep for f in files if f)


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` with the stack level of the first frame outside the library.

    So the warning names the user's ``fit`` / ``transform`` call, and Python's
    default filter shows it once per such line.
    """
    skip = _skipped_folders()
    frame, level = sys._getframe(1), 2  # stacklevel 2 = the caller of warn_user
    while frame is not None and frame.f_code.co_filename.startswith(skip):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
