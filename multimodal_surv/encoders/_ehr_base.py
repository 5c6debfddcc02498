"""What every EHR encoder shares: the MEDS events, the cohort rows, streaming and sharding.

:class:`~multimodal_surv.encoders.EHRCountEncoder` and
:class:`~multimodal_surv.encoders.EHRTransformerEncoder` differ only in how one
subject's history up to a prediction time becomes a vector. Reading the events
(a DataFrame, a :class:`~multimodal_surv.datasets.MEDSEvents` handle or a MEDS
folder streamed chunk by chunk of subjects), checking the cohort, the
per-row error policy and the parallel ``transform`` over shards of subjects
live here, once.
"""

from __future__ import annotations

import os
from numbers import Integral

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from .._warnings import warn_user
from ..datasets._event_quality import InvalidEventsReport
from ..datasets._events import EventChunks, MEDSEvents
from ..datasets._meds import validate_cohort
from ._parallel import map_shards, shard_slices

__all__ = ["EHREncoderBase"]

#: Per-call statistics a parallel ``transform`` sums over its shards.
_CALL_STATS = ("n_unknown_events_", "n_empty_", "n_errors_")


def _fingerprint(frame: pd.DataFrame):
    """Cheap identity of a table's content: length, dtypes and 256 sampled rows."""
    rows = np.unique(np.linspace(0, len(frame) - 1, min(len(frame), 256)).astype(np.int64))
    cols = [c for c in ("subject_id", "time", "code", "numeric_value") if c in frame.columns]
    sample = frame.iloc[rows][cols]
    return (
        len(frame),
        tuple(map(str, frame.dtypes)),
        int(pd.util.hash_pandas_object(sample.astype(str), index=False).sum()),
    )


