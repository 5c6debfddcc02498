"""Saving and loading: the CT backbone's save_pretrained / from_pretrained, and a
joblib-saved pipeline pointed at a MEDS folder that moved after fitting."""

import json
import shutil

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sksurv.util import Surv

from multimodal_surv import DeepSurvival
from multimodal_surv.datasets import write_nifti
from multimodal_surv.encoders import CTEncoder, EHRCountEncoder, make_multimodal_encoder


@pytest.fixture(scope="module")
def volumes(tmp_path_factory):
    root = tmp_path_factory.mktemp("ct")
    rng = np.random.default_rng(3)
    paths = []
    for k in range(6):
        vol = rng.normal(0, 150, (16, 16, 16)) + 200 * (k % 3) - 300
        paths.append(str(write_nifti(vol, root / f"{k}.nii.gz")))
    return pd.DataFrame({"ct": paths + [None]})


def _ct_encoder(**params):
    return CTEncoder(
        spacing=None, spatial_size=(16, 16, 16), pretrain_epochs=1, random_state=0, **params
    )


@pytest.mark.parametrize("output", ["pooled", "tokens"])
def test_ct_backbone_round_trips_through_safetensors(volumes, tmp_path, output):
    encoder = _ct_encoder(output=output).fit(volumes)
    expected = encoder.transform(volumes)
    encoder.save_pretrained(tmp_path / "ct_model")
    assert sorted(p.name for p in (tmp_path / "ct_model").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]
    config = json.loads((tmp_path / "ct_model" / "config.json").read_text())
    assert config["spatial_size"] == [16, 16, 16] and config["output"] == output

    loaded = CTEncoder.from_pretrained(tmp_path / "ct_model", batch_size=2)
    assert loaded.batch_size == 2 and loaded.pretrain_losses_ == []  # nothing retrained
    np.testing.assert_array_equal(loaded.transform(volumes), expected)
    assert np.isnan(expected[-1]).all() and np.isfinite(expected[:-1]).all()
    # clone + fit (what a Pipeline or GridSearchCV does) reloads the same weights.
    refit = clone(loaded).fit(volumes)
    np.testing.assert_array_equal(refit.transform(volumes), expected)


def test_ct_save_pretrained_errors(volumes, tmp_path):
    with pytest.raises(ValueError, match=r"config\.json, model\.safetensors not found"):
        CTEncoder.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"format": "something else"}')
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match=r"not written by CTEncoder\.save_pretrained"):
        CTEncoder.from_pretrained(tmp_path)
    import torch

    module = CTEncoder(torch.nn.Conv3d(1, 4, 3), spacing=None, spatial_size=(16, 16, 16))
    module.fit(volumes)
    with pytest.raises(ValueError, match=r"backbone is a torch module.*save the whole"):
        module.save_pretrained(tmp_path / "x")


def _meds_folder(root, n, rng):
    m = 40 * n
    events = pd.DataFrame(
        {
            "subject_id": rng.integers(0, n, m).astype("int64"),
            "time": pd.Timestamp("2015-01-01") + pd.to_timedelta(rng.integers(0, 1800, m), "D"),
            "code": rng.choice(["DX/A", "DX/B", "LAB/C", "RX/D", "PX/E"], m),
            "numeric_value": np.where(rng.random(m) < 0.3, rng.normal(size=m), np.nan),
        }
    )
    (root / "data").mkdir(parents=True)
    events.iloc[: m // 2].to_parquet(root / "data" / "0.parquet", index=False)
    events.iloc[m // 2 :].to_parquet(root / "data" / "1.parquet", index=False)
    return events


def test_loaded_pipeline_pointed_at_a_moved_meds_folder(tmp_path):
    rng = np.random.default_rng(11)
    n = 80
    old = tmp_path / "site_a" / "meds"
    _meds_folder(old, n, rng)
    cohort = pd.DataFrame(
        {"subject_id": np.arange(n, dtype="int64"), "prediction_time": pd.Timestamp("2020-01-01")}
    )
    y = Surv.from_arrays(rng.random(n) < 0.7, rng.exponential(100, n) + 1)
    model = make_pipeline(
        make_multimodal_encoder(ehr=EHRCountEncoder(str(old), windows=("365D", "ever"))),
        StandardScaler(),
        DeepSurvival(max_epochs=5, validation_fraction=None, random_state=0),
    ).fit(cohort, y)
    expected = model.predict(cohort)
    joblib.dump(model, tmp_path / "model.joblib")

    new = tmp_path / "site_b" / "ehr" / "meds"
    new.parent.mkdir(parents=True)
    shutil.move(old, new)
    loaded = joblib.load(tmp_path / "model.joblib")
    with pytest.raises((FileNotFoundError, ValueError), match="meds"):
        loaded.predict(cohort)  # still points at the old place

    # The fix of docs/saving_loading.md: the fitted encoder (in the fitted
    # ColumnTransformer's named_transformers_) and the unfitted spec (used by a
    # refit) both get the new folder.
    loaded.named_steps["columntransformer"].named_transformers_["ehr"].set_params(events=str(new))
    loaded.set_params(columntransformer__ehr__events=str(new))
    np.testing.assert_array_equal(loaded.predict(cohort), expected)
    refit = clone(loaded).fit(cohort, y)
    np.testing.assert_array_equal(refit.predict(cohort), expected)


def test_relative_meds_path_resolves_against_the_working_folder(tmp_path, monkeypatch):
    rng = np.random.default_rng(12)
    n = 60
    _meds_folder(tmp_path / "a" / "meds", n, rng)
    cohort = pd.DataFrame(
        {"subject_id": np.arange(n, dtype="int64"), "prediction_time": pd.Timestamp("2020-01-01")}
    )
    monkeypatch.chdir(tmp_path / "a")
    encoder = EHRCountEncoder("meds", windows=("ever",)).fit(cohort)
    expected = encoder.transform(cohort)
    joblib.dump(encoder, tmp_path / "encoder.joblib")
    shutil.move(tmp_path / "a", tmp_path / "b")
    monkeypatch.chdir(tmp_path / "b")
    loaded = joblib.load(tmp_path / "encoder.joblib")
    np.testing.assert_array_equal(loaded.transform(cohort), expected)
