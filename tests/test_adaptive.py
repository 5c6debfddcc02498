"""AdaptiveFusionSurvival and the modality report: selection rule, folds, errors, report."""

import json
import pickle

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sksurv.util import Surv

from multimodal_surv import AdaptiveFusionSurvival, DeepSurvival, modality_report
from multimodal_surv.inspection import ModalityReport, linear_cka
from multimodal_surv.models._adaptive_cv import choose_one_se, make_splits

pytestmark = pytest.mark.filterwarnings("ignore:.*reached max_epochs:UserWarning")

QUICK = {"hidden_units": (8,), "max_epochs": 30, "patience": 10, "lr": 1e-2}


def make_two_modality(n, seed, ct_signal=1.0, ehr_signal=1.0, missing_ct=0.0):
    """CT (6 columns) and EHR (5 columns); the log-hazard is linear in 2 columns of each."""
    rng = np.random.default_rng(seed)
    ct, ehr = rng.normal(size=(n, 6)), rng.normal(size=(n, 5))
    risk = (
        ct_signal * (ct[:, 0] - ct[:, 1]) / 2**0.5 + ehr_signal * (ehr[:, 0] + ehr[:, 1]) / 2**0.5
    )
    time = rng.exponential(np.exp(-risk))
    censor = rng.exponential(3 * np.median(time), size=n)
    columns = [f"ct__x{j}" for j in range(6)] + [f"ehr__x{j}" for j in range(5)]
    X = pd.DataFrame(np.hstack([ct, ehr]), columns=columns)
    X.loc[rng.random(n) < missing_ct, X.columns.str.startswith("ct__")] = np.nan
    return X, Surv.from_arrays(time <= censor, np.minimum(time, censor))


def _unimodal(columns):
    return make_pipeline(ColumnTransformer([("m", "passthrough", columns)]), DeepSurvival(**QUICK))


def _small_candidates(X):
    ct = [c for c in X.columns if c.startswith("ct__")]
    ehr = [c for c in X.columns if c.startswith("ehr__")]
    return [
        ("ct_only", _unimodal(ct)),
        ("ehr_only", _unimodal(ehr)),
        ("early", DeepSurvival(**QUICK)),
    ]


@pytest.fixture(scope="module")
def data():
    return make_two_modality(240, seed=11, ct_signal=1.0, ehr_signal=1.0)


def test_one_standard_error_rule_moves_to_the_simplest_level():
    table = pd.DataFrame(
        {
            "candidate": ["ct_only", "ehr_only", "linear", "late", "co_attention_ct"],
            "level": [0, 0, 1, 3, 5],
            "eligible": [True] * 5,
            "mean_c": [0.60, 0.695, 0.69, 0.70, 0.71],
            "se_c": [0.01, 0.01, 0.01, 0.01, 0.02],
        }
    )
    chosen, reason = choose_one_se(table, paired=False)
    # best 0.71 +/- 0.02 -> bar 0.69: ehr_only (level 0) is within it, ct_only is not
    assert table.at[chosen, "candidate"] == "ehr_only"
    assert table["within_1se"].tolist() == [False, True, True, True, True]
    assert table["chosen"].tolist() == [False, True, False, False, False]
    assert "co_attention_ct, C 0.710 +/- 0.020" in reason
    table.loc[4, "se_c"] = 0.001  # a sharp winner stays chosen
    chosen, reason = choose_one_se(table, paired=False)
    assert table.at[chosen, "candidate"] == "co_attention_ct"
    assert reason.startswith("Highest CV C (0.710)")


def test_paired_rule_reads_the_fold_wise_difference():
    late = np.array([0.70, 0.75, 0.80, 0.65, 0.85])  # mean 0.75, se 0.035

    def table(simple):
        folds = np.vstack([simple, late])
        out = pd.DataFrame(
            {"candidate": ["ehr_only", "late"], "level": [0, 3], "eligible": [True, True]}
        )
        out["mean_c"], out["sd_c"] = folds.mean(1), folds.std(1, ddof=1)
        out["se_c"] = out["sd_c"] / np.sqrt(5)
        for k in range(5):
            out[f"split{k}_c"] = folds[:, k]
        return out

    # 0.02 below late on every fold: within the best's own se, not within the paired se (0)
    steady = table(late - 0.02)
    assert steady.loc[choose_one_se(steady, paired=False)[0], "candidate"] == "ehr_only"
    chosen, reason = choose_one_se(steady, paired=True)
    assert steady.at[chosen, "candidate"] == "late" and steady["se_diff_c"].tolist() == [0, 0]
    # 0.01 below on average, the difference swinging by 0.035 per fold: within
    swinging = table(late + np.array([-0.05, 0.03, -0.04, 0.02, -0.01]))
    chosen, reason = choose_one_se(swinging, paired=True)
    assert swinging.at[chosen, "candidate"] == "ehr_only"
    assert swinging["se_diff_c"].iloc[0] == pytest.approx(np.sqrt(0.005 / 4 / 5))
    assert "fold-wise difference" in reason


