"""MEDS event tables: reading, validation and a clone-safe shared handle.

MEDS (the Medical Event Data Standard) stores one row per measurement with the
columns ``subject_id`` (int), ``time`` (datetime), ``code`` (string) and
``numeric_value`` (float, nullable); a MEDS root folder holds parquet shards
under ``data/``. Rows with a null ``time`` are *static* measurements (MEDS
convention) and are treated as known before any prediction time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .._hints import closest_match

__all__ = ["MEDS_COLUMNS", "MEDSEvents", "read_meds", "validate_cohort"]

#: The MEDS core columns every event table must have.
MEDS_COLUMNS = ("subject_id", "time", "code", "numeric_value")

# Static (null-time) events sort before every real time.
_STATIC_TIME = np.iinfo(np.int64).min + 1

#: The MEDS code of a subject's birth; events and prediction times before it are rejected.
BIRTH_CODE = "MEDS_BIRTH"

#: Events per chunk when a MEDS folder is streamed (:class:`EventChunks`).
CHUNK_EVENTS = 1_000_000


def _fmt_ns(value) -> str:
    return str(pd.Timestamp(int(value)))


def _did_you_mean(name: str, choices) -> str:
    close = closest_match(name, choices)
    return f" (did you mean {close!r}?)" if close else ""


def _missing_columns_error(what: str, missing, present) -> ValueError:
    hints = "".join(f"; {m!r}{_did_you_mean(m, present)}" for m in missing)
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
        raise TypeError(
            f"{what} column 'subject_id' must hold integers, got dtype {sid.dtype}"
            f"{' with missing values' if sid.isna().any() else ''}; drop rows without a "
            "subject and convert with `.astype('int64')`."
        )
    if sid.isna().any():  # nullable Int64
        raise ValueError(
            f"{what} column 'subject_id' has {int(sid.isna().sum())} missing value(s); "
            "every event needs a subject."
        )
    out["subject_id"] = sid.to_numpy(dtype=np.int64)
    out["time"] = _to_datetime(frame["time"], "time", what)
    code = frame["code"]
    if code.isna().any():
        raise ValueError(
            f"{what} column 'code' has {int(code.isna().sum())} missing value(s) "
            f"(first at row {int(np.flatnonzero(code.isna().to_numpy())[0])}); every MEDS "
            "event needs a code."
        )
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
    """``(dataset, columns)`` of a MEDS root folder (columns checked)."""
    import pyarrow.dataset as ds

    if files is None:
        files = _shard_files(root)
    dataset = ds.dataset([str(f) for f in files], format="parquet", schema=schema)
    names = dataset.schema.names
    missing = [c for c in MEDS_COLUMNS if c not in names]
    if missing:
        raise _missing_columns_error(f"MEDS folder {str(root)!r}", missing, names)
    cols = list(MEDS_COLUMNS) if columns is None else list(columns)
    unknown = [c for c in cols if c not in names]
    if unknown:
        raise _missing_columns_error(f"MEDS folder {str(root)!r}", unknown, names)
    return dataset, cols


def _read_meds_folder(root: Path, columns, subjects, files=None, schema=None) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.compute as pc

    dataset, cols = _folder_dataset(root, columns, files, schema)
    filt = None
    if subjects is not None:
        filt = pc.field("subject_id").isin(np.unique(np.asarray(subjects, dtype=np.int64)))
    # Streamed batch by batch: only the selected subjects' rows are materialised.
    tables = [
        batch
        for batch in dataset.to_batches(columns=cols, filter=filt, batch_size=1 << 20)
        if batch.num_rows
    ]
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
        Missing columns, unparseable times, missing codes, an empty table or a
        folder without ``data/*.parquet``.
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
            "the columns by name: ('ehr', EHREncoder(...), ['subject_id', 'prediction_time'])."
        )
    missing = [c for c in ("subject_id", "prediction_time") if c not in cohort.columns]
    if missing:
        hints = "".join(f"; {m!r}{_did_you_mean(m, cohort.columns)}" for m in missing)
        raise ValueError(
            f"cohort is missing column(s) {missing}{hints}. Columns present: "
            f"{list(cohort.columns)[:20]}; the cohort needs 'subject_id' and 'prediction_time'."
        )
    sid = cohort["subject_id"]
    if not pd.api.types.is_integer_dtype(sid.dtype) or sid.isna().any():
        raise TypeError(
            f"cohort column 'subject_id' must hold integers without missing values, got dtype "
            f"{sid.dtype}; convert with `.astype('int64')`."
        )
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


@dataclass(frozen=True)
class EventArrays:
    """Events as sorted columnar arrays (by subject, then time; stable).

    Attributes
    ----------
    subjects : ndarray of int64, shape (n_subjects,)
        Sorted unique subject ids.
    starts : ndarray of int64, shape (n_subjects + 1,)
        Events of ``subjects[k]`` are rows ``starts[k]:starts[k + 1]``.
    time : ndarray of int64
        Event times in ns since the epoch (static events: a very small value).
    code_ids : ndarray of int32
        Index of each event's code into ``codes``.
    codes : ndarray of str
        Sorted unique codes.
    numeric_value : ndarray of float64
        NaN where absent.
    key : ndarray of int64
        ``subject_index * (n_times + 1) + time_rank``: sorted, so one
        ``searchsorted`` finds "events of subject s with time <= t" exactly.
    unique_times : ndarray of int64
        Sorted unique event times (the ranks of ``key``).
    """

    subjects: np.ndarray
    starts: np.ndarray
    time: np.ndarray
    code_ids: np.ndarray
    codes: np.ndarray
    numeric_value: np.ndarray
    key: np.ndarray
    unique_times: np.ndarray
    birth_subjects: np.ndarray | None = None
    birth_time: np.ndarray | None = None

    @property
    def n_events(self) -> int:
        return int(self.time.shape[0])

    @classmethod
    def from_frame(cls, events: pd.DataFrame) -> EventArrays:
        """Build from a frame already validated by :func:`read_meds`."""
        sid = events["subject_id"].to_numpy(dtype=np.int64)
        t = events["time"].to_numpy(dtype="datetime64[ns]").view(np.int64).copy()
        t[t == np.iinfo(np.int64).min] = _STATIC_TIME  # NaT -> static
        code = events["code"]
        if isinstance(code.dtype, pd.CategoricalDtype):
            cats = np.asarray(code.cat.categories.astype(str), dtype=object)
            order = np.argsort(cats)
            inv = np.empty_like(order)
            inv[order] = np.arange(order.size)
            codes_all = code.cat.codes.to_numpy()
            code_ids = inv[codes_all].astype(np.int32)
            codes = cats[order]
            used = np.unique(code_ids)
            if used.size < codes.size:  # drop unused categories
                remap = np.full(codes.size, -1, np.int32)
                remap[used] = np.arange(used.size, dtype=np.int32)
                code_ids, codes = remap[code_ids], codes[used]
        else:
            codes, code_ids = np.unique(
                code.astype(str).to_numpy(dtype=object), return_inverse=True
            )
            code_ids = code_ids.astype(np.int32)
        val = events["numeric_value"].to_numpy(dtype=np.float64)
        # MEDS shards are normally sorted already: skip the sort when they are.
        if sid.size > 1 and not (
            np.all(sid[1:] >= sid[:-1]) and np.all((sid[1:] != sid[:-1]) | (t[1:] >= t[:-1]))
        ):
            order = np.lexsort((t, sid))
            sid, t, code_ids, val = sid[order], t[order], code_ids[order], val[order]
        subjects, starts = np.unique(sid, return_index=True)
        starts = np.append(starts, sid.size).astype(np.int64)
        unique_times, rank = np.unique(t, return_inverse=True)
        sub_idx = np.repeat(np.arange(subjects.size, dtype=np.int64), np.diff(starts))
        key = sub_idx * (unique_times.size + 1) + rank
        del sub_idx, rank
        out = cls(
            subjects, starts, t, code_ids, np.asarray(codes, dtype=object), val, key, unique_times
        )
        return out._with_births()

    def _with_births(self) -> EventArrays:
        """Record each subject's ``MEDS_BIRTH`` time; reject events before it."""
        j = int(np.searchsorted(self.codes, BIRTH_CODE))
        if j >= self.codes.size or self.codes[j] != BIRTH_CODE:
            return self
        ev = np.flatnonzero(self.code_ids == j)
        ev = ev[self.time[ev] != _STATIC_TIME]
        sub = np.searchsorted(self.starts, ev, side="right") - 1
        # Events are time-sorted within a subject: its first birth event is the earliest.
        birth_sub, first = np.unique(sub, return_index=True)
        birth_t = self.time[ev[first]]
        # First dated event of each such subject (static events sort first, skip them).
        _, pos = self.locate(self.subjects[birth_sub], np.full(birth_sub.size, _STATIC_TIME))
        has = pos < self.starts[birth_sub + 1]
        early = np.zeros(birth_sub.size, bool)
        early[has] = self.time[pos[has]] < birth_t[has]
        if early.any():
            k = int(np.flatnonzero(early)[0])
            p = int(pos[k])
            raise ValueError(
                f"{int(early.sum())} subject(s) have events before their {BIRTH_CODE} event "
                f"(first: subject_id={int(self.subjects[birth_sub[k]])}, code "
                f"{self.codes[self.code_ids[p]]!r} at {_fmt_ns(self.time[p])} < birth at "
                f"{_fmt_ns(birth_t[k])}); times before birth are malformed: correct the event "
                f"or {BIRTH_CODE} times in the source, or drop the events that precede birth."
            )
        object.__setattr__(self, "birth_subjects", birth_sub)
        object.__setattr__(self, "birth_time", birth_t)
        return self

    def check_prediction_times(self, subject_id: np.ndarray, time_ns: np.ndarray) -> None:
        """Raise a ``ValueError`` if a prediction time precedes its subject's birth."""
        if self.birth_subjects is None or self.birth_subjects.size == 0:
            return
        subject_id = np.asarray(subject_id, dtype=np.int64)
        births = self.subjects[self.birth_subjects]
        k = np.minimum(np.searchsorted(births, subject_id), births.size - 1)
        known = births[k] == subject_id
        bad = known & (np.asarray(time_ns, np.int64) < self.birth_time[k])
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{int(bad.sum())} cohort row(s) have a prediction_time before the subject's "
                f"{BIRTH_CODE} event (first: subject_id={int(subject_id[i])}, prediction_time="
                f"{_fmt_ns(time_ns[i])} < birth at {_fmt_ns(self.birth_time[k[i]])}); a "
                "prediction cannot precede birth: fix the prediction_time or the birth event, "
                "or drop those cohort rows."
            )

    def locate(self, subject_id: np.ndarray, time_ns: np.ndarray, side: str = "right"):
        """Index of the first event after ``time_ns`` (``side='right'``: time > t).

        Returns ``(subject_index, position)`` where ``subject_index`` is -1 for
        subjects without events; ``position`` is the number of events up to the
        end of the subject's events with time <= t (``side='right'``) or < t
        (``side='left'``).
        """
        subject_id = np.asarray(subject_id, dtype=np.int64)
        if self.subjects.size == 0:
            zeros = np.zeros(subject_id.shape, np.int64)
            return zeros - 1, zeros
        k = np.searchsorted(self.subjects, subject_id)
        k_c = np.minimum(k, self.subjects.size - 1)
        known = self.subjects[k_c] == subject_id
        rank = np.searchsorted(self.unique_times, time_ns, side=side)
        q = k_c.astype(np.int64) * (self.unique_times.size + 1) + rank
        pos = np.searchsorted(self.key, q, side="left")
        pos = np.where(known, pos, 0)
        return np.where(known, k_c, -1), pos


