"""Embedding a cohort once with the library's CT and EHR encoders."""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd

from ..encoders import (
    CTEncoder,
    EHRCountEncoder,
    EHRTransformerEncoder,
    make_multimodal_encoder,
)
from ._select import site_masks

__all__ = ["Progress", "encode_cohort"]


class Progress:
    """Timestamped progress lines on stderr (silent when ``verbose`` is 0).

    The clock starts when the object is made, so each run reports its own
    elapsed time.
    """

    def __init__(self, verbose=1):
        self.verbose = int(verbose)
        self.enabled = self.verbose > 0
        self.start = time.perf_counter()

    def __call__(self, message):
        if self.enabled:
            elapsed = time.perf_counter() - self.start
            print(f"[multimodal-surv {elapsed:6.0f}s] {message}", file=sys.stderr, flush=True)


def as_progress(verbose):
    """A :class:`Progress` from a ``verbose`` level (or the object itself)."""
    return verbose if isinstance(verbose, Progress) else Progress(verbose)


def _ct_verbose(level):
    """``CTEncoder``'s ``verbose`` is a bool in some versions, an int level in others."""
    return bool(level) if CTEncoder._parameter_constraints.get("verbose") == ["boolean"] else level


def _prefixed(frame, prefix):
    """Rename all columns to ``<prefix>__x<j>`` (one modality, plain vector)."""
    out = frame.copy()
    out.columns = [f"{prefix}__x{j}" for j in range(frame.shape[1])]
    return out


def encode_cohort(
    data,
    *,
    quick=False,
    random_state=0,
    cache_dir=None,
    verbose=0,
    fit_rows=None,
    device="cpu",
    ct_backbone="ssl",
    ct_weights=None,
    inputs=None,
    n_jobs=None,
):
    """Embed every row of a cohort with the library's CT and EHR encoders.

    Encoders are fitted on the training rows (``site == "internal"`` and
    ``split == "train"``, or ``fit_rows``) only, then applied to all rows.
    They never see the outcome.

    Parameters
    ----------
    data : Bunch
        As returned by :func:`~multimodal_surv.datasets.load_cohort_folder`.
    quick : bool, default=False
        Smaller pretraining budgets.
    random_state : int, default=0
    cache_dir : path-like or None
        On-disk cache of CT embeddings (reruns skip the CT backbone).
    verbose : int, default=0
        0 silent; 1 progress lines and the encoders' progress bars; 2 adds the
        encoders' per-epoch lines.
    fit_rows : array-like of bool or None
        Rows the encoders are fitted on (default: the training rows).
    device : str, default="cpu"
        Torch device of the CT and EHR transformer encoders.
    ct_backbone, ct_weights : default="ssl", None
        ``backbone`` and ``weights`` of the :class:`~multimodal_surv.encoders.CTEncoder`
        (``"merlin"`` without weights: the packaged checkpoint).
    inputs : set of str or None
        Embeddings needed; without ``"ehr_transformer"`` and ``"ehr_both"``
        the EHR transformer is not pretrained.
    n_jobs : int or None, default=None
        Processes of the CT encoder's ``transform`` (shards of rows); the
        embeddings are the same for any value.

    Returns
    -------
    embeddings : dict of str to DataFrame
        ``"ct"`` (columns ``ct__*``), ``"ehr_counts"``, ``"ehr_transformer"``
        and their concatenation ``"ehr_both"`` (columns ``ehr__*``), indexed
        like ``data.cohort``; without the transformer's two when ``inputs``
        does not need them.
    """
    cohort = data.cohort.reset_index(drop=True)
    train = site_masks(cohort)["train"] if fit_rows is None else np.asarray(fit_rows, bool)
    log = as_progress(verbose)
    ct = CTEncoder(
        ct_backbone,
        weights=ct_weights,
        pretrain_epochs=3 if quick else 10,  # 10: the encoder default (ct_real_anatomy)
        cache_dir=cache_dir,
        on_error="nan",
        verbose=_ct_verbose(log.verbose),
        random_state=random_state,
        device=device,
        n_jobs=n_jobs,
    )
    counts = EHRCountEncoder(data.meds_root)
    log("encoding CT (self-supervised backbone) and EHR counts")
    encoder = make_multimodal_encoder(ct=ct, ehr=counts)
    encoder.fit(cohort[train])
    both = encoder.transform(cohort)
    ct_cols = [c for c in both.columns if c.startswith("ct__")]
    ehr_cols = [c for c in both.columns if c.startswith("ehr__")]
    embeddings = {"ct": both[ct_cols], "ehr_counts": _prefixed(both[ehr_cols], "ehr")}
    if inputs is not None and not {"ehr_transformer", "ehr_both"} & set(inputs):
        return embeddings
    log("pretraining the EHR transformer (next-code prediction)")
    transformer = EHRTransformerEncoder(
        data.meds_root,
        pretrain_epochs=2 if quick else 5,
        verbose=log.verbose,
        random_state=random_state,
        device=device,
    )
    ehr_fm = make_multimodal_encoder(ehr=transformer).fit(cohort[train]).transform(cohort)
    embeddings["ehr_transformer"] = _prefixed(ehr_fm, "ehr")
    embeddings["ehr_both"] = _prefixed(pd.concat([both[ehr_cols], ehr_fm], axis=1), "ehr")
    return embeddings
