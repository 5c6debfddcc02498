"""The bootstrap draws of the clinical metrics equal scikit-survival on each resample.

:class:`~multimodal_surv.benchmark._draws.SiteDraws` computes every resample
of a test site at once from pair matrices and bootstrap counts; each draw
must be what ``sksurv.metrics`` (and ``CoxPHSurvivalAnalysis`` for the
calibration slope) returns when called on the resample itself, including
ties in time and risk, rows drawn several times, subjects with several rows,
truncated follow-up, and resamples that scikit-survival rejects (NaN).
"""

import numpy as np
import pytest
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.util import Surv

from multimodal_surv.benchmark import _clinical as clin
from multimodal_surv.benchmark._clinical import cox_slope
from multimodal_surv.benchmark._draws import SiteDraws
from multimodal_surv.benchmark._stats import subject_bootstrap


def _site(seed, n, n_train=150, tie_round=None):
    rng = np.random.default_rng(seed)
    lp = rng.normal(size=n)
    t = rng.exponential(400 * np.exp(-lp))
    c = rng.uniform(20, 900, n)
    time = np.minimum(t, c)
    if tie_round:
        time = np.round(time / tie_round) * tie_round + tie_round  # ties in time
    y = Surv.from_arrays(t <= c, time)
    y_train = Surv.from_arrays(rng.random(n_train) < 0.7, rng.uniform(5, 700, n_train))
    horizons = clin.default_horizons(y_train)
    grid = clin.time_grid(horizons)
    risk = lp + rng.normal(size=n)
    surv = np.exp(-(grid / 400)[None, :] * np.exp(risk)[:, None])
    return rng, y, y_train, horizons, grid, risk, surv


def _sksurv_slope(y, surv_h):
    lp = clin.slope_covariate(surv_h)[:, None]
    model = clin._safe(CoxPHSurvivalAnalysis(ties="efron").fit, lp, y)
    return np.nan if isinstance(model, float) else model.coef_[0]


def _reference(y_train, outcome, risk, surv, grid, resamples, slope_col):
    """scikit-survival called on every resample (the former path)."""
    out = []
    for idx in resamples:
        values = clin.ipcw_metrics(
            y_train, outcome.y_ipcw[idx], risk[idx], surv[idx], grid, outcome.horizons
        )
        values["cal slope"] = _sksurv_slope(outcome.y[idx], surv[idx, slope_col])
        out.append(values)
    return {k: np.array([v.get(k, np.nan) for v in out]) for k in out[0]}


@pytest.mark.parametrize(
    ("seed", "n", "tie_round", "per_subject"),
    [(0, 90, None, 1), (1, 60, 50.0, 2), (2, 24, 100.0, 1)],
)
def test_draws_equal_sksurv_on_each_resample(seed, n, tie_round, per_subject):
    rng, y, y_train, horizons, grid, risk, surv = _site(seed, n, tie_round=tie_round)
    risk = np.round(risk, 1)  # ties in risk
    groups = np.arange(n) // per_subject
    outcome = clin.site_outcome("internal", y, y_train, horizons, warn=False)
    assert outcome.n_truncated > 0 or seed  # seed 0: follow-up beyond the training rows'
    resamples = subject_bootstrap(groups, 25, rng)
    slope_col = len(grid) // 2
    shared = SiteDraws(y_train, outcome, resamples)
    fast = shared.ipcw_draws(risk, surv, grid)
    fast["cal slope"] = shared.slope_draws(surv[:, slope_col])
    expected = _reference(y_train, outcome, risk, surv, grid, resamples, slope_col)
    assert fast.keys() == expected.keys()
    for key, values in expected.items():
        np.testing.assert_allclose(fast[key], values, rtol=1e-9, atol=1e-6, err_msg=key)
    if seed == 2:  # a small site: some resamples miss a horizon and sksurv rejects them
        assert np.isnan(expected["mean AUC"]).any() and np.isfinite(expected["mean AUC"]).any()


def test_cox_slope_equals_sksurv_with_tied_times():
    rng = np.random.default_rng(5)
    for n in (30, 200):
        x = rng.normal(size=n)
        time = np.round(rng.exponential(np.exp(-0.7 * x)), 1) + 0.1  # many ties
        event = rng.random(n) < 0.7
        expected = CoxPHSurvivalAnalysis(ties="efron").fit(
            x[:, None], Surv.from_arrays(event, time)
        )
        np.testing.assert_allclose(cox_slope(x, event, time), expected.coef_[0], atol=1e-7)
    assert np.isnan(cox_slope(x, np.zeros(n, bool), time))  # no event: sksurv raises
    assert np.isnan(cox_slope(np.ones(n), event, time))  # constant covariate: singular
