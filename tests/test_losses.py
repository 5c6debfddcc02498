import numpy as np
import pandas as pd
import pytest
import torch
from sksurv.linear_model.coxph import CoxPHOptimizer

from multimodal_surv.nn import CoxPartialLikelihoodLoss, cox_partial_likelihood


def _tied_data(n=120, p=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    time = rng.integers(1, 15, size=n).astype(float)  # heavy ties
    event = rng.random(n) < 0.7
    w = rng.normal(scale=0.5, size=p)
    return X, time, event, w


def _ours(eta, time, event, ties):
    loss = cox_partial_likelihood(
        torch.tensor(eta), torch.tensor(time), torch.tensor(event), ties=ties
    )
    return float(loss) * event.sum()  # -log L


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_matches_scikit_survival(ties):
    X, time, event, w = _tied_data()
    ref = CoxPHOptimizer(X, event, time, np.zeros(X.shape[1]), ties).nlog_likelihood(w)
    np.testing.assert_allclose(_ours(X @ w, time, event, ties), ref * len(time), rtol=0, atol=1e-6)


def test_efron_matches_lifelines():
    lifelines = pytest.importorskip("lifelines")
    X, time, event, _ = _tied_data(seed=1)
    df = pd.DataFrame(X, columns=["a", "b", "c"]).assign(T=time, E=event.astype(int))
    cph = lifelines.CoxPHFitter().fit(df, "T", "E")  # lifelines uses Efron's method
    eta = X @ cph.params_.to_numpy()
    np.testing.assert_allclose(-_ours(eta, time, event, "efron"), cph.log_likelihood_, atol=1e-6)


def test_closed_form_two_tied_events():
    # Two events tied at t=1 and one later censored sample, all risks 0, so
    # R = 3 and S = 2. Efron: log R + log(R - S/2) = log 3 + log 2; Breslow: 2 log 3.
    time = np.array([1.0, 1.0, 2.0])
    event = np.array([True, True, False])
    eta = np.zeros(3)
    np.testing.assert_allclose(_ours(eta, time, event, "efron"), np.log(3) + np.log(2))
    np.testing.assert_allclose(_ours(eta, time, event, "breslow"), 2 * np.log(3))


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_gradient_checked_numerically(ties):
    X, time, event, w = _tied_data(n=40, seed=2)
    eta = torch.tensor(X @ w, requires_grad=True)
    t, e = torch.tensor(time), torch.tensor(event)
    assert torch.autograd.gradcheck(lambda r: cox_partial_likelihood(r, t, e, ties=ties), (eta,))


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_numerically_stable_for_large_risks(ties):
    X, time, event, w = _tied_data(seed=3)
    eta = X @ w
    base = _ours(eta, time, event, ties)
    # the partial likelihood is invariant to a constant shift of all risks
    shifted = _ours(eta + 5000.0, time, event, ties)
    np.testing.assert_allclose(shifted, base, rtol=1e-9)
    spread = _ours(eta * 1e3, time, event, ties)
    assert np.isfinite(spread)


def test_batch_without_events_has_zero_gradient():
    risk = torch.randn(5, requires_grad=True)
    loss = cox_partial_likelihood(risk, torch.arange(5.0), torch.zeros(5))
    loss.backward()
    assert float(loss) == 0.0
    assert torch.equal(risk.grad, torch.zeros(5))


def test_criterion_module_checks_arguments():
    with pytest.raises(ValueError, match="ties must be one of"):
        CoxPartialLikelihoodLoss(ties="exact")
    with pytest.raises(ValueError, match=r"target must have shape \(n, 2\)"):
        CoxPartialLikelihoodLoss()(torch.zeros(3), torch.zeros(3))
