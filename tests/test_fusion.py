"""Fusion estimators: modality resolution errors, unit references, missing modalities, contract."""

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sksurv.metrics import as_concordance_index_ipcw_scorer
from sksurv.util import Surv

from multimodal_surv import (
    CoAttentionFusionSurvival,
    ContrastiveFusionSurvival,
    CrossAttentionFusionSurvival,
    LateFusionSurvival,
    SurvivalNet,
)
from multimodal_surv.nn import (
    CoAttentionFusionNet,
    CrossModalAttention,
    GatedAttentionPooling,
    InfoNCELoss,
    ModalityTokenizer,
    cox_partial_likelihood,
    info_nce,
)

N_TOK, DIM, EHR = 4, 3, 5
CT_COLS = [f"ct__t{t}_{j}" for t in range(N_TOK) for j in range(DIM)]
EHR_COLS = [f"ehr__x{j}" for j in range(EHR)]

FAST = {"max_epochs": 4, "random_state": 0, "validation_fraction": None}
FACTORIES = {
    "late": lambda **kw: LateFusionSurvival(hidden_units=(8,), **{**FAST, **kw}),
    "contrastive": lambda **kw: ContrastiveFusionSurvival(
        hidden_units=(8,), projection_dim=4, **{**FAST, **kw}
    ),
    "cross": lambda **kw: CrossAttentionFusionSurvival(
        d_model=8, hidden_units=(8,), **{**FAST, **kw}
    ),
    "co": lambda **kw: CoAttentionFusionSurvival(d_model=8, hidden_units=(8,), **{**FAST, **kw}),
}
ATTENTION = ["cross", "co"]


def make_data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, len(CT_COLS) + EHR)), columns=CT_COLS + EHR_COLS)
    risk = X["ct__t1_0"] + X["ehr__x0"]
    time = rng.exponential(np.exp(-risk))
    event = rng.random(n) < 0.8
    return X, Surv.from_arrays(event, time)


@pytest.fixture(scope="module")
def data():
    return make_data()


def _nan_rows(X, prefix, rows):
    X = X.copy()
    X.loc[X.index[rows], X.columns.str.startswith(prefix)] = np.nan
    return X


# ---------------------------------------------------------------------------- errors
@pytest.mark.parametrize("name", list(FACTORIES))
def test_one_modality_is_an_error(name, data):
    X, y = data
    with pytest.raises(ValueError, match=r"fuses exactly 2 modalities; got 1: \['ct'\].*DeepSurv"):
        FACTORIES[name]().fit(X[CT_COLS], y)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_three_modalities_is_an_error(name, data):
    X, y = data
    X = X.assign(lab__x0=1.0)
    with pytest.raises(ValueError, match=r"got 3: \['ct', 'ehr', 'lab'\]"):
        FACTORIES[name]().fit(X, y)


def test_numpy_without_modalities_is_an_error(data):
    X, y = data
    with pytest.raises(ValueError, match="X has no column names.*modalities="):
        FACTORIES["late"]().fit(X.to_numpy(), y)


def test_unprefixed_columns_are_an_error(data):
    X, y = data
    with pytest.raises(ValueError, match=r"columns \['age'\] \(1 in all\) have no '<modality>__'"):
        FACTORIES["late"]().fit(X.assign(age=1.0), y)


def test_unknown_modality_column_names_a_close_match(data):
    X, y = data
    mods = {"ct": CT_COLS[:-1] + ["ct__t3_9"], "ehr": EHR_COLS}
    with pytest.raises(
        ValueError, match=r"names unknown column 'ct__t3_9'\. Did you mean 'ct__t3_"
    ):
        FACTORIES["late"](modalities=mods).fit(X, y)


def test_overlapping_modality_columns_are_an_error(data):
    X, y = data
    mods = {"ct": list(range(12)), "ehr": list(range(11, 17))}
    with pytest.raises(ValueError, match=r"column 11 is listed in modality 'ct' and in 'ehr'"):
        FACTORIES["late"](modalities=mods).fit(X.to_numpy(), y)


