"""Malformed inputs give clear errors, never a bare torch / pandas / MONAI traceback
(issue 7, item 1). Each case matches the text that names the problem and the fix."""

import re

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError
from sksurv.util import Surv

from multimodal_surv import (
    CoAttentionFusionSurvival,
    ContrastiveFusionSurvival,
    CrossAttentionFusionSurvival,
    DeepSurvival,
    LateFusionSurvival,
)
from multimodal_surv.cli import main
from multimodal_surv.datasets import CTReadError, load_cohort_folder, write_nifti
from multimodal_surv.encoders import (
    CTEncoder,
    EHRCountEncoder,
    EHRTransformerEncoder,
    make_multimodal_encoder,
)

FUSIONS = [
    LateFusionSurvival,
    ContrastiveFusionSurvival,
    CrossAttentionFusionSurvival,
    CoAttentionFusionSurvival,
]
RNG = np.random.default_rng(0)
X = pd.DataFrame(
    RNG.normal(size=(60, 6)),
    columns=[f"ct__x{j}" for j in range(3)] + [f"ehr__x{j}" for j in range(3)],
)
Y = Surv.from_arrays(RNG.random(60) < 0.6, RNG.exponential(1, 60) + 0.1)
FAST = dict(max_epochs=2, validation_fraction=None, random_state=0)


# ---------------------------------------------------------------- estimators
ESTIMATOR_CASES = {
    "text column": (
        lambda: X.assign(ct__x0="a"),
        Y,
        ValueError,
        r"non-numeric column\(s\) \(first: 'ct__x0' of dtype object\); encode or drop them",
    ),
    "categorical column": (
        lambda: X.assign(ehr__x1=pd.Categorical(["a", "b"] * 30)),
        Y,
        ValueError,
        r"first: 'ehr__x1' of dtype category",
    ),
    "y is a list": (lambda: X, list(Y), TypeError, r"y must be a structured array; got list"),
    "y of another length": (lambda: X, Y[:10], ValueError, r"X has 60 rows but y has 10"),
    "int event field": (
        lambda: X,
        np.array([(1, 2.0)] * 60, dtype=[("e", int), ("t", float)]),
        ValueError,
        r"event indicator y\['e'\] must be boolean; got dtype int64",
    ),
    "text time field": (
        lambda: X,
        np.array([(True, "2")] * 60, dtype=[("e", bool), ("t", "U3")]),
        ValueError,
        r"time y\['t'\] must be numeric",
    ),
    "negative times": (
        lambda: X,
        Surv.from_arrays(Y["event"], -Y["time"]),
        ValueError,
        r"60 negative values .* must be >= 0",
    ),
    "nan time": (
        lambda: X,
        Surv.from_arrays(Y["event"], np.where(np.arange(60) == 3, np.nan, Y["time"])),
        ValueError,
        r"1 NaN or infinite values",
    ),
    "all censored": (
        lambda: X,
        Surv.from_arrays(np.zeros(60, bool), Y["time"]),
        ValueError,
        r"all 60 samples are censored",
    ),
    "empty X": (lambda: X.iloc[:0], Y[:0], ValueError, r"0 sample\(s\)"),
    "3-D X": (
        lambda: X.to_numpy()[:, :, None],
        Y,
        ValueError,
        r"Found array with dim 3",
    ),
    "inf in X": (
        lambda: X.mask(X.abs() > 2.5, np.inf),
        Y,
        ValueError,
        r"Input X contains infinity",
    ),
}


@pytest.mark.parametrize("case", list(ESTIMATOR_CASES))
@pytest.mark.parametrize("est", [DeepSurvival, LateFusionSurvival])
def test_estimator_rejects(est, case):
    make_X, y, exc, match = ESTIMATOR_CASES[case]
    with pytest.raises(exc, match=match):
        est(**FAST).fit(make_X(), y)


