"""The column of CT references that ``CTEncoder`` takes: parsing, options, errors, the report."""

from __future__ import annotations

import os
import re
from numbers import Integral

import numpy as np
import pandas as pd

from .._hints import did_you_mean
from .._warnings import warn_user
from ..exceptions import CTReadError


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


_SERIES_RULES = ("largest", "error")
_UID = re.compile(r"[0-9]+(\.[0-9]+)+")


def check_dicom_series(value) -> None:
    """``dicom_series`` is "largest", "error" or a DICOM UID (digits and dots)."""
    if value in _SERIES_RULES or (isinstance(value, str) and _UID.fullmatch(value)):
        return
    raise ValueError(
        f"dicom_series={value!r} is neither 'largest', 'error' nor a SeriesInstanceUID "
        f"(digits and dots, e.g. '1.2.840.113619.2.55.3');{did_you_mean(value, _SERIES_RULES)} "
        "pass 'largest' (most slices, then thinnest), 'error' or the UID of the series"
    )


def check_token_grid(grid) -> tuple[int, int, int]:
    """``token_grid`` as a tuple of 3 positive ints."""
    if (
        not isinstance(grid, list | tuple)
        or len(grid) != 3
        or not all(isinstance(g, Integral) and g >= 1 for g in grid)
    ):
        raise ValueError(f"token_grid={grid!r} must be 3 positive integers, e.g. (2, 2, 2)")
    return tuple(int(g) for g in grid)


def check_cache_dir(cache_dir) -> None:
    """``cache_dir`` is None, absent (created at the first write) or a folder."""
    if cache_dir is not None and os.path.exists(cache_dir) and not os.path.isdir(cache_dir):
        raise ValueError(
            f"cache_dir={str(cache_dir)!r} is a file, not a folder; pass a folder "
            "path (created if absent) or cache_dir=None"
        )


def report_read_errors(errors: list[tuple[int, str]], on_error: str, n_rows=None) -> None:
    """Raise (``on_error="raise"``) or warn once, at the caller's line, for all rows."""
    if not errors:
        return
    errors = sorted(errors)
    first = errors[0][1]
    if on_error == "raise":
        raise CTReadError(
            f"{first} (row {errors[0][0]}; {len(errors)} unreadable CT inputs in total; "
            "set on_error='nan' to encode them as missing)"
        )
    of = f" of {n_rows}" if n_rows is not None else ""
    warn_user(
        f"{len(errors)}{of} CT inputs could not be read and give NaN rows (first, row "
        f"{errors[0][0]}: {first}); see input_report_ for every row, fix or remove "
        "these inputs, or set on_error='raise' to stop at the first"
    )


_REPORT_COLUMNS = (
    "reference",
    "status",
    "format",
    "series_uid",
    "n_slices",
    "slice_thickness",
    "n_ct_series",
    "n_skipped_files",
    "lung_share",
    "error",
)


def _reference_text(ref) -> str | None:
    if _is_missing(ref):
        return None
    if isinstance(ref, np.ndarray):
        return f"array of shape {ref.shape}"
    return str(ref)


def input_report(X, refs, infos: dict, errors: dict, dicom_series: str) -> pd.DataFrame:
    """One row per CT reference: what was read (format, DICOM series chosen) or the error.

    Rows read from the embedding cache are described from their DICOM headers
    only (no voxel is read), with the same series rule.
    """
    from ..datasets._imaging import describe_ct_reference

    rows = []
    for i, ref in enumerate(refs):
        row = dict.fromkeys(_REPORT_COLUMNS)
        row["reference"] = _reference_text(ref)
        info = infos.get(i, {})
        if _is_missing(ref):
            row["status"] = "missing"
        elif i in errors:
            row.update(status="error", error=errors[i])
        elif info.get("status") == "cached":
            row.update(describe_ct_reference(ref, dicom_series), status="cached")
        else:
            row.update(info, status="encoded")
        rows.append(row)
    index = X.index if isinstance(X, pd.DataFrame | pd.Series) else None
    report = pd.DataFrame(rows, columns=list(_REPORT_COLUMNS), index=index)
    counts = ["n_slices", "n_ct_series", "n_skipped_files"]
    report[counts] = report[counts].astype("Int64")
    report["slice_thickness"] = report["slice_thickness"].astype(float)
    report["lung_share"] = report["lung_share"].astype(float)
    return report
