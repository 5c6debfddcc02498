"""MEDS event tables and cohort tables: reading and validation.

MEDS (the Medical Event Data Standard) stores one row per measurement with the
columns ``subject_id`` (int), ``time`` (datetime), ``code`` (string) and
``numeric_value`` (float, nullable); a MEDS root folder holds parquet shards
under ``data/``. Rows with a null ``time`` are *static* measurements (MEDS
convention) and are treated as known before any prediction time.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .._hints import closest_match, did_you_mean

__all__ = ["MEDS_COLUMNS", "read_meds", "validate_cohort"]

#: The MEDS core columns every event table must have.
MEDS_COLUMNS = ("subject_id", "time", "code", "numeric_value")


def subject_id_type_error(what: str, got: str) -> TypeError:
    """The one error for non-integer subject ids (events, folders, cohorts, the CLI)."""
    return TypeError(
        f"{what} column 'subject_id' must hold integers, got {got}. MEDS subject ids are "
        "int64 and multimodal_surv requires integers everywhere (cohort table and events): "
        "map each identifier to one integer, with the same mapping in both, e.g. "
        "`ids = {s: i for i, s in enumerate(sorted(set(events.subject_id)))}`, then "
        "`df['subject_id'] = df['subject_id'].map(ids)`."
    )


def _missing_columns_error(what: str, missing, present) -> ValueError:
    close = [(m, closest_match(m, present)) for m in missing]
    hints = "".join(f"; {m!r} (did you mean {c!r}?)" for m, c in close if c)
    return ValueError(
        f"{what} is missing required column(s) {list(missing)}{hints}. "
        f"Columns present: {list(present)[:20]}. MEDS event tables need "
        f"{list(MEDS_COLUMNS)}; rename your columns accordingly."
    )


def _to_datetime(values: pd.Series, name: str, what: str) -> pd.Series:
    """Return ``values`` as tz-naive datetime64[ns]; raise a clear error otherwise."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        raise TypeError(
            f"{what} column {name!r} is timezone-aware ({values.dtype}); convert it to "
            f"naive times in one reference zone first, e.g. "
            f"`df[{name!r}] = df[{name!r}].dt.tz_convert(None)`."
        )
    if pd.api.types.is_datetime64_dtype(values.dtype):
        return values.astype("datetime64[ns]")
    if pd.api.types.is_numeric_dtype(values.dtype) and values.notna().any():
        raise TypeError(
            f"{what} column {name!r} is numeric ({values.dtype}), not datetimes; convert it "
            f"explicitly, e.g. `pd.to_datetime(df[{name!r}], unit='s')`."
        )
    parsed = pd.to_datetime(values, errors="coerce", format="mixed")
    bad = parsed.isna() & values.notna()
    if bad.any():
        first = values[bad].iloc[0]
        raise ValueError(
            f"{what} column {name!r} has {int(bad.sum())} value(s) that cannot be parsed as "
            f"datetimes (first: {first!r}); pass datetime64 values or ISO 8601 strings."
        )
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        raise TypeError(
            f"{what} column {name!r} holds timezone-aware strings; convert them to naive "
            "times in one reference zone first."
        )
    return parsed.astype("datetime64[ns]")


