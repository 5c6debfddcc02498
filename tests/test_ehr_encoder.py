"""EHR encoders: counts vs a naive pandas reference, leakage, errors, sklearn composition."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.util import Surv

from multimodal_surv.datasets import MEDSEvents
from multimodal_surv.encoders import EHRCountEncoder, EHRTransformerEncoder
from multimodal_surv.encoders._ehr_transformer import unigram_perplexity

CODES = [f"C{j:02d}" for j in range(12)]
T0 = pd.Timestamp("2018-01-01")


def random_events(n_subjects=40, n_events=1500, seed=0, n_codes=12):
    rng = np.random.default_rng(seed)
    codes = np.array(CODES[:n_codes])
    frame = pd.DataFrame(
        {
            "subject_id": rng.integers(0, n_subjects, n_events),
            # coarse times so that ties (same timestamp) are frequent
            "time": T0 + pd.to_timedelta(rng.integers(0, 200, n_events) * 5, "D"),
            "code": codes[rng.zipf(1.6, n_events) % n_codes],
            "numeric_value": np.nan,
        }
    )
    lab = frame.code.isin(["C01", "C03"])
    frame.loc[lab, "numeric_value"] = np.round(rng.normal(size=int(lab.sum())), 3)
    # a few lab events without a value
    frame.loc[lab & (rng.random(n_events) < 0.2), "numeric_value"] = np.nan
    # no exact duplicates: the encoders leave them out (tested in test_real_exports_ehr)
    return frame.drop_duplicates(ignore_index=True)


def random_cohort(n_subjects=40, seed=1, extra_subjects=3):
    rng = np.random.default_rng(seed)
    sid = np.arange(n_subjects + extra_subjects)  # some subjects have no events at all
    pt = T0 + pd.to_timedelta(rng.integers(-20, 210, sid.size) * 5, "D")
    return pd.DataFrame({"subject_id": sid, "prediction_time": pt})


def naive_counts(events, fit_cohort, cohort, windows, min_count=1, max_features=None):
    """Reference: merge + boolean filters + pandas group-by (no shared code).

    Exact duplicate events are left out (the first kept), as the encoders do.
    """
    ev = events.drop_duplicates(keep="first")
    ev = ev.reset_index(drop=True).rename_axis("order").reset_index()
    # vocabulary: events of fit subjects up to their latest prediction time
    last_pt = fit_cohort.groupby("subject_id").prediction_time.max().rename("pt").reset_index()
    fit_ev = ev.merge(last_pt, on="subject_id")
    fit_ev = fit_ev[fit_ev.time <= fit_ev.pt]
    freq = fit_ev.code.value_counts()
    freq = freq[freq >= min_count]
    if max_features is not None:
        freq = freq.sort_index().sort_values(ascending=False, kind="stable")[:max_features]
    vocab = sorted(freq.index)
    numeric_codes = sorted(
        set(fit_ev.loc[fit_ev.numeric_value.notna(), "code"]).intersection(vocab)
    )
    fill = fit_ev[fit_ev.numeric_value.notna()].groupby("code").numeric_value.mean()

    c = cohort.reset_index(drop=True).rename_axis("row").reset_index()
    m = len(c)
    merged = c.merge(ev, on="subject_id")
    merged = merged[merged.time <= merged.prediction_time].sort_values(
        ["row", "time", "order"], kind="stable"
    )
    blocks = []
    for w in windows:
        sel = (
            merged
            if w == "ever"
            else merged[merged.time > merged.prediction_time - pd.Timedelta(w)]
        )
        tok = sel.code.where(sel.code.isin(vocab), "<unk>")
        tab = sel.assign(tok=tok).groupby(["row", "tok"]).size().unstack(fill_value=0)
        blocks.append(
            tab.reindex(index=range(m), columns=vocab + ["<unk>"], fill_value=0).to_numpy(float)
        )
    num = merged[merged.code.isin(numeric_codes) & merged.numeric_value.notna()]
    last = num.groupby(["row", "code"]).numeric_value.last().unstack()
    last = last.reindex(index=range(m), columns=numeric_codes)
    last = last.fillna(fill.reindex(numeric_codes)).to_numpy(float)
    out = np.hstack(blocks + [last])
    # rows without history: zero counts, numeric columns at the fill (no special case)
    return out, vocab, numeric_codes


def assert_counts_equal(got, want, n_counts):
    """Counts exactly; numeric columns to the last bits (the fill is a mean)."""
    np.testing.assert_array_equal(got[:, :n_counts], want[:, :n_counts])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


@pytest.mark.parametrize(
    ("windows", "min_count", "max_features"),
    [(["30D", "365D", "ever"], 1, None), (["90D", "ever"], 20, None), (["ever"], 1, 5)],
)
def test_counts_match_naive_pandas(windows, min_count, max_features):
    events = random_events()
    fit_cohort = random_cohort(seed=1)
    cohort = random_cohort(seed=2)
    enc = EHRCountEncoder(
        events=events, windows=windows, min_count=min_count, max_features=max_features
    ).fit(fit_cohort)
    want, vocab, numeric_codes = naive_counts(
        events, fit_cohort, cohort, windows, min_count, max_features
    )
    assert list(enc.vocabulary_) == vocab
    assert list(enc.numeric_codes_) == numeric_codes
    got = enc.transform(cohort)
    assert got.shape == want.shape
    assert_counts_equal(got, want, len(windows) * (len(vocab) + 1))
    # same through the sparse path and through a shared MEDSEvents handle
    sparse = clone(enc).set_params(sparse_output=True).fit(fit_cohort).transform(cohort)
    np.testing.assert_array_equal(sparse.toarray(), got)
    shared = clone(enc).set_params(events=MEDSEvents(events)).fit(fit_cohort).transform(cohort)
    np.testing.assert_array_equal(shared, got)


def test_transformer_streamed_from_folder_matches_in_memory(tmp_path, monkeypatch):
    """The transformer's transform reads a MEDS folder chunk by chunk of subjects too."""
    import multimodal_surv.datasets._events as meds

    events = random_events(n_subjects=60, n_events=3000, seed=3)
    events = events.sort_values("subject_id", kind="stable").reset_index(drop=True)
    root = _write_shards(tmp_path / "meds", events, 7)
    fit_cohort = random_cohort(n_subjects=60, seed=4)
    cohort = pd.concat([random_cohort(60, seed=5), random_cohort(60, seed=6)]).sample(
        frac=1.0, random_state=0
    )
    cohort = cohort.drop_duplicates(["subject_id", "prediction_time"])
    enc = EHRTransformerEncoder(
        events=events,
        hidden_size=16,
        n_layers=1,
        n_heads=2,
        pretrain_epochs=1,
        random_state=0,
    ).fit(fit_cohort)
    in_memory = enc.transform(cohort)
    counts = (enc.n_unknown_events_, enc.n_empty_)
    monkeypatch.setattr(meds, "CHUNK_EVENTS", 300)  # about 10 chunks
    assert len(meds.EventChunks(str(root), cohort.subject_id)) >= 8
    import multimodal_surv.encoders._ehr_transformer_encoder as ehr_module

    def no_whole_read(*args, **kwargs):
        raise AssertionError("transform read every event at once instead of by chunk")

    monkeypatch.setattr(ehr_module, "event_arrays", no_whole_read)
    streamed = enc.set_params(events=str(root)).transform(cohort)
    # Rows are batched with different neighbours: equal up to float32 rounding.
    np.testing.assert_allclose(streamed, in_memory, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.isnan(streamed), np.isnan(in_memory))
    assert (enc.n_unknown_events_, enc.n_empty_) == counts