def test_typo_in_a_parameter_name_gets_one_precise_hint():
    with pytest.raises(ValueError, match=r"max_epoch") as info:
        LateFusionSurvival(max_epoch=2).fit(X, Y)
    message = str(info.value)
    assert "'max_epoch': did you mean 'max_epochs'?" in message
    # routed sub-parameters set by the library itself are not "typos"
    assert "iterator_train__shuffle" not in message


@pytest.mark.parametrize(
    "est, params, exc, match",
    [
        (DeepSurvival, {"hidden_units": (-1,)}, ValueError, r"hidden_units must be positive"),
        (DeepSurvival, {"activation": "rlu"}, InvalidParameterError, r"'activation' .* 'rlu'"),
        (LateFusionSurvival, {"lr": -1.0}, InvalidParameterError, r"'lr' parameter .* Got -1"),
        (ContrastiveFusionSurvival, {"alpha": -1}, InvalidParameterError, r"'alpha'"),
        (LateFusionSurvival, {"modalities": "ct"}, InvalidParameterError, r"'modalities'"),
        (
            CrossAttentionFusionSurvival,
            {"query": "cct"},
            ValueError,
            r"query='cct' is not one of the modalities \['ct', 'ehr'\]. Did you mean 'ct'",
        ),
        (
            CoAttentionFusionSurvival,
            {"n_heads": 7},
            ValueError,
            r"d_model=64 must be divisible by n_heads=7",
        ),
    ],
)
def test_bad_estimator_parameters(est, params, exc, match):
    with pytest.raises(exc, match=match):
        est(**FAST, **params).fit(X, Y)


@pytest.mark.parametrize("est", FUSIONS)
def test_predict_checks(est):
    with pytest.raises(NotFittedError, match="not fitted yet"):
        est().predict(X)
    model = est(**FAST).fit(X, Y)
    with pytest.raises(ValueError, match=r"X has 5 features, but \w+ is expecting 6"):
        model.predict(X.to_numpy()[:, :5])
    renamed = X.rename(columns={"ct__x0": "ct__y0"})
    with pytest.raises(ValueError, match=r"Feature names unseen at fit time:\n- ct__y0"):
        model.predict(renamed)
    # documented missing-modality behaviour: whole modality NaN -> finite risk
    missing = X.copy()
    missing.iloc[:5, :3] = np.nan
    assert np.isfinite(model.predict(missing)).all()
    partial = X.copy()
    partial.iloc[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"modality 'ct' is partly NaN in 1 rows"):
        model.predict(partial)


# ---------------------------------------------------------------- EHR encoder
EVENTS = pd.DataFrame(
    {
        "subject_id": [1, 1, 2],
        "time": pd.to_datetime(["2020-01-01", "2020-02-01", "2020-03-01"]),
        "code": ["A", "B", "A"],
        "numeric_value": [np.nan, 1.0, np.nan],
    }
)
COHORT = pd.DataFrame({"subject_id": [1, 2], "prediction_time": pd.to_datetime(["2021-01-01"] * 2)})