def _validate_events_frame(frame: pd.DataFrame, what: str = "events") -> pd.DataFrame:
    """Check MEDS columns/dtypes and return a normalised frame (no copy where possible)."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(
            f"{what} must be a pandas DataFrame, a MEDS root folder or a MEDSEvents handle; "
            f"got {type(frame).__name__}."
        )
    missing = [c for c in MEDS_COLUMNS if c not in frame.columns]
    if missing:
        raise _missing_columns_error(what, missing, frame.columns)
    if len(frame) == 0:
        raise ValueError(
            f"{what} table is empty (0 rows); pass a MEDS table with at least one event."
        )
    out = {}
    sid = frame["subject_id"]
    if not pd.api.types.is_integer_dtype(sid.dtype):
        if sid.isna().any():
            raise ValueError(
                f"{what} column 'subject_id' has {int(sid.isna().sum())} missing value(s) "
                f"(dtype {sid.dtype}); every event needs a subject: drop rows without one."
            )
        raise subject_id_type_error(what, f"dtype {sid.dtype} (first: {sid.iloc[0]!r})")
    if sid.isna().any():  # nullable Int64
        raise ValueError(
            f"{what} column 'subject_id' has {int(sid.isna().sum())} missing value(s); "
            "every event needs a subject."
        )
    out["subject_id"] = sid.to_numpy(dtype=np.int64)
    out["time"] = _to_datetime(frame["time"], "time", what)
    code = frame["code"]
    # Null codes are kept here; the encoders leave them out (counted) or refuse
    # them, as their on_invalid says.
    if not (
        isinstance(code.dtype, pd.CategoricalDtype)
        or pd.api.types.is_string_dtype(code.dtype)
        or pd.api.types.is_object_dtype(code.dtype)
    ):
        raise TypeError(
            f"{what} column 'code' must hold strings, got dtype {code.dtype}; convert with "
            "`.astype(str)`."
        )
    out["code"] = code
    val = frame["numeric_value"]
    if pd.api.types.is_bool_dtype(val.dtype) or not (
        pd.api.types.is_numeric_dtype(val.dtype) or val.isna().all()
    ):
        bad = pd.to_numeric(val, errors="coerce").isna() & val.notna()
        first = val[bad].iloc[0] if bad.any() else val.iloc[0]
        raise TypeError(
            f"{what} column 'numeric_value' must be numeric (float, null when absent), got "
            f"dtype {val.dtype} (first non-numeric value: {first!r}); put text in "
            "'text_value' and convert with `pd.to_numeric(..., errors='coerce')` if intended."
        )
    out["numeric_value"] = val.to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.DataFrame(out, index=frame.index, copy=False)


def _shard_files(root: Path) -> list[Path]:
    data = root / "data"
    if not data.is_dir():
        raise ValueError(
            f"MEDS root folder {str(root)!r} has no 'data/' sub-folder; pass the MEDS root "
            "(the folder that contains data/*.parquet), or a DataFrame."
        )
    files = sorted(data.rglob("*.parquet"))
    if not files:
        raise ValueError(
            f"MEDS root folder {str(root)!r} holds no parquet shards under 'data/'; "
            "write events with `df.to_parquet(root / 'data' / '0.parquet')`."
        )
    return files


def _folder_dataset(root: Path, columns, files=None, schema=None):
    """``(dataset, columns)`` of a MEDS root folder (columns checked).

    String codes are read dictionary-encoded, as parquet stores them: each
    distinct code is decoded once per row group instead of once per event, and
    the codes arrive as integer indices (a pandas categorical).
    """
    import pyarrow as pa
    import pyarrow.dataset as ds

    if files is None:
        files = _shard_files(root)
    paths = [str(f) for f in files]
    fmt = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=["code"]))
    if schema is None:
        schema = ds.dataset(paths, format="parquet").schema
        j = schema.get_field_index("code")
        if j >= 0 and (
            pa.types.is_string(schema.types[j]) or pa.types.is_large_string(schema.types[j])
        ):
            schema = schema.set(j, pa.field("code", pa.dictionary(pa.int32(), schema.types[j])))
    dataset = ds.dataset(paths, format=fmt, schema=schema)
    names = dataset.schema.names
    missing = [c for c in MEDS_COLUMNS if c not in names]
    if missing:
        raise _missing_columns_error(f"MEDS folder {str(root)!r}", missing, names)
    check_arrow_subject_id(dataset.schema, f"MEDS folder {str(root)!r}")
    cols = list(MEDS_COLUMNS) if columns is None else list(columns)
    unknown = [c for c in cols if c not in names]
    if unknown:
        raise _missing_columns_error(f"MEDS folder {str(root)!r}", unknown, names)
    return dataset, cols


def check_arrow_subject_id(schema, what: str) -> None:
    """Raise :func:`subject_id_type_error` when a parquet ``subject_id`` is not an integer."""
    import pyarrow as pa

    kind = schema.field("subject_id").type
    if not pa.types.is_integer(kind):
        raise subject_id_type_error(what, f"parquet type {kind}")


def subject_runs(sid: np.ndarray, subjects: np.ndarray):
    """``(k, hit, length)`` of each run of equal ids in ``sid``, looked up in ``subjects``.

    ``subjects`` is sorted and unique; run ``r`` has ``length[r]`` events of
    ``subjects[k[r]]`` when ``hit[r]``. MEDS shards are sorted by subject, so
    the runs are far fewer than the events and only their first ids are looked
    up (the result is right for unsorted ids too, just with more runs).
    """
    cut = np.concatenate([[0], np.flatnonzero(sid[1:] != sid[:-1]) + 1, [sid.size]])
    head, length = sid[cut[:-1]], np.diff(cut)
    k = np.minimum(np.searchsorted(subjects, head), max(subjects.size - 1, 0))
    hit = subjects[k] == head if subjects.size else np.zeros(head.size, bool)
    return k, hit, length


def _keep_subjects(batch, subjects: np.ndarray):
    """The rows of ``batch`` (a record batch) whose ``subject_id`` is in ``subjects``."""
    import pyarrow as pa

    col = batch.column(batch.schema.get_field_index("subject_id"))
    valid = None
    if col.null_count:
        valid = col.is_valid().to_numpy(zero_copy_only=False)
        col = col.fill_null(0)
    sid = col.to_numpy().astype(np.int64, copy=False)
    if sid.size == 0:
        return batch
    _, hit, length = subject_runs(sid, subjects)
    if valid is None and hit.all():
        return batch  # the usual case: a shard of the wanted subjects only
    keep = np.repeat(hit, length)
    if valid is not None:
        keep &= valid
    return batch.filter(pa.array(keep))


def _read_meds_folder(root: Path, columns, subjects, files=None, schema=None) -> pd.DataFrame:
    import pyarrow as pa

    dataset, cols = _folder_dataset(root, columns, files, schema)
    if subjects is not None:
        subjects = np.unique(np.asarray(subjects, dtype=np.int64))
    # Streamed batch by batch: only the selected subjects' rows are materialised.
    tables = []
    for batch in dataset.to_batches(columns=cols, batch_size=1 << 20):
        if subjects is not None and batch.num_rows:
            batch = _keep_subjects(batch, subjects)
        if batch.num_rows:
            tables.append(batch)
    if not tables:
        table = dataset.schema.empty_table().select(cols)
    else:
        table = pa.Table.from_batches(tables)
    return table.to_pandas(types_mapper=None, categories=["code"] if "code" in cols else None)


def read_meds(
    source,
    columns: list[str] | None = None,
    subjects=None,
) -> pd.DataFrame:
    """Read and validate a MEDS event table.

    Parameters
    ----------
    source : DataFrame, str, os.PathLike or MEDSEvents
        A MEDS event table, or a MEDS root folder whose parquet shards live under
        ``data/`` (read shard by shard with ``pyarrow.dataset``).
    columns : list of str, optional
        Extra columns to keep (``text_value`` ...). The MEDS core columns are
        always returned.
    subjects : array-like of int, optional
        Keep only these subjects (pushed down to the parquet reader).

    Returns
    -------
    events : DataFrame
        Columns ``subject_id`` (int64), ``time`` (datetime64[ns], NaT = static),
        ``code`` (string or categorical), ``numeric_value`` (float64), plus the
        requested extra columns, in source order.

    Raises
    ------
    ValueError
        Missing columns, unparseable times, an empty table or a folder without
        ``data/*.parquet``.
    TypeError
        Non-integer ``subject_id``, non-numeric ``numeric_value``, time-zone aware
        times or an unsupported ``source``.

    Examples
    --------
    >>> import pandas as pd
    >>> from multimodal_surv.datasets import read_meds
    >>> df = pd.DataFrame({"subject_id": [1, 1], "time": ["2020-01-01", "2020-02-01"],
    ...                    "code": ["A", "B"], "numeric_value": [None, 1.5]})
    >>> read_meds(df).dtypes["time"]
    dtype('<M8[ns]')
    """
    from ._events import MEDSEvents  # the handle is built on read_meds

    if isinstance(source, MEDSEvents):
        source = source.source
    extra = [c for c in (columns or []) if c not in MEDS_COLUMNS]
    if isinstance(source, pd.DataFrame):
        missing = [c for c in extra if c not in source.columns]
        if missing:
            raise _missing_columns_error("events", missing, source.columns)
        frame = source
        if len(frame) == 0:
            _validate_events_frame(frame)  # raises: missing columns or empty table
        if subjects is not None and "subject_id" in frame.columns:
            # Check the id type before subsetting: ids of another type match no
            # subject and would otherwise pass silently as "no events".
            if not pd.api.types.is_integer_dtype(frame["subject_id"].dtype):
                _validate_events_frame(frame)  # raises the subject_id TypeError
            frame = frame[frame["subject_id"].isin(np.asarray(subjects))]
            if len(frame) == 0:
                return _empty_events(extra)
        out = _validate_events_frame(frame)
    elif isinstance(source, str | os.PathLike):
        return _read_folder_validated(_folder_root(source), extra, subjects)
    else:
        raise TypeError(
            "events must be a pandas DataFrame, a MEDS root folder path or a MEDSEvents "
            f"handle; got {type(source).__name__}."
        )
    for c in extra:
        out[c] = frame[c].to_numpy()
    return out


def _folder_root(source) -> Path:
    root = Path(source)
    if not root.exists():
        raise ValueError(
            f"MEDS root folder {str(root)!r} does not exist; pass an existing MEDS root "
            "folder (with data/*.parquet) or a DataFrame."
        )
    return root


def _read_folder_validated(root: Path, extra, subjects, files=None, schema=None):
    """Validated events of a MEDS folder (optionally only ``files``, with ``schema``)."""
    frame = _read_meds_folder(root, list(MEDS_COLUMNS) + list(extra), subjects, files, schema)
    if len(frame) == 0 and subjects is not None:
        return _empty_events(extra)
    out = _validate_events_frame(frame, what=f"MEDS folder {str(root)!r}")
    for c in extra:
        out[c] = frame[c].to_numpy()
    return out


def _empty_events(extra=()) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            "subject_id": np.zeros(0, np.int64),
            "time": np.zeros(0, "datetime64[ns]"),
            "code": pd.Series([], dtype=object),
            "numeric_value": np.zeros(0, np.float64),
        }
    )
    for c in extra:
        out[c] = pd.Series([], dtype=object)
    return out


def validate_cohort(cohort) -> pd.DataFrame:
    """Check a cohort table and return its ``subject_id`` / ``prediction_time`` columns.

    Parameters
    ----------
    cohort : DataFrame
        One row per prediction with ``subject_id`` (int) and ``prediction_time``
        (datetime or ISO strings).

    Returns
    -------
    cohort : DataFrame
        ``subject_id`` as int64 and ``prediction_time`` as datetime64[ns], same
        index as the input.

    Raises
    ------
    ValueError
        Missing columns, missing or unparseable times, duplicated rows.
    TypeError
        Not a DataFrame, or non-integer ``subject_id``.

    Examples
    --------
    >>> import pandas as pd
    >>> from multimodal_surv.datasets import validate_cohort
    >>> validate_cohort(pd.DataFrame({"subject_id": [1], "prediction_time": ["2021-01-01"]}))
       subject_id prediction_time
    0           1      2021-01-01
    """
    if not isinstance(cohort, pd.DataFrame):
        raise TypeError(
            "the cohort must be a pandas DataFrame with columns 'subject_id' and "
            f"'prediction_time'; got {type(cohort).__name__}. In a ColumnTransformer select "
            "the columns by name: ('ehr', EHRCountEncoder(...), ['subject_id', 'prediction_time'])."
        )
    missing = [c for c in ("subject_id", "prediction_time") if c not in cohort.columns]
    if missing:
        hints = "".join(did_you_mean(m, cohort.columns) for m in missing)
        raise ValueError(
            f"cohort is missing column(s) {missing}{hints}. Columns present: "
            f"{list(cohort.columns)[:20]}; the cohort needs 'subject_id' and 'prediction_time'."
        )
    sid = cohort["subject_id"]
    if sid.isna().any():
        raise ValueError(
            f"cohort column 'subject_id' has {int(sid.isna().sum())} missing value(s); "
            "every prediction needs a subject: drop those rows."
        )
    if not pd.api.types.is_integer_dtype(sid.dtype):
        raise subject_id_type_error("cohort", f"dtype {sid.dtype} (first: {sid.iloc[0]!r})")
    pt = _to_datetime(cohort["prediction_time"], "prediction_time", "cohort")
    if pt.isna().any():
        raise ValueError(
            f"cohort column 'prediction_time' has {int(pt.isna().sum())} missing value(s) "
            f"(first at position {int(np.flatnonzero(pt.isna().to_numpy())[0])}); every "
            "prediction needs an index time."
        )
    out = pd.DataFrame(
        {"subject_id": sid.to_numpy(dtype=np.int64), "prediction_time": pt.to_numpy()},
        index=cohort.index,
    )
    dup = out.duplicated()
    if dup.any():
        first = out[dup].iloc[0]
        raise ValueError(
            f"cohort has {int(dup.sum())} duplicated (subject_id, prediction_time) row(s) "
            f"(first: subject_id={int(first['subject_id'])}, "
            f"prediction_time={first['prediction_time']}); drop them with "
            "`cohort.drop_duplicates(['subject_id', 'prediction_time'])`."
        )
    return out
