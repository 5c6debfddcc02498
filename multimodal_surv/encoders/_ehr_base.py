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

import copy
import os
import warnings
from numbers import Integral

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ..datasets._events import EventChunks, MEDSEvents
from ..datasets._meds import validate_cohort

__all__ = ["EHREncoderBase"]

#: Per-call statistics a parallel ``transform`` sums over its shards.
_CALL_STATS = ("n_unknown_events_", "n_empty_", "n_errors_")


def _transform_rows(encoder, X):
    """One parallel task of ``transform`` (a module-level function pickles)."""
    encoder = copy.copy(encoder)
    encoder.n_jobs = None
    out = encoder.transform(X)
    return out, {name: getattr(encoder, name) for name in _CALL_STATS}


class EHREncoderBase(TransformerMixin, BaseEstimator):
    """Base class of the EHR encoders (not an estimator by itself).

    Subclasses implement ``_fit_chunks(chunks, cohort, sid, pt)`` and
    ``_transform_chunks(chunks, cohort, sid, pt)``; they receive the cohort's
    ``subject_id`` and ``prediction_time`` (int64 ns) arrays and an
    :class:`~multimodal_surv.datasets._events.EventChunks` over the events of
    those subjects.
    """

    _parameter_constraints: dict = {
        "events": [pd.DataFrame, str, os.PathLike, MEDSEvents, None],
        "on_error": [StrOptions({"raise", "nan"})],
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

    # -- per-row errors ----------------------------------------------------
    def _start_rows(self, n_rows: int) -> None:
        """Reset the per-call row bookkeeping (rows that failed, rows without history)."""
        self._row_error = np.zeros(n_rows, bool)
        self._first_error = None

    def _check_rows(self, arrays, sid, pt, rows) -> None:
        """Flag rows whose prediction time precedes the subject's ``MEDS_BIRTH``.

        ``on_error="raise"`` raises at once; ``"nan"`` gives those rows NaN at
        the end of ``transform`` (see :meth:`_apply_row_errors`).
        """
        bad = arrays.before_birth(sid, pt)
        if not bad.any():
            return
        if self.on_error == "raise":
            arrays.raise_before_birth(sid, pt, bad)
        self._row_error[np.arange(self._row_error.size)[rows][bad]] = True
        if self._first_error is None:
            self._first_error = (int(sid[bad][0]), pd.Timestamp(int(pt[bad][0])))

    def _apply_row_errors(self, out):
        """NaN rows for the rows flagged by :meth:`_check_rows` (one warning per call)."""
        bad = self._row_error
        self.n_errors_ = int(bad.sum())
        if not self.n_errors_:
            return out
        s, t = self._first_error
        warnings.warn(
            f"{type(self).__name__}: {self.n_errors_} of {bad.size} cohort row(s) have a "
            f"prediction_time before the subject's MEDS_BIRTH event (first: subject_id={s}, "
            f"prediction_time={t}); their embeddings are NaN (EHR modality missing). Fix "
            "the prediction_time or the birth event, or drop those rows.",
            UserWarning,
            stacklevel=3,
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
        self._start_rows(sid.size)
        out = self._transform_chunks(EventChunks(self.events, sid), cohort, sid, pt)
        return self._apply_row_errors(out)

    def _transform_parallel(self, X, cohort):
        from joblib import Parallel, delayed, effective_n_jobs

        subjects = np.unique(cohort["subject_id"].to_numpy())
        n_shards = max(1, min(effective_n_jobs(self.n_jobs), subjects.size))
        shard_of = np.searchsorted(
            subjects[:: -(-subjects.size // n_shards)], cohort["subject_id"].to_numpy(), "right"
        )
        rows = [np.flatnonzero(shard_of == k) for k in np.unique(shard_of)]
        results = Parallel(n_jobs=self.n_jobs)(
            delayed(_transform_rows)(self, X.iloc[r]) for r in rows
        )
        order = np.argsort(np.concatenate(rows), kind="stable")
        parts = [out for out, _ in results]
        out = sp.vstack(parts, format="csr") if sp.issparse(parts[0]) else np.vstack(parts)
        for name in _CALL_STATS:
            setattr(self, name, sum(stats[name] for _, stats in results))
        return out[order]

    def get_feature_names_out(self, input_features=None):
        """Output names ``x0 ... x{n-1}`` (``ColumnTransformer`` adds ``ehr__``).

        Returns
        -------
        names : ndarray of str
        """
        check_is_fitted(self, "n_embedding_")
        return np.asarray([f"x{j}" for j in range(self.n_embedding_)], dtype=object)

    def _fit_start(self, X):
        """Validate parameters shared by the encoders; the cohort arrays of ``X``."""
        self._check_events_given()
        cohort, sid, pt = self._cohort_arrays(X, reset=True)
        if len(cohort) == 0:
            raise ValueError(
                f"the cohort passed to {type(self).__name__}.fit has no rows; pass at least "
                "one (subject_id, prediction_time) row."
            )
        self._start_rows(sid.size)
        return cohort, sid, pt
