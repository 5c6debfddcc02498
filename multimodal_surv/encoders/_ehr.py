"""``EHREncoder``: MEDS event streams -> one embedding per (subject, prediction time)."""

from __future__ import annotations

import os
from numbers import Integral

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ..datasets._meds import MEDSEvents, event_arrays, validate_cohort
from ._ehr_counts import CountFeaturizer, parse_windows

__all__ = ["EHREncoder"]


class EHREncoder(TransformerMixin, BaseEstimator):
    """Encode MEDS event histories into embeddings at each row's prediction time.

    ``transform(cohort)`` returns one row per cohort row, computed from **only
    the events of that subject with** ``time <= prediction_time`` (MEDS label
    semantics; events exactly at the prediction time are used, later events
    never are).

    Parameters
    ----------
    events : DataFrame, str, os.PathLike or MEDSEvents
        The MEDS event table (``subject_id``, ``time``, ``code``,
        ``numeric_value``) or a MEDS root folder (``data/*.parquet``). It is
        stored as given. scikit-learn's ``clone`` deep-copies parameters, so for
        large tables inside ``GridSearchCV`` pass a folder path or wrap the
        frame in :class:`~multimodal_surv.datasets.MEDSEvents` (shared by
        reference, its sorted form built once).
    method : {"counts", "transformer"}, default="counts"
        ``"counts"``: codes counted in time windows before the index time plus
        the last numeric value per code. ``"transformer"``: hidden state of a
        small autoregressive transformer (CLMBR-style) pretrained by next-code
        prediction.
    windows : sequence of str, default=("30D", "365D", "ever")
        Count windows ``(prediction_time - w, prediction_time]`` as pandas
        durations, ``"ever"`` = all history (``method="counts"``).
    min_count : int, default=1
        Codes seen fewer times in the fit events go to the unknown token.
    max_features : int or None, default=None
        Keep at most this many codes (most frequent).
    numeric : {"last"} or None, default="last"
        Numeric summary per code with numeric values: its last value up to the
        prediction time (the code's mean over the fit events when absent).
        ``None`` drops numeric features (``method="counts"``).
    tfidf : bool, default=False
        Apply :class:`~sklearn.feature_extraction.text.TfidfTransformer` to the
        counts (fitted on the fit cohort).
    n_components : int or None, default=None
        Reduce the (TF-IDF) counts with
        :class:`~sklearn.decomposition.TruncatedSVD`; numeric columns are
        appended unchanged.
    sparse_output : bool, default=False
        Return a SciPy CSR matrix (counts without SVD only).
    on_empty : {"zeros", "nan", "error"}, default="zeros"
        Rows whose subject has no event up to the prediction time: an all-zero
        row, an all-NaN row (= EHR modality missing for the fusion models) or a
        ``ValueError``.

    Attributes
    ----------
    vocabulary_ : ndarray of str
        Codes with their own column / token (sorted); others map to unknown.
    numeric_codes_ : ndarray of str
        Codes with a numeric summary column (``method="counts"``).
    feature_descriptions_ : list of str
        What each output column is (``method="counts"`` without SVD).
    n_unknown_events_ : int
        Events outside the vocabulary seen by the last ``fit`` / ``transform``.
    n_empty_ : int
        Rows without history in the last ``fit`` / ``transform``.
    n_features_in_ : int
    feature_names_in_ : ndarray of str

    Examples
    --------
    >>> import pandas as pd
    >>> from multimodal_surv.encoders import EHREncoder
    >>> events = pd.DataFrame({
    ...     "subject_id": [1, 1, 2, 2],
    ...     "time": pd.to_datetime(["2020-01-01", "2020-06-01", "2020-03-01", "2021-01-01"]),
    ...     "code": ["DX/A", "LAB/B", "DX/A", "DX/A"],
    ...     "numeric_value": [None, 7.0, None, None]})
    >>> cohort = pd.DataFrame({"subject_id": [1, 2],
    ...                        "prediction_time": pd.to_datetime(["2020-06-01", "2020-12-31"])})
    >>> enc = EHREncoder(events=events, windows=["ever"]).fit(cohort)
    >>> enc.feature_descriptions_
    ['count[ever] DX/A', 'count[ever] LAB/B', 'count[ever] <unk>', 'last LAB/B']
    >>> enc.transform(cohort)
    array([[1., 1., 0., 7.],
           [1., 0., 0., 7.]])
    """

    _parameter_constraints: dict = {
        "events": [pd.DataFrame, str, os.PathLike, MEDSEvents, None],
        "method": [StrOptions({"counts"})],
        "windows": ["array-like"],
        "min_count": [Interval(Integral, 1, None, closed="left")],
        "max_features": [Interval(Integral, 1, None, closed="left"), None],
        "numeric": [StrOptions({"last"}), None],
        "tfidf": ["boolean"],
        "n_components": [Interval(Integral, 1, None, closed="left"), None],
        "sparse_output": ["boolean"],
        "on_empty": [StrOptions({"zeros", "nan", "error"})],
    }

    def __init__(
        self,
        events=None,
        *,
        method="counts",
        windows=("30D", "365D", "ever"),
        min_count=1,
        max_features=None,
        numeric="last",
        tfidf=False,
        n_components=None,
        sparse_output=False,
        on_empty="zeros",
    ):
        self.events = events
        self.method = method
        self.windows = windows
        self.min_count = min_count
        self.max_features = max_features
        self.numeric = numeric
        self.tfidf = tfidf
        self.n_components = n_components
        self.sparse_output = sparse_output
        self.on_empty = on_empty

    # ------------------------------------------------------------------
    def _check_events_given(self):
        if self.events is None:
            raise ValueError(
                "EHREncoder needs events: pass events=<MEDS DataFrame, MEDS root folder or "
                "MEDSEvents>."
            )

    def _cohort_arrays(self, X, reset: bool):
        validate_data(self, X, reset=reset, skip_check_array=True)
        cohort = validate_cohort(X)
        sid = cohort["subject_id"].to_numpy()
        pt = cohort["prediction_time"].to_numpy().view(np.int64)
        return cohort, sid, pt

    def _arrays(self, sid):
        return event_arrays(self.events, subjects=np.unique(sid))

    def _handle_empty(self, out, empty, cohort):
        self.n_empty_ = int(empty.sum())
        if not empty.any():
            return out
        if self.on_empty == "error":
            first = cohort[empty].iloc[0]
            raise ValueError(
                f"{int(empty.sum())} cohort row(s) have no events at or before their "
                f"prediction_time (first: subject_id={int(first['subject_id'])}, "
                f"prediction_time={first['prediction_time']}); set on_empty='zeros' or "
                "on_empty='nan' (EHR modality missing), or drop those rows."
            )
        fill = 0.0 if self.on_empty == "zeros" else np.nan
        if sp.issparse(out):
            if fill == 0.0:
                keep = sp.diags((~empty).astype(np.float64))
                return (keep @ out).tocsr()
            raise ValueError(
                "on_empty='nan' cannot be combined with sparse_output=True; use dense output."
            )
        out[empty] = fill
        return out

    # ------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn the vocabulary (and TF-IDF / SVD) from the cohort's history.

        Only events with ``time <= prediction_time`` of the cohort rows are used.

        Parameters
        ----------
        X : DataFrame
            Cohort rows with ``subject_id`` and ``prediction_time``.
        y : ignored

        Returns
        -------
        self : EHREncoder
        """
        self._check_events_given()
        if self.sparse_output and self.n_components is not None:
            raise ValueError(
                "sparse_output=True returns raw counts; it cannot be combined with "
                f"n_components={self.n_components} (SVD output is dense)."
            )
        parse_windows(self.windows)
        cohort, sid, pt = self._cohort_arrays(X, reset=True)
        arrays = self._arrays(sid)
        if self.method == "counts":
            self._fit_counts(arrays, cohort, sid, pt)
        return self

    def _fit_counts(self, arrays, cohort, sid, pt):
        feat = CountFeaturizer(self.windows, self.min_count, self.max_features, self.numeric)
        feat.fit(arrays, sid, pt)
        self.featurizer_ = feat
        self.vocabulary_ = feat.vocabulary_
        self.numeric_codes_ = feat.numeric_codes_
        counts, _, n_hist, _ = feat.transform(arrays, sid, pt, sparse_output=True)
        self.tfidf_ = self.svd_ = None
        if self.tfidf:
            from sklearn.feature_extraction.text import TfidfTransformer

            self.tfidf_ = TfidfTransformer().fit(counts)
            counts = self.tfidf_.transform(counts)
        if self.n_components is not None:
            from sklearn.decomposition import TruncatedSVD

            n_max = min(counts.shape) - 1
            if self.n_components > n_max:
                raise ValueError(
                    f"n_components={self.n_components} is too large for {counts.shape[0]} "
                    f"rows x {counts.shape[1]} count columns; use n_components <= {n_max}."
                )
            self.svd_ = TruncatedSVD(self.n_components, random_state=0).fit(counts)
        if self.svd_ is None:
            self.feature_descriptions_ = feat.feature_descriptions()
            self.n_embedding_ = len(self.feature_descriptions_)
        else:
            self.feature_descriptions_ = [f"svd {j}" for j in range(self.n_components)] + [
                f"last {c}" for c in feat.numeric_codes_
            ]
            self.n_embedding_ = self.n_components + feat.numeric_codes_.size
        self.n_empty_ = int(np.count_nonzero(n_hist == 0))
        self.n_unknown_events_ = 0

    # ------------------------------------------------------------------
    def transform(self, X):
        """Embed each cohort row from its events up to ``prediction_time``.

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
        arrays = self._arrays(sid)
        return self._transform_counts(arrays, cohort, sid, pt)

    def _transform_counts(self, arrays, cohort, sid, pt):
        feat = self.featurizer_
        use_sparse = self.sparse_output or self.tfidf_ is not None or self.svd_ is not None
        counts, numeric, n_hist, n_unk = feat.transform(arrays, sid, pt, sparse_output=use_sparse)
        self.n_unknown_events_ = n_unk
        if self.tfidf_ is not None:
            counts = self.tfidf_.transform(counts)
        if self.svd_ is not None:
            counts = self.svd_.transform(counts)
        if self.sparse_output:
            out = sp.hstack([counts, sp.csr_matrix(numeric)], format="csr")
        else:
            if sp.issparse(counts):
                counts = counts.toarray()
            out = np.hstack([counts, numeric]) if numeric.shape[1] else counts
        return self._handle_empty(out, n_hist == 0, cohort)

    def get_feature_names_out(self, input_features=None):
        """Output names ``x0 ... x{n-1}`` (``ColumnTransformer`` adds ``ehr__``).

        Returns
        -------
        names : ndarray of str
        """
        check_is_fitted(self, "n_embedding_")
        return np.asarray([f"x{j}" for j in range(self.n_embedding_)], dtype=object)
