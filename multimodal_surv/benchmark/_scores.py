"""Scores of every model on one test site, with subject-level bootstrap intervals."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..metrics import concordance_index
from . import _clinical as clin
from ._draws import SiteDraws
from ._stats import (
    CindexDraws,
    holm,
    paired_difference,
    percentile_ci,
    site_flags,
    subject_bootstrap,
)

__all__ = ["Predictions", "score_c", "score_site"]

LEVEL = 0.95


@dataclass
class Predictions:
    """What a fitted model predicts for every cohort row.

    ``risk`` (higher = earlier event); ``surv`` the survival probability at
    the benchmark's time grid, and ``surv_own`` at each row's own observed
    time (both ``None`` for a risk-only row such as the oracle).
    """

    risk: np.ndarray
    surv: np.ndarray | None = None
    surv_own: np.ndarray | None = None

    def take(self, rows):
        """The predictions of a subset of rows."""
        pick = lambda a: None if a is None else a[rows]  # noqa: E731
        return Predictions(self.risk[rows], pick(self.surv), pick(self.surv_own))


def _point_values(preds, outcome, y_train, grid, slope_col):
    """Every secondary metric of one model on the site itself (scikit-survival)."""
    values = clin.ipcw_metrics(
        y_train, outcome.y_ipcw, preds.risk, preds.surv, grid, outcome.horizons
    )
    if preds.surv is not None:
        values["cal slope"] = clin.calibration_slope(outcome.y, preds.surv[:, slope_col])
    return values


def _secondary(preds, outcome, y_train, grid, slope_col, shared):
    """Point values and percentile CIs of the secondary metrics of one model.

    ``shared`` is the site's :class:`~._draws.SiteDraws` (its resamples).
    """
    point = _point_values(preds, outcome, y_train, grid, slope_col)
    draws = shared.ipcw_draws(preds.risk, preds.surv, grid)
    if preds.surv is not None:
        draws["cal slope"] = shared.slope_draws(preds.surv[:, slope_col])
    out = {}
    for k, v in point.items():
        lo, hi = percentile_ci(draws.get(k, []), LEVEL)
        out[k], out[f"{k} lo"], out[f"{k} hi"] = v, lo, hi
    if preds.surv_own is not None:
        out["D-cal p"] = clin.d_calibration(outcome.y, preds.surv_own)
    return out


def score_c(preds, outcome, resamples, *, reference, fusion, primary=None):
    """Harrell's C of every model with CIs, and the differences against ``reference``.

    Returns the per-model columns ``C``, ``C lo``, ``C hi`` and, for every
    model but the reference, ``dC`` with its 95 % CI; fusion rows add the
    simultaneous (weighted Bonferroni) CI ``dC simult lo`` / ``hi``, the raw
    paired bootstrap p-value and the weighted-Holm-corrected ``p (Holm)``; the
    weights are :func:`fusion_weights` (half of the error rate to ``primary``).
    """
    event_name, time_name = outcome.y.dtype.names
    event, time = outcome.y[event_name], outcome.y[time_name]
    draws, rows = {}, {}
    c_draws = CindexDraws(event, time, resamples)
    for name, p in preds.items():
        draws[name] = c_draws(p.risk)
        lo, hi = percentile_ci(draws[name], LEVEL)
        rows[name] = {"C": concordance_index(event, time, p.risk), "C lo": lo, "C hi": hi}
    if reference is not None:
        _differences(rows, draws, reference, fusion, primary)
    return rows


def score_site(
    preds,
    outcome,
    groups,
    *,
    y_train,
    grid,
    reference,
    fusion,
    primary=None,
    n_bootstrap,
    n_metric_bootstrap,
    rng,
):
    """Scores of every model on one test site.

    Parameters
    ----------
    preds : dict of str to Predictions
        Restricted to the rows of this site.
    outcome : SiteOutcome
    groups : ndarray
        Subject of each row of the site (the bootstrap resamples subjects).
    y_train : structured array
        Training outcome (censoring distribution of the IPCW metrics).
    grid : ndarray
        Time grid of ``Predictions.surv``.
    reference : str or None
        The selected unimodal model; differences in C are against it.
    fusion : list of str
        The fusion rows: their p-values are Holm-corrected together and their
        difference CIs are simultaneous (Bonferroni) intervals, both weighted
        by :func:`fusion_weights`.
    primary : str, optional
        The fusion model selected on the training rows (the headline's
        comparison): it carries half of the family-wise error rate.
    n_bootstrap, n_metric_bootstrap : int
        Resamples for C and its differences; for the other metrics (the
        first ``n_metric_bootstrap`` of the same resamples).
    rng : numpy.random.Generator

    Returns
    -------
    rows : dict of str to dict
        Per model, the columns of this site (without the site prefix).
    info : dict
        ``n``, ``events``, ``flags`` (list of str), ``n_truncated``.
    """
    resamples = subject_bootstrap(groups, n_bootstrap, rng)
    rows = score_c(preds, outcome, resamples, reference=reference, fusion=fusion, primary=primary)
    mid = np.median(outcome.horizons) if len(outcome.horizons) else np.median(grid)
    slope_col = int(np.argmin(np.abs(grid - mid)))
    shared = SiteDraws(y_train, outcome, resamples[:n_metric_bootstrap])
    for name, p in preds.items():
        rows[name].update(_secondary(p, outcome, y_train, grid, slope_col, shared))
    widths = [r["C hi"] - r["C lo"] for r in rows.values()]
    width = float(np.nanmax(widths)) if np.isfinite(widths).any() else np.nan
    n_events = int(outcome.y[outcome.y.dtype.names[0]].sum())
    info = {
        "n": len(outcome.y),
        "events": n_events,
        "flags": site_flags(n_events, width),
        "n_truncated": outcome.n_truncated,
    }
    return rows, info


def fusion_weights(fusion, primary):
    """Share of the error rate of each fusion row: half to ``primary``, if given.

    The fusion model selected on the training rows (``primary``) is the
    headline's comparison, fixed before the test set is seen, so it carries
    half of the family-wise error rate and the other fusion rows share the
    other half; without a primary (or with one fusion row) all are equal.
    """
    m = len(fusion)
    if primary not in fusion or m == 1:
        return np.full(m, 1.0 / max(m, 1))
    return np.array([0.5 if f == primary else 0.5 / (m - 1) for f in fusion])


def _differences(rows, draws, reference, fusion, primary=None):
    """dC vs the reference with CIs; weighted Holm p-values and simultaneous CIs for fusion rows."""
    fusion = [f for f in fusion if f in rows]
    weights = dict(zip(fusion, fusion_weights(fusion, primary)))
    for name, row in rows.items():
        if name == reference:
            continue
        diff = draws[name] - draws[reference]
        row["dC"] = row["C"] - rows[reference]["C"]
        row["dC lo"], row["dC hi"] = percentile_ci(diff, LEVEL)
        if name in fusion:  # weighted Bonferroni: this row's share of the error rate
            level = 1 - (1 - LEVEL) * weights[name]
            row["dC simult lo"], row["dC simult hi"] = percentile_ci(diff, level)
            row["p raw"] = paired_difference(draws[name], draws[reference])
    adjusted = holm([rows[f]["p raw"] for f in fusion], [weights[f] for f in fusion])
    for f, p in zip(fusion, adjusted):
        rows[f]["p (Holm)"] = p
