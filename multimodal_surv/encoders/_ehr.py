"""``EHREncoder``: MEDS event streams -> one embedding per (subject, prediction time)."""

from __future__ import annotations

import copy
import math
import os
from numbers import Integral, Real

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ..datasets._meds import EventChunks, MEDSEvents, event_arrays, validate_cohort
from ._ehr_counts import CodeCounter, CountFeaturizer, expand_ranges, parse_windows
from ._ehr_transformer import (
    SPECIAL_TOKENS,
    UNK,
    CodeTimeTransformer,
    EventSequences,
    inference_windows,
    load_pretrained,
    save_pretrained,
    training_chunks,
)

__all__ = ["EHREncoder"]


def _transform_rows(encoder, X):
    """One parallel task of :meth:`EHREncoder.transform` (a module-level function pickles)."""
    encoder = copy.copy(encoder)
    encoder.n_jobs = None
    out = encoder.transform(X)
    return out, encoder.n_unknown_events_, encoder.n_empty_


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
    weights : str, os.PathLike or None, default=None
        ``method="transformer"``: a folder written by :meth:`save_pretrained`;
        ``fit`` then loads that model (frozen) instead of pretraining. A folder
        that does not hold a compatible model (FEMR / CLMBR-T checkpoints
        included, see the docs) raises a ``ValueError`` that says why.
    pretrain_events : DataFrame, str, os.PathLike, MEDSEvents or None, default=None
        ``method="transformer"``: pretrain on all events of this separate corpus
        instead of on the fit cohort's history up to its prediction times.
    hidden_size, n_layers, n_heads : int, default=64, 2, 4
        Transformer size (CPU-fast defaults).
    max_length : int, default=128
        Tokens per sequence; embeddings use the last ``max_length - 1`` events.
    n_epochs : int, default=10
        Pretraining passes over the corpus.
    batch_size : int, default=32
        Sequences per pretraining / inference batch.
    learning_rate : float, default=3e-3
        AdamW learning rate (cosine decay, weight decay 0.01).
    dropout : float, default=0.1
        Dropout during pretraining.
    n_tokens : int or None, default=None
        ``None``: one vector (the last event's hidden state), columns ``x{j}``.
        ``k``: the hidden states of the last ``k`` events, oldest first, columns
        ``t{i}_{j}`` (short histories are left-filled with the ``<bos>`` state).
    device : str, default="cpu"
        Torch device for pretraining and encoding.
    n_jobs : int or None, default=None
        ``transform`` encodes shards of subjects in parallel with
        :class:`joblib.Parallel`, so that a joblib backend (``"loky"``,
        ``"dask"``, ``"ray"``) spreads them over processes or a cluster; each
        shard reads only its subjects' events. ``-1`` uses every worker of the
        active backend. ``None`` / 1: serial.
    verbose : bool, default=False
        Show tqdm progress bars during pretraining and encoding.
    random_state : int, RandomState or None, default=None
        Seeds weight initialisation, shuffling and dropout; an int makes
        pretraining reproducible (the global torch RNG is left untouched).

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
    model_ : CodeTimeTransformer
        The pretrained (or loaded) transformer (``method="transformer"``).
    pretrain_loss_ : list of float
        Mean next-code cross-entropy per pretraining epoch.
    n_features_in_ : int
    feature_names_in_ : ndarray of str

    Notes
    -----
    ``fit`` uses only events with ``time <= prediction_time`` of the fit rows
    (per subject, up to its latest prediction time), both for the vocabulary and
    for pretraining: the self-supervised model never sees a row's future.
    Events at the same time keep the order of the table. Events with a null
    ``time`` are MEDS static measurements and count as known at any time.

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
        "method": [StrOptions({"counts", "transformer"})],
        "windows": ["array-like"],
        "min_count": [Interval(Integral, 1, None, closed="left")],
        "max_features": [Interval(Integral, 1, None, closed="left"), None],
        "numeric": [StrOptions({"last"}), None],
        "tfidf": ["boolean"],
        "n_components": [Interval(Integral, 1, None, closed="left"), None],
        "sparse_output": ["boolean"],
        "on_empty": [StrOptions({"zeros", "nan", "error"})],
        "weights": [str, os.PathLike, None],
        "pretrain_events": [pd.DataFrame, str, os.PathLike, MEDSEvents, None],
        "hidden_size": [Interval(Integral, 1, None, closed="left")],
        "n_layers": [Interval(Integral, 1, None, closed="left")],
        "n_heads": [Interval(Integral, 1, None, closed="left")],
        "max_length": [Interval(Integral, 2, None, closed="left")],
        "n_epochs": [Interval(Integral, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "n_tokens": [Interval(Integral, 1, None, closed="left"), None],
        "device": [str],
        "n_jobs": [Integral, None],
        "verbose": ["boolean"],
        "random_state": ["random_state"],
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
        weights=None,
        pretrain_events=None,
        hidden_size=64,
        n_layers=2,
        n_heads=4,
        max_length=128,
        n_epochs=10,
        batch_size=32,
        learning_rate=3e-3,
        dropout=0.1,
        n_tokens=None,
        device="cpu",
        n_jobs=None,
        verbose=False,
        random_state=None,
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
        self.weights = weights
        self.pretrain_events = pretrain_events
        self.hidden_size = hidden_size
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.max_length = max_length
        self.n_epochs = n_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.dropout = dropout
        self.n_tokens = n_tokens
        self.device = device
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.random_state = random_state

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

    def _arrays(self, sid, pt):
        arrays = event_arrays(self.events, subjects=np.unique(sid))
        arrays.check_prediction_times(sid, pt)
        return arrays

    @staticmethod
    def _chunk_rows(chunks, sid):
        """Cohort rows of each chunk (``slice(None)`` when there is one chunk)."""
        if len(chunks) == 1:
            return [slice(None)]
        which = chunks.chunk_of(sid)
        order = np.argsort(which, kind="stable")
        return np.split(order, np.cumsum(np.bincount(which, minlength=len(chunks)))[:-1])

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
        if len(cohort) == 0:
            raise ValueError(
                "the cohort passed to EHREncoder.fit has no rows; pass at least one "
                "(subject_id, prediction_time) row."
            )
        if self.method == "counts":
            self._fit_counts(EventChunks(self.events, sid), cohort, sid, pt)
        else:
            self._fit_transformer(self._arrays(sid, pt), cohort, sid, pt)
        return self

    def _fit_counts(self, chunks, cohort, sid, pt):
        # A MEDS folder is streamed chunk by chunk of subjects (see EventChunks).
        feat = CountFeaturizer(self.windows, self.min_count, self.max_features, self.numeric)
        counter = CodeCounter()
        n_hist = np.zeros(sid.size, np.int64)
        rows = self._chunk_rows(chunks, sid)
        for i, arrays in chunks:
            s, p = sid[rows[i]], pt[rows[i]]
            arrays.check_prediction_times(s, p)
            counter.add(arrays, s, p)
            k, end = arrays.locate(s, p)
            n_hist[rows[i]] = end - np.where(k >= 0, arrays.starts[np.maximum(k, 0)], 0)
            del arrays
        feat.fit_counter(counter)
        self.featurizer_ = feat
        self.vocabulary_ = feat.vocabulary_
        self.numeric_codes_ = feat.numeric_codes_
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
        if self.n_jobs not in (None, 1) and len(cohort) > 1:
            return self._transform_parallel(X, cohort)
        chunks = EventChunks(self.events, sid)
        if self.method == "counts":
            return self._transform_counts(chunks, cohort, sid, pt)
        return self._transform_transformer(chunks, cohort, sid, pt)

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
        parts = [out for out, _, _ in results]
        out = sp.vstack(parts, format="csr") if sp.issparse(parts[0]) else np.vstack(parts)
        self.n_unknown_events_ = sum(n for _, n, _ in results)
        self.n_empty_ = sum(n for _, _, n in results)
        return out[order]

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
            out = np.empty((m, n_counts + n_num))
        for i, arrays in chunks:
            r = rows[i]
            s, p = sid[r], pt[r]
            arrays.check_prediction_times(s, p)
            direct = not sparse_output and isinstance(r, slice)  # one chunk: write in place
            counts, num, hist, unk = feat.transform(
                arrays, s, p, sparse_output=sparse_output, out=out if direct else None
            )
            n_hist[r] = hist
            n_unk += unk
            if sparse_output:
                parts.append(counts)
                numeric[r] = num
            elif not direct:
                out[r, :n_counts] = counts
                out[r, n_counts:] = num
            del arrays, counts, num
        if not sparse_output:
            return out, None, n_hist, n_unk
        counts = parts[0] if len(parts) == 1 else sp.vstack(parts, format="csr")
        if len(parts) > 1:
            counts = counts[np.argsort(np.concatenate(rows), kind="stable")]
        return counts, numeric, n_hist, n_unk

    def _transform_counts(self, chunks, cohort, sid, pt):
        use_sparse = self.sparse_output or self.tfidf_ is not None or self.svd_ is not None
        counts, numeric, n_hist, n_unk = self._count_features(
            chunks, self._chunk_rows(chunks, sid), sid, pt, sparse_output=use_sparse
        )
        self.n_unknown_events_ = n_unk
        if not use_sparse:
            return self._handle_empty(counts, n_hist == 0, cohort)
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
        if self.method == "transformer" and self.n_tokens is not None:
            return np.asarray(
                [
                    f"t{i}_{j}"
                    for i in range(self.n_tokens)
                    for j in range(self.model_.hparams["hidden_size"])
                ],
                dtype=object,
            )
        return np.asarray([f"x{j}" for j in range(self.n_embedding_)], dtype=object)

    # -- transformer -------------------------------------------------------
    def _token_map(self, arrays):
        """Token of each of ``arrays.codes`` (vocabulary codes after the specials)."""
        V = self.vocabulary_.size
        if arrays.codes.size == 0:
            return np.zeros(0, np.int64)
        pos = np.minimum(np.searchsorted(self.vocabulary_, arrays.codes), V - 1)
        hit = self.vocabulary_[pos] == arrays.codes
        return np.where(hit, pos + len(SPECIAL_TOKENS), UNK).astype(np.int64)

    def _histories(self, arrays, sid, pt):
        """``(first, end)`` event ranges up to each row's prediction time."""
        k, end = arrays.locate(sid, pt)
        first = np.where(k >= 0, arrays.starts[np.maximum(k, 0)], 0)
        return first, end

    def _seed(self):
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def _fit_transformer(self, arrays, cohort, sid, pt):
        if self.weights is not None:
            self._load_weights(self.weights)
        else:
            if self.pretrain_events is not None:
                corpus = event_arrays(self.pretrain_events)
                first, end = corpus.starts[:-1], corpus.starts[1:]
            else:
                corpus = arrays
                last = pd.Series(pt).groupby(sid).max()
                first, end = self._histories(corpus, last.index.to_numpy(), last.to_numpy())
            self._pretrain(corpus, first, end)
        self.n_embedding_ = self.model_.hparams["hidden_size"] * (self.n_tokens or 1)
        first, end = self._histories(arrays, sid, pt)
        self.n_empty_ = int(np.count_nonzero(end == first))
        self.n_unknown_events_ = 0

    def _load_weights(self, folder):
        model, codes, _ = load_pretrained(folder)
        self.model_ = model.to(self.device)
        self.vocabulary_ = codes
        self.pretrain_loss_ = []

    def _pretrain(self, corpus, first, end):
        import torch
        from torch.nn import functional as F
        from tqdm.auto import tqdm

        # vocabulary from the corpus events that pretraining sees
        feat = CountFeaturizer(["ever"], self.min_count, self.max_features, None)
        _, idx, _ = expand_ranges(first, end)
        freq = np.bincount(corpus.code_ids[idx], minlength=corpus.codes.size)
        if idx.size == 0:
            raise ValueError(
                "no events at or before the cohort's prediction times to pretrain on; pass "
                "pretrain_events=<MEDS events> or weights=<folder>."
            )
        keep = feat.select_codes(freq)
        self.vocabulary_ = corpus.codes[keep].astype(object)
        seqs = EventSequences(corpus, self._token_map(corpus))
        ev_start, length, has_bos = training_chunks(first, end, self.max_length)
        seed = self._seed()
        rng = np.random.default_rng(seed)
        n_batches = math.ceil(ev_start.size / self.batch_size)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = CodeTimeTransformer(
                self.vocabulary_.size + len(SPECIAL_TOKENS),
                self.hidden_size,
                self.n_layers,
                self.n_heads,
                self.max_length,
                self.dropout,
            ).to(self.device)
            opt = torch.optim.AdamW(model.parameters(), lr=self.learning_rate, weight_decay=0.01)
            total = max(self.n_epochs * n_batches, 1)
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step / total, 1.0)))
            )
            self.pretrain_loss_ = []
            model.train()
            with tqdm(total=total, disable=not self.verbose, desc="EHR pretraining") as bar:
                for _ in range(self.n_epochs):
                    perm = rng.permutation(ev_start.size)
                    loss_sum, n_tok = 0.0, 0
                    for b in range(n_batches):
                        sel = perm[b * self.batch_size : (b + 1) * self.batch_size]
                        codes, feats, mask = (
                            t.to(self.device)
                            for t in seqs.batch(ev_start[sel], length[sel], has_bos[sel])
                        )
                        hidden = model(codes, feats, mask)
                        valid = mask[:, 1:].bool()
                        logits = model.logits(hidden[:, :-1][valid])
                        loss = F.cross_entropy(logits, codes[:, 1:][valid])
                        opt.zero_grad()
                        loss.backward()
                        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                        opt.step()
                        sched.step()
                        loss_sum += loss.item() * int(valid.sum())
                        n_tok += int(valid.sum())
                        bar.update(1)
                    self.pretrain_loss_.append(loss_sum / max(n_tok, 1))
                    bar.set_postfix(loss=f"{self.pretrain_loss_[-1]:.3f}")
        model.eval()
        self.model_ = model

    def _encode(self, arrays, first, end):
        """Hidden states of the last ``n_tokens`` (or 1) events of each history."""
        import torch
        from tqdm.auto import tqdm

        model = self.model_
        max_length = model.hparams["max_length"]
        hidden_size = model.hparams["hidden_size"]
        k = self.n_tokens or 1
        seqs = EventSequences(arrays, self._token_map(arrays))
        ev_start, length, has_bos = inference_windows(first, end, max_length)
        out = np.zeros((first.size, k, hidden_size), np.float32)
        order = np.argsort(length, kind="stable")  # similar lengths share a batch
        n_batches = math.ceil(first.size / self.batch_size)
        with torch.inference_mode():
            for b in tqdm(range(n_batches), disable=not self.verbose, desc="EHR encoding"):
                sel = order[b * self.batch_size : (b + 1) * self.batch_size]
                codes, feats, mask = (
                    t.to(self.device) for t in seqs.batch(ev_start[sel], length[sel], has_bos[sel])
                )
                hidden = model(codes, feats, mask).float().cpu().numpy()
                # positions length-k .. length-1, clipped at 0 (the <bos> state)
                pos = np.maximum(length[sel][:, None] - k + np.arange(k)[None, :], 0)
                out[sel] = np.take_along_axis(hidden, pos[..., None], axis=1)
        return out.reshape(first.size, k * hidden_size)

    def _transform_transformer(self, chunks, cohort, sid, pt):
        # Like the counts, a MEDS folder is streamed chunk by chunk of subjects.
        rows = self._chunk_rows(chunks, sid)
        out = np.empty((sid.size, self.n_embedding_), np.float32)
        empty = np.zeros(sid.size, bool)
        n_unknown = 0
        for i, arrays in chunks:
            r = rows[i]
            s, p = sid[r], pt[r]
            arrays.check_prediction_times(s, p)
            first, end = self._histories(arrays, s, p)
            tokens = self._token_map(arrays)
            _, idx, _ = expand_ranges(first, end)
            n_unknown += int(np.count_nonzero(tokens[arrays.code_ids[idx]] == UNK))
            out[r] = self._encode(arrays, first, end)
            empty[r] = end == first
            del arrays
        self.n_unknown_events_ = n_unknown
        return self._handle_empty(out, empty, cohort)

    def next_code_perplexity(self, events) -> float:
        """Next-code perplexity of the fitted transformer on all events of ``events``.

        Histories are cut into sequences of ``max_length`` tokens as in
        pretraining; every event is a prediction target (out-of-vocabulary
        codes as ``<unk>``).

        Parameters
        ----------
        events : DataFrame, str, os.PathLike or MEDSEvents
            Held-out MEDS events.

        Returns
        -------
        perplexity : float
        """
        import torch
        from torch.nn import functional as F

        check_is_fitted(self, "model_")
        arrays = event_arrays(events)
        seqs = EventSequences(arrays, self._token_map(arrays))
        ev_start, length, has_bos = training_chunks(
            arrays.starts[:-1], arrays.starts[1:], self.model_.hparams["max_length"]
        )
        nll, n = 0.0, 0
        with torch.inference_mode():
            for b in range(0, ev_start.size, self.batch_size):
                sl = slice(b, b + self.batch_size)
                codes, feats, mask = (
                    t.to(self.device) for t in seqs.batch(ev_start[sl], length[sl], has_bos[sl])
                )
                valid = mask[:, 1:].bool()
                logits = self.model_.logits(self.model_(codes, feats, mask)[:, :-1][valid])
                nll += float(F.cross_entropy(logits.float(), codes[:, 1:][valid], reduction="sum"))
                n += int(valid.sum())
        return float(math.exp(nll / max(n, 1)))

    def save_pretrained(self, folder) -> None:
        """Write the fitted transformer to ``folder`` (safetensors + JSON, no pickle).

        Files: ``config.json`` (architecture), ``model.safetensors`` (weights),
        ``vocabulary.json`` (special tokens and codes). Load with
        ``EHREncoder(method="transformer", weights=folder)`` or
        :meth:`from_pretrained`.

        Parameters
        ----------
        folder : str or os.PathLike
        """
        check_is_fitted(self, "model_")
        save_pretrained(folder, self.model_, self.vocabulary_)

    @classmethod
    def from_pretrained(cls, folder, *, events=None, **params) -> EHREncoder:
        """A fitted ``EHREncoder(method="transformer", weights=folder)``, ready to transform.

        Parameters
        ----------
        folder : str or os.PathLike
            Written by :meth:`save_pretrained`.
        events : DataFrame, str, os.PathLike or MEDSEvents
            Events to encode.
        **params
            Other parameters (``n_tokens``, ``on_empty``, ``batch_size`` ...).

        Returns
        -------
        encoder : EHREncoder
            Fitted; ``clone`` gives the unfitted encoder whose ``fit`` reloads
            the same folder. Input columns are ``subject_id`` and
            ``prediction_time``.
        """
        enc = cls(events=events, method="transformer", weights=folder, **params)
        enc._validate_params()
        enc._load_weights(folder)
        enc.n_features_in_ = 2
        enc.feature_names_in_ = np.asarray(["subject_id", "prediction_time"], dtype=object)
        enc.n_embedding_ = enc.model_.hparams["hidden_size"] * (enc.n_tokens or 1)
        enc.n_empty_ = enc.n_unknown_events_ = 0
        return enc
