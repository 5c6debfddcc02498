"""Numerical robustness (issue 7, item 7): extreme times, heavy censoring, one tied
event time, huge feature scales -> finite losses and predictions or a clear error;
a NaN loss stops training with advice."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sksurv.util import Surv

from multimodal_surv import (
    CoAttentionFusionSurvival,
    ContrastiveFusionSurvival,
    CrossAttentionFusionSurvival,
    DeepSurvival,
    LateFusionSurvival,
)

ESTIMATORS = [
    DeepSurvival,
    LateFusionSurvival,
    ContrastiveFusionSurvival,
    CrossAttentionFusionSurvival,
    CoAttentionFusionSurvival,
]
N = 200


def features(scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, 8)) * scale
    cols = [f"ct__x{j}" for j in range(4)] + [f"ehr__x{j}" for j in range(4)]
    return pd.DataFrame(X, columns=cols)


def outcome(X, *, scenario, seed=0):
    rng = np.random.default_rng(seed)
    risk = X.iloc[:, 0].to_numpy() / X.iloc[:, 0].std() + X.iloc[:, 4] / X.iloc[:, 4].std()
    time = rng.exponential(np.exp(-risk))
    event = rng.random(N) < 0.7
    if scenario == "wide_times":
        # log-uniform times over 1e-3 .. 1e6 (9 orders of magnitude)
        time = 10 ** (-3 + 9 * (np.argsort(np.argsort(time)) / (N - 1)))
    elif scenario == "censoring_99":
        event = np.zeros(N, bool)
        event[np.argsort(time)[:2]] = True  # 2 events in 200 rows: 99 % censored
    elif scenario == "one_tied_time":
        event = rng.random(N) < 0.5
        time = np.where(event, 5.0, rng.uniform(5.0, 10.0, N))  # every event at t = 5
    return Surv.from_arrays(event, time)


def fit(est, X, y, **params):
    return est(max_epochs=5, validation_fraction=None, random_state=0, **params).fit(X, y)


def assert_finite(model, X):
    losses = np.asarray(model.history_[:, "train_loss"], dtype=float)
    assert np.isfinite(losses).all(), losses
    risk = model.predict(X)
    assert np.isfinite(risk).all()
    surv = model.predict_survival_function(X[:5], return_array=True)
    assert np.isfinite(surv).all() and ((surv >= 0) & (surv <= 1)).all()


@pytest.mark.parametrize("scenario", ["wide_times", "censoring_99", "one_tied_time"])
@pytest.mark.parametrize("est", ESTIMATORS)
def test_hard_outcomes_give_finite_losses_and_predictions(est, scenario):
    X = features()
    y = outcome(X, scenario=scenario)
    model = fit(est, X, y)
    assert_finite(model, X)
    if scenario == "one_tied_time":
        # every event shares one time: the Breslow baseline has a single jump there
        times = model.unique_times_
        cumhaz = model.predict_cumulative_hazard_function(X[:1], return_array=True)[0]
        assert np.all(cumhaz[times < 5.0] == 0) and np.all(cumhaz[times >= 5.0] > 0)


@pytest.mark.parametrize("est", ESTIMATORS)
def test_features_of_scale_1e6_are_finite_or_a_clear_error(est):
    X = features(scale=1e6)
    y = outcome(X, scenario="plain")
    try:
        model = fit(est, X, y)
    except FloatingPointError as exc:
        assert "Standardise the features" in str(exc) and "lower lr" in str(exc)
    else:
        assert_finite(model, X)
    # the documented remedy works
    pipe = make_pipeline(
        StandardScaler().set_output(transform="pandas"),
        est(max_epochs=5, validation_fraction=None, random_state=0),
    ).fit(X, y)
    assert np.isfinite(pipe.predict(X)).all()


@pytest.mark.parametrize("est", ESTIMATORS)
def test_nan_loss_stops_training_with_advice(est, monkeypatch):
    X = features()
    y = outcome(X, scenario="plain")
    model = est(max_epochs=3, validation_fraction=None, random_state=0)
    # A module whose risk becomes NaN on the first forward pass: every estimator
    # must stop inside SurvivalNet.train_step_single, not train on silently.
    original = type(model).infer

    def poisoned(self, x, **fit_params):
        out = original(self, x, **fit_params)
        if self.module_.training:
            if isinstance(out, tuple | list):
                return (out[0] * torch.tensor(float("nan")), *out[1:])
            return out * torch.tensor(float("nan"))
        return out

    monkeypatch.setattr(type(model), "infer", poisoned)
    with pytest.raises(FloatingPointError, match=r"the training loss became nan at epoch 1"):
        model.fit(X, y)
    with pytest.raises(FloatingPointError, match=r"Standardise the features .* lower lr"):
        model.fit(X, y)