def test_counts_read_from_meds_folder(tmp_path):
    events = random_events()
    (tmp_path / "data").mkdir()
    for k, part in enumerate(np.array_split(np.arange(len(events)), 4)):
        events.iloc[part].to_parquet(tmp_path / "data" / f"shard{k}.parquet", index=False)
    cohort = random_cohort()
    a = EHRCountEncoder(events=tmp_path).fit(cohort).transform(cohort)
    b = EHRCountEncoder(events=events).fit(cohort).transform(cohort)
    # shuffled shards: ties in time may be ordered differently, which changes
    # nothing for counts; the last numeric value at a tie could, so compare counts.
    n_counts = 3 * (12 + 1)
    np.testing.assert_array_equal(a[:, :n_counts], b[:, :n_counts])


def _write_shards(root, events, n_shards):
    (root / "data").mkdir(parents=True)
    for k, part in enumerate(np.array_split(np.arange(len(events)), n_shards)):
        events.iloc[part].to_parquet(root / "data" / f"{k:02d}.parquet", index=False)
    return root


@pytest.mark.parametrize("by_subject", [False, True])
def test_counts_streamed_from_folder_bit_identical(tmp_path, monkeypatch, by_subject):
    """A MEDS folder is read in chunks of subjects; results equal the in-memory path."""
    import multimodal_surv.datasets._events as meds

    events = random_events(n_subjects=60, n_events=3000, seed=3)
    if by_subject:  # MEDS layout: each shard holds whole subjects
        events = events.sort_values("subject_id", kind="stable").reset_index(drop=True)
    root = _write_shards(tmp_path / "meds", events, 7)
    fit_cohort = random_cohort(n_subjects=60, seed=4)
    # several prediction times per subject, rows not sorted by subject
    cohort = pd.concat([random_cohort(60, seed=5), random_cohort(60, seed=6)]).sample(
        frac=1.0, random_state=0
    )
    cohort = cohort.drop_duplicates(["subject_id", "prediction_time"])
    monkeypatch.setattr(meds, "CHUNK_EVENTS", 300)  # about 10 chunks
    chunks = meds.EventChunks(str(root), cohort.subject_id)
    assert len(chunks) >= 8
    assert sum(hi - lo for lo, hi in chunks.bounds) == cohort.subject_id.nunique()
    assert chunks.n_events == int(events.subject_id.isin(cohort.subject_id).sum())
    if by_subject:  # each chunk opens only the shards that hold its subjects
        assert max(len(f) for f in chunks.files) <= 2
    for params in [
        {},
        {"min_count": 5, "max_features": 6},
        {"sparse_output": True},
        {"tfidf": True, "n_components": 3},
        {"windows": ["90D", "ever"]},
    ]:
        a = EHRCountEncoder(events=str(root), **params).fit(fit_cohort)
        b = EHRCountEncoder(events=events, **params).fit(fit_cohort)
        np.testing.assert_array_equal(a.vocabulary_, b.vocabulary_)
        assert a.featurizer_.numeric_fill_.tobytes() == b.featurizer_.numeric_fill_.tobytes()
        assert a.n_empty_ == b.n_empty_
        ga, gb = a.transform(cohort), b.transform(cohort)
        if params.get("sparse_output"):
            ga, gb = ga.toarray(), gb.toarray()
        assert ga.tobytes() == gb.tobytes()
        assert (a.n_unknown_events_, a.n_empty_) == (b.n_unknown_events_, b.n_empty_)
    want, vocab, _ = naive_counts(events, fit_cohort, cohort, ["30D", "365D", "ever"])
    got = EHRCountEncoder(events=root).fit(fit_cohort).transform(cohort)
    n_counts = 3 * (len(vocab) + 1)
    np.testing.assert_array_equal(got[:, :n_counts], want[:, :n_counts])
    # last values are copied; the fill (a mean) may differ from pandas' in the last bit
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


