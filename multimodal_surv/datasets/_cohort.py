"""Cohort folder format: one table of predictions, CT files and a MEDS root.

The layout is documented in ``docs/cohort_format.md``::

    <root>/
      cohort.csv  (or cohort.parquet)   one row per prediction
      meds/data/*.parquet               MEDS events (subject_id, time, code, numeric_value)
      ct/...                            NIfTI files or DICOM series folders (any layout)
      oracle.csv                        optional known true log-hazard (synthetic cohorts)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from sklearn.utils import Bunch
from sksurv.util import Surv

from .._hints import did_you_mean
from .._warnings import warn_user
from ._meds import check_arrow_subject_id, subject_id_type_error

__all__ = ["COHORT_COLUMNS", "SITES", "SPLITS", "load_cohort_folder"]

#: Columns every cohort table must hold (``site`` is optional, default ``"internal"``).
COHORT_COLUMNS = ("subject_id", "prediction_time", "ct", "event", "time", "split")
#: Allowed values of the ``site`` column.
SITES = ("internal", "external")
#: Allowed values of the ``split`` column.
SPLITS = ("train", "test")
# Columns every MEDS data shard must hold.
_MEDS_COLUMNS = ("subject_id", "time", "code", "numeric_value")
_COHORT_FILES = ("cohort.csv", "cohort.parquet")
_ORACLE_FILE = "oracle.csv"
_TRUE = {"1", "1.0", "true", "True", "TRUE"}
_FALSE = {"0", "0.0", "false", "False", "FALSE"}


def _first(values, k: int = 3) -> str:
    values = list(values)
    shown = ", ".join(repr(v.item() if isinstance(v, np.generic) else v) for v in values[:k])
    return shown + (f" ... ({len(values)} in all)" if len(values) > k else "")


def _read_table(path: Path) -> pd.DataFrame:
    try:
        if path.suffix == ".csv":
            # Everything as text, so each column is parsed (and reported) by us.
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        return pd.read_parquet(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise ValueError(
            f"{path}: could not be read as a {path.suffix[1:]} table ({exc}); "
            "write it with pandas.DataFrame.to_csv / to_parquet."
        ) from exc


def _parse_subject_id(values: pd.Series, where: str) -> np.ndarray:
    if pd.api.types.is_integer_dtype(values.dtype):
        return values.to_numpy(dtype=np.int64)
    text = values.astype(str).str.strip()
    bad = ~text.str.fullmatch(r"[+-]?\d+")
    if bad.any():
        got = f"{int(bad.sum())} non-integer value(s) (first: {_first(values[bad])})"
        raise subject_id_type_error(f"{where}:", got)
    return text.astype(np.int64).to_numpy()


def _parse_datetime(values: pd.Series, where: str, column: str) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        parsed = values
    else:
        text = values.astype(str).str.strip()
        parsed = pd.to_datetime(text, format="ISO8601", errors="coerce")
        bad = parsed.isna().to_numpy()
        if bad.any():
            raise ValueError(
                f"{where}: column {column!r} has {int(bad.sum())} values that are not ISO "
                f"datetimes (first: {_first(values[bad])}); write e.g. '2017-03-14T09:30:00'."
            )
    if getattr(parsed.dt, "tz", None) is not None:
        raise ValueError(
            f"{where}: column {column!r} holds time-zone aware datetimes ({parsed.iloc[0]!r}); "
            "MEDS times are naive local times: convert with .dt.tz_localize(None)."
        )
    if parsed.isna().any():
        raise ValueError(
            f"{where}: column {column!r} has {int(parsed.isna().sum())} missing values; "
            "every prediction needs its index time."
        )
    return parsed.astype("datetime64[ns]").reset_index(drop=True)


def _parse_event(values: pd.Series, where: str) -> np.ndarray:
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.to_numpy(dtype=bool)
    text = values.astype(str).str.strip()
    bad = ~text.isin(_TRUE | _FALSE)
    if bad.any():
        raise ValueError(
            f"{where}: column 'event' must be binary (0/1 or true/false); "
            f"{int(bad.sum())} rows are not (first: {_first(values[bad])}). "
            "Use 1 for an observed event and 0 for a censored row."
        )
    return text.isin(_TRUE).to_numpy()


def _parse_time(values: pd.Series, where: str) -> np.ndarray:
    time = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(time)
    if bad.any():
        raise ValueError(
            f"{where}: column 'time' must hold finite numbers (days from prediction_time to "
            f"event or censoring); {int(bad.sum())} rows do not (first: {_first(values[bad])})."
        )
    bad = time <= 0
    if bad.any():
        raise ValueError(
            f"{where}: column 'time' must be > 0 (days after prediction_time); "
            f"{int(bad.sum())} rows are not (first: {_first(time[bad])}). An event at the index "
            "time itself cannot be predicted from data up to that time: drop such rows."
        )
    return time


def _parse_choice(values: pd.Series, where: str, column: str, allowed) -> np.ndarray:
    text = values.astype(str).str.strip()
    bad = ~text.isin(allowed)
    if bad.any():
        first = str(text[bad].iloc[0])
        raise ValueError(
            f"{where}: column {column!r} may only hold {list(allowed)}; "
            f"{int(bad.sum())} rows hold other values (first: {first!r})."
            + did_you_mean(first, allowed)
        )
    return text.to_numpy(dtype=object)


def _parse_ct(values: pd.Series, root: Path, where: str) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    missing_files = []
    for i, value in enumerate(values):
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            out[i] = None
            continue
        text = str(value).strip()
        if text == "":
            out[i] = None
            continue
        path = Path(text)
        path = path if path.is_absolute() else root / path
        if not path.exists():
            missing_files.append(text)
        out[i] = str(path)
    if missing_files:
        raise ValueError(
            f"{where}: column 'ct' has {len(missing_files)} paths that do not exist "
            f"(first: {_first(missing_files)}); paths are relative to {root} or absolute. "
            "Pass existing NIfTI files or DICOM series folders, or leave the cell empty "
            "when a subject has no CT."
        )
    return out


def _check_meds_root(meds_root: Path) -> None:
    if not meds_root.is_dir():
        raise ValueError(
            f"{meds_root}: the MEDS root folder is missing; put the EHR events there as "
            "parquet shards under meds/data/ (columns subject_id, time, code, numeric_value)."
        )
    data = meds_root / "data"
    shards = sorted(data.rglob("*.parquet")) if data.is_dir() else []
    if not shards:
        raise ValueError(
            f"{data}: no parquet shards found; a MEDS root holds its events as "
            "data/*.parquet (columns subject_id, time, code, numeric_value)."
        )
    for shard in shards:
        try:
            names = pq.read_schema(shard).names
        except Exception as exc:  # pyarrow raises several error types for a bad file
            raise ValueError(f"{shard}: not a readable parquet file ({exc}).") from exc
        for column in _MEDS_COLUMNS:
            if column not in names:
                raise ValueError(
                    f"{shard}: MEDS column {column!r} is missing (columns: {names})."
                    + did_you_mean(column, names)
                )
        check_arrow_subject_id(pq.read_schema(shard), f"{shard}:")


def _read_oracle(path: Path, cohort: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    table = _read_table(path)
    for column in ("subject_id", "prediction_time", "log_hazard"):
        if column not in table.columns:
            raise ValueError(
                f"{path}: column {column!r} is missing (columns: {list(table.columns)})."
                + did_you_mean(column, table.columns)
            )
    key = pd.DataFrame(
        {
            "subject_id": _parse_subject_id(table["subject_id"], str(path)),
            "prediction_time": _parse_datetime(
                table["prediction_time"], str(path), "prediction_time"
            ),
        }
    )
    parts = table.drop(columns=["subject_id", "prediction_time"]).apply(pd.to_numeric)
    parts = pd.concat([key, parts.reset_index(drop=True)], axis=1)
    merged = cohort[["subject_id", "prediction_time"]].merge(
        parts, on=["subject_id", "prediction_time"], how="left", validate="one_to_one"
    )
    if merged["log_hazard"].isna().any():
        raise ValueError(
            f"{path}: has no log_hazard for {int(merged['log_hazard'].isna().sum())} cohort rows; "
            "it must hold one row per (subject_id, prediction_time) of the cohort table, "
            "or be deleted."
        )
    oracle = merged["log_hazard"].to_numpy(dtype=float)
    return oracle, merged.drop(columns=["subject_id", "prediction_time"])


def _find_cohort_file(root: Path) -> Path:
    if not root.is_dir():
        raise ValueError(
            f"cohort folder {root} does not exist or is not a folder; pass the folder that "
            "holds cohort.csv and meds/ (see docs/cohort_format.md)."
        )
    found = [root / name for name in _COHORT_FILES if (root / name).is_file()]
    if len(found) > 1:
        raise ValueError(
            f"{root}: holds both cohort.csv and cohort.parquet; keep exactly one cohort table."
        )
    if not found:
        present = sorted(p.name for p in root.iterdir())
        hint = did_you_mean("cohort.csv", present) or did_you_mean("cohort.parquet", present)
        raise ValueError(
            f"{root / 'cohort.csv'}: cohort table not found (folder holds: {present}); "
            "write one row per prediction to cohort.csv or cohort.parquet." + hint
        )
    return found[0]


def _parse_cohort(table: pd.DataFrame, root: Path, where: str) -> pd.DataFrame:
    """The typed cohort table (checked columns, sites, splits, duplicates)."""
    if len(table) == 0:
        raise ValueError(f"{where}: the cohort table has no rows; add one row per prediction.")
    for column in COHORT_COLUMNS:
        if column not in table.columns:
            raise ValueError(
                f"{where}: required column {column!r} is missing "
                f"(columns: {list(table.columns)})." + did_you_mean(column, table.columns)
            )
    table = table.reset_index(drop=True)
    site = (
        _parse_choice(table["site"], where, "site", SITES)
        if "site" in table.columns
        else np.full(len(table), "internal", dtype=object)
    )
    split = _parse_choice(table["split"], where, "split", SPLITS)
    bad = (site == "external") & (split == "train")
    if bad.any():
        raise ValueError(
            f"{where}: {int(bad.sum())} rows have site 'external' and split 'train' "
            f"(first subject_id: {table['subject_id'][bad].iloc[0]}); the external site is "
            "for testing only: set split to 'test' or site to 'internal'."
        )
    cohort = pd.DataFrame(
        {
            "subject_id": _parse_subject_id(table["subject_id"], where),
            "prediction_time": _parse_datetime(table["prediction_time"], where, "prediction_time"),
            "ct": _parse_ct(table["ct"], root, where),
            "event": _parse_event(table["event"], where),
            "time": _parse_time(table["time"], where),
            "site": site,
            "split": split,
        }
    )
    duplicated = cohort.duplicated(["subject_id", "prediction_time"], keep=False)
    if duplicated.any():
        row = cohort[duplicated].iloc[0]
        raise ValueError(
            f"{where}: {int(duplicated.sum())} rows repeat a (subject_id, prediction_time) pair "
            f"(first: subject_id={row['subject_id']}, prediction_time={row['prediction_time']}); "
            "each prediction must appear once: drop the duplicates."
        )
    extra = [c for c in table.columns if c not in cohort.columns]
    return pd.concat([cohort, table[extra]], axis=1) if extra else cohort


def _check_subject_splits(cohort: pd.DataFrame, where: str, allow: bool) -> None:
    """Refuse a subject with rows in both splits: its test rows would leak from training."""
    n_splits = cohort.groupby("subject_id")["split"].nunique()
    shared = n_splits.index[n_splits.to_numpy() > 1]
    if shared.size == 0:
        return
    if allow:
        warn_user(
            f"{where}: {shared.size} subject(s) have rows in both the train and the test "
            f"split (first: {_first(shared)}); allowed by allow_subject_overlap=True, so the "
            "test rows of these subjects are not independent of training."
        )
        return
    raise ValueError(
        f"{where}: {shared.size} subject(s) have rows in both the train and the test split "
        f"(first: {_first(shared)}); a subject's rows must stay in one split, or its test "
        "rows are not independent of training. Move each subject's rows to one split, or "
        "pass allow_subject_overlap=True (CLI: --allow-subject-overlap) to accept it."
    )


def load_cohort_folder(root: str | os.PathLike, *, allow_subject_overlap: bool = False) -> Bunch:
    """Load and validate a cohort folder (cohort table + CT files + MEDS root).

    The format is described in ``docs/cohort_format.md``: ``<root>/cohort.csv``
    (or ``cohort.parquet``) with one row per prediction and the columns
    ``subject_id``, ``prediction_time``, ``ct``, ``event``, ``time``, ``split``
    and optionally ``site``; ``<root>/meds/`` a MEDS root with ``data/*.parquet``
    shards; optionally ``<root>/oracle.csv`` with the true log-hazard (written by
    :func:`make_synthetic_cohort`).

    Parameters
    ----------
    root : str or path-like
        The cohort folder.
    allow_subject_overlap : bool, default=False
        A subject with rows in both the ``train`` and the ``test`` split (two
        scans, say) raises a ``ValueError`` naming how many subjects do and
        the first ids: its test rows would not be independent of training.
        ``True`` accepts such a cohort with a warning.

    Returns
    -------
    cohort : sklearn.utils.Bunch
        With the fields

        - ``cohort``: DataFrame with ``subject_id`` (int64), ``prediction_time``
          (datetime64[ns]), ``ct`` (absolute path as str, or None when the
          subject has no CT), ``event`` (bool), ``time`` (float, days),
          ``site`` (``"internal"``/``"external"``), ``split``
          (``"train"``/``"test"``), then any further columns of the file.
        - ``y``: scikit-survival structured array with fields ``event``, ``time``.
        - ``oracle``: true log-hazard per row (ndarray) when ``oracle.csv``
          exists, else None.
        - ``oracle_parts``: DataFrame with the oracle's further columns (e.g.
          ``ct_part``, ``ehr_part``), or None.
        - ``root``, ``cohort_file``, ``meds_root``: absolute paths.

    Raises
    ------
    ValueError
        When a file or column is missing or malformed; the message names the
        file, the column, the offending value and the fix.

    See Also
    --------
    make_synthetic_cohort : writes a folder in this format with a known oracle.

    Examples
    --------
    >>> import tempfile
    >>> from multimodal_surv.datasets import load_cohort_folder, make_synthetic_cohort
    >>> root = tempfile.mkdtemp()
    >>> _ = make_synthetic_cohort(root, n_subjects=12, volume_shape=(16, 16, 8), random_state=0)
    >>> data = load_cohort_folder(root)
    >>> data.cohort.columns[:7].tolist()
    ['subject_id', 'prediction_time', 'ct', 'event', 'time', 'site', 'split']
    >>> data.y.dtype.names
    ('event', 'time')
    """
    root = Path(root).expanduser().resolve()
    cohort_file = _find_cohort_file(root)
    where = str(cohort_file)
    table = _read_table(cohort_file)
    cohort = _parse_cohort(table, root, where)
    _check_subject_splits(cohort, where, allow_subject_overlap)
    meds_root = root / "meds"
    _check_meds_root(meds_root)

    oracle, oracle_parts = None, None
    if (root / _ORACLE_FILE).is_file():
        oracle, oracle_parts = _read_oracle(root / _ORACLE_FILE, cohort)

    y = Surv.from_arrays(
        event=cohort["event"].to_numpy(),
        time=cohort["time"].to_numpy(),
        name_event="event",
        name_time="time",
    )
    return Bunch(
        cohort=cohort,
        y=y,
        oracle=oracle,
        oracle_parts=oracle_parts,
        root=root,
        cohort_file=cohort_file,
        meds_root=meds_root,
    )
