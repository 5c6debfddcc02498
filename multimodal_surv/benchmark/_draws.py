"""Bootstrap draws of the clinical metrics: every resample of a test site at once.

A subject-level resample is the test set with each row weighted by how often
it was drawn (its count). Uno's C and the time-dependent AUC are sums over
pairs of rows, so on a resample they are quadratic forms of the counts over
one pair matrix; the Brier score is a mean over rows, linear in the counts.
What does not depend on the model (the censoring distribution of the
training rows, each row's IPCW weight, the comparable pairs, the cases and
controls at each horizon, which resamples scikit-survival would reject) is
computed once per site by :class:`SiteDraws` and shared by every model.

Each draw equals what :mod:`sksurv.metrics` returns on that resample
(``concordance_index_ipcw``, ``cumulative_dynamic_auc``,
``integrated_brier_score``), and each calibration slope what
:class:`sksurv.linear_model.CoxPHSurvivalAnalysis` (Efron ties) fits on it;
a resample on which they raise is NaN, as in :func:`._clinical._safe`.
``tests/test_bootstrap_draws.py`` pins every draw to those functions called
on the resample itself. Sites of more than
:data:`~._stats.PAIR_MATRIX_MAX_ROWS` rows, and models with a non-finite
prediction, are scored by calling those functions on each resample.
"""

from __future__ import annotations

import numpy as np
from sksurv.nonparametric import CensoringDistributionEstimator

from . import _clinical as clin
from ._stats import PAIR_MATRIX_MAX_ROWS, comparable_pairs, concordance_credit, count_matrix

__all__ = ["SiteDraws"]


def _rowdot(a, b):
    return np.einsum("bi,bi->b", a, b)


def _ratio(num, den, ok):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok & (den > 0), num / den, np.nan)


def _inverse(g):
    """``1 / g``, and 0 where ``g`` is 0 (scikit-survival's ``1 / inf``)."""
    return np.where(g == 0, 0.0, 1.0 / np.where(g == 0, 1.0, g))