def test_tfidf_and_svd():
    events = random_events()
    cohort = random_cohort()
    want, _, numeric = naive_counts(events, cohort, cohort, ["30D", "365D", "ever"])
    n_counts = want.shape[1] - len(numeric)
    enc = EHRCountEncoder(events=events, tfidf=True).fit(cohort)
    ref = TfidfTransformer().fit(want[:, :n_counts]).transform(want[:, :n_counts]).toarray()
    got = enc.transform(cohort)
    np.testing.assert_allclose(got[:, :n_counts], ref, rtol=1e-12, atol=1e-12)
    svd = EHRCountEncoder(events=events, tfidf=True, n_components=4).fit(cohort)
    z = svd.transform(cohort)
    assert z.shape == (len(cohort), 4 + len(numeric))
    np.testing.assert_allclose(z[:, :4], svd.svd_.transform(ref), rtol=1e-10, atol=1e-10)
    assert list(svd.get_feature_names_out()) == [f"x{j}" for j in range(4 + len(numeric))]


def _later_events(events, cohort, seed=5):
    """Events strictly after each subject's prediction time (plus unseen codes)."""
    rng = np.random.default_rng(seed)
    c = cohort.groupby("subject_id").prediction_time.max()
    rows = []
    for sid, pt in c.items():
        k = int(rng.integers(1, 6))
        rows.append(
            pd.DataFrame(
                {
                    "subject_id": sid,
                    "time": pt + pd.to_timedelta(rng.integers(1, 10_000, k), "s"),
                    "code": rng.choice(CODES + ["NEW/X"], k),
                    "numeric_value": rng.normal(size=k),
                }
            )
        )
    later = pd.concat(rows, ignore_index=True)
    # interleave the later events at random places; the original events keep their
    # relative order (ties in time are resolved by table order).
    pos = np.concatenate([np.arange(len(events)), rng.uniform(0, len(events), len(later))])
    both = pd.concat([events, later], ignore_index=True)
    return both.iloc[np.argsort(pos, kind="stable")].reset_index(drop=True)


