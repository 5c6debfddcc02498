"""The scikit-survival / scikit-learn contract, checked for every estimator."""

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sksurv.metrics import (
    as_concordance_index_ipcw_scorer,
    as_integrated_brier_score_scorer,
)
from sksurv.util import Surv

from multimodal_surv import (
    AdaptiveFusionSurvival,
    CoAttentionFusionSurvival,
    ContrastiveFusionSurvival,
    CrossAttentionFusionSurvival,
    DeepSurvival,
    LateFusionSurvival,
)

pytestmark = pytest.mark.filterwarnings("ignore:.*reached max_epochs:UserWarning")

FAST = {"max_epochs": 15, "random_state": 0, "patience": 5}

# name -> factory of a small, fast, seeded estimator; fusion estimators are
# appended below so that every estimator goes through the same checks.
ESTIMATORS = {
    "DeepSurvival": lambda: DeepSurvival(hidden_units=(16,), **FAST),
    "LateFusionSurvival": lambda: LateFusionSurvival(hidden_units=(16,), **FAST),
    "ContrastiveFusionSurvival": lambda: ContrastiveFusionSurvival(
        hidden_units=(16,), projection_dim=8, **FAST
    ),
    "CrossAttentionFusionSurvival": lambda: CrossAttentionFusionSurvival(
        d_model=8, hidden_units=(16,), **FAST
    ),
    "CoAttentionFusionSurvival": lambda: CoAttentionFusionSurvival(
        d_model=8, hidden_units=(16,), **FAST
    ),
    "AdaptiveFusionSurvival": lambda: AdaptiveFusionSurvival(
        [
            (f"{mod}_only", make_pipeline(ColumnTransformer([(mod, "passthrough", cols)]), net()))
            for mod, cols, net in (
                ("ct", list(range(6)), lambda: DeepSurvival(hidden_units=(8,), **FAST)),
                ("ehr", list(range(6, 11)), lambda: DeepSurvival(hidden_units=(8,), **FAST)),
            )
        ]
        + [("early", DeepSurvival(hidden_units=(16,), **FAST))],
        cv=2,
        random_state=0,
    ),
}
# Prefix of the training parameters in the checks below: a meta-estimator reaches its
# candidates' parameters through their names, like a Pipeline.
PREFIX = {"AdaptiveFusionSurvival": "early__"}


def _data(n=160, seed=0):
    """Two blocks of columns ("ct__", "ehr__"), both carrying risk."""
    rng = np.random.default_rng(seed)
    ct = rng.normal(size=(n, 6))
    ehr = rng.normal(size=(n, 5))
    risk = ct[:, 0] + 0.5 * ct[:, 1] ** 2 + ehr[:, 0] - ehr[:, 1]
    time = rng.exponential(np.exp(-risk)) * 10 + 0.01
    censor = rng.exponential(15, size=n)
    y = Surv.from_arrays(
        time <= censor, np.minimum(time, censor), name_event="status", name_time="days"
    )
    columns = [f"ct__x{j}" for j in range(6)] + [f"ehr__x{j}" for j in range(5)]
    X = pd.DataFrame(np.hstack([ct, ehr]), columns=columns)
    return X, y


def _numpy_version(est, X):
    """The same estimator set up for an unnamed numpy array."""
    params = est.get_params(deep=False)
    if "modalities" in params:
        est.set_params(
            modalities={
                "ct": [i for i, c in enumerate(X.columns) if c.startswith("ct__")],
                "ehr": [i for i, c in enumerate(X.columns) if c.startswith("ehr__")],
            }
        )
    return est


@pytest.fixture(scope="module")
def data():
    return _data()


@pytest.fixture(params=sorted(ESTIMATORS), scope="module")
def name(request):
    return request.param


@pytest.fixture(scope="module")
def fitted(name, data):
    X, y = data
    return ESTIMATORS[name]().fit(X, y)


def test_clone_and_params(name):
    est = ESTIMATORS[name]()
    params = est.get_params(deep=False)
    cloned = clone(est)
    assert type(cloned) is type(est)
    assert set(cloned.get_params(deep=False)) == set(params)
    lr, max_epochs = (PREFIX.get(name, "") + p for p in ("lr", "max_epochs"))
    est.set_params(**{lr: 0.05, max_epochs: 3})
    assert est.get_params()[lr] == 0.05 and est.get_params()[max_epochs] == 3
    with pytest.raises(ValueError, match="Invalid parameter"):
        est.set_params(not_a_parameter=1)


