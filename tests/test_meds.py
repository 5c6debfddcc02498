"""MEDS IO: reading DataFrames and parquet folders, validation errors, cohorts."""

import copy
import pickle

import numpy as np
import pandas as pd
import pytest

from multimodal_surv.datasets import MEDS_COLUMNS, MEDSEvents, read_meds, validate_cohort
from multimodal_surv.datasets._events import EventArrays


def _events(n=50, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "subject_id": rng.integers(0, 5, n),
            "time": pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 900, n), "D"),
            "code": rng.choice(["DX/A", "DX/B", "LAB/C"], n),
            "numeric_value": np.where(rng.random(n) < 0.5, rng.normal(size=n), np.nan),
        }
    )


def _write_root(tmp_path, frame, n_shards=3):
    data = tmp_path / "meds" / "data"
    data.mkdir(parents=True)
    for k, part in enumerate(np.array_split(np.arange(len(frame)), n_shards)):
        frame.iloc[part].to_parquet(data / f"{k}.parquet", index=False)
    return tmp_path / "meds"


def test_read_folder_equals_frame(tmp_path):
    ev = _events()
    root = _write_root(tmp_path, ev)
    a = read_meds(root)
    b = read_meds(ev)
    assert list(a.columns) == list(MEDS_COLUMNS)
    assert a["time"].dtype == np.dtype("datetime64[ns]")
    pd.testing.assert_frame_equal(
        a.reset_index(drop=True).astype({"code": str}),
        b.reset_index(drop=True).astype({"code": str}),
    )


def test_read_folder_subjects_and_extra_columns(tmp_path):
    ev = _events().assign(text_value="x")
    root = _write_root(tmp_path, ev)
    got = read_meds(root, columns=["text_value"], subjects=[1, 3])
    want = ev[ev.subject_id.isin([1, 3])]
    assert len(got) == len(want) > 0
    assert set(got.subject_id) == {1, 3}
    assert (got.text_value == "x").all()
    assert len(read_meds(root, subjects=[99])) == 0


def test_string_times_parsed():
    ev = _events().assign(time=lambda d: d.time.dt.strftime("%Y-%m-%dT%H:%M:%S"))
    assert read_meds(ev)["time"].dtype == np.dtype("datetime64[ns]")


@pytest.mark.parametrize(
    ("mutate", "exc", "match"),
    [
        (lambda d: d.drop(columns="code"), ValueError, r"missing required column\(s\) \['code'\]"),
        (
            lambda d: d.rename(columns={"numeric_value": "numeric_val"}),
            ValueError,
            "did you mean 'numeric_val'",
        ),
        (
            lambda d: d.assign(time=["not a date"] + list(d.time.astype(str)[1:])),
            ValueError,
            r"1 value\(s\) that cannot be parsed as datetimes \(first: 'not a date'\)",
        ),
        (
            lambda d: d.assign(numeric_value=["high"] + [None] * (len(d) - 1)),
            TypeError,
            r"'numeric_value' must be numeric .*first non-numeric value: 'high'",
        ),
        (lambda d: d.iloc[:0], ValueError, r"events table is empty \(0 rows\)"),
        (
            lambda d: d.assign(subject_id=d.subject_id.astype(float)),
            TypeError,
            "'subject_id' must hold integers, got dtype float64",
        ),
        (
            lambda d: d.assign(time=d.time.dt.tz_localize("UTC")),
            TypeError,
            "timezone-aware",
        ),
        (lambda d: d.assign(time=np.arange(len(d))), TypeError, r"is numeric .*unit='s'"),
    ],
)
def test_bad_events(mutate, exc, match):
    with pytest.raises(exc, match=match):
        read_meds(mutate(_events()))


def test_bad_folders(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        read_meds(tmp_path / "nope")
    (tmp_path / "a").mkdir()
    with pytest.raises(ValueError, match="has no 'data/' sub-folder"):
        read_meds(tmp_path / "a")
    (tmp_path / "a" / "data").mkdir()
    with pytest.raises(ValueError, match="holds no parquet shards"):
        read_meds(tmp_path / "a")
    root = _write_root(tmp_path / "b", _events().drop(columns="numeric_value"), 1)
    with pytest.raises(ValueError, match=r"missing required column\(s\) \['numeric_value'\]"):
        read_meds(root)
    with pytest.raises(TypeError, match="got int"):
        read_meds(3)


def test_validate_cohort():
    ok = validate_cohort(
        pd.DataFrame({"subject_id": [1, 2], "prediction_time": ["2020-01-01", "2020-01-02"]})
    )
    assert ok["prediction_time"].dtype == np.dtype("datetime64[ns]")
    dup = pd.DataFrame({"subject_id": [1, 1], "prediction_time": ["2020-01-01"] * 2})
    with pytest.raises(ValueError, match=r"1 duplicated \(subject_id, prediction_time\) row"):
        validate_cohort(dup)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['prediction_time'\]"):
        validate_cohort(pd.DataFrame({"subject_id": [1], "pred_time": ["2020"]}))
    with pytest.raises(ValueError, match="cannot be parsed"):
        validate_cohort(pd.DataFrame({"subject_id": [1], "prediction_time": ["soon"]}))
    with pytest.raises(ValueError, match=r"1 missing value\(s\)"):
        validate_cohort(pd.DataFrame({"subject_id": [1], "prediction_time": [pd.NaT]}))
    with pytest.raises(TypeError, match="must be a pandas DataFrame"):
        validate_cohort(np.zeros((2, 2)))


def test_handle_is_shared_not_copied():
    ev = MEDSEvents(_events())
    assert copy.deepcopy(ev) is ev and copy.copy(ev) is ev
    arrays = ev.arrays()
    assert ev.arrays() is arrays  # cached
    back = pickle.loads(pickle.dumps(ev))
    pd.testing.assert_frame_equal(back.source, ev.source)


def test_event_arrays_sorted_and_locate():
    ev = _events(200)
    arr = EventArrays.from_frame(read_meds(ev))
    order = np.lexsort((arr.time, np.repeat(arr.subjects, np.diff(arr.starts))))
    np.testing.assert_array_equal(order, np.arange(arr.n_events))
    assert np.all(np.diff(arr.key) >= 0)
    # locate == count of the subject's events with time <= t, checked by brute force.
    rng = np.random.default_rng(1)
    sid = rng.integers(0, 7, 100)
    t = (pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(-10, 950, 100), "D")).to_numpy()
    k, pos = arr.locate(sid, t.view(np.int64))
    for i in range(100):
        mask = (ev.subject_id == sid[i]) & (ev.time <= t[i])
        if (ev.subject_id == sid[i]).any():
            first = arr.starts[k[i]]
            assert pos[i] - first == mask.sum()
        else:
            assert k[i] == -1