def test_counts_no_leakage_and_event_at_prediction_time_used():
    events = random_events()
    cohort = random_cohort()
    enc = EHRCountEncoder(events=events).fit(cohort)
    more = _later_events(events, cohort)
    a = enc.transform(cohort)
    b = EHRCountEncoder(events=more).fit(cohort).transform(cohort)
    assert a.tobytes() == b.tobytes()
    # an event exactly at prediction_time counts in every window
    one = pd.DataFrame(
        {
            "subject_id": [0],
            "time": [pd.Timestamp("2021-01-01")],
            "code": ["C00"],
            "numeric_value": [np.nan],
        }
    )
    at = pd.DataFrame({"subject_id": [0], "prediction_time": [pd.Timestamp("2021-01-01")]})
    before = at.assign(prediction_time=at.prediction_time - pd.Timedelta("1us"))
    enc = EHRCountEncoder(events=one, windows=["30D", "ever"]).fit(at)
    np.testing.assert_array_equal(enc.transform(at), [[1.0, 0.0, 1.0, 0.0]])
    np.testing.assert_array_equal(enc.transform(before), [[0.0, 0.0, 0.0, 0.0]])
    assert enc.n_empty_ == 1


def test_empty_history_and_unknown_codes():
    events = random_events()
    cohort = random_cohort()  # subjects 40..42 have no events at all
    hist = cohort.merge(events, on="subject_id", how="left").query("time <= prediction_time")
    empty = ~cohort.subject_id.isin(hist.subject_id)
    n_empty = int(empty.sum())
    assert n_empty > 3
    enc = EHRCountEncoder(events=events, numeric=None).fit(cohort)
    z = enc.transform(cohort)
    # no history = zero counts, a valid encoding (not an error, not NaN)
    assert (z[empty.to_numpy()] == 0).all() and (z[~empty.to_numpy()] != 0).any(axis=1).all()
    assert enc.n_empty_ == n_empty and enc.n_errors_ == 0
    # unseen codes go to <unk> and are counted
    new = events.assign(code=events.code.where(events.index % 10 != 0, "NEW/CODE"))
    enc = EHRCountEncoder(events=events, windows=["ever"], numeric=None).fit(cohort)
    out = EHRCountEncoder.transform(enc.set_params(events=new), cohort)
    n_unknown = int(
        cohort.merge(new, on="subject_id")
        .query("time <= prediction_time")
        .code.eq("NEW/CODE")
        .sum()
    )
    assert enc.n_unknown_events_ == n_unknown > 0
    assert out[:, -1].sum() == n_unknown


@pytest.mark.parametrize(
    ("params", "cohort_fn", "exc", "match"),
    [
        ({"events": None}, None, ValueError, "EHRCountEncoder needs events"),
        ({"on_error": "zeros"}, None, ValueError, "'on_error' parameter of EHRCountEncoder"),
        ({"windows": ["30 days please"]}, None, ValueError, "window '30 days please' is not"),
        ({"windows": ["-5D"]}, None, ValueError, "must be a positive duration"),
        (
            {},
            lambda c: pd.concat([c, c.iloc[:1]]),
            ValueError,
            r"1 duplicated \(subject_id, prediction_time\)",
        ),
        ({}, lambda c: c.drop(columns="prediction_time"), ValueError, "missing column"),
        (
            {},
            lambda c: c.assign(prediction_time=["tomorrow"] * len(c)),
            ValueError,
            "cannot be parsed as datetimes",
        ),
        ({"n_components": 3, "sparse_output": True}, None, ValueError, "cannot be combined"),
        ({"n_components": 500}, None, ValueError, "n_components=500 is too large"),
    ],
)
def test_bad_inputs(params, cohort_fn, exc, match):
    params = {"events": random_events(), **params}
    cohort = random_cohort()
    if cohort_fn is not None:
        cohort = cohort_fn(cohort)
    with pytest.raises(exc, match=match):
        EHRCountEncoder(**params).fit(cohort)