def test_subject_folds_keep_a_subjects_rows_together(data):
    X, y = data
    groups = np.repeat(np.arange(len(X) // 3), 3)
    event = y[y.dtype.names[0]]
    splits = make_splits(4, X, event, groups, seed=0)
    assert len(splits) == 4
    for train, test in splits:
        assert not set(groups[train]) & set(groups[test])
        assert 0.2 < event[test].mean() / event.mean() < 1.8  # stratified by event


def test_fit_predict_report_and_pipeline_with_groups(data):
    X, y = data
    groups = np.repeat(np.arange(len(X) // 2), 2)
    model = AdaptiveFusionSurvival(_small_candidates(X), cv=3, random_state=0)
    pipe = Pipeline([("scale", StandardScaler().set_output(transform="pandas")), ("m", model)])
    pipe.fit(X, y, m__groups=groups)
    fitted = pipe[-1]
    table = fitted.cv_results_
    assert table["candidate"].tolist() == ["ct_only", "ehr_only", "early"]
    assert table["chosen"].sum() == 1 and fitted.best_strategy_ in table["candidate"].tolist()
    assert np.isfinite(table[["split0_c", "split1_c", "split2_c", "mean_fit_time"]]).all().all()
    np.testing.assert_allclose(table["mean_c"], table.filter(like="split").mean(axis=1))
    assert fitted.n_splits_ == 3 and fitted.modality_names_ == ["ct", "ehr"]
    np.testing.assert_array_equal(
        pipe.predict(X), fitted.best_estimator_.predict(pipe[0].transform(X))
    )
    assert pipe.score(X, y) > 0.7
    report = fitted.modality_report_
    assert report.recommended == fitted.best_strategy_ and report.n_folds == 3
    restored = pickle.loads(pickle.dumps(pipe))
    np.testing.assert_array_equal(restored.predict(X), pipe.predict(X))


@pytest.mark.slow  # loky workers import torch: about a minute on 2 cores
def test_parallel_folds_equal_serial(data):
    X, y = data
    serial = AdaptiveFusionSurvival(_small_candidates(X), cv=2, random_state=3).fit(X, y)
    parallel = clone(serial).set_params(n_jobs=2).fit(X, y)
    pd.testing.assert_series_equal(serial.cv_results_["mean_c"], parallel.cv_results_["mean_c"])


def test_failed_candidate_warns_and_is_not_chosen(data):
    X, y = data
    broken = ("broken", DeepSurvival(hidden_units=(8,), max_epochs=10, lr=-1.0))
    est = AdaptiveFusionSurvival([broken, *_small_candidates(X)], cv=2, random_state=0)
    with pytest.warns(UserWarning, match=r"candidate 'broken' failed on 2 of 2 folds .*lr"):
        est.fit(X, y)
    assert est.best_strategy_ != "broken" and np.isnan(est.cv_results_.loc[0, "mean_c"])
    with pytest.raises(ValueError, match="lr"):
        est.set_params(error_score="raise").fit(X, y)


def test_missing_report_references_are_cross_validated_but_not_chosen(data):
    X, y = data
    only = [("early", DeepSurvival(**QUICK))]
    est = AdaptiveFusionSurvival(
        only, cv=2, candidate_params={"max_epochs": 5}, random_state=0
    ).fit(X, y)
    table = est.cv_results_.set_index("candidate")
    assert table.loc[["ct_only", "ehr_only"], "eligible"].tolist() == [False, False]
    assert est.best_strategy_ == "early"


def test_unimodal_linear_candidates_see_one_modality_only():
    from sksurv.linear_model import CoxnetSurvivalAnalysis

    from multimodal_surv.models._adaptive_candidates import candidate_list

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(60, 3)), columns=["ct__a", "ehr__a", "ehr__b"])
    columns = {"ct": ["ct__a"], "ehr": ["ehr__a", "ehr__b"]}
    listed = {c[0]: c for c in candidate_list(None, columns, pandas=True)}
    for m, width in (("ct", 1), ("ehr", 2)):
        name, est, kind, level, eligible = listed[f"{m}_only_linear"]
        assert (kind, level, eligible) == ("unimodal", 0, True)
        assert isinstance(est[-1], CoxnetSurvivalAnalysis)
        assert est[:-1].fit_transform(X).shape == (60, width)
    # A user's list gets the report's references only, not the linear unimodals.
    user = candidate_list([("mine", listed["linear"][1])], columns, pandas=True)
    assert [c[0] for c in user] == ["mine", "ct_only", "ehr_only", "early"]


def test_kinds_keep_the_named_default_candidates_and_the_report_references():
    from multimodal_surv.models._adaptive_candidates import candidate_list

    columns = {"ct": ["ct__a"], "ehr": ["ehr__a"]}
    listed = candidate_list(None, columns, pandas=True, kinds=["linear", "late"])
    names = [c[0] for c in listed]
    assert names == [
        "ct_only", "ehr_only", "ct_only_linear", "ehr_only_linear", "linear", "early", "late"
    ]  # fmt: skip
    assert [c[3] for c in listed] == [0, 0, 0, 0, 1, 2, 3] and all(c[4] for c in listed)
    everything = candidate_list(None, columns, pandas=True)
    assert [c[2] for c in everything].count("attention") == 4 and len(everything) == 12


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"candidates": [DeepSurvival()]}, TypeError, r"candidates\[0\] must be a \(name"),
        ({"candidates": [("a", DeepSurvival()), ("a", DeepSurvival())]}, ValueError, "unique"),
        ({"candidates": [("a", "not an estimator")]}, TypeError, "fit and predict"),
        ({"modalities": {"ct": ["ct__x0"]}}, ValueError, "belong to no modality"),
        ({"cv": 3}, ValueError, "events among its"),
        ({"kinds": ["late", "attn"]}, ValueError, r"unknown: \['attn'\]"),
        ({"kinds": ["late"], "candidates": [("a", DeepSurvival())]}, ValueError, "candidates list"),
    ],
)
def test_bad_arguments(data, kwargs, error, match):
    X, y = data
    if "cv" in kwargs:  # 4 events in all: one of 3 folds gets fewer than 2
        event = np.zeros(len(y), bool)
        event[:4] = True
        y = Surv.from_arrays(event, y[y.dtype.names[1]])
    with pytest.raises(error, match=match):
        AdaptiveFusionSurvival(**{"candidate_params": {"max_epochs": 2}, **kwargs}).fit(X, y)


