"""Acceptance checks of the fusion strategies on a small two-modality generator.

Each modality's risk is a nonlinear function of its own features with unit
variance, and the log-hazard is their weighted sum, so a model that sees both
modalities can reach a higher concordance than either unimodal model. Numbers
are held-out Harrell's C averaged over 3 seeds.

Seeds. The fusion defaults (batch sizes, modality dropout, refit, stacking)
were chosen on seeds 0-11 of this generator; the small-cohort rule of the
estimators on seeds 100-104. The acceptance checks below use other seeds:
ACCEPTANCE_SEEDS here and SMALL_COHORT_SEEDS for the small cohorts.
"""

import numpy as np
import pandas as pd
import pytest
import torch
from sksurv.util import Surv

from multimodal_surv import (
    CoAttentionFusionSurvival,
    ContrastiveFusionSurvival,
    CrossAttentionFusionSurvival,
    DeepSurvival,
    LateFusionSurvival,
)

pytestmark = pytest.mark.filterwarnings("ignore:.*reached max_epochs:UserWarning")

TUNING_SEEDS = tuple(range(12))  # seeds the fusion defaults were chosen on
ACCEPTANCE_SEEDS = (20, 21, 22)
N_TRAIN, N_TEST, SEEDS = 1000, 1000, ACCEPTANCE_SEEDS
assert not set(SEEDS) & set(TUNING_SEEDS)
# Training settings of the long checks (`make test-all`).
COMMON = {"max_epochs": 300, "patience": 40, "lr": 3e-3, "weight_decay": 1e-2}
# The default suite's quick subset trains twice as fast (about 180 CPU-seconds
# for both fixtures). Chosen on tuning seeds 0-2, where every strategy beat
# both unimodal models by at least +0.034 C on complete data and by +0.024
# when trained with missing modalities; the "close to complete data" check
# needs the long settings (at these, cross-attention lost 0.030 C on seeds
# 0-2), so it stays among the long checks.
QUICK = {"max_epochs": 150, "patience": 20, "lr": 6e-3, "weight_decay": 1e-2}


def make_two_modality(
    n,
    seed,
    ct_signal=1.0,
    ehr_signal=1.0,
    missing_ct=0.0,
    missing_ehr=0.0,
    ct_shape=(4, 8),
    ehr_dim=16,
):
    """CT: 4 tokens x 8 (signal in token 1); EHR: 16-d vector; additive log-hazard."""
    rng = np.random.default_rng(seed)
    n_tok, dim = ct_shape
    ct = rng.normal(size=(n, n_tok, dim))
    ehr = rng.normal(size=(n, ehr_dim))
    a = ct[:, 1, :]
    f_ct = np.tanh(a[:, 0] + a[:, 1]) + 0.6 * a[:, 2] * a[:, 3]
    f_ehr = np.sin(1.5 * ehr[:, 0]) + 0.5 * (ehr[:, 1] ** 2 - 1) + 0.5 * ehr[:, 2]
    f_ct = (f_ct - f_ct.mean()) / f_ct.std()
    f_ehr = (f_ehr - f_ehr.mean()) / f_ehr.std()
    risk = ct_signal * f_ct + ehr_signal * f_ehr
    time = rng.exponential(np.exp(-risk))
    censor = rng.exponential(3 * np.median(time), size=n)
    columns = [f"ct__t{t}_{j}" for t in range(n_tok) for j in range(dim)]
    columns += [f"ehr__x{j}" for j in range(ehr_dim)]
    X = pd.DataFrame(np.hstack([ct.reshape(n, -1), ehr]), columns=columns)
    for prefix, share in (("ct__", missing_ct), ("ehr__", missing_ehr)):
        if share:
            X.loc[rng.random(n) < share, X.columns.str.startswith(prefix)] = np.nan
    return X, Surv.from_arrays(time <= censor, np.minimum(time, censor))


FUSIONS = {
    "late": lambda s, fit: LateFusionSurvival(
        hidden_units=(32,), dropout=0.3, random_state=s, **fit
    ),
    "contrastive": lambda s, fit: ContrastiveFusionSurvival(
        hidden_units=(32,), projection_dim=16, dropout=0.3, random_state=s, **fit
    ),
    "cross_attention": lambda s, fit: CrossAttentionFusionSurvival(
        d_model=16, hidden_units=(32,), dropout=0.3, random_state=s, **fit
    ),
    "co_attention": lambda s, fit: CoAttentionFusionSurvival(
        d_model=16, hidden_units=(32,), dropout=0.3, random_state=s, **fit
    ),
}


