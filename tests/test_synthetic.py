"""Synthetic CT + EHR cohort: determinism, knobs, oracle, leakage bait, site shift."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from scipy import ndimage
from sklearn.utils._param_validation import InvalidParameterError
from sksurv.metrics import concordance_index_censored

from multimodal_surv.datasets import load_cohort_folder, make_synthetic_cohort

# Whole-body fields of view (400 x 400 x 288 mm, like the default) on coarse grids.
TINY = {"volume_shape": (16, 16, 8), "spacing": (25.0, 25.0, 36.0)}
SMALL = {"volume_shape": (32, 32, 24), "spacing": (12.5, 12.5, 12.0)}


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """A 600-subject cohort with small volumes (the oracle and shift tests share it)."""
    root = tmp_path_factory.mktemp("synthetic")
    return make_synthetic_cohort(root, n_subjects=600, random_state=3, **SMALL)


@pytest.fixture(scope="module")
def events(cohort):
    table = pd.read_parquet(cohort.meds_root / "data")
    return table.merge(cohort.cohort[["subject_id", "prediction_time", "site"]], on="subject_id")


def test_same_seed_gives_identical_files_other_seed_differs(tmp_path):
    a = make_synthetic_cohort(tmp_path / "a", n_subjects=30, random_state=7, **TINY)
    # Written by two threads: the same bytes (each subject draws from its own seed).
    b = make_synthetic_cohort(tmp_path / "b", n_subjects=30, random_state=7, n_jobs=2, **TINY)
    c = make_synthetic_cohort(tmp_path / "c", n_subjects=30, random_state=8, **TINY)
    files_a, files_b, files_c = _files(a.root), _files(b.root), _files(c.root)
    assert len(files_a) > 30  # cohort, oracle, README, MEDS shards + metadata, 30 volumes
    assert files_a == files_b
    pd.testing.assert_frame_equal(a.cohort.drop(columns="ct"), b.cohort.drop(columns="ct"))
    np.testing.assert_array_equal(a.oracle, b.oracle)
    assert files_a["cohort.csv"] != files_c["cohort.csv"]
    assert files_a["ct/internal/sub-000001.nii.gz"] != files_c["ct/internal/sub-000001.nii.gz"]
    assert not np.array_equal(a.oracle, c.oracle)


def test_random_state_none_draws_an_integer_that_writes_the_same_folder(tmp_path):
    kw = {"n_subjects": 12, "volume_shape": (8, 8, 8), "spacing": (50.0, 50.0, 36.0)}
    drawn = make_synthetic_cohort(tmp_path / "a", random_state=None, **kw)
    seed = drawn.params["random_state"]
    assert isinstance(seed, int)
    again = make_synthetic_cohort(tmp_path / "b", random_state=seed, **kw)
    assert _files(drawn.root) == _files(again.root)
    rs = make_synthetic_cohort(tmp_path / "c", random_state=np.random.RandomState(seed), **kw)
    assert isinstance(rs.params["random_state"], int)


def test_cohort_table_layout(cohort):
    table = cohort.cohort
    assert table.columns[:7].tolist() == [
        "subject_id",
        "prediction_time",
        "ct",
        "event",
        "time",
        "site",
        "split",
    ]
    assert table["subject_id"].is_unique
    assert (table["time"] > 0).all()
    assert cohort.y.dtype.names == ("event", "time")
    np.testing.assert_array_equal(cohort.y["event"], table["event"])
    counts = table.groupby(["site", "split"]).size().to_dict()
    assert counts == {
        ("external", "test"): 200,
        ("internal", "test"): 120,
        ("internal", "train"): 280,
    }
    assert all(Path(p).is_file() for p in table["ct"])
    assert cohort.params["random_state"] == 3


def test_oracle_is_the_documented_mix_of_the_parts(tmp_path):
    scale = 1.45
    for balance in (0.0, 0.3, 1.0):
        data = make_synthetic_cohort(
            tmp_path / str(balance), n_subjects=40, balance=balance, random_state=1, **TINY
        )
        ct, ehr = data.oracle_parts["ct_part"], data.oracle_parts["ehr_part"]
        expected = scale * (np.sqrt(balance) * ct + np.sqrt(1 - balance) * ehr)
        np.testing.assert_allclose(data.oracle, expected, atol=1e-8)
    # balance = 1: the EHR part has zero weight, the oracle ranks like the CT part.
    np.testing.assert_allclose(data.oracle, scale * ct, atol=1e-8)


def test_balance_moves_the_signal_between_modalities(tmp_path):
    shares = []
    for balance in (0.2, 0.8):
        data = make_synthetic_cohort(
            tmp_path / str(balance), n_subjects=500, balance=balance, random_state=2, **TINY
        )
        ct, ehr = data.oracle_parts["ct_part"], data.oracle_parts["ehr_part"]
        # Population-standardised parts: unit variance, independent.
        assert abs(ct.std() - 1) < 0.12 and abs(ehr.std() - 1) < 0.12
        assert abs(np.corrcoef(ct, ehr)[0, 1]) < 0.12
        ct_weighted = np.sqrt(balance) * ct
        shares.append(ct_weighted.var() / (data.oracle / 1.45).var())
        e, t = data.y["event"], data.y["time"]
        c_ct = concordance_index_censored(e, t, ct.to_numpy())[0]
        c_ehr = concordance_index_censored(e, t, ehr.to_numpy())[0]
        assert (c_ct > c_ehr) == (balance > 0.5)
    assert abs(shares[0] - 0.2) < 0.08 and abs(shares[1] - 0.8) < 0.08


@pytest.mark.parametrize("censoring", [0.0, 0.1, 0.3, 0.6])
def test_censoring_rate_matches_the_knob(tmp_path, censoring):
    data = make_synthetic_cohort(
        tmp_path, n_subjects=200, censoring=censoring, random_state=4, **TINY
    )
    assert abs((1 - data.y["event"].mean()) - censoring) <= 0.01


def test_oracle_c_index_in_the_intended_range(cohort):
    for site in ("internal", "external"):
        mask = (cohort.cohort["site"] == site).to_numpy()
        c = concordance_index_censored(
            cohort.y["event"][mask], cohort.y["time"][mask], cohort.oracle[mask]
        )[0]
        assert 0.73 <= c <= 0.84, (site, c)


def test_leakage_bait_after_prediction_time(cohort, events):
    after = events[events["time"] > events["prediction_time"]]
    # Most subjects have follow-up events, and every death lies after the index time.
    assert after["subject_id"].nunique() > 0.9 * len(cohort.cohort)
    deaths = events[events["code"] == "MEDS_DEATH"]
    assert len(deaths) == int(cohort.y["event"].sum())
    assert (deaths["time"] > deaths["prediction_time"]).all()
    # The death time is the outcome time.
    table = cohort.cohort.set_index("subject_id")
    delay = (deaths["time"] - deaths["prediction_time"]).dt.total_seconds() / 86400
    np.testing.assert_allclose(delay, table.loc[deaths["subject_id"], "time"], atol=1e-3)
    # Nothing after the end of follow-up.
    end = events["prediction_time"] + pd.to_timedelta(
        table.loc[events["subject_id"], "time"].to_numpy() * 86400 + 1, unit="s"
    )
    assert (events["time"].isna() | (events["time"] <= end)).all()
    # The index scan is recorded exactly at prediction_time.
    scan = events[events["code"] == "CPT4/71260"]
    assert (scan["time"] == scan["prediction_time"]).all()
    assert len(scan) == len(cohort.cohort)


def test_meds_layout_and_code_systems(cohort, events):
    shard = sorted((cohort.meds_root / "data").glob("*.parquet"))[0]
    schema = pq.read_schema(shard)
    assert [str(schema.field(c).type) for c in ("subject_id", "time", "code", "numeric_value")] == [
        "int64",
        "timestamp[us]",
        "string",
        "float",
    ]
    for name in ("codes.parquet", "subject_splits.parquet", "dataset.json"):
        assert (cohort.meds_root / "metadata" / name).is_file()
    codes = set(events["code"])
    for code in ("MEDS_BIRTH", "ICD10CM/I10", "LOINC/2160-0", "RxNorm/6809", "Visit/OP"):
        assert code in codes
    births = events[events["code"] == "MEDS_BIRTH"]
    age = (births["prediction_time"] - births["time"]).dt.days / 365.25
    assert births["subject_id"].is_unique and age.between(39, 91).all()
    creat = events[events["code"] == "LOINC/2160-0"]["numeric_value"]
    assert creat.notna().all() and creat.between(0.3, 6).all()
    # Records span years before the index time.
    before = events[events["time"] < events["prediction_time"]]
    span = before.groupby("subject_id")["time"].agg(lambda t: (t.max() - t.min()).days)
    assert span.median() > 2 * 365


def test_ehr_signal_is_in_counts_last_values_and_recency(cohort, events):
    past = events[events["time"] <= events["prediction_time"]]
    ehr = cohort.oracle_parts["ehr_part"].to_numpy()
    sid = cohort.cohort["subject_id"]
    internal = (cohort.cohort["site"] == "internal").to_numpy()

    def corr(feature):
        x = feature.reindex(sid).fillna(0).to_numpy(float)
        return np.corrcoef(x[internal], ehr[internal])[0, 1]

    hf = past[past["code"] == "ICD10CM/I50.9"].groupby("subject_id").size() > 0
    last_creat = past[past["code"] == "LOINC/2160-0"].groupby("subject_id")["numeric_value"].last()
    recent_ip = (
        past[
            (past["code"] == "Visit/IP")
            & (past["time"] > past["prediction_time"] - pd.Timedelta(days=365))
        ]
        .groupby("subject_id")
        .size()
    )
    assert corr(hf.astype(float)) > 0.25
    assert corr(last_creat - 0.9) > 0.3
    assert corr(recent_ip) > 0.25


def _lungs(vol):
    """Aerated regions that do not touch the side faces, holes (findings) filled per slice."""
    labels, n = ndimage.label(vol < -500)
    outside = np.concatenate([labels[[0, -1]].ravel(), labels[:, [0, -1]].ravel()])
    lungs = np.isin(labels, np.setdiff1d(np.arange(1, n + 1), outside))
    for k in range(lungs.shape[2]):
        lungs[:, :, k] = ndimage.binary_fill_holes(lungs[:, :, k])
    return lungs


def test_ct_signal_is_visible_in_the_volumes(tmp_path):
    # 6.25 x 6.25 x 7.2 mm, near the 6 mm grid a whole-body encoder resamples to.
    data = make_synthetic_cohort(
        tmp_path, n_subjects=200, volume_shape=(64, 64, 40), spacing=(6.25, 6.25, 7.2),
        external_fraction=0.0, random_state=3,
    )  # fmt: skip
    dense = []
    for path in data.cohort["ct"]:
        img = nib.load(path)
        vol = np.asarray(img.dataobj)
        lungs = _lungs(vol)
        assert 2 <= ndimage.label(lungs)[1] <= 3  # two lungs, closed inside the body
        dense.append((lungs & (vol > -300)).sum() * np.prod(img.header.get_zooms()))
    # Nodules are soft tissue inside the lungs: more of it, higher CT risk part
    # (0.52 on this seed, 0.62 at the default 5 x 5 x 6 mm; no relation: |r| < 0.14).
    r = np.corrcoef(dense, data.oracle_parts["ct_part"])[0, 1]
    assert r > 0.35


def test_nifti_spacing_units_and_hounsfield_values(cohort):
    table = cohort.cohort
    first = {
        site: table.loc[table["site"] == site, "ct"].iloc[0] for site in ("internal", "external")
    }
    img = nib.load(first["internal"])
    assert img.get_data_dtype() == np.int16
    np.testing.assert_allclose(img.header.get_zooms(), (12.5, 12.5, 12.0))
    assert img.header.get_xyzt_units() == ("mm", "sec")
    np.testing.assert_allclose(np.diag(img.affine)[:3], (12.5, 12.5, 12.0))
    assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
    vol = np.asarray(img.dataobj).astype(float)
    assert vol.shape == (32, 32, 24)
    assert abs(vol[:2, -2:, :].mean() + 1000) < 15  # air in front of the chest
    assert abs(np.median(vol[22, 16, 9:16]) + 850) < 60  # right lung, x = +80 mm
    assert 150 < np.median(vol[15:17, 11, 6:18]) < 700  # vertebral bodies, y = -55 mm
    assert abs(np.median(vol[:, 2, :]) + 1000) < 15  # air under the table
    assert np.median(vol[8:24, 4:6, :].max(axis=1)) > -400  # the table (12 mm, partial volume)
    assert np.median(vol[8:24, 6:8, :]) < -600  # air between the table and the back
    ext = nib.load(first["external"])  # coarser: 1.25 x the spacing at shift=1
    np.testing.assert_allclose(ext.header.get_zooms(), (15.625, 15.625, 15.0))


def test_external_site_is_shifted(cohort, events, tmp_path):

    def air(site, data=cohort):
        rows = data.cohort.loc[data.cohort["site"] == site, "ct"].iloc[:20]
        corners = np.concatenate(
            [np.asarray(nib.load(p).dataobj)[:2, -2:, :].ravel() for p in rows]
        ).astype(float)
        return corners.mean(), corners.std()

    (mean_int, sd_int), (mean_ext, sd_ext) = air("internal"), air("external")
    assert mean_ext - mean_int > 15  # intensity calibration offset (25 HU at shift=1)
    assert sd_ext > 1.5 * sd_int  # noisier scanner
    # Coding habits: mapped SNOMED CT diagnoses and SI-unit creatinine at the external site.
    by_site = events.groupby("site")["code"].agg(set)
    for code in ("SNOMEDCT/38341003", "LOINC/14682-9"):
        assert code in by_site["external"] and code not in by_site["internal"]
    codes = pd.read_parquet(cohort.meds_root / "metadata" / "codes.parquet").set_index("code")
    assert list(codes.loc["SNOMEDCT/38341003", "parent_codes"]) == ["ICD10CM/I10"]
    # No shift: both sites scan and code alike.
    same = make_synthetic_cohort(tmp_path, n_subjects=60, shift=0.0, random_state=0, **TINY)
    (m0, s0), (m1, s1) = air("internal", same), air("external", same)
    assert abs(m1 - m0) < 5 and 0.7 < s1 / s0 < 1.4
    ext_img = nib.load(same.cohort.loc[same.cohort["site"] == "external", "ct"].iloc[0])
    np.testing.assert_allclose(ext_img.header.get_zooms(), TINY["spacing"])


def test_ct_variation_varies_the_anatomy_not_the_risk(tmp_path):
    kw = {"n_subjects": 40, "random_state": 2, **SMALL}
    plain = make_synthetic_cohort(tmp_path / "plain", **kw)
    varied = make_synthetic_cohort(tmp_path / "varied", ct_variation=1.0, **kw)
    files_p, files_v = _files(plain.root), _files(varied.root)
    for name in ("cohort.csv", "oracle.csv"):  # same subjects, outcomes and risk
        assert files_p[name] == files_v[name]
    assert files_p["ct/internal/sub-000001.nii.gz"] != files_v["ct/internal/sub-000001.nii.gz"]

    def per_scan(data):
        rows = data.cohort.loc[data.cohort["site"] == "internal", "ct"]
        vols = [np.asarray(nib.load(p).dataobj).astype(float) for p in rows]
        body = [(v > -500).mean() for v in vols]  # body habitus and position
        noise = [v[:2, -2:, :].std() for v in vols]  # air in front of the chest: dose
        return np.std(body) / np.mean(body), np.std(np.log(noise))

    (body_p, noise_p), (body_v, noise_v) = per_scan(plain), per_scan(varied)
    assert body_v > 2 * body_p and body_v > 0.08
    assert noise_v > 0.25 > noise_p


def test_missing_ct_and_folder_round_trip(tmp_path):
    data = make_synthetic_cohort(tmp_path, n_subjects=80, ct_missing=0.5, random_state=5, **TINY)
    missing = data.cohort["ct"].isna()
    assert 0.3 < missing.mean() < 0.7
    assert len(list((tmp_path / "ct").rglob("*.nii.gz"))) == int((~missing).sum())
    again = load_cohort_folder(tmp_path)
    pd.testing.assert_frame_equal(again.cohort, data.cohort)
    np.testing.assert_array_equal(again.oracle, data.oracle)


def test_root_must_be_empty_unless_overwrite(tmp_path):
    make_synthetic_cohort(tmp_path, n_subjects=20, random_state=0, **TINY)
    with pytest.raises(ValueError, match="is not empty; pass an empty or new folder"):
        make_synthetic_cohort(tmp_path, n_subjects=20, random_state=0, **TINY)
    (tmp_path / "notes.txt").write_text("mine")
    data = make_synthetic_cohort(tmp_path, n_subjects=24, random_state=1, overwrite=True, **TINY)
    assert len(data.cohort) == 24 and (tmp_path / "notes.txt").read_text() == "mine"
    assert len(list((tmp_path / "ct").rglob("*.nii.gz"))) == 24


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"balance": 1.5}, InvalidParameterError, "'balance' parameter .* range \\[0.0, 1.0\\]"),
        ({"censoring": -0.1}, InvalidParameterError, "'censoring' parameter"),
        ({"ct_variation": -1.0}, InvalidParameterError, "'ct_variation' parameter"),
        ({"n_subjects": 2}, InvalidParameterError, "'n_subjects' parameter"),
        ({"volume_shape": (16, 16)}, ValueError, "volume_shape must be 3 integers >= 4"),
        ({"spacing": (1.0, 0.0, 2.0)}, ValueError, "spacing must be 3 positive numbers"),
        (
            {"n_subjects": 4, "test_fraction": 0.5},
            ValueError,
            "leaves 1 internal training and 2 internal test",
        ),
    ],
)
def test_bad_arguments(tmp_path, kwargs, error, match):
    kwargs = {"n_subjects": 20, **TINY, **kwargs}
    with pytest.raises(error, match=match):
        make_synthetic_cohort(tmp_path / "new", **kwargs)
    assert not (tmp_path / "new").exists()  # nothing written on bad arguments
