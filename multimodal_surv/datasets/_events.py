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

from ._event_quality import BIRTH_CODE, _subject_bounds, encode_codes, find_invalid
from ._meds import (
    _empty_events,
    _folder_dataset,
    _folder_root,
    _read_folder_validated,
    _shard_files,
    check_arrow_subject_id,
    read_meds,
    subject_runs,
)

__all__ = ["EventArrays", "EventChunks", "MEDSEvents", "event_arrays"]

# Static (null-time) events sort before every real time.
_STATIC_TIME = np.iinfo(np.int64).min + 1


#: Events per chunk when a MEDS folder is streamed (:class:`EventChunks`).
CHUNK_EVENTS = 1_000_000


def _fmt_ns(value) -> str:
    return str(pd.Timestamp(int(value)))


def _dropped(sid, t, code_ids, codes) -> pd.DataFrame:
    """The left-out events as a small table (static time as NaT, null code as None)."""
    time = np.where(t == _STATIC_TIME, np.iinfo(np.int64).min, t).view("datetime64[ns]")
    code = np.where(code_ids >= 0, codes[np.maximum(code_ids, 0)] if codes.size else None, None)
    return pd.DataFrame({"subject_id": sid, "time": time, "code": code})


def _time_ranks(sid: np.ndarray, t: np.ndarray):
    """``(rank, unique_times)``: each event's time as its rank among the distinct times.

    Events sorted by subject and time come in runs of one (subject, time), a
    visit's codes: only the first time of each run is hashed (the distinct
    times are far fewer than the events), then ranked and repeated over its run.
    """
    if t.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    cut = np.flatnonzero(np.concatenate([[True], (sid[1:] != sid[:-1]) | (t[1:] != t[:-1])]))
    ids, unique_times = pd.factorize(t[cut])
    order = np.argsort(unique_times, kind="stable")
    rank = np.empty(order.size, np.int64)
    rank[order] = np.arange(order.size)
    return np.repeat(rank[ids], np.diff(np.append(cut, t.size))), unique_times[order]


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
    invalid : dict of str to DataFrame or None
        The events left out, by kind (``subject_id``, ``time``, ``code``).
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
    invalid: dict | None = None

    @property
    def n_events(self) -> int:
        return int(self.time.shape[0])

    @classmethod
    def from_frame(cls, events: pd.DataFrame) -> EventArrays:
        """Build from a frame validated by :func:`read_meds`, without its invalid events.

        Events before ``MEDS_BIRTH``, after ``MEDS_DEATH``, exact duplicates
        and null / empty codes are left out and recorded in ``invalid`` (see
        :func:`~multimodal_surv.datasets._event_quality.find_invalid`).
        """
        sid = events["subject_id"].to_numpy(dtype=np.int64)
        t = events["time"].to_numpy(dtype="datetime64[ns]").view(np.int64).copy()
        t[t == np.iinfo(np.int64).min] = _STATIC_TIME  # NaT -> static
        code_ids, codes = encode_codes(events["code"])
        val = events["numeric_value"].to_numpy(dtype=np.float64)
        # MEDS shards are normally sorted already: skip the sort when they are.
        if sid.size > 1 and not (
            np.all(sid[1:] >= sid[:-1]) and np.all((sid[1:] != sid[:-1]) | (t[1:] >= t[:-1]))
        ):
            order = np.lexsort((t, sid))
            sid, t, code_ids, val = sid[order], t[order], code_ids[order], val[order]
        masks = find_invalid(sid, t, code_ids, val, codes, _STATIC_TIME)
        drop = np.logical_or.reduce(list(masks.values()))
        invalid = None
        if drop.any():
            invalid = {
                kind: _dropped(sid[m], t[m], code_ids[m], codes)
                for kind, m in masks.items()
                if m.any()
            }
            keep = ~drop
            sid, t, code_ids, val = sid[keep], t[keep], code_ids[keep], val[keep]
        present = np.bincount(code_ids, minlength=codes.size) > 0
        if not present.all():  # codes only of dropped events, unused categories
            remap = np.cumsum(present, dtype=np.int32) - 1
            code_ids, codes = remap[code_ids], codes[present]
        starts = _subject_bounds(sid)
        subjects = sid[starts[:-1]]
        rank, unique_times = _time_ranks(sid, t)
        sub_idx = np.repeat(np.arange(subjects.size, dtype=np.int64), np.diff(starts))
        key = sub_idx * (unique_times.size + 1) + rank
        del sub_idx, rank
        out = cls(subjects, starts, t, code_ids, codes, val, key, unique_times, invalid=invalid)
        return out._with_births()

    def _with_births(self) -> EventArrays:
        """Record each subject's earliest dated ``MEDS_BIRTH`` time."""
        j = int(np.searchsorted(self.codes, BIRTH_CODE))
        if j >= self.codes.size or self.codes[j] != BIRTH_CODE:
            return self
        ev = np.flatnonzero(self.code_ids == j)
        ev = ev[self.time[ev] != _STATIC_TIME]
        sub = np.searchsorted(self.starts, ev, side="right") - 1
        # Events are time-sorted within a subject: its first birth event is the earliest.
        birth_sub, first = np.unique(sub, return_index=True)
        object.__setattr__(self, "birth_subjects", birth_sub)
        object.__setattr__(self, "birth_time", self.time[ev[first]])
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
        n = self.subjects.size
        counts = np.zeros(n, np.int64)
        present = []
        for f in files:
            seen = np.zeros(n, np.int64)
            try:
                shard = pq.ParquetFile(f)
                check_arrow_subject_id(shard.schema_arrow, f"MEDS shard {str(f)!r}")
                batches = shard.iter_batches(columns=["subject_id"], batch_size=1 << 20)
                for batch in batches:
                    sid = batch.column(0).drop_null().to_numpy().astype(np.int64, copy=False)
                    if n and sid.size:
                        seen += self._count_runs(sid)
            except (OSError, pa.ArrowException) as exc:
                raise ValueError(
                    f"{f}: not a readable parquet file ({exc}); remove or rewrite this MEDS shard."
                ) from exc
            counts += seen
            present.append(np.flatnonzero(seen))
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

    def _count_runs(self, sid: np.ndarray) -> np.ndarray:
        """Events of each of ``subjects`` in ``sid`` (see :func:`subject_runs`)."""
        k, hit, length = subject_runs(sid, self.subjects)
        counts = np.bincount(k[hit], weights=length[hit], minlength=self.subjects.size)
        return counts.astype(np.int64)

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
