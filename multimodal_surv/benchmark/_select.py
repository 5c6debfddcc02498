"""Training rows, test sites, and model selection by subject-grouped cross-validation.

Selection never sees a test row: the best unimodal and the best fusion model
are the rows with the highest mean Harrell's C over ``K`` folds of the
training rows, each fold holding out whole subjects.
"""

from __future__ import annotations

import numbers
import re
import warnings

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.model_selection import GroupKFold

from ..metrics import concordance_index
from ._models import fit_model

__all__ = [
    "cv_scores",
    "cv_scores_caught",
    "design",
    "select",
    "site_masks",
    "warn_once_per_model",
]


def site_masks(cohort):
    """Boolean masks ``train`` / ``internal`` / ``external`` of the cohort rows."""
    site = cohort["site"].to_numpy()
    split = cohort["split"].to_numpy()
    masks = {
        "train": (site == "internal") & (split == "train"),
        "internal": (site == "internal") & (split == "test"),
        "external": site == "external",
    }
    for name in ("train", "internal"):
        if not masks[name].any():
            raise ValueError(
                f"the cohort has no {name!r} rows (site='internal', split="
                f"'{'train' if name == 'train' else 'test'}'); the benchmark trains on internal "
                "train rows and tests on internal test rows (and external rows if any). "
                "For a cohort without a test split use nested cross-validation "
                "(--cv K, or run_nested_cv)."
            )
    return masks


def design(embeddings, inputs):
    """The model input: the embeddings of ``inputs`` side by side."""
    return pd.concat([embeddings[k] for k in inputs], axis=1)


def check_folds(k, groups, what="--selection-folds"):
    """Validate a number of folds against the number of subjects."""
    if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 2:
        raise ValueError(f"{what}={k!r} must be an integer >= 2.")
    n_subjects = len(np.unique(groups))
    if k > n_subjects:
        raise ValueError(
            f"{what}={k} folds but only {n_subjects} subjects; use at most {n_subjects} folds."
        )


def fold_cindex(estimator, X, y, groups, fit_idx, val_idx):
    """Fit on ``fit_idx``, Harrell's C on ``val_idx`` (NaN without a comparable pair).

    Returns the C and the warnings the fit raised, as ``(category, message)``
    pairs, so that the caller reports them once per model rather than once
    per fold (and so that they survive a joblib worker process).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = fit_model(estimator, X.iloc[fit_idx], y[fit_idx], groups[fit_idx])
        risk = model.predict(X.iloc[val_idx])
    y_val = y[val_idx]
    event_name, time_name = y.dtype.names
    try:
        c = concordance_index(y_val[event_name], y_val[time_name], risk)
    except ValueError:  # a fold without a comparable pair (tiny cohorts)
        c = np.nan
    return c, [(w.category, str(w.message)) for w in caught]


def warn_once_per_model(names, caught_per_fit, k, what="selection folds"):
    """Re-issue the folds' warnings once per model and kind, with the fold count.

    Warnings that differ only in their numbers (fold sizes) are one kind; the
    first fold's message is shown. With ``k == 1``, ``what`` names the fit.
    """
    for name, start in zip(names, range(0, len(caught_per_fit), k)):
        kinds = {}
        for caught in caught_per_fit[start : start + k]:
            seen = set()
            for category, message in caught:
                key = (category, re.sub(r"\d+(\.\d+)?", "#", message))
                if key not in seen:
                    seen.add(key)
                    first, count = kinds.get(key, (message, 0))
                    kinds[key] = (first, count + 1)
        for (category, _), (message, count) in kinds.items():
            where = f"in {count} of {k} {what}" if k > 1 else what
            warnings.warn(f"{name}, {where}: {message}", category, stacklevel=3)


def cv_scores(specs, embeddings, y, rows, groups, *, k, random_state, log=None, n_jobs=None):
    """Mean and sd of the out-of-fold Harrell's C of every model on ``rows``.

    Parameters
    ----------
    specs : dict of str to ModelSpec
    embeddings : dict of str to DataFrame
    y : structured array (all cohort rows)
    rows : ndarray of int
        The rows to cross-validate on (training rows).
    groups : ndarray
        Subject id of every cohort row; a subject's rows stay in one fold.
    k : int
    random_state : int
    log : callable or None
    n_jobs : int or None
        Fits run in parallel through joblib (same results for any value).

    Returns
    -------
    scores : DataFrame
        Index: model names; columns ``cv_C`` (mean) and ``cv_C_sd``.
    """
    scores, caught = cv_scores_caught(
        specs, embeddings, y, rows, groups, k=k, random_state=random_state, log=log,
        n_jobs=n_jobs,
    )  # fmt: skip
    warn_once_per_model(list(specs), [c for name in specs for c in caught[name]], k)
    return scores


def cv_scores_caught(specs, embeddings, y, rows, groups, *, k, random_state, log=None, n_jobs=None):
    """:func:`cv_scores` without re-issuing the folds' warnings: it returns them.

    Returns
    -------
    scores : DataFrame
    caught : dict of str to list
        Per model, the ``(category, message)`` warnings of each of its ``k``
        fits (see :func:`fold_cindex`), for :func:`warn_once_per_model`.
    """
    check_folds(k, groups[rows])
    splitter = GroupKFold(n_splits=k, shuffle=True, random_state=random_state)
    folds = list(splitter.split(rows, groups=groups[rows]))
    y_rows, g_rows = y[rows], groups[rows]
    if log is not None:
        log(f"selection: {k}-fold CV of {len(specs)} models on {len(rows)} training rows")
    tasks = [
        delayed(fold_cindex)(
            spec.estimator, design(embeddings, spec.inputs).iloc[rows], y_rows, g_rows, *fold
        )
        for spec in specs.values()
        for fold in folds
    ]
    results = Parallel(n_jobs=n_jobs)(tasks)
    fold_c = np.array([c for c, _ in results], dtype=float).reshape(len(specs), k)
    caught = {name: [w for _, w in results[i * k : (i + 1) * k]] for i, name in enumerate(specs)}
    out = {}
    for name, c in zip(specs, fold_c):
        if np.isnan(c).all():
            raise ValueError(
                f"no selection fold of the {len(rows)} training rows has a comparable pair "
                f"(an event before another row's time); use fewer --selection-folds (now {k})."
            )
        out[name] = {"cv_C": float(np.nanmean(c)), "cv_C_sd": float(np.nanstd(c, ddof=1))}
    return pd.DataFrame.from_dict(out, orient="index"), caught


def select(specs, scores):
    """The best unimodal and the best fusion row by mean CV C (``None`` if a pool is empty)."""
    chosen = {}
    for role in ("unimodal", "fusion"):
        pool = [n for n, s in specs.items() if s.role == role and n in scores.index]
        chosen[role] = max(pool, key=lambda n: scores.loc[n, "cv_C"]) if pool else None
    return chosen
