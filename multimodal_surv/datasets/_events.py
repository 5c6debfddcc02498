"""MEDS events indexed for encoding: sorted arrays, a shared handle, streamed chunks.

:class:`EventArrays` holds events sorted by subject and time, so "the events of
subject ``s`` up to time ``t``" is one ``searchsorted``; :class:`MEDSEvents` is a
clone-safe handle that builds it once; :class:`EventChunks` streams a MEDS root
folder chunk by chunk of subjects.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ._meds import (
    _empty_events,
    _folder_dataset,
    _folder_root,
    _read_folder_validated,
    _shard_files,
    read_meds,
)

__all__ = ["EventArrays", "EventChunks", "MEDSEvents", "event_arrays"]

# Static (null-time) events sort before every real time.
_STATIC_TIME = np.iinfo(np.int64).min + 1

#: The MEDS code of a subject's birth; events and prediction times before it are rejected.
BIRTH_CODE = "MEDS_BIRTH"

#: Events per chunk when a MEDS folder is streamed (:class:`EventChunks`).
CHUNK_EVENTS = 1_000_000


def _fmt_ns(value) -> str:
    return str(pd.Timestamp(int(value)))


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

    def before_birth(self, subject_id: np.ndarray, time_ns: np.ndarray) -> np.ndarray:
        """Mask of the rows whose ``time_ns`` precedes their subject's ``MEDS_BIRTH``."""
        subject_id = np.asarray(subject_id, dtype=np.int64)
        if self.birth_subjects is None or self.birth_subjects.size == 0:
            return np.zeros(subject_id.shape, bool)
        births = self.subjects[self.birth_subjects]
        k = np.minimum(np.searchsorted(births, subject_id), births.size - 1)
        known = births[k] == subject_id
        return known & (np.asarray(time_ns, np.int64) < self.birth_time[k])

    def raise_before_birth(self, subject_id, time_ns, bad) -> None:
        """Raise the ``ValueError`` for the rows ``bad`` (from :meth:`before_birth`)."""
        subject_id = np.asarray(subject_id, dtype=np.int64)
        births = self.subjects[self.birth_subjects]
        i = int(np.flatnonzero(bad)[0])
        k = int(np.searchsorted(births, subject_id[i]))
        raise ValueError(
            f"{int(bad.sum())} cohort row(s) have a prediction_time before the subject's "
            f"{BIRTH_CODE} event (first: subject_id={int(subject_id[i])}, prediction_time="
            f"{_fmt_ns(time_ns[i])} < birth at {_fmt_ns(self.birth_time[k])}); a "
            "prediction cannot precede birth: fix the prediction_time or the birth event, "
            "drop those cohort rows, or set on_error='nan' to give them NaN embeddings."
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