def test_fitted_attributes_and_predictions(fitted, data):
    X, y = data
    assert fitted.n_features_in_ == X.shape[1]
    np.testing.assert_array_equal(fitted.feature_names_in_, X.columns)
    risk = fitted.predict(X)
    assert risk.shape == (len(X),) and np.isfinite(risk).all()
    assert 0.5 < fitted.score(X, y) <= 1.0
    surv = fitted.predict_survival_function(X.iloc[:5], return_array=True)
    assert surv.shape == (5, len(fitted.unique_times_))
    assert np.all(np.diff(surv, axis=1) <= 1e-12) and np.all((surv >= 0) & (surv <= 1))
    fns = fitted.predict_survival_function(X.iloc[:2])
    # float32 networks: a batch of another size may round one ulp (1.2e-7) differently
    np.testing.assert_allclose(fns[0](fitted.unique_times_), surv[0], rtol=1e-6)
    chf = fitted.predict_cumulative_hazard_function(X.iloc[:5], return_array=True)
    np.testing.assert_allclose(np.exp(-chf), surv, rtol=1e-10)


def test_pickle_round_trip(fitted, data):
    X, _ = data
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.predict(X), fitted.predict(X))


def test_same_random_state_same_predictions(name, fitted, data):
    X, y = data
    again = ESTIMATORS[name]().fit(X, y)
    np.testing.assert_array_equal(again.predict(X), fitted.predict(X))
    other = ESTIMATORS[name]().set_params(random_state=1).fit(X, y)
    assert not np.array_equal(other.predict(X), fitted.predict(X))


def test_numpy_input(name, data):
    X, y = data
    est = _numpy_version(ESTIMATORS[name](), X)
    est.fit(X.to_numpy(), y)
    assert not hasattr(est, "feature_names_in_")
    assert np.isfinite(est.predict(X.to_numpy())).all()


def test_wrong_number_of_features_at_predict(fitted, data):
    X, _ = data
    with pytest.raises(ValueError, match="features"):
        fitted.predict(X.to_numpy()[:, :-1])


def test_pipeline_and_cross_val_score(name, data):
    X, y = data
    pipe = Pipeline(
        [("scale", StandardScaler().set_output(transform="pandas")), ("model", ESTIMATORS[name]())]
    )
    scores = cross_val_score(pipe, X, y, cv=KFold(3, shuffle=True, random_state=0))
    assert scores.shape == (3,) and np.all((scores > 0.4) & (scores <= 1))


@pytest.mark.parametrize("scorer", ["default", "ipcw", "brier"])
def test_grid_search_with_scikit_survival_scorers(name, data, scorer):
    X, y = data
    est = ESTIMATORS[name]()
    lr = PREFIX.get(name, "") + "lr"
    grid = {lr: [1e-3, 1e-2]}
    if scorer == "ipcw":
        est, grid = (
            as_concordance_index_ipcw_scorer(est, tau=np.percentile(y["days"], 60)),
            {f"estimator__{lr}": grid[lr]},
        )
    elif scorer == "brier":
        times = np.percentile(y["days"], [20, 40, 60])
        est, grid = as_integrated_brier_score_scorer(est, times), {f"estimator__{lr}": grid[lr]}
    search = GridSearchCV(est, grid, cv=KFold(3, shuffle=True, random_state=0), n_jobs=1)
    search.fit(X, y)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert np.isfinite(search.predict(X)).all()


def test_grid_search_in_parallel_matches_serial(data):
    X, y = data
    grid = {"dropout": [0.0, 0.3]}
    kwargs = {"cv": KFold(2, shuffle=True, random_state=0)}
    serial = GridSearchCV(ESTIMATORS["DeepSurvival"](), grid, n_jobs=1, **kwargs).fit(X, y)
    parallel = GridSearchCV(ESTIMATORS["DeepSurvival"](), grid, n_jobs=2, **kwargs).fit(X, y)
    np.testing.assert_allclose(
        serial.cv_results_["mean_test_score"], parallel.cv_results_["mean_test_score"]
    )