def test_bad_events_tables():
    cohort = random_cohort()
    ev = random_events()
    with pytest.raises(ValueError, match=r"missing required column\(s\) \['time'\]"):
        EHRCountEncoder(events=ev.drop(columns="time")).fit(cohort)
    with pytest.raises(TypeError, match="'numeric_value' must be numeric"):
        EHRCountEncoder(events=ev.assign(numeric_value="1.0")).fit(cohort)
    with pytest.raises(ValueError, match="events table is empty"):
        EHRCountEncoder(events=ev.iloc[:0]).fit(cohort)
    with pytest.raises(ValueError, match="cannot be parsed as datetimes"):
        EHRCountEncoder(events=ev.assign(time="31/31/2020")).fit(cohort)


def test_column_transformer_and_clone_shares_events():
    events = MEDSEvents(random_events())
    cohort = random_cohort().assign(ct="scan.nii.gz")
    enc = EHRCountEncoder(events=events, windows=["ever"])
    assert clone(enc).events is events  # handle shared, never copied
    ct = ColumnTransformer([("ehr", enc, ["subject_id", "prediction_time"])]).set_output(
        transform="pandas"
    )
    out = ct.fit_transform(cohort)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == [f"ehr__x{j}" for j in range(out.shape[1])]
    assert out.index.equals(cohort.index)
    np.testing.assert_array_equal(out.to_numpy(), clone(enc).fit(cohort).transform(cohort))


# -- transformer -----------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Tiny models run fastest single-threaded on a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def rule_corpus(n_subjects, seed, n_codes=30, n_events=40, p_rule=0.8, first_id=0):
    """Codes follow a temporal rule: next = (7 * previous + 3) mod n_codes w.p. p_rule."""
    rng = np.random.default_rng(seed)
    codes = np.empty((n_subjects, n_events), int)
    codes[:, 0] = rng.integers(0, n_codes, n_subjects)
    for j in range(1, n_events):
        follow = rng.random(n_subjects) < p_rule
        rand = rng.integers(0, n_codes, n_subjects)
        codes[:, j] = np.where(follow, (7 * codes[:, j - 1] + 3) % n_codes, rand)
    days = np.cumsum(rng.exponential(20, (n_subjects, n_events)).round().astype(int), axis=1)
    return pd.DataFrame(
        {
            "subject_id": np.repeat(np.arange(first_id, first_id + n_subjects), n_events),
            "time": T0 + pd.to_timedelta(days.ravel(), "D"),
            "code": [f"R/{c:02d}" for c in codes.ravel()],
            "numeric_value": np.nan,
        }
    )


def last_event_cohort(events):
    return events.groupby("subject_id").time.max().rename("prediction_time").reset_index()


@pytest.fixture(scope="module")
def pretrained():
    train = rule_corpus(200, 0)
    cohort = last_event_cohort(train)
    enc = EHRTransformerEncoder(events=train, random_state=0).fit(cohort)
    return enc, train, cohort


def test_transformer_perplexity_beats_unigram(pretrained):
    enc, train, _ = pretrained
    test = rule_corpus(100, 1, first_id=1000)
    ppl = enc.next_code_perplexity(test)

    def tok(ev):
        return np.searchsorted(enc.vocabulary_, ev.code.to_numpy()) + 3

    uni = unigram_perplexity(tok(train), tok(test), enc.vocabulary_.size + 3)
    assert uni > 25  # ~uniform over 30 codes
    assert ppl <= 0.7 * uni, (ppl, uni)
    assert enc.pretrain_loss_[-1] < enc.pretrain_loss_[0]


