"""A user's cohort folder, built by hand (not with the generator): loading and errors."""

import re

import nibabel as nib
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from multimodal_surv.datasets import load_cohort_folder


def _write_folder(root, *, table=None, fmt="csv"):
    """Six predictions, two with CT volumes (one in a sub-folder, one absolute), one MEDS shard."""
    (root / "images").mkdir(parents=True)
    volume = np.full((8, 8, 6), -1000, dtype=np.int16)
    volume[2:6, 2:6, 1:5] = 40
    for name in ("a.nii.gz", "b.nii.gz"):
        nib.save(nib.Nifti1Image(volume, np.diag([0.9, 0.9, 2.5, 1.0])), root / "images" / name)
    if table is None:
        table = pd.DataFrame(
            {
                "subject_id": [1, 2, 3, 4, 5, 5],
                "prediction_time": [
                    "2018-01-05T10:00:00",
                    "2019-03-01",
                    "2017-07-07T08:30:00",
                    "2020-02-02T12:00:00",
                    "2016-05-05",
                    "2018-05-05",
                ],
                "ct": ["images/a.nii.gz", str(root / "images" / "b.nii.gz"), "", "", "", ""],
                "event": [1, 0, 1, 0, 0, 1],
                "time": [120.5, 800.0, 30.0, 365.25, 50.0, 10.0],
                "site": ["internal", "internal", "internal", "external", "internal", "external"],
                "split": ["train", "train", "test", "test", "test", "test"],
                "age": [61, 70, 55, 80, 47, 49],
            }
        )
    if fmt == "csv":
        table.to_csv(root / "cohort.csv", index=False)
    else:
        table.to_parquet(root / "cohort.parquet", index=False)
    (root / "meds" / "data").mkdir(parents=True)
    events = pa.table(
        {
            "subject_id": pa.array([1, 1, 2, 3, 4, 5], pa.int64()),
            "time": pa.array(
                pd.to_datetime(
                    [
                        "1957-01-01",
                        "2017-12-01",
                        "2018-06-01",
                        "2017-01-01",
                        "2019-01-01",
                        "2015-01-01",
                    ]
                ).to_numpy("datetime64[us]"),
                pa.timestamp("us"),
            ),
            "code": [
                "MEDS_BIRTH",
                "ICD10CM/I10",
                "LOINC/2160-0",
                "ICD10CM/E11.9",
                "Visit/OP",
                "Visit/OP",
            ],
            "numeric_value": pa.array([None, None, 1.1, None, None, None], pa.float32()),
        }
    )
    pq.write_table(events, root / "meds" / "data" / "0.parquet")
    return table


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "cohort"
    table = _write_folder(root)
    return root, table


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_hand_built_folder_loads(tmp_path, fmt):
    root = tmp_path / "cohort"
    _write_folder(root, fmt=fmt)
    data = load_cohort_folder(root)
    table = data.cohort
    assert table.columns.tolist() == [
        "subject_id",
        "prediction_time",
        "ct",
        "event",
        "time",
        "site",
        "split",
        "age",
    ]
    assert table["subject_id"].dtype == np.int64
    assert table["prediction_time"].dtype == "datetime64[ns]"
    assert table["prediction_time"][0] == pd.Timestamp("2018-01-05 10:00")
    assert table["prediction_time"][1] == pd.Timestamp("2019-03-01")
    assert table["ct"][0] == str((root / "images" / "a.nii.gz").resolve())
    assert table["ct"][1] == str(root / "images" / "b.nii.gz")
    assert table["ct"][2:].isna().all()
    assert table["event"].dtype == bool and table["event"].tolist() == [1, 0, 1, 0, 0, 1]
    np.testing.assert_array_equal(data.y["time"], [120.5, 800.0, 30.0, 365.25, 50.0, 10.0])
    assert data.y.dtype.names == ("event", "time") and data.y["event"].dtype == bool
    assert data.oracle is None and data.oracle_parts is None
    assert data.meds_root == (root / "meds").resolve()
    assert data.cohort_file.name == f"cohort.{fmt}"


def test_site_is_optional_and_defaults_to_internal(tmp_path):
    root = tmp_path / "c"
    table = _write_folder(tmp_path / "tmp")
    _write_folder(root, table=table.drop(columns="site").assign(split="train"))
    assert (load_cohort_folder(root).cohort["site"] == "internal").all()


def test_bool_event_and_oracle_file(folder):
    root, table = folder
    table.assign(event=table["event"].astype(bool)).to_csv(root / "cohort.csv", index=False)
    oracle = table[["subject_id", "prediction_time"]].assign(log_hazard=np.arange(6.0))
    oracle.iloc[::-1].to_csv(root / "oracle.csv", index=False)  # any row order
    data = load_cohort_folder(root)
    assert data.cohort["event"].tolist() == [True, False, True, False, False, True]
    np.testing.assert_array_equal(data.oracle, np.arange(6.0))


def _rewrite(root, table):
    table.to_csv(root / "cohort.csv", index=False)


