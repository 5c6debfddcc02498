"""Persistence (issue 7, item 2): joblib round trip of a full fitted pipeline in a
fresh process, safetensors weights, no unpickling of foreign weights."""

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sksurv.util import Surv

from multimodal_surv import (
    CoAttentionFusionSurvival,
    ContrastiveFusionSurvival,
    CrossAttentionFusionSurvival,
    LateFusionSurvival,
)
from multimodal_surv.datasets import write_nifti
from multimodal_surv.encoders import (
    CTEncoder,
    EHRCountEncoder,
    EHRTransformerEncoder,
    make_multimodal_encoder,
)

PACKAGE = Path(__file__).resolve().parents[1] / "multimodal_surv"
FUSIONS = [
    LateFusionSurvival,
    ContrastiveFusionSurvival,
    CrossAttentionFusionSurvival,
    CoAttentionFusionSurvival,
]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """24 subjects, 20 with a 16^3 NIfTI volume, a small MEDS frame."""
    root = tmp_path_factory.mktemp("cohort")
    rng = np.random.default_rng(0)
    n = 24
    ct = []
    for k in range(n):
        if k % 6 == 5:
            ct.append(None)  # CT missing for some subjects
            continue
        vol = rng.normal(0, 200, (16, 16, 16)) + 300 * (k % 3)
        ct.append(str(write_nifti(vol, root / f"{k}.nii.gz")))
    cohort = pd.DataFrame(
        {
            "subject_id": np.arange(n, dtype=np.int64),
            "prediction_time": pd.Timestamp("2020-01-01"),
            "ct": ct,
        }
    )
    m = 300
    events = pd.DataFrame(
        {
            "subject_id": rng.integers(0, n, m),
            "time": pd.Timestamp("2016-01-01") + pd.to_timedelta(rng.integers(0, 1800, m), "D"),
            "code": rng.choice(["DX/A", "DX/B", "LAB/C", "RX/D", "PX/E"], m),
            "numeric_value": np.where(rng.random(m) < 0.3, rng.normal(size=m), np.nan),
        }
    )
    y = Surv.from_arrays(rng.random(n) < 0.7, rng.exponential(100, n) + 1)
    return cohort, events, y


def _pipeline(events, fusion):
    encoder = make_multimodal_encoder(
        CTEncoder(
            spacing=None,
            spatial_size=(16, 16, 16),
            pretrain_epochs=1,
            output="tokens",
            random_state=0,
        ),
        EHRCountEncoder(events, windows=("365D", "ever")),
    )
    scaler = StandardScaler().set_output(transform="pandas")
    return make_pipeline(
        encoder, scaler, fusion(max_epochs=3, validation_fraction=None, random_state=0)
    )


def test_fitted_pipelines_round_trip_bit_identically_in_a_fresh_process(cohort, tmp_path):
    X, events, y = cohort
    expected = {}
    for fusion in FUSIONS:
        pipe = _pipeline(events, fusion).fit(X, y)
        expected[fusion.__name__] = pipe.predict(X)
        assert np.isfinite(expected[fusion.__name__]).all()
        joblib.dump(pipe, tmp_path / f"{fusion.__name__}.joblib")
    X.to_pickle(tmp_path / "X.pkl")
    # The same torch thread count as this process: a float32 matmul's last bit
    # depends on how the work is split between threads.
    script = textwrap.dedent(
        f"""
        import joblib, numpy as np, pandas as pd, torch
        torch.set_num_threads({torch.get_num_threads()})
        X = pd.read_pickle({str(tmp_path / "X.pkl")!r})
        out = {{}}
        for name in {sorted(expected)!r}:
            pipe = joblib.load({str(tmp_path)!r} + "/" + name + ".joblib")
            out[name] = pipe.predict(X)
        np.savez({str(tmp_path / "fresh.npz")!r}, **out)
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    fresh = np.load(tmp_path / "fresh.npz")
    for name, pred in expected.items():
        np.testing.assert_array_equal(fresh[name], pred, err_msg=name)


def test_library_writes_safetensors_weights(tmp_path):
    events = pd.DataFrame(
        {
            "subject_id": [1, 1, 1, 2, 2],
            "time": pd.to_datetime(
                ["2020-01-01", "2020-02-01", "2020-03-01", "2020-01-05", "2020-04-01"]
            ),
            "code": ["A", "B", "A", "B", "C"],
            "numeric_value": [np.nan] * 5,
        }
    )
    cohort = pd.DataFrame(
        {"subject_id": [1, 2], "prediction_time": pd.to_datetime(["2021-01-01"] * 2)}
    )
    enc = EHRTransformerEncoder(
        events,
        hidden_size=8,
        n_heads=2,
        n_layers=1,
        pretrain_epochs=1,
        random_state=0,
    ).fit(cohort)
    enc.save_pretrained(tmp_path / "model")
    files = sorted(p.name for p in (tmp_path / "model").iterdir())
    assert files == ["config.json", "model.safetensors", "vocabulary.json"]
    from safetensors.torch import load_file

    tensors = load_file(tmp_path / "model" / "model.safetensors")  # raises if not safetensors
    assert len(tensors) > 0
    again = EHRTransformerEncoder.from_pretrained(tmp_path / "model", events=events)
    np.testing.assert_array_equal(again.transform(cohort), enc.transform(cohort))


def test_no_unsafe_deserialisation_in_the_package():
    """Every torch.load passes weights_only=True; no pickle.load / torch.save of weights."""
    offending = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        for match in re.finditer(r"torch\.load\(([^()]*(?:\([^()]*\)[^()]*)*)\)", text):
            if "weights_only=True" not in match.group(1):
                offending.append(f"{path.name}: {match.group(0)}")
        for pattern in (r"\bpickle\.loads?\(", r"\btorch\.save\(", r"weights_only\s*=\s*False"):
            offending += [f"{path.name}: {m.group(0)}" for m in re.finditer(pattern, text)]
    assert not offending, offending
    # and there is at least one torch.load to check (the CT state-dict reader)
    assert any("torch.load(" in p.read_text() for p in PACKAGE.rglob("*.py"))