EHR_CASES = {
    "on_error typo": (
        dict(on_error="nans"),
        COHORT,
        InvalidParameterError,
        r"'on_error' .* Got 'nans'",
    ),
    "window not a duration": (
        dict(windows=["30 parsecs"]),
        COHORT,
        ValueError,
        r"window '30 parsecs' is not a duration; use pandas offsets such as '30D'",
    ),
    "negative window": (dict(windows=["-30D"]), COHORT, ValueError, r"must be a positive"),
    "no windows": (dict(windows=[]), COHORT, ValueError, r"windows is empty"),
    "cohort as numpy": (
        {},
        COHORT.to_numpy(),
        TypeError,
        r"the cohort must be a pandas DataFrame .*got ndarray",
    ),
    "float subject ids": (
        {},
        COHORT.assign(subject_id=[1.5, 2.0]),
        TypeError,
        r"cohort column 'subject_id' must hold integers, got dtype float64",
    ),
    "empty cohort": (
        {},
        COHORT.iloc[:0],
        ValueError,
        r"cohort passed to EHRCountEncoder.fit has no",
    ),
    "duplicated cohort rows": (
        {},
        pd.concat([COHORT, COHORT]),
        ValueError,
        r"2 duplicated \(subject_id, prediction_time\) row\(s\)",
    ),
    "timezone-aware times": (
        {},
        COHORT.assign(prediction_time=COHORT.prediction_time.dt.tz_localize("UTC")),
        TypeError,
        r"'prediction_time' is timezone-aware",
    ),
    "misspelt event column": (
        dict(events=EVENTS.rename(columns={"code": "codes"})),
        COHORT,
        ValueError,
        r"missing required column\(s\) \['code'\]; 'code' \(did you mean 'codes'\?\)",
    ),
    "text subject ids in events": (
        dict(events=EVENTS.assign(subject_id=["a", "a", "b"])),
        COHORT,
        TypeError,
        r"events column 'subject_id' must hold integers, got dtype object",
    ),
    "text numeric values": (
        dict(events=EVENTS.assign(numeric_value=["x", 1, None])),
        COHORT,
        TypeError,
        r"'numeric_value' must be numeric .*first non-numeric value: 'x'",
    ),
    "unparseable event time": (
        dict(events=EVENTS.assign(time=["2020-01-01", "yesterday", "2020-03-01"])),
        COHORT,
        ValueError,
        r"1 value\(s\) that cannot be parsed as datetimes \(first: 'yesterday'\)",
    ),
    "events folder missing": (
        dict(events="/nonexistent/meds"),
        COHORT,
        ValueError,
        r"MEDS root folder '/nonexistent/meds' does not exist",
    ),
    "events of wrong type": (dict(events=5), COHORT, InvalidParameterError, r"'events'"),
    "no events": ({"events": None}, COHORT, ValueError, r"EHRCountEncoder needs events"),
    "transformer weights missing": (
        dict(transformer=True, weights="/nonexistent"),
        COHORT,
        ValueError,
        r"weights folder '/nonexistent' does not exist; pass a folder written by",
    ),
    "heads do not divide the width": (
        dict(transformer=True, hidden_size=10, n_heads=3, pretrain_epochs=1),
        COHORT,
        ValueError,
        r"hidden_size=10 is not divisible by n_heads=3",
    ),
}


@pytest.mark.parametrize("case", list(EHR_CASES))
def test_ehr_encoder_rejects(case):
    params, cohort, exc, match = EHR_CASES[case]
    params = {"events": EVENTS, **params}
    cls = EHRTransformerEncoder if params.pop("transformer", False) else EHRCountEncoder
    with pytest.raises(exc, match=match):
        cls(**params).fit(cohort)


def test_ehr_history_before_every_event():
    early = COHORT.assign(prediction_time=pd.to_datetime(["1990-01-01"] * 2))
    # documented: no history is zero counts, a valid encoding (no error, no NaN)
    enc = EHRCountEncoder(EVENTS, windows=["ever"], numeric=None)
    np.testing.assert_array_equal(enc.fit_transform(early), np.zeros((2, 1)))  # <unk> only
    assert enc.n_empty_ == 2


def test_ehr_transformer_garbage_weights_folder(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match=r"does not hold a compatible model"):
        EHRTransformerEncoder(EVENTS, weights=tmp_path).fit(COHORT)


# ---------------------------------------------------------------- CT encoder
VOL = RNG.normal(0, 300, (16, 16, 16))


@pytest.fixture(scope="module")
def ct_fitted():
    return CTEncoder(
        spacing=None, spatial_size=(16, 16, 16), pretrain_epochs=0, random_state=0
    ).fit([VOL, VOL])