def _case(name, table):
    """Malformed variants of the hand-built table, each with the expected error text."""
    t = table.copy()
    if name == "missing_column":
        return t.rename(columns={"prediction_time": "predicton_time"}), (
            "cohort.csv: required column 'prediction_time' is missing .*"
            "Did you mean 'predicton_time'"
        )
    if name == "bad_datetime":
        t.loc[2, "prediction_time"] = "2017-13-45"
        return (
            t,
            "cohort.csv: column 'prediction_time' has 1 values that are not ISO datetimes "
            "\\(first: '2017-13-45'\\)",
        )
    if name == "zero_time":
        t.loc[1, "time"] = 0.0
        return t, "cohort.csv: column 'time' must be > 0 .* \\(first: 0.0\\)"
    if name == "nan_time":
        t["time"] = t["time"].astype(object)
        t.loc[1, "time"] = "soon"
        return t, "cohort.csv: column 'time' must hold finite numbers .*first: 'soon'"
    if name == "event_not_binary":
        t.loc[0, "event"] = 2
        return t, "cohort.csv: column 'event' must be binary \\(0/1 or true/false\\); 1 rows"
    if name == "duplicate":
        t.loc[5, "prediction_time"] = t.loc[4, "prediction_time"]
        return (
            t,
            "cohort.csv: 2 rows repeat a \\(subject_id, prediction_time\\) pair "
            "\\(first: subject_id=5, prediction_time=2016-05-05",
        )
    if name == "ct_missing_file":
        t.loc[3, "ct"] = "images/c.nii.gz"
        return (
            t,
            "cohort.csv: column 'ct' has 1 paths that do not exist \\(first: 'images/c.nii.gz'\\)",
        )
    if name == "unknown_site":
        t.loc[3, "site"] = "extrenal"
        return (
            t,
            "cohort.csv: column 'site' may only hold \\['internal', 'external'\\]; "
            "1 rows hold other values \\(first: 'extrenal'\\). Did you mean 'external'\\?",
        )
    if name == "unknown_split":
        t.loc[0, "split"] = "Train"
        return t, "column 'split' may only hold \\['train', 'test'\\].*Did you mean 'train'"
    if name == "external_train":
        t.loc[3, "split"] = "train"
        return t, "1 rows have site 'external' and split 'train' \\(first subject_id: 4\\)"
    if name == "bad_subject_id":
        t["subject_id"] = t["subject_id"].astype(object)
        t.loc[0, "subject_id"] = "P-001"
        return t, r"must hold integers, got 1 non-integer value\(s\) \(first: 'P-001'\)"
    if name == "empty":
        return t.iloc[:0], "cohort.csv: the cohort table has no rows"
    if name == "timezone":
        t["prediction_time"] = "2018-01-05T10:00:00+01:00"
        return t, "time-zone aware datetimes"
    raise AssertionError(name)


CASES = [
    "missing_column",
    "bad_datetime",
    "zero_time",
    "nan_time",
    "event_not_binary",
    "duplicate",
    "ct_missing_file",
    "unknown_site",
    "unknown_split",
    "external_train",
    "bad_subject_id",
    "empty",
    "timezone",
]


@pytest.mark.parametrize("name", CASES)
def test_malformed_cohort_table(folder, name):
    root, table = folder
    bad, match = _case(name, table)
    _rewrite(root, bad)
    with pytest.raises(TypeError if name == "bad_subject_id" else ValueError, match=match):
        load_cohort_folder(root)


def test_error_names_the_file(folder):
    root, table = folder
    _rewrite(root, table.drop(columns="event"))
    with pytest.raises(ValueError, match=re.escape(str((root / "cohort.csv").resolve()))):
        load_cohort_folder(root)


def test_missing_cohort_table(folder):
    root, _ = folder
    (root / "cohort.csv").rename(root / "cohort.cvs")
    with pytest.raises(ValueError, match="cohort table not found .*Did you mean 'cohort.cvs'"):
        load_cohort_folder(root)


def test_two_cohort_tables(folder):
    root, table = folder
    table.to_parquet(root / "cohort.parquet")
    with pytest.raises(ValueError, match="holds both cohort.csv and cohort.parquet"):
        load_cohort_folder(root)


def test_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="cohort folder .*nowhere does not exist"):
        load_cohort_folder(tmp_path / "nowhere")


def test_missing_meds_root(folder):
    root, _ = folder
    (root / "meds" / "data" / "0.parquet").unlink()
    with pytest.raises(ValueError, match="meds/data: no parquet shards found"):
        load_cohort_folder(root)
    (root / "meds" / "data").rmdir()
    (root / "meds").rmdir()
    with pytest.raises(ValueError, match="meds: the MEDS root folder is missing"):
        load_cohort_folder(root)


def test_meds_shard_missing_column(folder):
    root, _ = folder
    shard = root / "meds" / "data" / "0.parquet"
    table = pq.read_table(shard).rename_columns(["subject_id", "time", "codes", "numeric_value"])
    pq.write_table(table, shard)
    with pytest.raises(
        ValueError, match="0.parquet: MEDS column 'code' is missing .*Did you mean 'codes'"
    ):
        load_cohort_folder(root)


def test_oracle_file_must_cover_every_row(folder):
    root, table = folder
    table[["subject_id", "prediction_time"]].iloc[:3].assign(log_hazard=1.0).to_csv(
        root / "oracle.csv", index=False
    )
    with pytest.raises(ValueError, match="oracle.csv: has no log_hazard for 3 cohort rows"):
        load_cohort_folder(root)