def test_transformer_save_load_round_trip(pretrained, tmp_path):
    enc, train, cohort = pretrained
    z = enc.transform(cohort)
    assert z.shape == (len(cohort), 64) and np.isfinite(z).all()
    enc.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "config.json",
        "model.safetensors",
        "vocabulary.json",
    ]
    loaded = EHRTransformerEncoder.from_pretrained(tmp_path / "m", events=train)
    assert loaded.transform(cohort).tobytes() == z.tobytes()
    refit = clone(loaded).fit(cohort)  # weights=folder: fit reloads, no pretraining
    assert refit.transform(cohort).tobytes() == z.tobytes()
    # last-k token output: the final token is the vector embedding
    tok = EHRTransformerEncoder.from_pretrained(tmp_path / "m", events=train, n_tokens=3)
    zt = tok.transform(cohort)
    assert list(tok.get_feature_names_out()[[0, 64, 191]]) == ["t0_0", "t1_0", "t2_63"]
    np.testing.assert_array_equal(zt[:, 128:], z)


def test_transformer_reproducible_and_no_leakage():
    events = rule_corpus(60, 3, n_events=20)
    rng = np.random.default_rng(0)
    cut = events.groupby("subject_id").time.apply(lambda s: s.iloc[rng.integers(5, 20)])
    cohort = cut.rename("prediction_time").reset_index()
    params = {"pretrain_epochs": 2, "random_state": 7}
    a = EHRTransformerEncoder(events=events, **params).fit(cohort).transform(cohort)
    b = EHRTransformerEncoder(events=events, **params).fit(cohort).transform(cohort)
    assert a.tobytes() == b.tobytes()
    c = (
        EHRTransformerEncoder(events=events, **{**params, "random_state": 8})
        .fit(cohort)
        .transform(cohort)
    )
    assert not np.allclose(a, c)
    # later events (and unseen codes) change neither pretraining nor embeddings
    more = _later_events(events, cohort)
    d = EHRTransformerEncoder(events=more, **params).fit(cohort).transform(cohort)
    assert d.tobytes() == a.tobytes()
    # an event exactly at the prediction time is used
    sid = int(cohort.subject_id[0])
    pt = cohort.prediction_time[0]
    at = pd.DataFrame({"subject_id": [sid], "time": [pt], "code": ["R/05"], "numeric_value": [1.0]})
    enc = EHRTransformerEncoder(events=events, **params).fit(cohort)
    with_at = enc.set_params(events=pd.concat([events, at])).transform(cohort)
    assert not np.array_equal(with_at[0], a[0])
    np.testing.assert_array_equal(with_at[1:], a[1:])


def test_transformer_empty_history_and_column_transformer(pretrained):
    enc, train, cohort = pretrained
    early = cohort.assign(prediction_time=T0 - pd.Timedelta("1D"))
    both = pd.concat([cohort.iloc[:3], early.iloc[3:5]], ignore_index=True)
    z = enc.transform(both)
    # no history: the model's <bos> state, the same finite vector for every such row
    assert np.isfinite(z).all() and enc.n_empty_ == 2
    np.testing.assert_array_equal(z[3], z[4])
    assert not np.allclose(z[3], 0) and not np.allclose(z[3], z[0])
    ct = ColumnTransformer(
        [("ehr", clone(enc).set_params(pretrain_epochs=1), ["subject_id", "prediction_time"])]
    ).set_output(transform="pandas")
    out = ct.fit_transform(cohort.assign(ct="x.nii.gz"))
    assert list(out.columns[:2]) == ["ehr__x0", "ehr__x1"] and out.shape == (len(cohort), 64)