def ct(**params):
    return CTEncoder(
        spacing=None, spatial_size=(16, 16, 16), pretrain_epochs=0, random_state=0
    ).set_params(**params)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"backbone": "ct_fm"}, r"backbone='ct_fm' is not supported.*Did you mean 'ct-fm'"),
        ({"spacing": (1, 1)}, r"spacing=\(1, 1\) must be 3 positive numbers"),
        ({"spatial_size": (16.5, 16, 16)}, r"spatial_size=\(16.5, 16, 16\) must be 3 positive int"),
        ({"hu_window": (100, -100)}, r"hu_window=\(100, -100\) must be \(low, high\)"),
        ({"orientation": "RRR"}, r"orientation='RRR' is not a valid 3-letter axis code"),
        ({"device": "tpu"}, r"device='tpu' is not a torch device"),
        ({"backbone": torch.nn.Linear}, r"is not supported; pass one of"),
        ({"token_grid": (2, 2)}, r"token_grid=\(2, 2\) must be 3 positive integers"),
    ],
)
def test_ct_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        ct(**params).fit([VOL, VOL])


def test_ct_cache_dir_that_is_a_file(tmp_path):
    path = tmp_path / "cache"
    path.write_text("x")
    with pytest.raises(ValueError, match=r"cache_dir=.* is a file, not a folder"):
        ct(cache_dir=path).fit([VOL, VOL])


def _garbage_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


@pytest.mark.parametrize(
    "make_ref, match",
    [
        (lambda p: VOL[:, :, 0], r"CT array has 2 dimensions \(shape \(16, 16\)\)"),
        (lambda p: VOL[..., None].repeat(2, -1), r"CT array has 4 dimensions"),
        (lambda p: np.where(VOL > 500, np.nan, VOL), r"contains \d+ NaN or infinite voxels"),
        (lambda p: np.array(["a"] * 8).reshape(2, 2, 2), r"non-numeric dtype <U1"),
        (lambda p: 5, r"CT reference 5 of type int is not a path or an array"),
        (lambda p: str(p / "nope.nii.gz"), r"does not exist; pass an existing NIfTI file"),
        (
            lambda p: _garbage_file(p, "bad.nii.gz", b"not nifti"),
            r"could not be read .*the file is corrupt or not NIfTI - re-export it",
        ),
        (lambda p: _garbage_file(p, "empty.nii.gz", b""), r"Empty file"),
        (
            lambda p: _garbage_file(p, "x.txt", b"hello"),
            r"x.txt' is not a file format read here; pass a NIfTI",
        ),
        (lambda p: VOL[:1, :1, :1], r"is not a 3-D volume"),
    ],
)
def test_ct_unreadable_inputs(ct_fitted, tmp_path, make_ref, match):
    ref = make_ref(tmp_path)
    with pytest.raises(CTReadError, match=match) as info:
        ct_fitted.transform([VOL, ref])
    assert "row 1" in str(info.value) and "set on_error='nan'" in str(info.value)
    # documented alternative: a NaN row and a warning, the good row encoded
    with pytest.warns(UserWarning, match=r"1 of 2 CT inputs could not be read"):
        out = ct_fitted.set_params(on_error="nan").transform([VOL, ref])
    ct_fitted.set_params(on_error="raise")
    assert np.isfinite(out[0]).all() and np.isnan(out[1]).all()


def test_ct_oversized_volume_is_refused_from_the_header(tmp_path):
    path = write_nifti(np.zeros((20, 20, 20), np.int16), tmp_path / "big.nii.gz")
    enc = ct(max_voxels=4000).fit([VOL[:10, :10, :10]] * 2)
    with pytest.raises(CTReadError, match=r"has 8000 voxels.*more than max_voxels=4000"):
        enc.transform([str(path)])


@pytest.mark.parametrize(
    "name, payload, match",
    [
        ("w.pt", b"garbage", r"could not be read with torch.load\(weights_only=True\)"),
        ("missing.pt", None, r"weights file .* does not exist"),
    ],
)
def test_ct_bad_weight_files(tmp_path, name, payload, match):
    path = tmp_path / name
    if payload is not None:
        path.write_bytes(payload)
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        ct(weights=path).fit([VOL, VOL])


