"""What every estimator guarantees instead of failing silently.

Seeds, exact times, batches, inherited skorch methods, devices, subject
groups, unseen missing modalities and the small-cohort fallbacks.
"""

import warnings

import numpy as np
import pytest
import torch
from sklearn import config_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, GroupKFold
from sksurv.util import Surv
from test_common import ESTIMATORS as _ALL_ESTIMATORS
from test_common import _data

from multimodal_surv import DeepSurvival, LateFusionSurvival
from multimodal_surv._device import fork_rng, resolve_device
from multimodal_surv.models import _base
from multimodal_surv.models._data import TensorBatchIterator, TensorDataset
from multimodal_surv.models._split import validation_split

pytestmark = pytest.mark.filterwarnings("ignore:.*still improving:UserWarning")

# The network estimators; AdaptiveFusionSurvival delegates to them (tests/test_adaptive.py).
ESTIMATORS = {k: v for k, v in _ALL_ESTIMATORS.items() if k != "AdaptiveFusionSurvival"}
FUSION = [name for name in ESTIMATORS if name != "DeepSurvival"]


@pytest.fixture(scope="module")
def data():
    return _data(n=120)


@pytest.fixture(params=sorted(ESTIMATORS))
def name(request):
    return request.param


def _quick(name, **params):
    return ESTIMATORS[name]().set_params(max_epochs=4, **params)


# ------------------------------------------------------------------ seeds
def test_random_state_none_gives_a_fresh_model_at_each_fit(name, data):
    X, y = data
    first = _quick(name, random_state=None).fit(X, y).predict(X)
    second = _quick(name, random_state=None).fit(X, y).predict(X)
    assert not np.array_equal(first, second)


def test_random_state_int_is_bit_identical_and_leaves_the_global_state(name, data):
    X, y = data
    torch.manual_seed(123)
    first = _quick(name, random_state=7).fit(X, y)
    after = torch.rand(3)
    torch.manual_seed(123)
    expected = torch.rand(3)
    np.testing.assert_array_equal(after, expected)  # the caller's stream is untouched
    second = _quick(name, random_state=7).fit(X, y)
    np.testing.assert_array_equal(first.predict(X), second.predict(X))
    for a, b in zip(first.module_.state_dict().values(), second.module_.state_dict().values()):
        assert torch.equal(a, b)


def test_random_state_none_takes_one_draw_from_torch_global_generator(data):
    X, y = data
    torch.manual_seed(5)
    DeepSurvival(max_epochs=2).fit(X, y)
    after = torch.rand(1)
    torch.manual_seed(5)
    torch.randint(0, np.iinfo(np.int32).max, (1,))
    assert torch.equal(after, torch.rand(1))


# ------------------------------------------------------------------ exact times
def test_shifting_every_time_by_2_to_the_24_changes_no_prediction(name, data):
    # 16_777_216 = 2**24: in float32, times above it are multiples of 2, so
    # distinct times would tie. The Cox model only sees their order.
    X, y = data
    event, time = y["status"], y["days"]
    shifted = Surv.from_arrays(event, time + 16_777_216.0)
    original = _quick(name).fit(X, y)
    moved = _quick(name).fit(X, shifted)
    np.testing.assert_array_equal(original.predict(X), moved.predict(X))
    np.testing.assert_allclose(moved.unique_times_, original.unique_times_ + 16_777_216.0)


def test_times_that_float32_would_tie_keep_their_order():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 3))
    time = 16_777_216.0 + np.arange(60)  # float32 would merge pairs of these
    y = Surv.from_arrays(np.ones(60, bool), time)
    model = DeepSurvival(hidden_units=(), max_epochs=2, validation_fraction=None, random_state=0)
    model.fit(X, y)
    assert len(model.unique_times_) == 60
    assert np.float32(time[0]) == np.float32(time[1])  # the premise of this test


