"""AdaptiveFusionSurvival's cross-validation and its one-standard-error choice."""

from __future__ import annotations

import numbers
import time
import warnings

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import StratifiedGroupKFold, check_cv
from sklearn.pipeline import Pipeline
from sklearn.utils import _safe_indexing
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import has_fit_parameter

# The one-standard-error rule's standard error: of the per-fold difference to
# the best candidate (True) or of the best candidate's mean (False). False was
# kept by measurement on the tuning cohorts (synthetic cohort, 800 subjects,
# tuning seed 90 at balance 0, 0.5 and 1, default settings): both rules agree
# at balance 0 and 0.5; at balance 1 the folds share their difficulty, so the
# paired standard error is small (0.005 against 0.021) and let late fusion,
# 0.016 ahead in CV, win over the CT model, which then scored 0.036 higher on
# the test rows. Five folds whose training rows overlap understate how much a
# difference varies on new data.
PAIRED = False


def final_step(estimator):
    """The last step of a pipeline, or the estimator itself."""
    return estimator[-1] if isinstance(estimator, Pipeline) else estimator


def fit_with_groups(estimator, X, y, groups):
    """Fit, handing ``groups`` to the final step when its ``fit`` takes it."""
    final = final_step(estimator)
    if groups is None or not has_fit_parameter(final, "groups"):
        return estimator.fit(X, y)
    if isinstance(estimator, Pipeline):
        return estimator.fit(X, y, **{f"{estimator.steps[-1][0]}__groups": groups})
    return estimator.fit(X, y, groups=groups)


def _fit_and_score(estimator, X, y, groups, train, test, error_score):
    """Fit on ``train``, Harrell's C on ``test``; returns ``(score, fit seconds, error)``."""

    def part(a, idx):
        return None if a is None else _safe_indexing(a, idx)

    start = time.perf_counter()
    try:
        fit_with_groups(estimator, part(X, train), y[train], part(groups, train))
        elapsed = time.perf_counter() - start
        score = float(estimator.score(part(X, test), y[test]))
    except Exception as exc:  # noqa: BLE001 - reported as error_score, like GridSearchCV
        if isinstance(error_score, str):
            raise
        return float(error_score), time.perf_counter() - start, f"{type(exc).__name__}: {exc}"
    return score, elapsed, None


def make_splits(cv, X, event, groups, seed):
    """The folds: grouped, event-stratified and shuffled for an int ``cv``.

    Raises a ValueError when a test fold has fewer than 2 events.
    """
    if isinstance(cv, numbers.Integral):
        splitter = StratifiedGroupKFold(cv, shuffle=True, random_state=seed)
        ids = np.arange(len(event)) if groups is None else groups
        splits = list(splitter.split(np.zeros(len(event)), event, ids))
    else:
        splits = list(check_cv(cv).split(X, event, groups))
    for k, (_, test) in enumerate(splits):
        n_test_events = int(event[test].sum())
        if n_test_events < 2:
            raise ValueError(
                f"fold {k} has {n_test_events} events among its {len(test)} test rows; "
                f"Harrell's C needs at least 2. Use fewer folds (cv={cv!r}) or more data."
            )
    return splits


def cross_validate(prepared, splits, X, y, groups, *, n_jobs, error_score, verbose):
    """Every candidate on every fold (joblib); returns the ``cv_results_`` table."""
    tasks = [(c, k) for c in range(len(prepared)) for k in range(len(splits))]
    parallel = Parallel(n_jobs=n_jobs, return_as="generator")
    outputs = parallel(
        delayed(_fit_and_score)(clone(prepared[c][1]), X, y, groups, *splits[k], error_score)
        for c, k in tasks
    )
    scores = np.full((len(prepared), len(splits)), np.nan)
    times = np.zeros_like(scores)
    errors: dict[int, list[str]] = {}
    done = np.zeros(len(prepared), dtype=int)
    for (c, k), (score, seconds, error) in zip(tasks, outputs, strict=True):
        scores[c, k], times[c, k] = score, seconds
        if error is not None:
            errors.setdefault(c, []).append(error)
        done[c] += 1
        if verbose and done[c] == len(splits):
            print(
                f"[AdaptiveFusionSurvival] {prepared[c][0]}: C {np.nanmean(scores[c]):.4f} "
                f"+/- {np.nanstd(scores[c], ddof=1):.4f} ({times[c].sum():.1f} s)",
                flush=True,
            )
    for c, errs in errors.items():
        warnings.warn(
            f"candidate {prepared[c][0]!r} failed on {len(errs)} of {len(splits)} folds "
            f"(first error: {errs[0]}); its folds score {error_score} and it is not "
            "chosen. Pass error_score='raise' to see the traceback.",
            UserWarning,
            stacklevel=4,
        )
    return results_table(prepared, scores, times)