def test_column_index_out_of_range_and_unassigned_columns(data):
    X, y = data
    with pytest.raises(ValueError, match="holds column index 40, but X has 17 columns"):
        FACTORIES["late"](modalities={"ct": [0, 40], "ehr": [1]}).fit(X.to_numpy(), y)
    with pytest.raises(ValueError, match=r"columns \[16\] \(1 in all\) belong to no modality"):
        FACTORIES["late"](modalities={"ct": list(range(12)), "ehr": [12, 13, 14, 15]}).fit(
            X.to_numpy(), y
        )


@pytest.mark.parametrize("name", ATTENTION)
def test_token_shape_that_does_not_divide_the_columns(name, data):
    X, y = data
    with pytest.raises(ValueError, match=r"token_counts\['ehr'\]=2 does not divide the 5 columns"):
        FACTORIES[name](token_counts={"ehr": 2}).fit(X, y)
    with pytest.raises(ValueError, match=r"token_counts\['ct'\]=3 contradicts the column names"):
        FACTORIES[name](token_counts={"ct": 3}).fit(X, y)
    with pytest.raises(ValueError, match=r"token_counts names unknown modalities \['cT'\].*'ct'"):
        FACTORIES[name](token_counts={"cT": 2}).fit(X, y)


def test_incomplete_token_grid_is_an_error(data):
    X, y = data
    with pytest.raises(ValueError, match=r"token columns of modality 'ct' do not form a full grid"):
        FACTORIES["cross"]().fit(X.drop(columns="ct__t3_2"), y)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_modality_missing_in_every_row_is_an_error(name, data):
    X, y = data
    X = _nan_rows(X, "ehr__", slice(None))
    with pytest.raises(ValueError, match=r"modality 'ehr' is missing \(all NaN\) in every one of"):
        FACTORIES[name]().fit(X, y)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_partly_nan_modality_is_an_error_at_fit_and_predict(name, data):
    X, y = data
    bad = X.copy()
    bad.iloc[3, 0] = np.nan
    msg = r"modality 'ct' is partly NaN in 1 rows \(first row 3: 1 of 12 columns NaN\).*Imputer"
    with pytest.raises(ValueError, match=msg):
        FACTORIES[name]().fit(bad, y)
    model = FACTORIES[name]().fit(X, y)
    with pytest.raises(ValueError, match=msg):
        model.predict(bad)