# ------------------------------------------------------------------ batches
def test_batch_norm_with_a_one_row_last_batch():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(33, 4))
    y = Surv.from_arrays(rng.random(33) < 0.8, rng.exponential(size=33) + 0.1)
    model = DeepSurvival(
        batch_norm=True, batch_size=32, validation_fraction=None, max_epochs=3, random_state=0
    ).fit(X, y)
    assert np.isfinite(model.predict(X)).all()


def test_last_batch_below_a_quarter_of_batch_size_is_merged():
    data = TensorDataset(torch.zeros(70, 1))
    sizes = [len(xb) for xb, _ in TensorBatchIterator(data, 32, merge_last_below=8)]
    assert sizes == [32, 38]  # 70 = 32 + 32 + 6: the 6 rows join the second batch
    sizes = [len(xb) for xb, _ in TensorBatchIterator(data, 30, merge_last_below=8)]
    assert sizes == [30, 30, 10]
    model = DeepSurvival(batch_size=32)
    iterator = model.get_iterator(data, training=True)
    assert iterator.merge_last_below == 8 and iterator.shuffle


# ------------------------------------------------------------------ inherited methods
def test_partial_fit_and_predict_proba_are_absent_with_guidance(name, data):
    model = ESTIMATORS[name]()
    assert not hasattr(model, "partial_fit") and not hasattr(model, "predict_proba")
    with pytest.raises(AttributeError, match=r"Call fit\(X, y\) on all the rows.*warm_start"):
        model.partial_fit(*data)
    with pytest.raises(AttributeError, match=r"predict_survival_function\(X\)"):
        model.predict_proba(data[0])


def test_warm_start_continues_from_the_current_weights(data):
    X, y = data
    model = DeepSurvival(max_epochs=3, validation_fraction=None, random_state=0).fit(X, y)
    before = model.module_.state_dict()["body.0.weight"].clone()
    model.set_params(warm_start=True).fit(X, y)
    # a re-initialised network with the same seed would come back to `before`
    assert not torch.equal(before, model.module_.state_dict()["body.0.weight"])


# ------------------------------------------------------------------ devices
def test_device_auto_resolves_to_cpu_without_cuda(name, data, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    X, y = data
    model = _quick(name, device="auto").fit(X, y)
    assert model.device == "auto" and model.device_ == "cpu"
    assert next(model.module_.parameters()).device.type == "cpu"
    assert model.get_params()["device"] == "auto"
    np.testing.assert_array_equal(model.predict(X), _quick(name).fit(X, y).predict(X))


def test_cpu_fits_never_fork_or_touch_cuda_state(data, monkeypatch):
    calls = []
    real = torch.random.fork_rng

    def recording(devices=None, **kwargs):
        calls.append(devices)
        return real(devices=[], **kwargs)

    monkeypatch.setattr(torch.random, "fork_rng", recording)
    X, y = data
    for device in ("cpu", "auto"):
        DeepSurvival(max_epochs=2, device=device).fit(X, y)
    if not torch.cuda.is_available():
        assert calls == [[], []]
    else:
        assert calls[0] == []


def test_fork_covers_exactly_the_cuda_device_in_use(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.random, "fork_rng", lambda devices=None: calls.append(devices))
    for device in ("cpu", "cuda", "cuda:1", "auto"):
        fork_rng(device)
    assert calls == [[], [0], [1], [0]]
    assert str(resolve_device("auto")) == "cuda" and str(resolve_device("cuda:1")) == "cuda:1"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fit_leaves_the_cuda_random_state_untouched(data):
    X, y = data
    before = torch.cuda.get_rng_state()
    model = DeepSurvival(max_epochs=2, device="auto", random_state=0).fit(X, y)
    assert model.device_ == "cuda"
    assert torch.equal(torch.cuda.get_rng_state(), before)


# ------------------------------------------------------------------ subject groups
def test_validation_split_keeps_each_subjects_rows_together():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(50), 3)
    event = torch.as_tensor(rng.random(150) < 0.6)
    train, valid = validation_split(event, 0.2, groups)
    assert not set(groups[train.numpy()]) & set(groups[valid.numpy()])
    assert len(train) + len(valid) == 150 and 15 <= len(valid) <= 45


