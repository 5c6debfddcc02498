"""The main job end to end on a cohort folder written by hand (not by the generator)."""

import hashlib

import matplotlib.image as mpimg
import nibabel as nib
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from multimodal_surv.cli import main

N = 72


def _write_cohort(root, seed=0):
    """72 subjects: a bright blob whose size and an EHR code count both drive the hazard."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "meds" / "data").mkdir(parents=True)
    blob = rng.integers(0, 4, N)
    n_dx = rng.poisson(2.0, N)
    risk = 0.8 * blob + 0.6 * n_dx
    time = rng.exponential(400 * np.exp(-(risk - risk.mean()) * 0.7)) + 1
    censor = rng.uniform(200, 1500, N)
    index = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 300, N), unit="D")
    grid = np.indices((16, 16, 12)).transpose(1, 2, 3, 0)
    rows, subjects, times, codes, values = [], [], [], [], []
    for i in range(N):
        volume = np.full((16, 16, 12), -1000, dtype=np.int16)
        volume[2:14, 2:14, 1:11] = 40 + rng.integers(-20, 20, (12, 12, 10))
        if blob[i]:
            dist = np.linalg.norm(grid - np.array([8, 8, 6]), axis=-1)
            volume[dist <= blob[i] + 0.5] = 600
        path = root / "images" / f"s{i}.nii.gz"
        nib.save(nib.Nifti1Image(volume, np.diag([1.5, 1.5, 2.5, 1.0])), path)
        rows.append(
            {
                "subject_id": 100 + i,
                "prediction_time": index[i].isoformat(),
                "ct": f"images/s{i}.nii.gz" if i % 9 else "",  # some rows without CT
                "event": int(time[i] <= censor[i]),
                "time": round(float(min(time[i], censor[i])), 2),
                "site": "external" if i >= 60 else "internal",
                "split": "train" if i < 40 else "test",
            }
        )
        # history before the index, plus events after it that must not leak
        for _ in range(n_dx[i]):
            subjects.append(100 + i)
            times.append(index[i] - pd.Timedelta(days=int(rng.integers(1, 900))))
            codes.append("ICD10CM/I50.9")
            values.append(None)
        for k in range(3):
            subjects.append(100 + i)
            times.append(index[i] - pd.Timedelta(days=int(rng.integers(1, 900))))
            codes.append(f"Visit/{['OP', 'ER'][k % 2]}")
            values.append(None)
        subjects.append(100 + i)
        times.append(index[i] + pd.Timedelta(days=5))
        codes.append("LOINC/2160-0")
        values.append(float(rng.normal(1, 0.2)))
    pd.DataFrame(rows).to_csv(root / "cohort.csv", index=False)
    table = pa.table(
        {
            "subject_id": pa.array(subjects, pa.int64()),
            "time": pa.array(
                pd.DatetimeIndex(times).to_numpy("datetime64[us]"), pa.timestamp("us")
            ),
            "code": pa.array(codes, pa.string()),
            "numeric_value": pa.array(values, pa.float32()),
        }
    )
    pq.write_table(table, root / "meds" / "data" / "0.parquet")


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("user_cohort")
    _write_cohort(root)
    return root


def _run(cohort_dir, out, seed):
    args = [
        "benchmark",
        "--cohort",
        str(cohort_dir),
        "--out",
        str(out),
        "--quick",
        "--random-state",
        str(seed),
        "--bootstrap",
        "30",
        "--no-progress",
    ]
    assert main(args) == 0
    return (out / "table.csv").read_bytes()


@pytest.mark.slow
def test_user_cohort_folder_end_to_end_and_deterministic(cohort_dir, tmp_path, capsys):
    first = _run(cohort_dir, tmp_path / "a", seed=0)
    printed = capsys.readouterr().out
    assert "Selected by 5-fold subject-grouped cross-validation" in printed
    assert "| model | role | selection CV C | C [95% CI] |" in printed
    table = pd.read_csv(tmp_path / "a" / "table.csv")
    assert "Oracle (true log-hazard)" not in set(table["model"])  # a user folder has no oracle
    assert len(table) == 15 and table["internal C"].between(0, 1).all()
    assert table["model"].iloc[-1].startswith("Adaptive (chosen: ")  # the meta-model row
    assert "Adaptive row (a meta-model" in printed
    assert "| ct |" in (tmp_path / "a" / "modality_report.md").read_text()
    assert {"internal Uno C", "internal IBS", "internal p (Holm)", "external D-cal p"} <= set(
        table.columns
    )
    for png in ("forest.png", "calibration.png", "kaplan_meier.png"):
        raw = (tmp_path / "a" / png).read_bytes()
        assert raw[:8] == b"\x89PNG\r\n\x1a\n"
        image = mpimg.imread(tmp_path / "a" / png)
        assert image.shape[0] > 300 and image.shape[1] > 500 and image.std() > 0.05
    assert (tmp_path / "a" / "metadata.json").exists()
    # Same seed -> byte-identical table; another seed -> a different one.
    again = _run(cohort_dir, tmp_path / "b", seed=0)
    assert hashlib.sha256(first).digest() == hashlib.sha256(again).digest()
    other = _run(cohort_dir, tmp_path / "c", seed=1)
    assert other != first


def test_malformed_folder_is_a_clean_error(tmp_path, capsys):
    root = tmp_path / "bad"
    _write_cohort(root)
    table = pd.read_csv(root / "cohort.csv").rename(columns={"event": "evnt"})
    table.to_csv(root / "cohort.csv", index=False)
    with pytest.raises(SystemExit) as exc:
        main(["benchmark", "--cohort", str(root), "--out", str(tmp_path / "o"), "--no-progress"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "cohort.csv" in err and "'event'" in err and "did you mean" in err.lower()


def test_bad_balance_is_a_clean_error(capsys):
    with pytest.raises(SystemExit):
        main(["benchmark", "--balance", "1.5"])
    assert "--balance values must be in [0, 1]" in capsys.readouterr().err


def test_ct_backbone_and_weights_flags_reach_the_encoder(monkeypatch, tmp_path):
    import multimodal_surv.benchmark._run as bench
    from multimodal_surv.benchmark import run_benchmark
    from multimodal_surv.cli import _parser

    args = _parser().parse_args(["benchmark", "--ct-backbone", "merlin", "--ct-weights", "w.pt"])
    assert (args.ct_backbone, args.ct_weights) == ("merlin", "w.pt")
    seen = {}

    def fake_encode(data, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop after the encoder settings")

    monkeypatch.setattr(bench, "encode_cohort", fake_encode)
    from sklearn.utils import Bunch
    from sksurv.util import Surv

    data = Bunch(
        cohort=pd.DataFrame(
            {
                "subject_id": range(8),
                "site": ["internal"] * 8,
                "split": ["train"] * 6 + ["test"] * 2,
            }
        ),
        y=Surv.from_arrays([True, False] * 4, np.arange(1.0, 9.0)),
    )
    with pytest.raises(RuntimeError, match="stop after"):
        run_benchmark(data, ct_backbone="merlin", ct_weights="w.pt")
    assert (seen["ct_backbone"], seen["ct_weights"]) == ("merlin", "w.pt")