def results_table(prepared, scores, times):
    """One row per candidate: kind, level, eligibility, fold C, mean, sd, se, fit times."""
    n_folds = scores.shape[1]
    table = pd.DataFrame(
        {
            "candidate": [p[0] for p in prepared],
            "kind": [p[2] for p in prepared],
            "level": [p[3] for p in prepared],
            "eligible": [p[4] for p in prepared],
            "mean_c": scores.mean(axis=1),
            "sd_c": scores.std(axis=1, ddof=1),
        }
    )
    table["se_c"] = table["sd_c"] / np.sqrt(n_folds)
    for k in range(n_folds):
        table[f"split{k}_c"] = scores[:, k]
    table["mean_fit_time"] = times.mean(axis=1)
    table["total_fit_time"] = times.sum(axis=1)
    return table


def _paired_se(table, best):
    """Standard error of each candidate's per-fold C difference to ``best``."""
    folds = table[[c for c in table.columns if c.startswith("split") and c.endswith("_c")]]
    if folds.shape[1] < 2:
        return pd.Series(np.nan, index=table.index)
    diff = folds.loc[best].to_numpy(float) - folds.to_numpy(float)
    return pd.Series(diff.std(axis=1, ddof=1) / np.sqrt(diff.shape[1]), index=table.index)


def choose_one_se(table, *, paired=PAIRED):
    """One-standard-error rule toward the lowest complexity level.

    ``paired=True``: a candidate is within one standard error when its mean
    C is below the best by at most the standard error of their per-fold
    difference (``se_diff_c``); ``False``: by at most the best candidate's
    own standard error (``se_c``).
    Adds the ``se_diff_c``, ``within_1se`` and ``chosen`` columns to
    ``table`` (in place); returns the chosen row's index and a one-line
    reason.
    """
    ok = table["eligible"] & np.isfinite(table["mean_c"])
    if not ok.any():
        raise ValueError(
            "every candidate failed in at least one fold; nothing to choose. Pass "
            "error_score='raise' to see why."
        )
    best = table.loc[ok, "mean_c"].idxmax()
    table["se_diff_c"] = _paired_se(table, best)
    se = table["se_diff_c"] if paired else table.at[best, "se_c"]
    within = ok & ((table["mean_c"] >= table.at[best, "mean_c"] - se) | (table.index == best))
    level = table.loc[within, "level"].min()
    chosen = table.loc[within & (table["level"] == level), "mean_c"].idxmax()
    table["within_1se"] = within
    table["chosen"] = table.index == chosen
    c, best_c, name = (
        table.at[chosen, "mean_c"],
        table.at[best, "mean_c"],
        table.at[best, "candidate"],
    )
    if chosen == best:
        reason = f"Highest CV C ({c:.3f}); no simpler candidate within one standard error."
    elif paired:
        reason = (
            f"Simplest candidate within one standard error of the fold-wise difference to the "
            f"best ({name}, C {best_c:.3f}): its CV C is {c:.3f}, "
            f"{best_c - c:.3f} <= {table.at[chosen, 'se_diff_c']:.3f} below."
        )
    else:
        reason = (
            f"Simplest candidate within one standard error of the best ({name}, C "
            f"{best_c:.3f} +/- {table.at[best, 'se_c']:.3f}); its CV C is {c:.3f}."
        )
    return int(chosen), reason