def test_groups_reach_fit_through_grid_search_metadata_routing(data, monkeypatch):
    X, y = data
    groups = np.arange(len(X)) // 2
    seen = []
    real = _base.check_groups
    monkeypatch.setattr(_base, "check_groups", lambda g, n: seen.append(g) or real(g, n))
    with config_context(enable_metadata_routing=True):
        model = DeepSurvival(max_epochs=2, random_state=0).set_fit_request(groups=True)
        search = GridSearchCV(model, {"lr": [1e-3, 3e-3]}, cv=GroupKFold(n_splits=2))
        search.fit(X, y, groups=groups)
    assert len(seen) == 5 and all(g is not None for g in seen)
    with pytest.raises(ValueError, match="one subject id per row"):
        DeepSurvival(max_epochs=2).fit(X, y, groups=groups[:-1])


# ------------------------------------------------------------------ verbose
def test_verbose_levels(data, capsys):
    X, y = data
    DeepSurvival(max_epochs=2, verbose=0).fit(X, y)
    out, err = capsys.readouterr()
    assert out == "" and err == ""
    DeepSurvival(max_epochs=2, verbose=1).fit(X, y)
    out, err = capsys.readouterr()
    assert "epoch" in err and "train_loss" not in out  # a bar, no table
    DeepSurvival(max_epochs=2, verbose=2).fit(X, y)
    out, _ = capsys.readouterr()
    assert "train_loss" in out and "epoch" in out


# ------------------------------------------------------------------ missing modalities
@pytest.mark.parametrize("name", FUSION)
def test_a_modality_missing_only_at_predict_time_warns(name, data):
    X, y = data
    model = _quick(name, modality_dropout=0.0).fit(X, y)
    assert set(model.n_missing_.values()) == {0}
    X_missing = X.copy()
    X_missing.loc[X.index[:5], [c for c in X if c.startswith("ct__")]] = np.nan
    with pytest.warns(UserWarning, match=r"'ct' in 5 of 120 rows\) that no training row missed"):
        model.predict(X_missing)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict(X)  # complete rows: no warning


@pytest.mark.parametrize("name", FUSION)
def test_modality_dropout_trains_the_missing_path_and_silences_the_warning(name, data):
    X, y = data
    model = _quick(name, modality_dropout=0.3).fit(X, y)
    X_missing = X.copy()
    X_missing.loc[X.index[:5], [c for c in X if c.startswith("ct__")]] = np.nan
    if name == "LateFusionSurvival":  # separate heads: dropout trains nothing about absence
        with pytest.warns(UserWarning, match="Refit with training rows that miss"):
            model.predict(X_missing)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict(X_missing)


# ------------------------------------------------------------------ small cohorts
def test_constant_training_risks_give_a_convergence_warning():
    rng = np.random.default_rng(0)
    X = np.ones((40, 3))  # nothing to tell the rows apart
    y = Surv.from_arrays(rng.random(40) < 0.8, rng.exponential(size=40) + 0.1)
    with pytest.warns(ConvergenceWarning, match=r"nearly\) constant risks.*40 training rows"):
        DeepSurvival(max_epochs=3, random_state=0).fit(X, y)


def test_small_cohort_trains_on_all_rows_with_equal_weights_and_warns():
    X, y = _data(n=60, seed=1)
    with pytest.warns(UserWarning, match=r"validation split would hold \d+ events.*fewer than 20"):
        model = LateFusionSurvival(max_epochs=300, random_state=0).fit(X, y)
    assert model.small_cohort_ and len(model.history_) == 30
    assert model.modality_weights_ == {"ct": 1.0, "ehr": 1.0}
    assert model.get_params()["validation_fraction"] == 0.15  # restored after fit
    big = LateFusionSurvival(max_epochs=2, random_state=0).fit(*_data(n=400))
    assert not big.small_cohort_
