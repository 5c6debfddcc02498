"""Clinical metrics beyond Harrell's C, from :mod:`sksurv.metrics` and lifelines.

Uno's C at tau, time-dependent AUC at horizons and the integrated Brier
score weight by the inverse probability of censoring (IPCW), estimated on the
training rows. IPCW is only defined within the training follow-up, so test
rows followed up beyond it are censored at the last training time for these
metrics, with a warning that gives the count (Harrell's C keeps their full
follow-up).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.stats import chisquare
from sksurv.metrics import concordance_index_ipcw, cumulative_dynamic_auc, integrated_brier_score
from sksurv.util import Surv

__all__ = ["SiteOutcome", "calibration_deciles", "d_calibration", "default_horizons"]

N_GRID = 50


def default_horizons(y_train):
    """The quartiles of the training event times (days)."""
    event_name, time_name = y_train.dtype.names
    times = y_train[time_name][y_train[event_name]]
    if times.size == 0:
        raise ValueError("the training rows have no event; no horizon can be chosen.")
    return np.quantile(times, [0.25, 0.5, 0.75])


def time_grid(horizons):
    """Times at which survival curves are stored: the horizons and an IBS grid."""
    return np.unique(np.concatenate([horizons, np.linspace(horizons[0], horizons[-1], N_GRID)]))


@dataclass
class SiteOutcome:
    """One test site's outcome, as each metric needs it.

    ``y`` is the outcome with full follow-up (Harrell's C, calibration);
    ``y_ipcw`` is censored at the last training time (IPCW metrics);
    ``horizons`` are the requested horizons that this site's follow-up can
    evaluate.
    """

    name: str
    y: np.ndarray
    y_ipcw: np.ndarray
    horizons: np.ndarray
    n_truncated: int


def site_outcome(name, y_site, y_train, horizons, *, warn=True):
    """Truncate follow-up for IPCW and keep the horizons the site can evaluate."""
    event_name, time_name = y_site.dtype.names
    event, time = y_site[event_name].copy(), y_site[time_name].astype(float).copy()
    t_cut = float(y_train[y_train.dtype.names[1]].max())
    beyond = time >= t_cut
    if beyond.any():
        event[beyond] = False
        time[beyond] = np.nextafter(t_cut, -np.inf)
        if warn:
            warnings.warn(
                f"{name} test set: {beyond.sum()} of {len(time)} rows are followed up beyond "
                f"the last training time ({t_cut:g} days); for the IPCW metrics (Uno's C, "
                "time-dependent AUC, integrated Brier score) they are censored at that time. "
                "Harrell's C and calibration use their full follow-up.",
                UserWarning,
                stacklevel=2,
            )
    y_ipcw = Surv.from_arrays(event, time, name_event=event_name, name_time=time_name)
    ok = (horizons > time.min()) & (horizons < time.max())
    if not ok.all() and warn:
        warnings.warn(
            f"{name} test set: horizon(s) {np.round(horizons[~ok], 1).tolist()} days lie "
            f"outside its follow-up ({time.min():g} to {time.max():g} days); the "
            "time-dependent AUC and Brier score skip them there. Pass --horizons within "
            "the follow-up of every test set.",
            UserWarning,
            stacklevel=2,
        )
    return SiteOutcome(name, y_site, y_ipcw, horizons[ok], int(beyond.sum()))


def _safe(fn, *args, **kwargs):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(*args, **kwargs)
    except (ValueError, ArithmeticError, np.linalg.LinAlgError):
        return np.nan


def ipcw_metrics(y_train, y_ipcw, risk, surv, grid, horizons):
    """Uno's C at the last horizon, AUC per horizon and their mean, integrated Brier score.

    ``surv`` (survival at ``grid``) may be ``None`` (a risk-only row): no IBS.
    """
    out = {}
    if horizons.size == 0:
        return out
    tau = horizons[-1]
    uno = _safe(concordance_index_ipcw, y_train, y_ipcw, risk, tau=tau)
    out["Uno C"] = uno[0] if isinstance(uno, tuple) else np.nan
    auc = _safe(cumulative_dynamic_auc, y_train, y_ipcw, risk, horizons)
    aucs = auc[0] if isinstance(auc, tuple) else np.full(horizons.size, np.nan)
    for h, a in zip(horizons, aucs):
        out[f"AUC@{h:.0f}d"] = a
    out["mean AUC"] = float(np.mean(aucs))
    if surv is not None and horizons.size > 1:
        keep = (grid >= horizons[0]) & (grid <= tau)
        out["IBS"] = _safe(integrated_brier_score, y_train, y_ipcw, surv[:, keep], grid[keep])
    return out


def slope_covariate(surv_h):
    """``log(-log S(h))``, the covariate of :func:`calibration_slope`."""
    return np.log(-np.log(np.clip(surv_h, 1e-12, 1 - 1e-12)))


def calibration_slope(y, surv_h):
    """Slope of a Cox regression of the outcome on ``log(-log S(h))`` (1 = calibrated).

    For Cox-type models ``log(-log S(h))`` is the linear predictor plus a
    constant, so the slope does not depend on ``h``; below 1 the predicted
    risks are too extreme, above 1 too modest. The Cox model is fitted by
    :func:`cox_slope` (the fit of scikit-survival's ``CoxPHSurvivalAnalysis``).
    """
    event_name, time_name = y.dtype.names
    return cox_slope(slope_covariate(surv_h), y[event_name], y[time_name])


def cox_slope(x, event, time, *, n_iter=100, tol=1e-9):
    """Coefficient of a one-covariate Cox model (Efron ties), vectorised.

    The same Newton-Raphson iterations, step halving and stopping rule as
    :class:`sksurv.linear_model.CoxPHSurvivalAnalysis` (``alpha=0``,
    ``ties="efron"``, ``n_iter=100``, ``tol=1e-9``) on the same average
    negative partial log-likelihood, with the risk-set sums as cumulative
    sums instead of a loop over rows. NaN where scikit-survival raises (fewer
    than 2 rows, no event, a zero or non-finite Newton step).
    """
    x, event, time = np.asarray(x, float), np.asarray(event, bool), np.asarray(time, float)
    n = len(x)
    if n < 2 or not event.any():
        return np.nan
    order = np.argsort(time, kind="mergesort")
    x, event, time = x[order], event[order], time[order]
    new = np.r_[True, time[1:] != time[:-1]]
    first, group = np.flatnonzero(new), np.cumsum(new) - 1
    ev = np.flatnonzero(event)
    g_ev = group[ev]
    # Efron: the l-th of d tied events (l = 0..d-1) removes l/d of the tied events' sums.
    rank = np.arange(len(ev)) - np.searchsorted(g_ev, g_ev)
    frac = rank / np.bincount(g_ev)[g_ev]
    at, after = first[g_ev], np.r_[first, n][g_ev + 1]
    x_ev_sum = x[ev].sum()
    powers = np.vstack([np.ones(n), x, x * x])

    def at_risk(w):
        """Efron's risk-set sums of r, r x, r x^2 (r = exp(w x)) at each event: (3, events)."""
        r = np.exp(w * x) * powers
        total = np.cumsum(r[:, ::-1], axis=1)[:, ::-1]
        tied = np.cumsum((r * event)[:, ::-1], axis=1)[:, ::-1]
        tied = np.hstack([tied, np.zeros((3, 1))])
        return total[:, at] - frac * (tied[:, at] - tied[:, after])

    def loss(w):
        return -(w * x_ev_sum - np.log(at_risk(w)[0]).sum()) / n

    w, w_prev, current = 0.0, 0.0, np.inf
    for _ in range(n_iter):
        s = at_risk(w)
        z = s[1] / s[0]
        gradient = -(x_ev_sum - z.sum()) / n
        hessian = (s[2] / s[0] - z * z).sum() / n
        if hessian == 0 or not np.isfinite(hessian):
            return np.nan
        delta = gradient / hessian
        if not np.isfinite(delta):
            return np.nan
        new_loss = loss(w - delta)
        if new_loss > current:  # step halving
            w = (w_prev + w) / 2
            current = loss(w)
            continue
        w_prev, w = w, w - delta
        if abs(1 - new_loss / current) < tol:
            break
        current = new_loss
    return float(w)


def d_calibration(y, surv_own, n_bins=10):
    """D-calibration test of Haider et al. (2020): p-value of uniform ``S_i(T_i)``.

    For a calibrated model the predicted survival at each subject's own
    observed time is uniform on (0, 1) for events; a censored subject with
    ``S_i(T_i) = c`` spreads its unit mass uniformly over (0, c). The counts
    in ``n_bins`` equal bins are tested against uniform with Pearson's
    chi-square (:func:`scipy.stats.chisquare`).

    Examples
    --------
    >>> from sksurv.util import Surv
    >>> rng = np.random.default_rng(0)
    >>> u = rng.uniform(size=2000)               # S_i(T_i) of a calibrated model
    >>> y = Surv.from_arrays(np.ones(2000, bool), np.arange(2000.0))
    >>> d_calibration(y, u) > 0.05
    True
    >>> d_calibration(y, u**3) < 1e-6            # predictions far too optimistic
    True
    """
    event_name = y.dtype.names[0]
    event = y[event_name]
    s = np.clip(np.asarray(surv_own, dtype=float), 0.0, 1.0)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    counts = np.histogram(s[event], bins=edges)[0].astype(float)
    c = s[~event]
    if c.size:
        c_safe = np.maximum(c, 1e-12)[:, None]
        mass = np.clip(np.minimum(edges[1:], c[:, None]) - edges[:-1], 0.0, None) / c_safe
        counts += mass.sum(axis=0)
    return float(chisquare(counts).pvalue)


def calibration_deciles(y, surv_h, horizon, n_groups=10):
    """Predicted vs Kaplan-Meier observed event probability at ``horizon`` per risk decile.

    Returns a list of dicts with ``group``, ``n``, ``predicted`` (mean of
    ``1 - S(h)``), ``observed`` (``1 -`` lifelines' Kaplan-Meier at ``h``)
    and its 95 % CI ``observed_lo`` / ``observed_hi``.
    """
    from lifelines import KaplanMeierFitter

    event_name, time_name = y.dtype.names
    predicted = 1.0 - surv_h
    n_groups = max(1, min(n_groups, len(predicted) // 5))
    order = np.argsort(predicted, kind="stable")
    rows = []
    for g, idx in enumerate(np.array_split(order, n_groups)):
        km = KaplanMeierFitter().fit(y[time_name][idx], y[event_name][idx])
        s = float(km.survival_function_at_times(horizon).iloc[0])
        ci = km.confidence_interval_survival_function_
        at = ci[ci.index <= horizon].iloc[-1] if (ci.index <= horizon).any() else ci.iloc[0]
        rows.append(
            {
                "group": g + 1,
                "n": len(idx),
                "predicted": float(predicted[idx].mean()),
                "observed": 1.0 - s,
                "observed_lo": 1.0 - float(at.iloc[1]),
                "observed_hi": 1.0 - float(at.iloc[0]),
            }
        )
    return rows
