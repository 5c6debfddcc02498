import re

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.preprocessing import StandardScaler
from sksurv.column import encode_categorical
from sksurv.datasets import load_whas500
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.util import Surv

from multimodal_surv import DeepSurvival


@pytest.fixture(scope="module")
def whas500():
    X, y = load_whas500()
    X = StandardScaler().fit_transform(encode_categorical(X).astype(float))
    return X, y


def _linear_cox(ties):
    """A DeepSurvival that is exactly a linear Cox model, optimised to convergence."""
    return DeepSurvival(
        hidden_units=(),
        dropout=0.0,
        weight_decay=0.0,
        batch_size=-1,
        validation_fraction=None,
        ties=ties,
        optimizer=torch.optim.LBFGS,
        lr=1.0,
        optimizer__line_search_fn="strong_wolfe",
        max_epochs=30,
        random_state=0,
    )


@pytest.mark.parametrize("ties", ["breslow", "efron"])
def test_linear_model_reproduces_coxph(whas500, ties):
    X, y = whas500
    ref = CoxPHSurvivalAnalysis(ties=ties).fit(X, y)
    model = _linear_cox(ties).fit(X, y)
    coef = model.module_.out.weight.detach().double().numpy().ravel()
    np.testing.assert_allclose(coef, ref.coef_, rtol=1e-3)
    # Survival functions use the Breslow baseline in both libraries.
    np.testing.assert_allclose(
        model.predict_survival_function(X, return_array=True),
        ref.predict_survival_function(X, return_array=True),
        atol=1e-4,
    )
    np.testing.assert_array_equal(model.unique_times_, np.unique(y["lenfol"]))


def test_defaults_learn_on_real_data(whas500):
    X, y = whas500
    model = DeepSurvival(random_state=0).fit(X[:400], y[:400])
    assert model.score(X[400:], y[400:]) > 0.7
    assert "valid_cindex" in model.history_[-1]
    assert len(model.history_) < model.max_epochs  # early stopping triggered


def _xy(n=50, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = Surv.from_arrays(rng.random(n) < 0.6, rng.exponential(size=n) + 0.1)
    return X, y


@pytest.mark.parametrize(
    "make_y, error, match",
    [
        (
            lambda y: Surv.from_arrays(np.zeros(len(y), bool), y["time"]),
            ValueError,
            "all 50 samples are censored",
        ),
        (lambda y: Surv.from_arrays(y["event"], -y["time"]), ValueError, "has 50 negative values"),
        (
            lambda y: np.rec.fromarrays(
                [y["event"].astype(int) * 2, y["time"]], names="event,time"
            ),
            ValueError,
            "must be boolean; got dtype int64 with values \\[0, 2\\]",
        ),
        (lambda y: y["time"], TypeError, "y must be a structured array; got ndarray"),
        (lambda y: y[:-3], ValueError, "X has 50 rows but y has 47"),
    ],
    ids=["all-censored", "negative-times", "non-binary-event", "not-structured", "length"],
)
def test_bad_targets(make_y, error, match):
    X, y = _xy()
    with pytest.raises(error, match=match):
        DeepSurvival(max_epochs=2).fit(X, make_y(y))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_in_X(bad):
    X, y = _xy()
    X[3, 1] = bad
    with pytest.raises(ValueError, match="Input X contains (NaN|infinity)"):
        DeepSurvival(max_epochs=2).fit(X, y)


def test_too_few_samples_for_validation():
    X, y = _xy(n=6)
    # patience=None: no early stopping, hence no small-cohort rule, but the
    # validation score is still recorded, and 6 rows cannot give it 2 events
    with pytest.raises(ValueError, match="validation_fraction=0.15 leaves .* events"):
        DeepSurvival(max_epochs=2, patience=None).fit(X, y)
    with pytest.warns(UserWarning, match="would hold 1 events"):
        assert DeepSurvival(max_epochs=2).fit(X, y).small_cohort_


def test_predict_before_fit():
    with pytest.raises(NotFittedError, match="not fitted yet"):
        DeepSurvival().predict(np.zeros((2, 3)))


def test_wrong_number_of_features():
    X, y = _xy()
    model = DeepSurvival(max_epochs=2, validation_fraction=None).fit(X, y)
    with pytest.raises(ValueError, match="X has 2 features, but DeepSurvival is expecting 3"):
        model.predict(X[:, :2])


def test_invalid_parameter_values():
    X, y = _xy()
    with pytest.raises(ValueError, match="'ties' parameter of DeepSurvival must be a str among"):
        DeepSurvival(ties="exact").fit(X, y)
    with pytest.raises(ValueError, match="'dropout' parameter"):
        DeepSurvival(dropout=1.5).fit(X, y)


def test_typo_in_parameter_name_gets_a_hint():
    X, y = _xy()
    with pytest.raises(ValueError, match=re.escape("'hiden_units': did you mean 'hidden_units'?")):
        DeepSurvival(hiden_units=(8,)).fit(X, y)


def test_diverging_training_stops_with_advice():
    X, y = _xy()
    X = X * 1e30
    with pytest.raises(FloatingPointError, match="Standardise the features"):
        DeepSurvival(lr=10.0, validation_fraction=None, max_epochs=5).fit(X, y)


def test_warns_when_still_improving_at_max_epochs(whas500):
    X, y = whas500
    with pytest.warns(UserWarning, match="reached max_epochs=3 while the validation C-index"):
        DeepSurvival(max_epochs=3, lr=1e-4, random_state=0).fit(X, y)


def test_structured_field_names_are_free():
    X, y = _xy()
    renamed = np.rec.fromarrays([y["event"], y["time"]], names="died,followup")
    a = DeepSurvival(max_epochs=3, random_state=0).fit(X, y).predict(X)
    b = DeepSurvival(max_epochs=3, random_state=0).fit(X, renamed).predict(X)
    np.testing.assert_array_equal(a, b)