def test_infinite_values_are_rejected(data):
    X, y = data
    X = X.copy()
    X.iloc[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        FACTORIES["late"]().fit(X, y)


@pytest.mark.parametrize(("name", "param"), [("cross", "query"), ("co", "guide")])
def test_unknown_query_or_guide(name, param, data):
    X, y = data
    with pytest.raises(ValueError, match=rf"{param}='cT' is not one of .*Did you mean 'ct'"):
        FACTORIES[name](**{param: "cT"}).fit(X, y)


# ---------------------------------------------------------------------------- unit references
def _clip_reference(a, b, scale):
    """CLIP's pseudo-code (Radford et al. 2021, Fig. 3) in float64 numpy."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    logits = scale * a @ b.T

    def cross_entropy_diag(z):
        z = z - z.max(axis=1, keepdims=True)
        log_softmax = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return -np.mean(np.diag(log_softmax))

    return (cross_entropy_diag(logits) + cross_entropy_diag(logits.T)) / 2


def test_info_nce_equals_clip_reference():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(7, 5)), rng.normal(size=(7, 5))
    got = info_nce(torch.tensor(a), torch.tensor(b), 3.7)
    assert float(got) == pytest.approx(_clip_reference(a, b, 3.7), rel=1e-12)
    # one pair has no negatives: zero
    assert float(info_nce(torch.tensor(a[:1]), torch.tensor(b[:1]), 3.7)) == 0.0


def test_info_nce_logit_scale_is_learnable_and_clamped():
    loss = InfoNCELoss(temperature=0.07)
    assert float(loss.logit_scale().detach()) == pytest.approx(1 / 0.07)
    with torch.no_grad():
        loss.log_logit_scale.fill_(10.0)
    assert float(loss.logit_scale().detach()) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="max_logit_scale=10 is below the initial logit scale"):
        InfoNCELoss(temperature=0.01, max_logit_scale=10)


def test_contrastive_loss_is_cox_plus_alpha_infonce_on_complete_rows(data):
    X, y = data
    X = _nan_rows(X, "ct__", [0, 1, 2])
    model = FACTORIES["contrastive"](alpha=0.7, unimodal_weight=0).fit(X, y)
    Xt = torch.as_tensor(X.to_numpy(np.float32))
    target = torch.as_tensor(np.column_stack([y["time"], y["event"]]).astype(np.float32))
    with torch.no_grad():
        out = model.module_(Xt)
        loss = model.get_loss(out, target, training=True)
        valid_loss = model.get_loss(out, target, training=False)
        cox = cox_partial_likelihood(out[0], target[:, 0], target[:, 1])
        both = torch.ones(len(X), dtype=torch.bool)
        both[:3] = False
        scale = float(model.module_.contrastive.logit_scale())
        ref = _clip_reference(out[1][both].double().numpy(), out[2][both].double().numpy(), scale)
    assert float(loss) == pytest.approx(float(cox) + 0.7 * ref, rel=1e-5)
    # Validation monitors the C-index; its loss skips the n x n InfoNCE matrix.
    assert float(valid_loss) == pytest.approx(float(cox), rel=1e-6)
    model.set_params(alpha=0)
    with torch.no_grad():
        assert torch.equal(
            model.get_loss(out, target, training=True), model.criterion_(out[0], target)
        )


def test_unimodal_heads_add_their_cox_losses_on_the_rows_with_their_modality(data):
    X, y = data
    X = _nan_rows(X, "ct__", [0, 1, 2])
    model = FACTORIES["contrastive"](alpha=0.7, unimodal_weight=0.4).fit(X, y)
    Xt = torch.as_tensor(X.to_numpy(np.float32))
    target = torch.as_tensor(np.column_stack([y["time"], y["event"]]).astype(np.float32))
    time, event = target[:, 0], target[:, 1]
    with torch.no_grad():
        out = model.module_(Xt)
        loss = model.get_loss(out, target, training=True)
        parts = out[4]
        ct, ehr = slice(3, None), slice(None)
        # The fused head's loss is stratified by missing pattern: the rows
        # without CT are compared among themselves only (weighted by events).
        no_ct = slice(None, 3)
        fused = (
            event[no_ct].sum() * cox_partial_likelihood(parts[no_ct, 0], time[no_ct], event[no_ct])
            + event[ct].sum() * cox_partial_likelihood(parts[ct, 0], time[ct], event[ct])
        ) / event.sum()
        expected = (
            fused
            + 0.4 * cox_partial_likelihood(parts[ct, 1], time[ct], event[ct])
            + 0.4 * cox_partial_likelihood(parts[ehr, 2], time, event)
        )
        scale = float(model.module_.contrastive.logit_scale())
        ref = _clip_reference(out[1][3:].double().numpy(), out[2][3:].double().numpy(), scale)
    assert torch.isnan(parts[:3, 1]).all() and torch.isfinite(parts[3:]).all()
    assert float(loss) == pytest.approx(float(expected) + 0.7 * ref, rel=1e-5)
    # The predicted risk is the stacked combination, with the fitted fill for missing CT.
    c = model.module_.combination
    fill = model.module_.missing_risk[0]
    r_ct = torch.where(torch.isnan(parts[:, 1]), fill, parts[:, 1])
    combined = c[0] * parts[:, 0] + c[1] * r_ct + c[2] * parts[:, 2]
    np.testing.assert_allclose(model.predict(X), combined.numpy(), rtol=1e-5, atol=1e-6)
    assert set(model.combination_weights_) == {"fused", "ct", "ehr"}
    assert min(model.combination_weights_.values()) >= 0
    np.testing.assert_array_equal(
        np.isnan(model.predict_modality_risks(X))[:, 0], np.arange(len(X)) < 3
    )


def test_contrastive_rows_without_either_modality_get_the_fitted_constants(data):
    X, y = data
    X = _nan_rows(_nan_rows(X, "ct__", [0, 1, 2, 3]), "ehr__", [2, 3, 4])
    model = FACTORIES["contrastive"]().fit(X, y)
    module = model.module_
    c = module.combination
    fill = c[0] * module.fused_missing_risk + module.missing_risk @ c[1:]
    risk = model.predict(X)
    np.testing.assert_allclose(risk[2:4], float(fill), rtol=1e-5, atol=1e-6)
    assert np.isfinite(risk).all() and len(np.unique(risk[4:])) > 1


@pytest.mark.parametrize("name", ATTENTION)
def test_attention_models_refit_on_all_rows_for_the_epochs_early_stopping_chose(name, data):
    X, y = data
    # 0.3 of 96 events: enough validation events for early stopping (20)
    kw = {"validation_fraction": 0.3, "patience": 3, "max_epochs": 30, "lr": 1e-2}
    model = FACTORIES[name](**kw).fit(X, y)
    scores = np.asarray(model.selection_history_[:, "valid_cindex"], dtype=float)
    assert len(model.selection_history_) < 30  # early stopping ended the first fit
    assert len(model.history_) == int(np.nanargmax(scores)) + 1
    assert "valid_cindex" not in model.history_[-1]
    assert (model.validation_fraction, model.max_epochs) == (0.3, 30)  # restored
    again = FACTORIES[name](**kw).fit(X, y)
    np.testing.assert_array_equal(model.predict(X), again.predict(X))
    single = FACTORIES[name](refit=False, **kw).fit(X, y)
    assert not hasattr(single, "selection_history_") and "valid_cindex" in single.history_[-1]
    assert not np.array_equal(single.predict(X), model.predict(X))
    # without early stopping there is no chosen epoch, hence no refit
    plain = FACTORIES[name](**{**kw, "patience": None}).fit(X, y)
    assert not hasattr(plain, "selection_history_") and len(plain.history_) == 30


def test_pattern_cox_loss_compares_rows_within_their_missing_pattern():
    g = torch.Generator().manual_seed(0)
    risk, time = torch.randn(40, generator=g), torch.rand(40, generator=g)
    event = (torch.rand(40, generator=g) < 0.7).float()
    target = torch.stack([time, event], 1)
    model = ContrastiveFusionSurvival()
    same = torch.zeros(40, 2, dtype=torch.bool)
    assert float(model._pattern_cox_loss(risk, same, target)) == pytest.approx(
        float(cox_partial_likelihood(risk, time, event))
    )
    missing = same.clone()
    missing[:15, 0] = True
    got = model._pattern_cox_loss(risk, missing, target)
    a, b = slice(None, 15), slice(15, None)
    expected = (
        event[a].sum() * cox_partial_likelihood(risk[a], time[a], event[a])
        + event[b].sum() * cox_partial_likelihood(risk[b], time[b], event[b])
    ) / event.sum()
    assert float(got) == pytest.approx(float(expected))
    # shifting one pattern's risks changes nothing: only within-pattern order counts
    shifted = torch.where(missing[:, 0], risk + 3.0, risk)
    assert float(model._pattern_cox_loss(shifted, missing, target)) == pytest.approx(float(got))


def test_alpha_zero_trains_exactly_the_survival_only_objective(data):
    X, y = data

    class SurvivalOnly(ContrastiveFusionSurvival):
        def get_loss(self, y_pred, y_true, X=None, training=False):
            return SurvivalNet.get_loss(self, y_pred, y_true, X=X, training=training)

    params = dict(
        hidden_units=(8,),
        projection_dim=4,
        unimodal_weight=0,
        max_epochs=6,
        random_state=0,
        patience=None,
    )
    a = ContrastiveFusionSurvival(alpha=0.0, **params).fit(X, y)
    b = SurvivalOnly(alpha=1.0, **params).fit(X, y)
    c = ContrastiveFusionSurvival(alpha=1.0, **params).fit(X, y)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    assert not np.allclose(a.predict(X), c.predict(X))


def test_attention_blocks_weights_sum_to_one_and_null_key_when_missing():
    torch.manual_seed(0)
    attn = CrossModalAttention(8, n_heads=2).eval()
    missing = torch.tensor([False, True, False])
    _, w = attn(torch.randn(3, 4, 8), torch.randn(3, 6, 8), missing)
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 4))
    assert torch.all(w[1, :, :6] == 0) and torch.allclose(w[1, :, 6], torch.ones(4))
    assert torch.all(w[0, :, :6] > 0)
    _, pw = GatedAttentionPooling(8)(torch.randn(5, 3, 8))
    torch.testing.assert_close(pw.sum(-1), torch.ones(5))


def test_tokenizer_layout_is_row_major_and_missing_rows_get_learned_tokens():
    tok = ModalityTokenizer(6, 4, token_shape=(2, 3))
    x = torch.arange(12.0).reshape(2, 6)
    out = tok(x, torch.tensor([False, True]))
    with torch.no_grad():
        first_token = tok.proj(x[0, :3]) + tok.position[0]
    torch.testing.assert_close(out[0, 0], first_token)
    torch.testing.assert_close(out[1], tok.missing)
    with pytest.raises(ValueError, match=r"token_shape=\(4, 2\) does not match n_features=6"):
        ModalityTokenizer(6, 4, token_shape=(4, 2))


def test_co_attention_net_ignores_the_values_of_a_missing_modality():
    net = CoAttentionFusionNet([range(6), range(6, 10)], [(2, 3), None], d_model=8).eval()
    x = torch.randn(4, 10)
    x[:, 6:] = float("nan")
    risk1 = net(x)[0]
    x[:, :6] += 1.0
    assert torch.isfinite(risk1).all() and not torch.allclose(risk1, net(x)[0])
    y = torch.randn(4, 10)
    y[:, :6] = float("nan")
    z = y.clone()
    z[:, :6] = float("nan")
    torch.testing.assert_close(net(y)[0], net(z)[0])


@pytest.mark.parametrize(
    ("estimator", "param", "key"),
    [
        (CrossAttentionFusionSurvival, {"query": "ct"}, "pooling"),
        (CrossAttentionFusionSurvival, {"query": "ehr"}, "attention"),
        (CoAttentionFusionSurvival, {"guide": "ehr"}, "coattention"),
    ],
)
def test_attention_concentrates_on_the_token_that_carries_the_signal(estimator, param, key):
    # Only CT token 2 enters the hazard. At initialisation the weights are
    # near uniform (about 1/4 per CT token); after training, token 2 must get
    # the largest mean weight, at least twice that of any other CT token.
    rng = np.random.default_rng(0)
    n = 400
    ct, ehr = rng.normal(size=(n, 4, 4)), rng.normal(size=(n, 4))
    risk = 1.5 * ct[:, 2, 0] - ct[:, 2, 1]
    y = Surv.from_arrays(np.ones(n, bool), rng.exponential(np.exp(-risk)))
    cols = [f"ct__t{t}_{j}" for t in range(4) for j in range(4)] + [f"ehr__x{j}" for j in range(4)]
    X = pd.DataFrame(np.hstack([ct.reshape(n, -1), ehr]), columns=cols)
    model = estimator(
        **param,
        d_model=8,
        hidden_units=(16,),
        dropout=0.0,
        lr=1e-2,
        max_epochs=100,
        validation_fraction=None,
        random_state=0,
    ).fit(X, y)
    weights = model.get_attention(X)[key]
    # pooling: (n, CT tokens); attention: (n, EHR tokens, CT tokens + null key)
    per_token = weights.mean(axis=0) if weights.ndim == 2 else weights.mean(axis=(0, 1))[:4]
    others = np.delete(per_token, 2)
    assert per_token[2] > 2 * others.max(), per_token


def test_modality_dropout_hides_one_whole_modality_in_a_share_of_complete_rows(data):
    X, y = data
    X = _nan_rows(X, "ct__", [0, 1, 2])
    model = FACTORIES["late"](modality_dropout=0.5, max_epochs=2).fit(X, y)
    x = torch.as_tensor(np.tile(X.to_numpy(np.float32), (20, 1)))
    torch.manual_seed(0)
    dropped = model._drop_modalities(x)
    ct = torch.isnan(dropped[:, model.modality_columns_["ct"]])
    ehr = torch.isnan(dropped[:, model.modality_columns_["ehr"]])
    was_missing = torch.isnan(x[:, model.modality_columns_["ct"]]).all(1)
    assert torch.equal(ct.all(1), ct.any(1)) and torch.equal(ehr.all(1), ehr.any(1))
    assert not (ct.all(1) & ehr.all(1)).any()  # never both
    assert torch.equal(dropped[was_missing].isnan(), x[was_missing].isnan())
    share = float((ct.all(1) | ehr.all(1))[~was_missing].double().mean())
    assert share == pytest.approx(0.5, abs=0.03)
    with pytest.raises(ValueError, match="modality_dropout"):
        FACTORIES["late"](modality_dropout=1.0).fit(X, y)


# ---------------------------------------------------------------------------- layouts and missing
@pytest.mark.parametrize("name", ATTENTION)
def test_token_names_token_counts_and_column_order_give_the_same_model(name, data):
    X, y = data
    ref = FACTORIES[name]().fit(X, y)
    assert ref.token_shapes_ == {"ct": (N_TOK, DIM), "ehr": None}
    # token columns are read from their names, in any order (plain EHR columns keep theirs)
    shuffled = X[list(np.random.default_rng(0).permutation(CT_COLS)) + EHR_COLS]
    by_names = FACTORIES[name]().fit(shuffled, y)
    np.testing.assert_allclose(by_names.predict(shuffled), ref.predict(X), rtol=1e-5, atol=1e-6)
    mods = {"ct": list(range(12)), "ehr": list(range(12, 17))}
    by_param = FACTORIES[name](modalities=mods, token_counts={"ct": N_TOK}).fit(X.to_numpy(), y)
    np.testing.assert_allclose(by_param.predict(X.to_numpy()), ref.predict(X), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_missing_modalities_train_and_predict_finite_risks(name, data):
    X, y = data
    X = _nan_rows(_nan_rows(X, "ct__", range(0, 40)), "ehr__", range(40, 52))
    model = FACTORIES[name]().fit(X, y)
    assert model.n_missing_ == {"ct": 40, "ehr": 12}
    risk = model.predict(X)
    assert risk.shape == (120,) and np.isfinite(risk).all()
    # the values behind a missing modality cannot matter: NaN rows are never read
    assert np.isfinite(model.predict_survival_function(X, return_array=True)).all()


def test_late_fusion_uses_only_the_available_heads(data):
    X, y = data
    X = _nan_rows(X, "ct__", range(10))
    model = FACTORIES["late"]().fit(X, y)
    per = model.predict_modality_risks(X)
    assert np.isnan(per[:10, 0]).all() and np.isfinite(per[10:]).all()
    w = model.modality_weights_
    fill = model.module_.missing_risk.detach().double().numpy()
    expected = w["ct"] * fill[0] + w["ehr"] * per[:10, 1]
    np.testing.assert_allclose(model.predict(X)[:10], expected, rtol=1e-5)
    expected = w["ct"] * per[10:, 0] + w["ehr"] * per[10:, 1]
    np.testing.assert_allclose(model.predict(X)[10:], expected, rtol=1e-5)


@pytest.mark.parametrize("name", ATTENTION)
def test_attention_weights_are_retrievable(name, data):
    X, y = data
    X = _nan_rows(X, "ehr__", [0])
    model = FACTORIES[name]().fit(X, y)
    weights = model.get_attention(X)
    key = "attention" if name == "cross" else "coattention"
    assert weights[key].shape == (120, N_TOK, 4 + 1)  # 4 projected EHR tokens + null
    for w in weights.values():
        np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(weights[key][0, :, -1], 1.0, rtol=1e-5)


@pytest.mark.parametrize(("name", "param"), [("cross", "query"), ("co", "guide")])
def test_query_and_guide_select_the_first_modality(name, param, data):
    X, y = data
    model = FACTORIES[name](**{param: "ehr"}).fit(X, y)
    assert model.modality_names_ == ["ehr", "ct"]
    assert model.get_attention(X.iloc[:2])[
        "attention" if name == "cross" else "coattention"
    ].shape == (
        2,
        4,
        N_TOK + 1,
    )


# ---------------------------------------------------------------------------- contract
@pytest.mark.parametrize("name", list(FACTORIES))
def test_contract_clone_pickle_determinism_numpy(name, data):
    X, y = data
    model = FACTORIES[name]()
    clone(model).set_params(**model.get_params(deep=False))
    fitted = model.fit(X, y)
    risk = fitted.predict(X)
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.predict(X), risk)
    np.testing.assert_array_equal(clone(model).fit(X, y).predict(X), risk)
    mods = {"ct": CT_COLS, "ehr": EHR_COLS}
    if name in ATTENTION:
        as_numpy = FACTORIES[name](
            modalities={"ct": list(range(12)), "ehr": list(range(12, 17))},
            token_counts={"ct": N_TOK},
        )
    else:
        as_numpy = FACTORIES[name](modalities={"ct": list(range(12)), "ehr": list(range(12, 17))})
    np.testing.assert_allclose(as_numpy.fit(X.to_numpy(), y).predict(X.to_numpy()), risk, rtol=1e-5)
    explicit = FACTORIES[name](modalities=mods).fit(X, y)
    np.testing.assert_allclose(explicit.predict(X), risk, rtol=1e-5)
    surv = fitted.predict_survival_function(X.iloc[:3])
    assert len(surv) == 3 and 0 <= surv[0](fitted.unique_times_[0]) <= 1


@pytest.mark.parametrize("name", list(FACTORIES))
def test_pipeline_and_grid_search_with_sksurv_scorer(name, data):
    X, y = data
    pipe = make_pipeline(StandardScaler().set_output(transform="pandas"), FACTORIES[name]())
    pipe.fit(_nan_rows(X, "ct__", [1, 2]), y)
    assert np.isfinite(pipe.predict(_nan_rows(X, "ct__", [5]))).all()
    search = GridSearchCV(
        as_concordance_index_ipcw_scorer(FACTORIES[name](), tau=float(np.quantile(y["time"], 0.8))),
        {"estimator__lr": [1e-3, 1e-2]},
        cv=KFold(2, shuffle=True, random_state=0),
    ).fit(X, y)
    assert set(search.cv_results_["params"][0]) == {"estimator__lr"}
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


@pytest.mark.parametrize("name", list(FACTORIES))
def test_fitted_model_keeps_no_training_rows(name, data):
    X, y = data
    model = FACTORIES[name]().fit(X, y)
    assert not any(isinstance(v, torch.utils.data.Dataset) for v in vars(model).values()), (
        "the held-out rows used for stacking must not stay on the fitted model"
    )