def _unimodal(seed, fit):
    return DeepSurvival(hidden_units=(32,), dropout=0.3, random_state=seed, **fit)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # Small networks: thread hand-offs cost more than they save on a shared CPU.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _scores(ct_signal, ehr_signal, fit=COMMON, **missing):
    scores = {}
    for seed in SEEDS:
        X, y = make_two_modality(N_TRAIN + N_TEST, seed, ct_signal, ehr_signal)
        if missing:
            X_train, _ = make_two_modality(N_TRAIN + N_TEST, seed, ct_signal, ehr_signal, **missing)
            X_train = X_train.iloc[:N_TRAIN]
        else:
            X_train = X.iloc[:N_TRAIN]
        X_test, y_train, y_test = X.iloc[N_TRAIN:], y[:N_TRAIN], y[N_TRAIN:]
        if not missing:
            for prefix in ("ct__", "ehr__"):
                cols = [c for c in X if c.startswith(prefix)]
                model = _unimodal(seed, fit).fit(X_train[cols], y_train)
                scores.setdefault(prefix[:-2], []).append(model.score(X_test[cols], y_test))
        for name, factory in FUSIONS.items():
            model = factory(seed, fit).fit(X_train, y_train)
            scores.setdefault(name, []).append(model.score(X_test, y_test))
    return {k: float(np.mean(v)) for k, v in scores.items()}


@pytest.fixture(scope="module")
def quick_comparable():
    return _scores(1.0, 1.0, fit=QUICK)


@pytest.fixture(scope="module")
def quick_missing():
    # 30 % of training rows without CT, 10 % without EHR; held-out rows complete.
    return _scores(1.0, 1.0, fit=QUICK, missing_ct=0.3, missing_ehr=0.1)


@pytest.mark.parametrize("name", list(FUSIONS))
def test_fusion_beats_both_unimodal_models_when_signals_are_comparable(name, quick_comparable):
    best_unimodal = max(quick_comparable["ct"], quick_comparable["ehr"])
    assert quick_comparable[name] >= best_unimodal + 0.01, quick_comparable


@pytest.mark.parametrize("name", list(FUSIONS))
def test_fusion_trained_with_missing_modalities_beats_both_unimodal_models(
    name, quick_missing, quick_comparable
):
    best_unimodal = max(quick_comparable["ct"], quick_comparable["ehr"])  # complete data
    assert quick_missing[name] >= best_unimodal + 0.01, (quick_missing, quick_comparable)


@pytest.fixture(scope="module")
def comparable():
    return _scores(1.0, 1.0)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FUSIONS))
def test_fusion_beats_both_unimodal_models_at_full_training(name, comparable):
    best_unimodal = max(comparable["ct"], comparable["ehr"])
    assert comparable[name] >= best_unimodal + 0.01, comparable


@pytest.fixture(scope="module")
def ct_is_noise():
    return _scores(0.0, 1.4)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "late",
        "contrastive",
        "cross_attention",
        "co_attention",
    ],
)
def test_fusion_loses_little_when_one_modality_is_noise(name, ct_is_noise):
    assert ct_is_noise[name] >= ct_is_noise["ehr"] - 0.01, ct_is_noise


@pytest.fixture(scope="module")
def with_missing():
    # 30 % of training rows without CT, 10 % without EHR; held-out rows complete.
    return _scores(1.0, 1.0, missing_ct=0.3, missing_ehr=0.1)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "late",
        "contrastive",
        "cross_attention",
        "co_attention",
    ],
)
def test_missing_modalities_keep_concordance_close_to_complete_data(name, with_missing, comparable):
    assert with_missing[name] >= comparable[name] - 0.02, (name, with_missing, comparable)


SMALL_COHORT_SEEDS = (200, 201, 202, 203, 204)
SMALL_SHAPE = {"ct_shape": (2, 4), "ehr_dim": 8}  # a pilot cohort: few features per modality
SMALL_MODELS = {
    "deep": DeepSurvival,
    "late": LateFusionSurvival,
    "contrastive": ContrastiveFusionSurvival,
    "cross_attention": CrossAttentionFusionSurvival,
    "co_attention": CoAttentionFusionSurvival,
}


@pytest.mark.slow
@pytest.mark.parametrize("n_train", [40, 80])
@pytest.mark.parametrize("name", list(SMALL_MODELS))
def test_small_cohorts_learn_or_warn(name, n_train):
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    scores = []
    for seed in SMALL_COHORT_SEEDS:
        X, y = make_two_modality(n_train + 1000, seed, **SMALL_SHAPE)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = SMALL_MODELS[name](random_state=seed).fit(X.iloc[:n_train], y[:n_train])
        risk = model.predict(X.iloc[:n_train])
        if np.std(risk) < 1e-2:  # a constant model must have said so
            assert any(issubclass(w.category, ConvergenceWarning) for w in caught)
        assert model.small_cohort_  # too few validation events at these sizes: all rows
        scores.append(model.score(X.iloc[n_train:], y[n_train:]))
    assert np.mean(scores) > 0.55, scores
