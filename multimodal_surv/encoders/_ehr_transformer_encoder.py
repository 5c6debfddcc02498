"""``EHRTransformerEncoder``: a CLMBR-style sequence model's state at each prediction time."""

from __future__ import annotations

import math
import os
from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from .._device import fork_rng, resolve_device
from ..datasets._events import MEDSEvents, event_arrays
from ._ehr_base import EHREncoderBase
from ._ehr_counts import CountFeaturizer, expand_ranges
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

__all__ = ["EHRTransformerEncoder"]


class EHRTransformerEncoder(EHREncoderBase):
    """Encode each row's event history with a small pretrained transformer (CLMBR-style).

    Each event is a token (code embedding plus time features); a causal
    transformer is pretrained by next-code prediction on the fit cohort's
    history (or on ``pretrain_events``, or loaded from ``weights``), and a
    row's embedding is the hidden state of its subject's last event with
    ``time <= prediction_time`` (MEDS label semantics: later events never
    reach it). See the EHR encoder user guide for the architecture.

    Parameters
    ----------
    events : DataFrame, str, os.PathLike or MEDSEvents
        The MEDS event table or a MEDS root folder (``data/*.parquet``,
        streamed chunk by chunk of subjects at ``transform``); see
        :class:`EHRCountEncoder`.
    weights : str, os.PathLike or None, default=None
        A folder written by :meth:`save_pretrained`; ``fit`` then loads that
        model (frozen) instead of pretraining. A folder that does not hold a
        compatible model (FEMR / CLMBR-T checkpoints included, see the docs)
        raises a ``ValueError`` that says why.
    pretrain_events : DataFrame, str, os.PathLike, MEDSEvents or None, default=None
        Pretrain on all events of this separate corpus instead of on the fit
        cohort's history up to its prediction times.
    min_count : int, default=1
        Codes seen fewer times in the pretraining events get the ``<unk>`` token.
    max_features : int or None, default=None
        Keep at most this many codes (most frequent) as tokens.
    hidden_size, n_layers, n_heads : int, default=64, 2, 4
        Transformer size (CPU-fast defaults).
    max_length : int, default=128
        Tokens per sequence; embeddings use the last ``max_length - 1`` events.
    dropout : float, default=0.1
        Dropout during pretraining.
    pretrain_epochs : int, default=10
        Pretraining passes over the corpus.
    pretrain_batch_size : int, default=32
        Sequences per pretraining step.
    pretrain_lr : float, default=3e-3
        AdamW learning rate of pretraining (cosine decay, weight decay 0.01).
    batch_size : int, default=32
        Sequences per inference batch (``transform``).
    n_tokens : int or None, default=None
        ``None``: one vector (the last event's hidden state), columns ``x{j}``.
        ``k``: the hidden states of the last ``k`` events, oldest first, columns
        ``t{i}_{j}`` (short histories are left-filled with the ``<bos>`` state).
    on_error : {"raise", "nan"}, default="raise"
        A row whose prediction time precedes its subject's ``MEDS_BIRTH`` event:
        raise a ``ValueError``, or give it an all-NaN row (EHR modality missing
        for the fusion models) with one warning per call. A row **without
        history** is not an error: it gets the model's ``<bos>`` state, the
        learned encoding of "nothing recorded yet".
    on_invalid : {"drop", "raise"}, default="drop"
        Events that cannot be true (before ``MEDS_BIRTH``, after
        ``MEDS_DEATH``, exact duplicates, null or empty codes), in ``events``
        and ``pretrain_events``: left out with one counted warning per ``fit``
        (counts in ``invalid_events_``), or a ``ValueError``; see
        :class:`EHRCountEncoder`.
    device : str, default="cpu"
        Torch device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA
        when available).
    n_jobs : int or None, default=None
        ``transform`` encodes shards of subjects in parallel with
        :class:`joblib.Parallel` (see :class:`EHRCountEncoder`).
    verbose : int, default=0
        0: silent; 1: progress bars for pretraining and encoding; 2: also one
        line per pretraining epoch with its loss.
    random_state : int, RandomState or None, default=None
        Seeds weight initialisation, shuffling and dropout; an int makes
        pretraining reproducible (the global torch RNG is left untouched).

    Attributes
    ----------
    vocabulary_ : ndarray of str
        Codes with their own token (sorted); others map to ``<unk>``.
    model_ : CodeTimeTransformer
        The pretrained (or loaded) transformer.
    pretrain_loss_ : list of float
        Mean next-code cross-entropy per pretraining epoch.
    n_unknown_events_ : int
        Events outside the vocabulary seen by the last ``transform``.
    n_empty_ : int
        Rows without history in the last ``fit`` / ``transform``.
    n_errors_ : int
        Rows given NaN by ``on_error="nan"`` in the last ``fit`` / ``transform``.
    invalid_events_ : dict of str to int
        Invalid events left out by ``fit`` per kind (see :class:`EHRCountEncoder`).
    n_features_in_ : int
    feature_names_in_ : ndarray of str

    See Also
    --------
    EHRCountEncoder : bag-of-codes counts over time windows.

    References
    ----------
    Steinberg et al., "Language models are an effective representation
    learning technique for electronic health record data", J Biomed Inform
    2021 (CLMBR).

    Examples
    --------
    >>> import pandas as pd
    >>> from multimodal_surv.encoders import EHRTransformerEncoder
    >>> events = pd.DataFrame({"subject_id": [1, 1, 2], "code": ["A", "B", "A"],
    ...                        "time": pd.to_datetime(["2020-01", "2020-03", "2020-02"]),
    ...                        "numeric_value": float("nan")})
    >>> cohort = events.groupby("subject_id", as_index=False).time.max()
    >>> cohort = cohort.rename(columns={"time": "prediction_time"})
    >>> enc = EHRTransformerEncoder(events, hidden_size=8, n_heads=2, pretrain_epochs=1,
    ...                             random_state=0)
    >>> enc.fit_transform(cohort).shape
    (2, 8)
    """

    _parameter_constraints: dict = {
        **EHREncoderBase._parameter_constraints,
        "weights": [str, os.PathLike, None],
        "pretrain_events": [pd.DataFrame, str, os.PathLike, MEDSEvents, None],
        "min_count": [Interval(Integral, 1, None, closed="left")],
        "max_features": [Interval(Integral, 1, None, closed="left"), None],
        "hidden_size": [Interval(Integral, 1, None, closed="left")],
        "n_layers": [Interval(Integral, 1, None, closed="left")],
        "n_heads": [Interval(Integral, 1, None, closed="left")],
        "max_length": [Interval(Integral, 2, None, closed="left")],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "pretrain_epochs": [Interval(Integral, 0, None, closed="left")],
        "pretrain_batch_size": [Interval(Integral, 1, None, closed="left")],
        "pretrain_lr": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "n_tokens": [Interval(Integral, 1, None, closed="left"), None],
        "device": [str],
        "verbose": ["verbose"],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        events=None,
        *,
        weights=None,
        pretrain_events=None,
        min_count=1,
        max_features=None,
        hidden_size=64,
        n_layers=2,
        n_heads=4,
        max_length=128,
        dropout=0.1,
        pretrain_epochs=10,
        pretrain_batch_size=32,
        pretrain_lr=3e-3,
        batch_size=32,
        n_tokens=None,
        on_error="raise",
        on_invalid="drop",
        device="cpu",
        n_jobs=None,
        verbose=0,
        random_state=None,
    ):
        self.events = events
        self.weights = weights
        self.pretrain_events = pretrain_events
        self.min_count = min_count
        self.max_features = max_features
        self.hidden_size = hidden_size
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.max_length = max_length
        self.dropout = dropout
        self.pretrain_epochs = pretrain_epochs
        self.pretrain_batch_size = pretrain_batch_size
        self.pretrain_lr = pretrain_lr
        self.batch_size = batch_size
        self.n_tokens = n_tokens
        self.on_error = on_error
        self.on_invalid = on_invalid
        self.device = device
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.random_state = random_state

    def _fit_cohort(self, sid, pt):
        """Pretrain (or load) the model on the fit rows' history; its lengths.

        The vocabulary and pretraining use each subject's events up to its
        latest prediction time only: the model never sees a row's future.
        """
        self.device_ = resolve_device(self.device)
        arrays = event_arrays(self._events(refresh=True), subjects=np.unique(sid))
        self._check_rows(arrays, sid, pt, slice(None))
        if self.weights is None and self.pretrain_events is not None:
            corpus = event_arrays(self.pretrain_events)
            self._invalid.add(corpus.invalid)  # reported with the cohort's
        self._report_invalid("fit")
        if self.weights is not None:
            self._load_weights(self.weights)
        else:
            if self.pretrain_events is not None:
                first, end = corpus.starts[:-1], corpus.starts[1:]
            else:
                corpus = arrays
                last = pd.Series(pt).groupby(sid).max()
                first, end = self._history_ranges(corpus, last.index.to_numpy(), last.to_numpy())
            self._pretrain(corpus, first, end)
        self.n_embedding_ = self.model_.hparams["hidden_size"] * (self.n_tokens or 1)
        first, end = self._history_ranges(arrays, sid, pt)
        return end - first

    def get_feature_names_out(self, input_features=None):
        """Output names: ``x{j}``, or ``t{i}_{j}`` with ``n_tokens``.

        Returns
        -------
        names : ndarray of str
        """
        if self.n_tokens is None:
            return super().get_feature_names_out(input_features)
        check_is_fitted(self, "n_embedding_")
        width = self.model_.hparams["hidden_size"]
        return np.asarray(
            [f"t{i}_{j}" for i in range(self.n_tokens) for j in range(width)], dtype=object
        )

    # -- helpers -----------------------------------------------------------
    def _token_map(self, arrays):
        """Token of each of ``arrays.codes`` (vocabulary codes after the specials)."""
        V = self.vocabulary_.size
        if arrays.codes.size == 0 or V == 0:
            return np.full(arrays.codes.size, UNK, np.int64)
        pos = np.minimum(np.searchsorted(self.vocabulary_, arrays.codes), V - 1)
        hit = self.vocabulary_[pos] == arrays.codes
        return np.where(hit, pos + len(SPECIAL_TOKENS), UNK).astype(np.int64)

    def _load_weights(self, folder):
        model, codes, _ = load_pretrained(folder)
        self.model_ = model.to(resolve_device(self.device))
        self.vocabulary_ = codes
        self.pretrain_loss_ = []

    def _new_model(self):
        return CodeTimeTransformer(
            self.vocabulary_.size + len(SPECIAL_TOKENS),
            self.hidden_size,
            self.n_layers,
            self.n_heads,
            self.max_length,
            self.dropout,
        ).to(self.device_)

    def _pretrain(self, corpus, first, end):
        import torch
        from torch.nn import functional as F
        from tqdm.auto import tqdm

        # vocabulary from the corpus events that pretraining sees
        feat = CountFeaturizer(["ever"], self.min_count, self.max_features, None)
        _, idx, _ = expand_ranges(first, end)
        if idx.size == 0:
            raise ValueError(
                "no events at or before the cohort's prediction times to pretrain on; pass "
                "pretrain_events=<MEDS events> or weights=<folder>."
            )
        freq = np.bincount(corpus.code_ids[idx], minlength=corpus.codes.size)
        self.vocabulary_ = corpus.codes[feat.select_codes(freq)].astype(object)
        seqs = EventSequences(corpus, self._token_map(corpus))
        ev_start, length, has_bos = training_chunks(first, end, self.max_length)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        rng = np.random.default_rng(seed)
        bs = self.pretrain_batch_size
        n_batches = math.ceil(ev_start.size / bs)
        with fork_rng(self.device):
            torch.manual_seed(seed)
            model = self._new_model()
            opt = torch.optim.AdamW(model.parameters(), lr=self.pretrain_lr, weight_decay=0.01)
            total = max(self.pretrain_epochs * n_batches, 1)
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step / total, 1.0)))
            )
            self.pretrain_loss_ = []
            model.train()
            with tqdm(total=total, disable=self.verbose < 1, desc="EHR pretraining") as bar:
                for epoch in range(self.pretrain_epochs):
                    perm = rng.permutation(ev_start.size)
                    loss_sum, n_tok = 0.0, 0
                    for b in range(n_batches):
                        sel = perm[b * bs : (b + 1) * bs]
                        codes, feats, mask = (
                            t.to(self.device_)
                            for t in seqs.batch(ev_start[sel], length[sel], has_bos[sel])
                        )
                        valid = mask[:, 1:].bool()
                        logits = model.logits(model(codes, feats, mask)[:, :-1][valid])
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
                    if self.verbose >= 2:
                        bar.write(f"epoch {epoch + 1}: loss {self.pretrain_loss_[-1]:.4f}")
        model.eval()
        self.model_ = model

    def _encode(self, arrays, first, end):
        """Hidden states of the last ``n_tokens`` (or 1) events of each history."""
        import torch
        from tqdm.auto import tqdm

        model = self.model_
        device = next(model.parameters()).device
        max_length = model.hparams["max_length"]
        hidden_size = model.hparams["hidden_size"]
        k = self.n_tokens or 1
        seqs = EventSequences(arrays, self._token_map(arrays))
        ev_start, length, has_bos = inference_windows(first, end, max_length)
        out = np.zeros((first.size, k, hidden_size), np.float32)
        order = np.argsort(length, kind="stable")  # similar lengths share a batch
        n_batches = math.ceil(first.size / self.batch_size)
        with torch.inference_mode():
            for b in tqdm(range(n_batches), disable=self.verbose < 1, desc="EHR encoding"):
                sel = order[b * self.batch_size : (b + 1) * self.batch_size]
                codes, feats, mask = (
                    t.to(device) for t in seqs.batch(ev_start[sel], length[sel], has_bos[sel])
                )
                hidden = model(codes, feats, mask).float().cpu().numpy()
                # positions length-k .. length-1, clipped at 0 (the <bos> state)
                pos = np.maximum(length[sel][:, None] - k + np.arange(k)[None, :], 0)
                out[sel] = np.take_along_axis(hidden, pos[..., None], axis=1)
        return out.reshape(first.size, k * hidden_size)

    def _transform_chunks(self, chunks, cohort, sid, pt):
        # A MEDS folder is streamed chunk by chunk of subjects.
        rows = self._chunk_rows(chunks, sid)
        out = np.empty((sid.size, self.n_embedding_), np.float32)
        n_empty = n_unknown = 0
        for i, arrays in chunks:
            r = rows[i]
            s, p = sid[r], pt[r]
            self._check_rows(arrays, s, p, r, chunk=i)
            first, end = self._history_ranges(arrays, s, p)
            tokens = self._token_map(arrays)
            _, idx, _ = expand_ranges(first, end)
            n_unknown += int(np.count_nonzero(tokens[arrays.code_ids[idx]] == UNK))
            out[r] = self._encode(arrays, first, end)
            n_empty += int(np.count_nonzero(end == first))
            del arrays
        self.n_unknown_events_ = n_unknown
        self.n_empty_ = n_empty
        return out

    # -- evaluation and persistence ----------------------------------------
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
        device = next(self.model_.parameters()).device
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
                    t.to(device) for t in seqs.batch(ev_start[sl], length[sl], has_bos[sl])
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
        ``EHRTransformerEncoder(weights=folder)`` or :meth:`from_pretrained`.

        Parameters
        ----------
        folder : str or os.PathLike
        """
        check_is_fitted(self, "model_")
        save_pretrained(folder, self.model_, self.vocabulary_)

    @classmethod
    def from_pretrained(cls, folder, *, events=None, **params) -> EHRTransformerEncoder:
        """A fitted ``EHRTransformerEncoder(weights=folder)``, ready to transform.

        Parameters
        ----------
        folder : str or os.PathLike
            Written by :meth:`save_pretrained`.
        events : DataFrame, str, os.PathLike or MEDSEvents
            Events to encode.
        **params
            Other parameters (``n_tokens``, ``on_error``, ``batch_size`` ...).

        Returns
        -------
        encoder : EHRTransformerEncoder
            Fitted; ``clone`` gives the unfitted encoder whose ``fit`` reloads
            the same folder. Input columns are ``subject_id`` and
            ``prediction_time``.
        """
        enc = cls(events=events, weights=folder, **params)
        enc._validate_params()
        enc.device_ = resolve_device(enc.device)
        enc._load_weights(folder)
        enc.n_features_in_ = 2
        enc.feature_names_in_ = np.asarray(["subject_id", "prediction_time"], dtype=object)
        enc.n_embedding_ = enc.model_.hparams["hidden_size"] * (enc.n_tokens or 1)
        enc.n_empty_ = enc.n_unknown_events_ = enc.n_errors_ = 0
        enc.invalid_events_ = {}
        enc._fit_subjects = None
        return enc