class MEDSEvents:
    """Read-only, clone-safe handle on a MEDS event table.

    scikit-learn's :func:`~sklearn.base.clone` deep-copies every parameter, so an
    estimator holding a large events DataFrame copies it for every
    ``GridSearchCV`` candidate and fold. Wrapping the table in ``MEDSEvents``
    shares it by reference instead (``copy.deepcopy`` returns the handle
    itself) and caches the sorted array form the encoders use, built once.
    The wrapped table must not be modified afterwards.

    Parameters
    ----------
    source : DataFrame or str or os.PathLike
        A MEDS event table or a MEDS root folder (``data/*.parquet``).

    Examples
    --------
    >>> import copy
    >>> import pandas as pd
    >>> from multimodal_surv.datasets import MEDSEvents
    >>> ev = MEDSEvents(pd.DataFrame({"subject_id": [1], "time": ["2020-01-01"],
    ...                               "code": ["A"], "numeric_value": [None]}))
    >>> copy.deepcopy(ev) is ev
    True
    """

    def __init__(self, source):
        if isinstance(source, MEDSEvents):
            source = source.source
        if not isinstance(source, pd.DataFrame | str | os.PathLike):
            raise TypeError(
                "MEDSEvents wraps a pandas DataFrame or a MEDS root folder path; got "
                f"{type(source).__name__}."
            )
        self.source = source
        self._arrays = None

    def __deepcopy__(self, memo):
        return self

    def __copy__(self):
        return self

    def __getstate__(self):
        return {"source": self.source, "_arrays": None}

    def __repr__(self) -> str:
        if isinstance(self.source, pd.DataFrame):
            return f"MEDSEvents(<DataFrame: {len(self.source)} events>)"
        return f"MEDSEvents({str(self.source)!r})"

    def read(self, columns=None, subjects=None) -> pd.DataFrame:
        """Validated events (see :func:`read_meds`)."""
        return read_meds(self.source, columns=columns, subjects=subjects)

    def arrays(self) -> EventArrays:
        """All events as :class:`EventArrays`, built on first use and cached."""
        if self._arrays is None:
            self._arrays = EventArrays.from_frame(self.read())
        return self._arrays


