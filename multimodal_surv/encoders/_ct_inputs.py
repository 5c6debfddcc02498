"""The column of CT references that ``CTEncoder`` takes: parsing and missing values."""

from __future__ import annotations

import numpy as np
import pandas as pd


def _is_missing(ref) -> bool:
    if ref is None:
        return True
    if isinstance(ref, np.ndarray):
        return False
    try:
        return bool(pd.isna(ref))
    except (TypeError, ValueError):
        return False


def _column(X) -> tuple[list, list[str] | None]:
    """The single column of CT references, plus the input's column names."""
    if isinstance(X, pd.DataFrame):
        if X.shape[1] != 1:
            raise ValueError(
                f"CTEncoder takes exactly one column of CT references, got {X.shape[1]} "
                f"columns {list(X.columns)}; select one, e.g. ColumnTransformer([('ct', "
                "CTEncoder(), ['ct'])])"
            )
        return list(X.iloc[:, 0]), [str(c) for c in X.columns]
    if isinstance(X, pd.Series):
        return list(X), None
    if isinstance(X, np.ndarray) and X.dtype != object and X.ndim >= 3:
        raise ValueError(
            f"X is a numeric array of shape {X.shape}; pass a list (or one-column "
            "DataFrame) of 3-D volumes or paths, one per row"
        )
    if isinstance(X, np.ndarray) and X.ndim == 2:
        if X.shape[1] != 1:
            raise ValueError(
                f"CTEncoder takes exactly one column of CT references, got {X.shape[1]}"
            )
        return list(X[:, 0]), None
    if isinstance(X, list | tuple | np.ndarray):
        return list(X), None
    raise TypeError(
        f"X of type {type(X).__name__} is not a column of CT references; pass a one-column "
        "DataFrame, a Series or a list of NIfTI paths, DICOM folders or 3-D arrays"
    )