class EHREncoderBase(TransformerMixin, BaseEstimator):
    """Base class of the EHR encoders (not an estimator by itself).

    Subclasses implement ``_fit_cohort(sid, pt)`` (returns each row's number
    of history events) and ``_transform_chunks(chunks, cohort, sid, pt)``;
    they receive the cohort's ``subject_id`` and ``prediction_time`` (int64
    ns) arrays and, at ``transform``, an
    :class:`~multimodal_surv.datasets._events.EventChunks` over the events of
    those subjects.
    """

    _parameter_constraints: dict = {
        "events": [pd.DataFrame, str, os.PathLike, MEDSEvents, None],
        "on_error": [StrOptions({"raise", "nan"})],
        "on_invalid": [StrOptions({"drop", "raise"})],
        "n_jobs": [Integral, None],
    }

    # -- cohort and events -------------------------------------------------
    def _check_events_given(self):
        if self.events is None:
            name = type(self).__name__
            raise ValueError(
                f"{name} needs events: pass events=<MEDS DataFrame, MEDS root folder or "
                "MEDSEvents>."
            )

    def _cohort_arrays(self, X, reset: bool):
        validate_data(self, X, reset=reset, skip_check_array=True)
        cohort = validate_cohort(X)
        sid = cohort["subject_id"].to_numpy()
        pt = cohort["prediction_time"].to_numpy().view(np.int64)
        return cohort, sid, pt

    @staticmethod
    def _chunk_rows(chunks, sid):
        """Cohort rows of each chunk (``slice(None)`` when there is one chunk)."""
        if len(chunks) == 1:
            return [slice(None)]
        which = chunks.chunk_of(sid)
        order = np.argsort(which, kind="stable")
        return np.split(order, np.cumsum(np.bincount(which, minlength=len(chunks)))[:-1])

    def _events(self, refresh=False):
        """The events to read; a DataFrame is indexed once and reused until it changes.

        ``fit`` (``refresh=True``) wraps a DataFrame in a
        :class:`~multimodal_surv.datasets.MEDSEvents` handle, whose sorted,
        encoded arrays are built on first use; ``transform`` reuses them while
        ``events`` is the same object with the same fingerprint (length,
        dtypes and a sample of rows), so string codes are not re-encoded at
        every call.
        """
        events = self.events
        if not isinstance(events, pd.DataFrame):
            return events
        cache = getattr(self, "_events_cache", None)
        if cache is False:
            return events  # a parallel worker: read only the shard's subjects
        if refresh or cache is None or cache[0].source is not events:
            cache = None
        elif cache[1] != _fingerprint(events):
            cache = None
        if cache is None:
            cache = (MEDSEvents(events), _fingerprint(events))
            self._events_cache = cache
        return cache[0]

    # -- per-row errors ----------------------------------------------------
    def _start_rows(self, n_rows: int, seen_subjects=None) -> None:
        """Reset the per-call bookkeeping: failed rows, invalid events.

        ``seen_subjects``: subjects whose invalid events were reported by
        ``fit`` already (``transform`` reports only the others').
        """
        self._row_error = np.zeros(n_rows, bool)
        self._first_error = None
        self._invalid = InvalidEventsReport()
        self._invalid_chunks = set()
        self._seen_subjects = seen_subjects

    def _check_rows(self, arrays, sid, pt, rows, chunk=0) -> None:
        """Note the chunk's invalid events; flag rows whose prediction time precedes birth.

        Invalid events of the rows' subjects are counted once per chunk (see
        :meth:`_report_invalid`). For rows before ``MEDS_BIRTH``,
        ``on_error="raise"`` raises at once; ``"nan"`` gives those rows NaN at
        the end of ``transform`` (see :meth:`_apply_row_errors`).
        """
        if arrays.invalid and chunk not in self._invalid_chunks:
            self._invalid_chunks.add(chunk)
            subjects = np.unique(sid)
            if self._seen_subjects is not None:
                subjects = np.setdiff1d(subjects, self._seen_subjects, assume_unique=True)
            self._invalid.add(arrays.invalid, subjects)
        bad = arrays.before_birth(sid, pt)
        if not bad.any():
            return
        if self.on_error == "raise":
            arrays.raise_before_birth(sid, pt, bad)
        self._row_error[np.arange(self._row_error.size)[rows][bad]] = True
        if self._first_error is None:
            self._first_error = (int(sid[bad][0]), pd.Timestamp(int(pt[bad][0])))

    def _report_invalid(self, stage: str) -> None:
        """Raise (``on_invalid="raise"``) or warn once about the invalid events left out."""
        report = self._invalid
        if stage == "fit":
            self.invalid_events_ = dict(report.counts)
        if not report.total:
            return
        name = type(self).__name__
        source = self.events.source if isinstance(self.events, MEDSEvents) else self.events
        what = "events" if isinstance(source, pd.DataFrame) else f"MEDS folder {str(source)!r}"
        if self.on_invalid == "raise":
            raise ValueError(
                f"{what} hold {report.total} invalid event(s) of the cohort's subjects: "
                f"{report.describe()}. Correct them in the source, or set on_invalid='drop' "
                "(the default) to leave them out with a warning."
            )
        whose = "the cohort's subjects" if stage == "fit" else "subjects not seen at fit"
        warn_user(
            f"{name}.{stage}: left out {report.total} invalid event(s) of {whose} in {what}: "
            f"{report.describe()}. Counts per kind are in invalid_events_; correct the "
            "source, or set on_invalid='raise' to refuse such data."
        )

    def _apply_row_errors(self, out):
        """NaN rows for the rows flagged by :meth:`_check_rows` (one warning per call)."""
        bad = self._row_error
        self.n_errors_ = int(bad.sum())
        if not self.n_errors_:
            return out
        s, t = self._first_error
        warn_user(
            f"{type(self).__name__}: {self.n_errors_} of {bad.size} cohort row(s) have a "
            f"prediction_time before the subject's MEDS_BIRTH event (first: subject_id={s}, "
            f"prediction_time={t}); their embeddings are NaN (EHR modality missing). Fix "
            "the prediction_time or the birth event, or drop those rows."
        )
        if sp.issparse(out):
            out = out.tolil()
            out[np.flatnonzero(bad)] = np.nan
            return out.tocsr()
        out[bad] = np.nan
        return out

    # -- transform ---------------------------------------------------------
    def transform(self, X):
        """Embed each cohort row from its subject's events up to ``prediction_time``.

        Parameters
        ----------
        X : DataFrame
            Cohort rows with ``subject_id`` and ``prediction_time``.

        Returns
        -------
        embeddings : ndarray of shape (n_rows, n_features_out) or sparse CSR
        """
        check_is_fitted(self, "n_embedding_")
        cohort, sid, pt = self._cohort_arrays(X, reset=False)
        if self.n_jobs not in (None, 1) and len(cohort) > 1:
            return self._transform_parallel(X, cohort)
        self._start_rows(sid.size, seen_subjects=self._fit_subjects)
        out = self._transform_chunks(EventChunks(self._events(), sid), cohort, sid, pt)
        self._report_invalid("transform")
        return self._apply_row_errors(out)

    def _transform_parallel(self, X, cohort):
        sid = cohort["subject_id"].to_numpy()
        subjects = np.unique(sid)
        shards = shard_slices(subjects.size, self.n_jobs)
        starts = subjects[[s.start for s in shards]]
        shard_of = np.searchsorted(starts, sid, "right")
        rows = [np.flatnonzero(shard_of == k) for k in np.unique(shard_of)]
        results = map_shards(self, "_transform_shard", [(X.iloc[r],) for r in rows], self.n_jobs)
        order = np.argsort(np.concatenate(rows), kind="stable")
        parts = [out for out, _ in results]
        out = sp.vstack(parts, format="csr") if sp.issparse(parts[0]) else np.vstack(parts)
        for name in _CALL_STATS:
            setattr(self, name, sum(stats[name] for _, stats in results))
        return out[order]

    def _transform_shard(self, X):
        """One parallel task of :meth:`transform`: reads only the shard's subjects."""
        self._events_cache = False
        out = self.transform(X)
        return out, {name: getattr(self, name) for name in _CALL_STATS}

    def get_feature_names_out(self, input_features=None):
        """Output names ``x0 ... x{n-1}`` (``ColumnTransformer`` adds ``ehr__``).

        Returns
        -------
        names : ndarray of str
        """
        check_is_fitted(self, "n_embedding_")
        return np.asarray([f"x{j}" for j in range(self.n_embedding_)], dtype=object)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn the encoding from the cohort's event history (see the class description).

        Only events with ``time <= prediction_time`` of the cohort rows are
        used: the encoder never sees a row's future.

        Parameters
        ----------
        X : DataFrame
            Cohort rows with ``subject_id`` and ``prediction_time``.
        y : ignored

        Returns
        -------
        self : object
            The fitted encoder.
        """
        self._check_events_given()
        cohort, sid, pt = self._cohort_arrays(X, reset=True)
        if len(cohort) == 0:
            raise ValueError(
                f"the cohort passed to {type(self).__name__}.fit has no rows; pass at least "
                "one (subject_id, prediction_time) row."
            )
        self._start_rows(sid.size)
        self._fit_subjects = np.unique(sid)
        n_history = self._fit_cohort(sid, pt)
        self.n_empty_ = int(np.count_nonzero(n_history == 0))
        self.n_unknown_events_ = 0
        self.n_errors_ = int(self._row_error.sum())
        return self

    @staticmethod
    def _history_ranges(arrays, sid, pt):
        """``(first, end)`` event ranges of each row's history up to its prediction time."""
        k, end = arrays.locate(sid, pt)
        first = np.where(k >= 0, arrays.starts[np.maximum(k, 0)], 0)
        return first, end