def event_arrays(events, subjects=None) -> EventArrays:
    """:class:`EventArrays` for ``events`` (any accepted source), optionally subset.

    A ``MEDSEvents`` handle over a DataFrame is converted once and cached; a
    folder is read per call, restricted to ``subjects``.
    """
    if isinstance(events, MEDSEvents) and isinstance(events.source, pd.DataFrame):
        return events.arrays()
    frame = read_meds(events, subjects=subjects)
    return EventArrays.from_frame(frame)


class EventChunks:
    """The events of a set of subjects as :class:`EventArrays`, chunk by chunk.

    A DataFrame or :class:`MEDSEvents` source is a single chunk (the handle's
    cached arrays are reused). A MEDS root folder is **streamed**: one pass over
    the ``subject_id`` column of every shard counts each subject's events and
    notes which shards hold it; the sorted subjects are then cut into
    contiguous chunks of about ``max_events`` events, and each chunk reads only
    its subjects' rows from only the shards that hold them. Memory is then
    bounded by the chunk, not by the folder. A subject never spans two chunks,
    and its events keep the table order, so per-subject results are identical
    to reading everything at once.

    Parameters
    ----------
    events : DataFrame, str, os.PathLike or MEDSEvents
    subjects : array-like of int
        The subjects needed (duplicates allowed).
    max_events : int, optional
        Events per chunk for a folder (default :data:`CHUNK_EVENTS`).
    """

    def __init__(self, events, subjects, max_events=None):
        self.events = events
        self.subjects = np.unique(np.asarray(subjects, dtype=np.int64))
        source = events.source if isinstance(events, MEDSEvents) else events
        self._root = None
        self._arrays = None
        self.bounds = [(0, self.subjects.size)]
        self.files = [None]
        if isinstance(source, str | os.PathLike):
            self._plan(_folder_root(source), max_events or CHUNK_EVENTS)

    def _plan(self, root: Path, max_events: int) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        files = _shard_files(root)
        dataset, _ = _folder_dataset(root, None, files)
        self._root, self._schema = root, dataset.schema
        if not pa.types.is_integer(dataset.schema.field("subject_id").type):
            self.files = [files]  # reading raises the clear subject_id error
            return
        n = self.subjects.size
        counts = np.zeros(n, np.int64)
        present = []
        for f in files:
            seen = [np.zeros(0, np.int64)]
            try:
                batches = pq.ParquetFile(f).iter_batches(columns=["subject_id"], batch_size=1 << 20)
                for batch in batches:
                    sid = batch.column(0).drop_null().to_numpy().astype(np.int64, copy=False)
                    if n == 0 or sid.size == 0:
                        continue
                    k = np.minimum(np.searchsorted(self.subjects, sid), n - 1)
                    k = k[self.subjects[k] == sid]
                    counts += np.bincount(k, minlength=n)
                    seen.append(np.unique(k))
            except (OSError, pa.ArrowException) as exc:
                raise ValueError(
                    f"{f}: not a readable parquet file ({exc}); remove or rewrite this MEDS shard."
                ) from exc
            present.append(np.unique(np.concatenate(seen)))
        if n:
            chunk = (np.cumsum(counts) - counts) // max(int(max_events), 1)
            cuts = np.concatenate([[0], np.flatnonzero(np.diff(chunk)) + 1, [n]])
            self.bounds = list(zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True))
        self.files = []
        for lo, hi in self.bounds:
            self.files.append(
                [
                    f
                    for f, p in zip(files, present, strict=True)
                    if (j := np.searchsorted(p, lo)) < p.size and p[j] < hi
                ]
            )
        self.n_events = int(counts.sum())

    def __len__(self) -> int:
        return len(self.bounds)

    def chunk_of(self, subject_id: np.ndarray) -> np.ndarray:
        """Chunk index of each of ``subject_id`` (subjects among ``subjects``)."""
        firsts = self.subjects[[lo for lo, _ in self.bounds if lo < self.subjects.size]]
        if firsts.size == 0:
            return np.zeros(np.shape(subject_id), np.int64)
        return np.maximum(np.searchsorted(firsts, subject_id, side="right") - 1, 0)

    def arrays(self, i: int) -> EventArrays:
        """Events of chunk ``i`` (read now for a folder; built once otherwise)."""
        if self._root is None:
            if self._arrays is None:
                self._arrays = event_arrays(self.events, subjects=self.subjects)
            return self._arrays
        lo, hi = self.bounds[i]
        files = self.files[i]
        if not files:
            return EventArrays.from_frame(_empty_events())
        frame = _read_folder_validated(
            self._root, (), self.subjects[lo:hi], files=files, schema=self._schema
        )
        return EventArrays.from_frame(frame)

    def __iter__(self):
        for i in range(len(self)):
            yield i, self.arrays(i)
