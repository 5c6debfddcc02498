"""Real EHR extracts and cohort folders as they come: invalid events, string ids, shared
subjects, a user's folder under --out, one-line CLI errors."""

import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from multimodal_surv import cli
from multimodal_surv.datasets import load_cohort_folder, read_meds, validate_cohort
from multimodal_surv.encoders import EHRCountEncoder, EHRTransformerEncoder
from multimodal_surv.exceptions import CTReadError

T = pd.Timestamp


def clean_events(n_subjects=30, seed=11):
    """Births, deaths, labs with values, visits sharing a time, a static event."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(1, n_subjects + 1):
        birth = T("1950-01-01") + pd.Timedelta(days=int(rng.integers(0, 9000)))
        rows.append((s, birth, "MEDS_BIRTH", np.nan))
        rows.append((s, pd.NaT, "GENDER/F" if s % 2 else "GENDER/M", np.nan))  # static
        visit = T("2015-01-01")
        for _ in range(int(rng.integers(3, 12))):
            visit = visit + pd.Timedelta(days=int(rng.integers(5, 200)))
            rows.append((s, visit, "Visit/OP", np.nan))
            rows.append((s, visit, f"ICD10/I{int(rng.integers(10, 30))}", np.nan))
            rows.append((s, visit, "LOINC/2160-0", round(float(rng.normal(1, 0.2)), 2)))
            rows.append((s, visit, "LOINC/2160-0", round(float(rng.normal(1, 0.2)), 2) + 5))
        if s % 4 == 0:
            rows.append((s, visit + pd.Timedelta(days=30), "MEDS_DEATH", np.nan))
    return pd.DataFrame(rows, columns=["subject_id", "time", "code", "numeric_value"])


def dirty_events(clean):
    """``clean`` plus 3 events before birth, 2 after death, 4 duplicates, 3 null/empty codes."""
    birth = clean[clean.code == "MEDS_BIRTH"].set_index("subject_id").time
    death = clean[clean.code == "MEDS_DEATH"].set_index("subject_id").time
    extra = [
        (1, birth[1] - pd.Timedelta(days=400), "RxNorm/123", np.nan),
        (2, birth[2] - pd.Timedelta(days=1), "ICD10/I11", np.nan),
        (3, T("1900-01-01"), "LOINC/2160-0", 0.9),
        (4, death[4] + pd.Timedelta(days=1), "Visit/OP", np.nan),
        (8, death[8] + pd.Timedelta(days=365), "ICD10/I12", np.nan),
        (5, None, None, np.nan),
        (6, T("2016-01-01"), "", np.nan),
        (7, T("2016-01-01"), "  ", 1.0),
    ]
    dup = clean[clean.code.str.startswith("LOINC")].iloc[[0, 5, 9, 20]]
    extra = pd.concat([pd.DataFrame(extra, columns=clean.columns), dup])
    # scattered through the table; the clean rows keep their order (ties keep table order)
    rng = np.random.default_rng(1)
    pos = np.concatenate([np.arange(len(clean)), rng.uniform(0, len(clean), len(extra))])
    frame = pd.concat([clean, extra]).iloc[np.argsort(pos, kind="stable")]
    return frame.reset_index(drop=True)


EXPECTED = {"null_code": 3, "before_birth": 3, "after_death": 2, "duplicate": 4}
COHORT = pd.DataFrame({"subject_id": np.arange(1, 31), "prediction_time": T("2020-06-01")})


def write_meds(root, events, n_shards=2):
    (root / "data").mkdir(parents=True)
    events = events.sort_values("subject_id", kind="stable")
    for k, part in enumerate(np.array_split(np.arange(len(events)), n_shards)):
        events.iloc[part].to_parquet(root / "data" / f"{k}.parquet", index=False)
    return root


def fit_transform_recording(enc, cohort):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        out = enc.fit(cohort).transform(cohort)
    return out, [w for w in record if "invalid event" in str(w.message)]


@pytest.mark.parametrize("source", ["frame", "folder"])
@pytest.mark.parametrize("kind", ["counts", "transformer"])
def test_invalid_events_dropped_counted_once_same_embedding(tmp_path, source, kind):
    clean = clean_events()
    dirty = dirty_events(clean)
    if source == "folder":
        clean = str(write_meds(tmp_path / "clean", clean))
        dirty = str(write_meds(tmp_path / "dirty", dirty, n_shards=3))
    if kind == "counts":
        make = EHRCountEncoder
    else:

        def make(events):
            return EHRTransformerEncoder(
                events, hidden_size=8, n_heads=2, n_layers=1, pretrain_epochs=1, random_state=3
            )

    want, none = fit_transform_recording(make(clean), COHORT)
    assert none == []
    enc = make(dirty)
    got, record = fit_transform_recording(enc, COHORT)
    assert enc.invalid_events_ == EXPECTED
    assert len(record) == 1  # one warning per fit, none again at transform
    message = str(record[0].message)
    assert "left out 12 invalid event(s)" in message and "3 dated before" in message
    assert "4 exact duplicate" in message and "on_invalid='raise'" in message
    assert record[0].filename == __file__  # attributed to the caller's line
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_on_invalid_raise_names_the_first_event_and_the_fix(tmp_path):
    dirty = dirty_events(clean_events())
    with pytest.raises(
        ValueError,
        match=r"events hold 12 invalid event\(s\) of the cohort's subjects: 3 null or empty "
        r"code .*3 dated before the subject's MEDS_BIRTH \(first: subject_id=1, code "
        r"'RxNorm/123' at .*set on_invalid='drop'",
    ):
        EHRCountEncoder(dirty, on_invalid="raise").fit(COHORT)
    root = write_meds(tmp_path / "m", dirty)
    with pytest.raises(ValueError, match=r"MEDS folder '.*m' hold 12 invalid event"):
        EHRTransformerEncoder(str(root), on_invalid="raise", pretrain_epochs=0).fit(COHORT)
    # only the cohort's subjects count: subjects 9.. have no invalid event
    later = COHORT[COHORT.subject_id > 8]
    assert EHRCountEncoder(dirty, on_invalid="raise").fit(later).invalid_events_ == dict.fromkeys(
        EXPECTED, 0
    )


def test_transform_reports_invalid_events_of_new_subjects():
    dirty = dirty_events(clean_events())
    enc = EHRCountEncoder(dirty).fit(COHORT[COHORT.subject_id > 8])
    with pytest.warns(UserWarning, match=r"transform: left out 12 invalid event\(s\) of subjects"):
        enc.transform(COHORT)


def test_nothing_else_is_dropped():
    """Same-time events, repeated codes with other values, static events all stay."""
    clean = clean_events()
    enc = EHRCountEncoder(clean, windows=["ever"], numeric=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        counts = enc.fit_transform(COHORT)
    assert enc.invalid_events_ == dict.fromkeys(EXPECTED, 0)
    assert counts.sum() == len(clean)  # every event counted once


def test_read_meds_keeps_null_codes_for_the_encoders():
    events = clean_events().head(5).assign(code=[None, "A", "B", "C", "D"])
    assert read_meds(events)["code"].isna().sum() == 1


# -- one behaviour for string subject ids ------------------------------------
STRING_IDS = r"column 'subject_id' must hold integers, got .*map each identifier to one integer"


def string_id_events():
    events = clean_events(5)
    return events.assign(subject_id="P" + events.subject_id.astype(str))


def test_string_ids_one_error_everywhere(tmp_path):
    events = string_id_events()
    with pytest.raises(TypeError, match="events " + STRING_IDS):
        read_meds(events)
    root = write_meds(tmp_path / "meds", events)
    with pytest.raises(TypeError, match="MEDS folder .*meds' " + STRING_IDS):
        read_meds(root)
    cohort = pd.DataFrame({"subject_id": [1, 2], "prediction_time": T("2020-01-01")})
    for enc in (EHRCountEncoder(str(root)), EHRTransformerEncoder(str(root))):
        with pytest.raises(TypeError, match=STRING_IDS):  # streamed path, not ArrowTypeError
            enc.fit(cohort)
    with pytest.raises(TypeError, match="cohort " + STRING_IDS):
        validate_cohort(cohort.assign(subject_id=["P1", "P2"]))


def user_cohort(root, events=None, split=("train", "train", "test", "test")):
    """A cohort folder without CT: 4 rows of subjects 1..4."""
    root.mkdir(parents=True)
    pd.DataFrame(
        {
            "subject_id": [1, 2, 3, 4],
            "prediction_time": ["2020-06-01"] * 4,
            "ct": [""] * 4,
            "event": [1, 0, 1, 0],
            "time": [100.0, 200.0, 50.0, 300.0],
            "split": list(split),
        }
    ).to_csv(root / "cohort.csv", index=False)
    write_meds(root / "meds", clean_events(4) if events is None else events)
    return root


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["benchmark", *args, "--no-progress"])
    err = capsys.readouterr().err.strip()
    return exc.value.code, err


def test_string_ids_cohort_folder_and_cli(tmp_path, capsys, monkeypatch):
    root = user_cohort(tmp_path / "c", events=string_id_events())
    with pytest.raises(TypeError, match=r"0\.parquet: " + STRING_IDS):
        load_cohort_folder(root)
    table = pd.read_csv(root / "cohort.csv").assign(subject_id=["P1", "P2", "P3", "P4"])
    table.to_csv(root / "cohort.csv", index=False)
    with pytest.raises(TypeError, match=r"cohort\.csv: " + STRING_IDS):
        load_cohort_folder(root)

    def no_work(*args, **kwargs):
        raise AssertionError("the benchmark started before the cohort was validated")

    monkeypatch.setattr("multimodal_surv.benchmark.run_benchmark", no_work)
    code, err = run_cli(["--cohort", str(root), "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and len(err.splitlines()) == 1
    assert "cohort.csv" in err and "must hold integers" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing written


# -- subjects, not rows ----------------------------------------------------------
def test_subject_in_two_splits(tmp_path):
    root = user_cohort(tmp_path / "c")
    table = pd.read_csv(root / "cohort.csv")
    again = table.iloc[[0, 1]].assign(prediction_time="2021-01-01", split="test")
    pd.concat([table, again]).to_csv(root / "cohort.csv", index=False)
    with pytest.raises(
        ValueError,
        match=r"cohort\.csv: 2 subject\(s\) have rows in both the train and the test split "
        r"\(first: 1, 2\).*allow_subject_overlap=True",
    ):
        load_cohort_folder(root)
    with pytest.warns(UserWarning, match=r"2 subject\(s\) have rows in both"):
        data = load_cohort_folder(root, allow_subject_overlap=True)
    assert len(data.cohort) == 6


# -- the CLI never writes into a folder it did not make -------------------------------
def test_cli_refuses_a_users_folder(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "cohort.csv").write_text("precious")
    code, err = run_cli(["--out", str(mine), "--n-subjects", "12", "--quick"], capsys)
    assert code == 2 and len(err.splitlines()) == 1
    assert str(mine) in err and "not created by multimodal-surv" in err
    assert (mine / "cohort.csv").read_text() == "precious"
    assert sorted(p.name for p in mine.iterdir()) == ["cohort.csv"]


def test_cli_synthetic_cohort_only_in_its_own_folder(tmp_path, capsys):
    args = SimpleNamespace(n_subjects=12, quick=True, random_state=0, no_progress=True, n_jobs=None)
    out = tmp_path / "out"
    first = cli._synthetic_cohort(args, out, 0.5)
    assert (out / "cohort" / cli.MARKER).is_file()
    (out / "cohort" / "notes.txt").write_text("mine")
    again = cli._synthetic_cohort(args, out, 0.5)  # its own folder: replaced
    assert again.cohort.equals(first.cohort)
    assert (out / "cohort" / "notes.txt").read_text() == "mine"  # not its file: kept
    (out / "cohort" / cli.MARKER).unlink()
    with pytest.raises(ValueError, match=r"synthetic cohort folder '.*cohort' is not empty"):
        cli._synthetic_cohort(args, out, 0.5)
    assert (out / "cohort" / "cohort.csv").is_file()


@pytest.mark.parametrize(
    "error",
    [
        ValueError("bad value\nsecond line"),
        TypeError("bad type"),
        OSError("disk full"),
        CTReadError("unreadable scan"),
        pa.lib.ArrowInvalid("corrupt shard"),
        pa.lib.ArrowTypeError("string ids"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_cli_errors_are_one_line_and_exit_2(tmp_path, capsys, monkeypatch, error):
    root = user_cohort(tmp_path / "c")

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr("multimodal_surv.benchmark.run_benchmark", fail)
    code, err = run_cli(["--cohort", str(root), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("multimodal-surv: error: ") and str(error).split("\n")[0] in err
    with pytest.raises(type(error)):
        cli.main(["benchmark", "--cohort", str(root), "--out", str(tmp_path / "o"), "--debug"])


# -- real vocabularies at speed: the same results, encoded once ---------------------------
def test_duplicate_detection_matches_pandas():
    """Hash-based exact-duplicate marking equals pandas' drop_duplicates (first kept)."""
    from multimodal_surv.datasets._event_quality import _duplicates

    rng = np.random.default_rng(5)
    n = 20_000
    sid = np.sort(rng.integers(0, 300, n))
    t = rng.integers(0, 40, n) * 10**9
    order = np.lexsort((t, sid))
    sid, t = sid[order], t[order]
    code = rng.integers(0, 6, n).astype(np.int32)
    val = np.where(rng.random(n) < 0.5, np.nan, rng.integers(0, 3, n).astype(float))
    want = pd.DataFrame({"s": sid, "t": t, "c": code, "v": val}).duplicated().to_numpy()
    got = _duplicates(sid, t, code, val, np.zeros(n, bool))
    assert want.sum() > 500
    np.testing.assert_array_equal(got, want)


def test_dataframe_encoded_once_and_refreshed_when_changed(monkeypatch):
    import multimodal_surv.datasets._events as events_module

    calls = []
    original = events_module.EventArrays.from_frame.__func__

    def counting(cls, frame):
        calls.append(len(frame))
        return original(cls, frame)

    monkeypatch.setattr(events_module.EventArrays, "from_frame", classmethod(counting))
    events = clean_events()
    enc = EHRCountEncoder(events, windows=["ever"]).fit(COHORT)
    first = enc.transform(COHORT)
    enc.transform(COHORT.iloc[:5])
    assert calls == [len(events)]  # built at fit, reused by both transforms
    events.loc[events.code == "Visit/OP", "code"] = "Visit/IP"  # changed in place
    changed = enc.transform(COHORT)
    assert len(calls) == 2 and not np.array_equal(changed, first)