class SiteDraws:
    """The model-independent parts of the clinical metrics on one site's resamples.

    Parameters
    ----------
    y_train : structured array
        Training outcome: the censoring distribution of the IPCW weights.
    outcome : SiteOutcome
        The site's outcome (``y`` with full follow-up, ``y_ipcw`` truncated
        for IPCW, the evaluable ``horizons``).
    resamples : list of ndarray of int
    """

    def __init__(self, y_train, outcome, resamples):
        self.y_train, self.outcome, self.resamples = y_train, outcome, resamples
        self.horizons = np.asarray(outcome.horizons, dtype=float)
        event_name, time_name = outcome.y_ipcw.dtype.names
        self.event = np.asarray(outcome.y_ipcw[event_name], dtype=bool)
        self.time = np.asarray(outcome.y_ipcw[time_name], dtype=float)
        self.pairs = len(self.time) <= PAIR_MATRIX_MAX_ROWS and len(resamples) > 0
        if self.pairs and self.horizons.size:
            self._shared()

    def _shared(self):
        event, time, horizons = self.event, self.time, self.horizons
        self.cens = CensoringDistributionEstimator().fit(self.y_train)
        g_own = self.cens.predict_proba(time)
        self.counts = counts = count_matrix(self.resamples, len(time))
        # sksurv rejects a resample without an event, one with a horizon outside
        # its follow-up, and (IPCW weights) one with an event where G is 0.
        zero_g = event & (g_own == 0)
        drawn = counts > 0
        t_min = np.where(drawn, time, np.inf).min(axis=1)
        t_max = np.where(drawn, time, -np.inf).max(axis=1)
        in_range = (horizons.min() >= t_min) & (horizons.max() < t_max)
        has_event = counts @ event > 0
        self.ok_ibs = has_event & in_range
        self.ok_auc = self.ok_ibs & (counts @ zero_g == 0)
        before_tau = event & (time < horizons[-1])
        self.ok_uno = (counts @ before_tau > 0) & (counts @ (zero_g & before_tau) == 0)
        self.g_inv_own = _inverse(g_own)
        self.ipcw = np.where(event & ~zero_g, self.g_inv_own, 0.0)
        self.comparable = comparable_pairs(event, time)
        self.uno_rows = counts * np.where(before_tau, self.ipcw**2, 0.0)
        self.uno_total = _rowdot(self.uno_rows @ self.comparable, counts)
        self.case_rows, self.control_rows, self.auc_total = [], [], []
        for t in horizons:
            case_w = self.ipcw * ((time <= t) & event)
            self.case_rows.append(counts * case_w)
            self.control_rows.append(counts * (time > t))
            self.auc_total.append((counts @ case_w) * self.control_rows[-1].sum(axis=1))

    def ipcw_draws(self, risk, surv, grid):
        """Draws of Uno's C, the AUC at each horizon, their mean and the IBS.

        Parameters
        ----------
        risk : ndarray of shape (n,)
        surv : ndarray of shape (n, len(grid)) or None
            Survival at ``grid`` (``None``: a risk-only row, no IBS).
        grid : ndarray

        Returns
        -------
        draws : dict of str to ndarray of shape (n_resamples,)
            The keys of :func:`._clinical.ipcw_metrics`.
        """
        if self.horizons.size == 0:
            return {}
        finite = np.isfinite(risk).all() and (surv is None or np.isfinite(surv).all())
        if not (self.pairs and finite):
            return self._loop(risk, surv, grid)
        credit = concordance_credit(risk)
        scored = _rowdot(self.uno_rows @ (self.comparable * credit), self.counts)
        out = {"Uno C": _ratio(scored, self.uno_total, self.ok_uno)}
        aucs = []
        for h, case, control, total in zip(
            self.horizons, self.case_rows, self.control_rows, self.auc_total
        ):
            aucs.append(_ratio(_rowdot(case @ credit, control), total, self.ok_auc))
            out[f"AUC@{h:.0f}d"] = aucs[-1]
        out["mean AUC"] = np.mean(aucs, axis=0)
        if surv is not None and self.horizons.size > 1:
            out["IBS"] = self._ibs(surv, grid)
        return out

    def _ibs(self, surv, grid):
        """Integrated Brier score: the per-row terms of ``brier_score``, weighted by counts."""
        keep = (grid >= self.horizons[0]) & (grid <= self.horizons[-1])
        times, est = grid[keep], surv[:, keep]
        g_inv_at = _inverse(self.cens.predict_proba(times))
        case = (self.time[:, None] <= times) & self.event[:, None]
        control = self.time[:, None] > times
        per_row = est**2 * case * self.g_inv_own[:, None] + (1.0 - est) ** 2 * control * g_inv_at
        brier = (self.counts @ per_row) / self.counts.sum(axis=1, keepdims=True)
        ibs = np.trapezoid(brier, times, axis=1) / (times[-1] - times[0])
        return np.where(self.ok_ibs, ibs, np.nan)

    def _loop(self, risk, surv, grid):
        """scikit-survival on each resample (large sites, non-finite predictions)."""
        draws = []
        for idx in self.resamples:
            draws.append(
                clin.ipcw_metrics(
                    self.y_train,
                    self.outcome.y_ipcw[idx],
                    risk[idx],
                    None if surv is None else surv[idx],
                    grid,
                    self.horizons,
                )  # fmt: skip
            )
        keys = draws[0].keys() if draws else ()
        return {k: np.array([d.get(k, np.nan) for d in draws], dtype=float) for k in keys}

    def slope_draws(self, surv_h):
        """Calibration slope (:func:`._clinical.calibration_slope`) on each resample."""
        y = self.outcome.y
        event_name, time_name = y.dtype.names
        event, time = np.asarray(y[event_name], bool), np.asarray(y[time_name], float)
        lp = clin.slope_covariate(surv_h)
        return np.array([clin.cox_slope(lp[idx], event[idx], time[idx]) for idx in self.resamples])
