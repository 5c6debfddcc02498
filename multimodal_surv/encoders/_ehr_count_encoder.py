"""``EHRCountEncoder``: bag-of-codes over time windows before each prediction time."""

from __future__ import annotations

from numbers import Integral

import numpy as np
import scipy.sparse as sp
from sklearn.utils._param_validation import Interval, StrOptions

from ..datasets._events import EventChunks
from ._ehr_base import EHREncoderBase
from ._ehr_counts import CodeCounter, CountFeaturizer, parse_windows

__all__ = ["EHRCountEncoder"]


class EHRCountEncoder(EHREncoderBase):
    """Count each code in time windows before each row's prediction time.

    The bag-of-codes ("one-hot") EHR representation: per code, the number of
    its events in each window ``(prediction_time - w, prediction_time]``, plus
    the last numeric value per code. ``transform(cohort)`` returns one row per
    cohort row, computed from **only the events of that subject with**
    ``time <= prediction_time`` (MEDS label semantics; events exactly at the
    prediction time are used, later events never are). Sparse and vectorised:
    no Python loop over subjects or events.

    Parameters
    ----------
    events : DataFrame, str, os.PathLike or MEDSEvents
        The MEDS event table (``subject_id``, ``time``, ``code``,
        ``numeric_value``) or a MEDS root folder (``data/*.parquet``, streamed
        chunk by chunk of subjects). It is stored as given. scikit-learn's
        ``clone`` deep-copies parameters, so for large tables inside
        ``GridSearchCV`` pass a folder path or wrap the frame in
        :class:`~multimodal_surv.datasets.MEDSEvents` (shared by reference,
        its sorted form built once).
    windows : sequence of str, default=("30D", "365D", "ever")
        Count windows as pandas durations; ``"ever"`` = all history.
    min_count : int, default=1
        Codes seen fewer times in the fit events go to the unknown column.
    max_features : int or None, default=None
        Keep at most this many codes (most frequent).
    numeric : {"last"} or None, default="last"
        Numeric summary per code with numeric values: its last value up to the
        prediction time (the code's mean over the fit events when absent).
        ``None`` drops numeric features.
    tfidf : bool, default=False
        Apply :class:`~sklearn.feature_extraction.text.TfidfTransformer` to the
        counts (fitted on the fit cohort).
    n_components : int or None, default=None
        Reduce the (TF-IDF) counts with
        :class:`~sklearn.decomposition.TruncatedSVD`; numeric columns are
        appended unchanged.
    sparse_output : bool, default=False
        Return a SciPy CSR matrix (counts without SVD only).
    on_error : {"raise", "nan"}, default="raise"
        A row whose prediction time precedes its subject's ``MEDS_BIRTH`` event
        cannot be encoded: raise a ``ValueError``, or give it an all-NaN row
        (EHR modality missing for the fusion models) with one warning per call.
        A row **without history** is not an error: its counts are zero, a
        valid encoding ("nothing recorded yet"), and its numeric columns hold
        the codes' means like any row that lacks a code.
    on_invalid : {"drop", "raise"}, default="drop"
        Events that cannot be true: dated before the subject's ``MEDS_BIRTH``
        or after its ``MEDS_DEATH``, exact duplicates (same subject, time,
        code and value; the first is kept), null or empty codes. ``"drop"``
        leaves them out with one warning per ``fit`` giving the count of each
        kind (kept in ``invalid_events_``); ``transform`` warns likewise about
        subjects not seen at ``fit``. ``"raise"``: a ``ValueError`` naming the
        first such event of each kind. Nothing else is left out.
    n_jobs : int or None, default=None
        ``transform`` encodes shards of subjects in parallel with
        :class:`joblib.Parallel` (any joblib backend: ``"loky"``, ``"dask"``,
        ``"ray"``); each shard reads only its subjects' events. ``-1`` uses
        every worker of the active backend. ``None`` / 1: serial.

    Attributes
    ----------
    vocabulary_ : ndarray of str
        Codes with their own column (sorted); others count as unknown.
    numeric_codes_ : ndarray of str
        Codes with a numeric summary column.
    feature_descriptions_ : list of str
        What each output column is.
    n_unknown_events_ : int
        Events outside the vocabulary seen by the last ``fit`` / ``transform``.
    n_empty_ : int
        Rows without history in the last ``fit`` / ``transform``.
    n_errors_ : int
        Rows given NaN by ``on_error="nan"`` in the last ``fit`` / ``transform``.
    invalid_events_ : dict of str to int
        Invalid events of the fit cohort's subjects left out by ``fit``, per
        kind: ``"null_code"``, ``"before_birth"``, ``"after_death"``,
        ``"duplicate"``.
    n_features_in_ : int
    feature_names_in_ : ndarray of str

    See Also
    --------
    EHRTransformerEncoder : a pretrained sequence model over the same events.

    Notes
    -----
    ``fit`` uses only events with ``time <= prediction_time`` of the fit rows
    (per subject, up to its latest prediction time). Events with a null
    ``time`` are MEDS static measurements and count as known at any time.

    Examples
    --------
    >>> import pandas as pd
    >>> from multimodal_surv.encoders import EHRCountEncoder
    >>> events = pd.DataFrame({
    ...     "subject_id": [1, 1, 2, 2],
    ...     "time": pd.to_datetime(["2020-01-01", "2020-06-01", "2020-03-01", "2021-01-01"]),
    ...     "code": ["DX/A", "LAB/B", "DX/A", "DX/A"],
    ...     "numeric_value": [None, 7.0, None, None]})
    >>> cohort = pd.DataFrame({"subject_id": [1, 2],
    ...                        "prediction_time": pd.to_datetime(["2020-06-01", "2020-12-31"])})
    >>> enc = EHRCountEncoder(events=events, windows=["ever"]).fit(cohort)
    >>> enc.feature_descriptions_
    ['count[ever] DX/A', 'count[ever] LAB/B', 'count[ever] <unk>', 'last LAB/B']
    >>> enc.transform(cohort)
    array([[1., 1., 0., 7.],
           [1., 0., 0., 7.]])
    """

    _parameter_constraints: dict = {
        **EHREncoderBase._parameter_constraints,
        "windows": ["array-like"],
        "min_count": [Interval(Integral, 1, None, closed="left")],
        "max_features": [Interval(Integral, 1, None, closed="left"), None],
        "numeric": [StrOptions({"last"}), None],
        "tfidf": ["boolean"],
        "n_components": [Interval(Integral, 1, None, closed="left"), None],
        "sparse_output": ["boolean"],
    }

    def __init__(
        self,
        events=None,
        *,
        windows=("30D", "365D", "ever"),
        min_count=1,
        max_features=None,
        numeric="last",
        tfidf=False,
        n_components=None,
        sparse_output=False,
        on_error="raise",
        on_invalid="drop",
        n_jobs=None,
    ):
        self.events = events
        self.windows = windows
        self.min_count = min_count
        self.max_features = max_features
        self.numeric = numeric
        self.tfidf = tfidf
        self.n_components = n_components
        self.sparse_output = sparse_output
        self.on_error = on_error
        self.on_invalid = on_invalid
        self.n_jobs = n_jobs

    def _fit_cohort(self, sid, pt):
        """The vocabulary (and TF-IDF / SVD) from the fit rows' history; its lengths."""
        if self.sparse_output and self.n_components is not None:
            raise ValueError(
                "sparse_output=True returns raw counts; it cannot be combined with "
                f"n_components={self.n_components} (SVD output is dense)."
            )
        parse_windows(self.windows)
        chunks = EventChunks(self._events(refresh=True), sid)
        # A MEDS folder is streamed chunk by chunk of subjects (see EventChunks).
        feat = CountFeaturizer(self.windows, self.min_count, self.max_features, self.numeric)
        counter = CodeCounter()
        n_hist = np.zeros(sid.size, np.int64)
        rows = self._chunk_rows(chunks, sid)
        for i, arrays in chunks:
            s, p = sid[rows[i]], pt[rows[i]]
            self._check_rows(arrays, s, p, rows[i], chunk=i)
            counter.add(arrays, s, p)
            first, end = self._history_ranges(arrays, s, p)
            n_hist[rows[i]] = end - first
            del arrays
        self._report_invalid("fit")
        feat.fit_counter(counter)
        self.featurizer_ = feat
        self.vocabulary_ = feat.vocabulary_
        self.numeric_codes_ = feat.numeric_codes_
        self._fit_reduction(chunks, rows, sid, pt)
        return n_hist

    def _fit_reduction(self, chunks, rows, sid, pt) -> None:
        """TF-IDF / SVD on the fit rows' counts; the output description."""
        feat = self.featurizer_
        self.tfidf_ = self.svd_ = None
        if self.tfidf or self.n_components is not None:
            counts, _, _, _ = self._count_features(chunks, rows, sid, pt, sparse_output=True)
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

    def _count_features(self, chunks, rows, sid, pt, sparse_output):
        """``(counts, numeric, n_history, n_unknown)`` of every row, chunk by chunk.

        Dense: ``counts`` is one preallocated (n_rows, n_counts + n_numeric)
        array that holds the numeric columns too (``numeric`` is then None).
        """
        feat = self.featurizer_
        m, n_counts = sid.size, feat.n_count_features
        n_num = feat.numeric_codes_.size
        n_hist = np.zeros(m, np.int64)
        n_unk = 0
        if sparse_output:
            parts, numeric = [], np.zeros((m, n_num))
        else:
            out = np.zeros((m, n_counts + n_num))
        for i, arrays in chunks:
            r = rows[i]
            s, p = sid[r], pt[r]
            self._check_rows(arrays, s, p, r, chunk=i)
            # dense: every chunk writes its rows of the one output in place
            counts, num, hist, unk = feat.transform(
                arrays,
                s,
                p,
                sparse_output=sparse_output,
                out=None if sparse_output else out,
                out_rows=None if isinstance(r, slice) else r,
            )
            n_hist[r] = hist
            n_unk += unk
            if sparse_output:
                parts.append(counts)
                numeric[r] = num
            del arrays, counts, num
        if not sparse_output:
            return out, None, n_hist, n_unk
        counts = parts[0] if len(parts) == 1 else sp.vstack(parts, format="csr")
        if len(parts) > 1:
            counts = counts[np.argsort(np.concatenate(rows), kind="stable")]
        return counts, numeric, n_hist, n_unk

    def _transform_chunks(self, chunks, cohort, sid, pt):
        use_sparse = self.sparse_output or self.tfidf_ is not None or self.svd_ is not None
        counts, numeric, n_hist, n_unk = self._count_features(
            chunks, self._chunk_rows(chunks, sid), sid, pt, sparse_output=use_sparse
        )
        self.n_unknown_events_ = n_unk
        self.n_empty_ = int(np.count_nonzero(n_hist == 0))
        if not use_sparse:
            return counts
        if self.tfidf_ is not None:
            counts = self.tfidf_.transform(counts)
        if self.svd_ is not None:
            counts = self.svd_.transform(counts)
        if self.sparse_output:
            return sp.hstack([counts, sp.csr_matrix(numeric)], format="csr")
        if sp.issparse(counts):
            counts = counts.toarray()
        return np.hstack([counts, numeric]) if numeric.shape[1] else counts
