"""Cross-fitted stacking: the weights never see a risk whose epoch its own row chose."""

import numpy as np
import pandas as pd
import pytest
import torch
from sksurv.metrics import concordance_index_censored
from sksurv.util import Surv

from multimodal_surv import ContrastiveFusionSurvival, LateFusionSurvival
from multimodal_surv.models import _stacking_mixin
from multimodal_surv.models._stacking import (
    best_epoch,
    crossfit_risks,
    stacking_folds,
)

pytestmark = pytest.mark.filterwarnings("ignore:.*reached max_epochs:UserWarning")


def test_each_fold_takes_the_epochs_chosen_on_the_other_folds():
    # Epoch 0 ranks fold 0 perfectly and fold 1 backwards; epoch 1 the opposite.
    # Chosen on all rows, no epoch wins; chosen on its own rows, each fold would
    # take its perfect epoch. Out of fold, each takes the epoch that suits the other.
    time = np.arange(8.0)
    event = np.ones(8, bool)
    folds = np.array([0, 1] * 4)
    good, bad = -time, time
    epoch0 = np.where(folds == 0, good, bad)
    epoch1 = np.where(folds == 1, good, bad)
    risks = np.stack([epoch0, epoch1])[:, :, None]
    oof, epochs = crossfit_risks(risks, risks, [0], event, time, folds)
    assert epochs.ravel().tolist() == [1, 0]
    np.testing.assert_array_equal(oof[folds == 0, 0], epoch1[folds == 0])
    np.testing.assert_array_equal(oof[folds == 1, 0], epoch0[folds == 1])


def test_folds_keep_subjects_together_and_stratify_events():
    event = np.arange(60) % 3 == 0
    groups = np.repeat(np.arange(30), 2)
    folds = stacking_folds(event, groups, 5, seed=1)
    assert len(set(folds)) == 5
    for g in range(30):
        assert len(set(folds[groups == g])) == 1
    per_fold = np.bincount(folds[event], minlength=5)
    assert per_fold.min() >= 3


def _data(n=360, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    risk = X[:, 0] + X[:, 3]
    time = rng.exponential(np.exp(-risk))
    X = pd.DataFrame(X, columns=[f"ct__x{j}" for j in range(3)] + [f"ehr__x{j}" for j in range(3)])
    X.iloc[::7, :3] = np.nan  # some rows without CT
    return X, Surv.from_arrays(rng.random(n) < 0.9, time)


def _reference_epoch(selection, event, time):
    """The first epoch whose C (scikit-survival) beats every earlier one by 1e-4."""
    best, score = len(selection) - 1, -np.inf
    for epoch, risk in enumerate(selection):
        present = np.isfinite(risk)
        c = concordance_index_censored(event[present], time[present], risk[present])[0]
        if c > score + 1e-4:
            best, score = epoch, c
    return best


def _model(name, stacking_rows="crossfit"):
    if name == "late":
        model = LateFusionSurvival(hidden_units=(8,), max_epochs=12, patience=4, lr=1e-2)
    else:
        model = ContrastiveFusionSurvival(
            hidden_units=(8,), projection_dim=4, max_epochs=12, patience=4, lr=1e-2
        )
    model.set_params(random_state=0)._stacking_rows = stacking_rows
    return model


@pytest.mark.parametrize("name", ["late", "contrastive"])
def test_stacking_weights_are_fitted_on_out_of_fold_risks(name, monkeypatch):
    X, y = _data()
    seen = {}
    real_crossfit, real_fit = _stacking_mixin.crossfit_risks, _stacking_mixin.fit_risk_combination

    def spy_crossfit(risks, selection, units, event, time, folds):
        seen.update(history=risks, selection=selection, units=units, folds=folds)
        return real_crossfit(risks, selection, units, event, time, folds)

    def spy_fit(risks, missing, time, event, **kwargs):
        seen.update(stacked=risks.numpy(), time=time.numpy(), event=event.numpy() > 0.5)
        return real_fit(risks, missing, time, event, **kwargs)

    real_combine = _stacking_mixin.StackingMixin._combine

    def spy_combine(self, risks, missing, data):
        seen["X"] = data.X
        return real_combine(self, risks, missing, data)

    monkeypatch.setattr(_stacking_mixin, "crossfit_risks", spy_crossfit)
    monkeypatch.setattr(_stacking_mixin, "fit_risk_combination", spy_fit)
    monkeypatch.setattr(_stacking_mixin.StackingMixin, "_combine", spy_combine)
    model = _model(name).fit(X, y)

    history, selection, folds = seen["history"], seen["selection"], seen["folds"]
    event, time, stacked = seen["event"], seen["time"], seen["stacked"]
    # Every validation row feeds the stacking, in 5 folds.
    assert len(stacked) == len(folds) == history.shape[1] == round(0.15 * len(X))
    assert len(set(folds)) == 5
    # Each fold's row holds its risk at the epoch chosen without that fold.
    chosen = set()
    for fold in set(folds):
        rest, rows = folds != fold, folds == fold
        for col, unit in enumerate(seen["units"]):
            epoch = _reference_epoch(selection[:, rest, unit], event[rest], time[rest])
            np.testing.assert_array_equal(stacked[rows, col], history[epoch, rows, col])
            chosen.add((unit, epoch))
    if name == "late":
        # Some fold chose another epoch than all rows did, so this test tells
        # out-of-fold risks from the final model's (in this short contrastive
        # fit, every fold happens to choose the same epoch).
        assert len(chosen) > len(set(seen["units"])), chosen
    # The recorded risks are the model's: the final heads are those of the
    # epochs chosen on all validation rows.
    with torch.no_grad():
        final = model._stacking_inputs(model.module_.eval()(seen["X"]))[0].double().numpy()
    for col, unit in enumerate(seen["units"]):
        epoch = best_epoch(selection[:, :, unit], event, time)
        assert epoch == _reference_epoch(selection[:, :, unit], event, time)
        np.testing.assert_allclose(final[:, col], history[epoch, :, col], rtol=1e-6)
    # The recorded epochs are dropped after the fit.
    assert not hasattr(dict(model.callbacks_)["stacking_recorder"], "_epochs")


def test_cross_fitting_leaves_training_unchanged():
    X, y = _data()
    crossfit = _model("late").fit(X, y)
    same = _model("late", stacking_rows="same").fit(X, y)
    np.testing.assert_array_equal(
        crossfit.predict_modality_risks(X), same.predict_modality_risks(X)
    )
    assert crossfit.modality_weights_ != same.modality_weights_