def test_groups_of_the_wrong_length(data):
    X, y = data
    with pytest.raises(ValueError, match="one subject id per row of X"):
        AdaptiveFusionSurvival().fit(X, y, groups=np.arange(3))


def test_linear_cka_closed_forms():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=200), rng.normal(size=200) + 0.5 * np.arange(200) / 200
    # one column each: linear CKA is the squared Pearson correlation
    assert linear_cka(a[:, None], b[:, None]) == pytest.approx(pearsonr(a, b)[0] ** 2)
    A = rng.normal(size=(200, 6))
    rotation = np.linalg.qr(rng.normal(size=(6, 6)))[0]
    assert linear_cka(A, 2.5 * A @ rotation) == pytest.approx(1.0)


def test_report_on_a_noise_modality_with_missing_rows():
    """CT is pure noise and missing in 20 % of rows: it must carry no share."""
    X, y = make_two_modality(400, seed=12, ct_signal=0.0, ehr_signal=1.5, missing_ct=0.2)
    report = modality_report(X, y, cv=3, candidate_params={"max_epochs": 40}, random_state=0)
    assert isinstance(report, ModalityReport)
    assert report.missing["ct"] == pytest.approx(np.isnan(X["ct__x0"]).mean())
    assert report.missing["ehr"] == 0.0
    assert report.balance["ct"] < 0.25 < 0.75 < report.balance["ehr"]
    assert report.gain["ct"]["ci"][0] < 0.0 < report.gain["ehr"]["ci"][0]
    assert report.recommended in {"ehr_only", "ehr_only_linear", "linear", "late"}
    assert report.candidates["candidate"].tolist() == [
        "ct_only",
        "ehr_only",
        "ct_only_linear",
        "ehr_only_linear",
        "linear",
        "early",
        "late",
    ]
    exported = json.loads(report.to_json())
    assert exported["balance"] == pytest.approx(report.balance)
    assert exported["recommended"] == report.recommended
    markdown = str(report)
    assert (
        markdown.startswith("## Modality report")
        and f"**Recommended: {report.recommended}." in markdown
    )