def test_ct_foreign_pickle_is_not_unpickled(tmp_path):
    import argparse

    # an arbitrary pickled object: weights_only=True refuses to build it
    torch.save({"w": argparse.Namespace(a=1)}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match=r"weights_only=True"):
        ct(weights=tmp_path / "evil.pt").fit([VOL, VOL])


def test_ct_wrong_weights_name_the_keys(tmp_path):
    torch.save({"a": torch.zeros(2)}, tmp_path / "w.pt")
    with pytest.raises(
        ValueError, match=r"do not match backbone ResidualAutoencoder: \d+ missing keys"
    ):
        ct(weights=tmp_path / "w.pt").fit([VOL, VOL])


def test_ct_input_shapes():
    with pytest.raises(ValueError, match=r"exactly one column of CT references, got 2"):
        ct().fit(pd.DataFrame({"a": [VOL], "b": [VOL]}))
    with pytest.raises(ValueError, match=r"only 1 readable volumes were given"):
        CTEncoder(spacing=None, spatial_size=(16, 16, 16), pretrain_epochs=1).fit([VOL])
    with pytest.raises(TypeError, match=r"X of type int is not a column of CT references"):
        ct().fit(3)


def test_make_multimodal_encoder_needs_a_modality():
    with pytest.raises(ValueError, match=r"needs at least one of ct= or ehr="):
        make_multimodal_encoder()


# ---------------------------------------------------------------- cohort folder
def test_cohort_folder_with_a_corrupt_meds_shard(tmp_path):
    from test_cohort_folder import _write_folder

    _write_folder(tmp_path)
    (tmp_path / "meds" / "data" / "0.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(ValueError, match=r"0.parquet: not a readable parquet file"):
        load_cohort_folder(tmp_path)


def test_cohort_folder_given_a_file(tmp_path):
    (tmp_path / "cohort.csv").write_text("subject_id\n1\n")
    with pytest.raises(ValueError, match=r"does not exist or is not a folder"):
        load_cohort_folder(tmp_path / "cohort.csv")


# ---------------------------------------------------------------- CLI
@pytest.mark.parametrize(
    "argv, message",
    [
        ([], r"the following arguments are required: command"),
        (["bench"], r"invalid choice: 'bench'"),
        (["benchmark", "--quik"], r"unrecognized arguments: --quik"),
        (["benchmark", "--n-subjects", "ten"], r"invalid int value: 'ten'"),
        (["benchmark", "--fusion-ehr", "count"], r"invalid choice: 'count'"),
        (["benchmark", "--balance", "a,b"], r"--balance takes a number in \[0, 1\]"),
        (["benchmark", "--bootstrap", "0"], r"--bootstrap 0 must be a positive number"),
        (["benchmark", "--cohort", "/nonexistent/c"], r"cohort folder .* does not exist"),
        (["benchmark", "--balance", "0,1", "--cohort", "."], r"sweeps need the synthetic"),
        (["benchmark", "--n-subjects", "3"], r"'n_subjects' .* range \[4, inf\). Got 3"),
    ],
)
def test_cli_errors_are_messages_with_exit_code_2(argv, message, capsys, tmp_path):
    argv = argv + (
        ["--out", str(tmp_path / "o"), "--no-progress"]
        if argv[:1] == ["benchmark"] and "--quik" not in argv
        else []
    )
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert "Traceback" not in err


def test_cli_out_is_a_file(tmp_path, capsys):
    target = tmp_path / "results"
    target.write_text("x")
    with pytest.raises(SystemExit) as info:
        main(["benchmark", "--out", str(target), "--no-progress"])
    assert info.value.code == 2
    assert "is a file; pass a folder" in capsys.readouterr().err