def test_transformer_bad_weights(pretrained, tmp_path):
    enc, train, cohort = pretrained
    fit = EHRTransformerEncoder(events=train, weights=tmp_path / "none")
    with pytest.raises(ValueError, match="weights folder .*none' does not exist"):
        fit.fit(cohort)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"has no config.json \(found: \[\]\)"):
        fit.set_params(weights=tmp_path / "empty").fit(cohort)
    femr = tmp_path / "clmbr"
    femr.mkdir()
    # the layout of CLMBR-T-base: FEMRModelConfig json + weights + msgpack tokenizer
    (femr / "config.json").write_text(
        '{"transformer_config": {"vocab_size": 65536, "hidden_size": 768, "n_layers": 12, '
        '"attention_width": 496}, "task_config": null}'
    )
    (femr / "dictionary.msgpack").write_bytes(b"\x80")
    with pytest.raises(
        ValueError, match="does not hold a compatible model: it is a FEMR checkpoint"
    ):
        fit.set_params(weights=femr).fit(cohort)
    other = tmp_path / "llama"
    other.mkdir()
    (other / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(ValueError, match="format=None \\(model_type='llama'\\), not"):
        fit.set_params(weights=other).fit(cohort)
    # right format, weights of another size
    enc.save_pretrained(tmp_path / "m")
    small = EHRTransformerEncoder(events=train, hidden_size=32, pretrain_epochs=1)
    small.fit(cohort).save_pretrained(tmp_path / "s")
    (tmp_path / "m" / "model.safetensors").write_bytes(
        (tmp_path / "s" / "model.safetensors").read_bytes()
    )
    with pytest.raises(ValueError, match=r"do not match config.json: .*shape mismatches \['"):
        fit.set_params(weights=tmp_path / "m").fit(cohort)


def test_transformer_beats_ever_counts_on_recency_outcome():
    """Acceptance 6: risk depends on the most recent codes, invisible to 'ever' counts."""
    n = 600
    events = rule_corpus(n, 0, n_events=30)
    rng = np.random.default_rng(0)
    cut = rng.integers(10, 30, n)
    pt = events.groupby("subject_id").time.apply(lambda s: s.iloc[cut[s.name] - 1])
    cohort = pt.rename("prediction_time").reset_index()
    hist = events.merge(cohort, on="subject_id").query("time <= prediction_time")
    last = hist.groupby("subject_id").code.last().str[2:].astype(int).to_numpy()
    prev = hist.groupby("subject_id").code.nth(-2).str[2:].astype(int).to_numpy()
    risk = 1.5 * (last < 10) + 1.0 * (prev % 2 == 0)
    t_event = rng.exponential(np.exp(-risk))
    t_cens = rng.exponential(2 * np.exp(-risk).mean(), n)
    y = Surv.from_arrays(t_event <= t_cens, np.minimum(t_event, t_cens))
    tr = np.arange(n) < 360

    def held_out_c(enc):
        z_tr = enc.fit(cohort[tr]).transform(cohort[tr])
        cox = make_pipeline(StandardScaler(), CoxPHSurvivalAnalysis(alpha=1.0))
        return cox.fit(z_tr, y[tr]).score(enc.transform(cohort[~tr]), y[~tr])

    c_counts = held_out_c(EHRCountEncoder(events=events, windows=["ever"], numeric=None))
    c_transformer = held_out_c(EHRTransformerEncoder(events=events, random_state=0))
    # measured: counts-ever 0.504, transformer 0.684
    assert c_counts < 0.56
    assert c_transformer > c_counts + 0.08, (c_transformer, c_counts)


@pytest.mark.filterwarnings("ignore:DeepSurvival reached max_epochs")
def test_grid_search_pipeline_with_deep_survival_shares_events():
    """Acceptance 4: ehr__ columns into DeepSurvival, through GridSearchCV, events not copied."""
    from sklearn.model_selection import GridSearchCV, KFold
    from sklearn.pipeline import Pipeline

    from multimodal_surv import DeepSurvival

    n = 120
    events = rule_corpus(n, 4, n_events=15)
    cohort = last_event_cohort(events)
    hist = events.groupby("subject_id").code.last().str[2:].astype(int).to_numpy()
    rng = np.random.default_rng(0)
    t = rng.exponential(np.exp(-1.5 * (hist < 10)))
    y = Surv.from_arrays(np.ones(n, bool), t)
    handle = MEDSEvents(events)
    pipe = Pipeline(
        [
            (
                "enc",
                ColumnTransformer(
                    [("ehr", EHRCountEncoder(events=handle), ["subject_id", "prediction_time"])]
                ).set_output(transform="pandas"),
            ),
            ("scale", StandardScaler().set_output(transform="pandas")),
            ("model", DeepSurvival(hidden_units=(), max_epochs=5, random_state=0)),
        ]
    )
    gs = GridSearchCV(
        pipe,
        {"enc__ehr__windows": [["ever"], ["30D", "ever"]]},
        cv=KFold(2, shuffle=True, random_state=0),
    ).fit(cohort, y)
    best = gs.best_estimator_
    assert best.named_steps["enc"].named_transformers_["ehr"].events is handle
    z = best.named_steps["enc"].transform(cohort)
    assert all(c.startswith("ehr__x") for c in z.columns)
    windows = gs.best_params_["enc__ehr__windows"]
    direct = EHRCountEncoder(events=events, windows=windows).fit(cohort).transform(cohort)
    np.testing.assert_array_equal(z.to_numpy(), direct)
    assert np.isfinite(best.predict(cohort)).all()


def test_times_before_birth(tmp_path):
    t = pd.to_datetime(["2000-05-01", "2000-04-01", "2001-01-01", "1999-01-01", "2002-01-01"])
    events = pd.DataFrame(
        {
            "subject_id": [1, 1, 1, 2, 2],
            "time": t,
            "code": ["MEDS_BIRTH", "DX/A", "DX/B", "DX/A", "DX/B"],
            "numeric_value": np.nan,
        }
    )
    cohort = pd.DataFrame({"subject_id": [1, 2], "prediction_time": pd.Timestamp("2003-01-01")})
    msg = (
        r"1 dated before the subject's MEDS_BIRTH \(first: subject_id=1, code 'DX/A' at "
        r"2000-04-01 00:00:00\).*on_invalid='drop'"
    )
    for enc in (EHRCountEncoder(events), EHRTransformerEncoder(events, pretrain_epochs=0)):
        with pytest.raises(ValueError, match=msg):
            enc.set_params(on_invalid="raise").fit(cohort)
    root = _write_shards(tmp_path / "meds", events, 2)
    with pytest.raises(ValueError, match=msg):
        EHRCountEncoder(events=root, on_invalid="raise").fit(cohort)
    # by default the event before birth is left out, with a warning
    with pytest.warns(UserWarning, match="left out 1 invalid event"):
        enc = EHRCountEncoder(events=root, windows=["ever"]).fit(cohort)
    assert enc.invalid_events_["before_birth"] == 1

    # fixed: the early event dropped; static (null-time) events are not "before birth"
    ok = pd.concat(
        [events.drop(index=1), events.iloc[[2]].assign(time=pd.NaT, code="STATIC/X")],
        ignore_index=True,
    )
    enc = EHRCountEncoder(events=ok, windows=["ever"]).fit(cohort)
    early = pd.DataFrame(
        {"subject_id": [2, 1], "prediction_time": pd.to_datetime(["1990-01-01", "2000-01-31"])}
    )
    msg = (
        r"1 cohort row\(s\) have a prediction_time before the subject's MEDS_BIRTH event "
        r"\(first: subject_id=1, prediction_time=2000-01-31 00:00:00 < birth at "
        r"2000-05-01 00:00:00\).*drop those cohort rows"
    )
    with pytest.raises(ValueError, match=msg):
        enc.transform(early)
    with pytest.raises(ValueError, match=msg):
        EHRCountEncoder(events=ok, windows=["ever"]).fit(early)
    # on_error="nan": those rows are NaN (EHR missing), with one warning
    with pytest.warns(UserWarning, match=r"1 of 2 cohort row\(s\) have a prediction_time"):
        z = enc.set_params(on_error="nan").transform(early)
    assert np.isnan(z[1]).all() and np.isfinite(z[0]).all() and enc.n_errors_ == 1
    enc.set_params(on_error="raise")
    # subject 2 has no birth event: an early prediction time is just an empty history
    np.testing.assert_array_equal(enc.transform(early.iloc[:1]), [[0.0, 0.0, 0.0, 0.0, 0.0]])
    # at birth exactly is fine
    at_birth = early.iloc[1:].assign(prediction_time=pd.Timestamp("2000-05-01"))
    assert enc.transform(at_birth)[0, list(enc.vocabulary_).index("MEDS_BIRTH")] == 1.0
    root = _write_shards(tmp_path / "ok", ok, 2)
    with pytest.raises(ValueError, match=msg):
        EHRCountEncoder(events=root, windows=["ever"]).fit(cohort).transform(early)
