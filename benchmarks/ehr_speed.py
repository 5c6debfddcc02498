"""EHRCountEncoder speed on a table shaped like a real extract, vs a naive pandas group-by.

The synthetic MEDS table mimics an OMOP-derived extract: 22,000 subjects,
2.2 million events, 400 distinct **string** codes of realistic length and
vocabulary prefixes (``ICD10CM/I50.9``, ``LOINC/2160-0``, ``RxNorm/1049630``,
``SNOMED/271737000`` ...) with Zipf-like frequencies, several codes per visit at
the same timestamp (so exact duplicates occur, as in real extracts), labs with
values, a ``MEDS_BIRTH`` per subject, sorted by subject and time like MEDS
shards. One cohort row per subject, its prediction time inside its history.
Both implementations compute the same features (windows 30D / 365D / ever +
the last value of each lab code, exact duplicates left out); the script checks
they are equal, then reports wall time, throughput (events in the table / wall
time) and optionally peak traced memory, on one core.

Usage::

    python benchmarks/ehr_speed.py                      # 2.2M events (~3 GB RAM)
    python benchmarks/ehr_speed.py --n-subjects 2000    # quick

Writes ``benchmarks/results/ehr_speed.md``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one core, as the acceptance asks

import argparse  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402

from multimodal_surv.datasets._events import EventChunks  # noqa: E402
from multimodal_surv.encoders import EHRCountEncoder  # noqa: E402

WINDOWS = ["30D", "365D", "ever"]
pa.set_cpu_count(1)  # parquet decoding on one core too


def make_codes(rng):
    """400 codes as real vocabularies write them; the last 40 are labs (LOINC)."""
    letters = np.array(list("ABCDEFGIJKLMNRZ"))
    icd = [
        f"ICD10CM/{rng.choice(letters)}{rng.integers(0, 99):02d}.{rng.integers(0, 99)}"
        for _ in range(200)
    ]
    rx = [f"RxNorm/{rng.integers(10_000, 2_000_000)}" for _ in range(80)]
    snomed = [f"SNOMED/{rng.integers(10_000_000, 999_999_999)}" for _ in range(50)]
    cpt = [f"CPT4/{rng.integers(10_000, 99_999)}" for _ in range(27)]
    visits = ["Visit/OP", "Visit/IP", "Visit/ER"]
    labs = [f"LOINC/{rng.integers(1_000, 99_999)}-{rng.integers(0, 9)}" for _ in range(40)]
    codes = list(dict.fromkeys(icd + rx + snomed + cpt + visits + labs))
    assert len(codes) == 400, "code collision; change the seed"
    return np.array(codes, dtype=object), np.arange(400) >= 360


def make_events(n_subjects: int, events_per_subject: int = 115, seed: int = 0):
    rng = np.random.default_rng(seed)
    codes, is_lab = make_codes(rng)
    n_visits = rng.poisson(events_per_subject / 5, n_subjects) + 1
    v_sub = np.repeat(np.arange(1, n_subjects + 1), n_visits)
    v_day = np.concatenate([np.sort(rng.integers(0, 10 * 365, k)) for k in n_visits])
    per_visit = rng.integers(1, 10, v_sub.size)  # codes recorded at one visit (same time)
    sid = np.repeat(v_sub, per_visit)
    day = np.repeat(v_day, per_visit)
    code_idx = np.minimum(rng.zipf(1.25, sid.size) - 1, codes.size - 1)
    code_idx = rng.permutation(codes.size)[code_idx]  # frequent codes of every kind
    value = np.where(is_lab[code_idx], rng.normal(1.0, 0.3, sid.size).round(1), np.nan)
    time = pd.Timestamp("2012-01-01") + pd.to_timedelta(day * 86_400 + 3600 * 9, "s")
    events = pd.DataFrame(
        {"subject_id": sid, "time": time, "code": codes[code_idx], "numeric_value": value}
    )
    birth = pd.DataFrame(
        {
            "subject_id": np.arange(1, n_subjects + 1),
            "time": pd.Timestamp("1940-01-01")
            + pd.to_timedelta(rng.integers(0, 60 * 365, n_subjects), "D"),
            "code": "MEDS_BIRTH",
            "numeric_value": np.nan,
        }
    )
    events = events.drop_duplicates(ignore_index=True)
    # real extracts repeat a few rows verbatim: 0.5 % exact duplicates
    events = pd.concat([events, events.sample(frac=0.005, random_state=seed)])
    events = pd.concat([birth, events], ignore_index=True)
    events = events.sort_values(["subject_id", "time"], kind="stable", ignore_index=True)
    first = events.groupby("subject_id").time.nth(1).to_numpy()
    last = events.groupby("subject_id").time.max().to_numpy()
    frac = rng.uniform(0.2, 1.0, n_subjects)
    pt = first + (last - first) * frac
    cohort = pd.DataFrame({"subject_id": np.arange(1, n_subjects + 1), "prediction_time": pt})
    return events, cohort


def naive_transform(events, cohort, vocab, numeric_codes, numeric_fill):
    """Merge, filter, group-by: the straightforward pandas implementation."""
    ev = events.drop_duplicates()  # exact duplicates are left out, as the encoder does
    ev = ev.assign(order=np.arange(len(ev)), code=ev.code.astype(str))
    c = cohort.reset_index(drop=True).rename_axis("row").reset_index()
    merged = c.merge(ev, on="subject_id")
    merged = merged[merged.time <= merged.prediction_time]
    merged = merged.sort_values(["row", "time", "order"], kind="stable")
    m = len(c)
    blocks = []
    for w in WINDOWS:
        sel = (
            merged
            if w == "ever"
            else merged[merged.time > merged.prediction_time - pd.Timedelta(w)]
        )
        tok = sel.code.where(sel.code.isin(vocab), "<unk>")
        tab = sel.assign(tok=tok).groupby(["row", "tok"]).size().unstack(fill_value=0)
        blocks.append(
            tab.reindex(index=range(m), columns=list(vocab) + ["<unk>"], fill_value=0).to_numpy(
                float
            )
        )
    num = merged[merged.code.isin(numeric_codes) & merged.numeric_value.notna()]
    last = num.groupby(["row", "code"]).numeric_value.last().unstack()
    last = last.reindex(index=range(m), columns=list(numeric_codes))
    last = last.fillna(pd.Series(numeric_fill, index=list(numeric_codes))).to_numpy(float)
    return np.hstack(blocks + [last]), len(merged)


WALL = {}  # step time (CPU s) -> its wall time, for the table


def timed(fn, repeat=1):
    """Best CPU time of ``repeat`` calls (one thread: what an idle core would take).

    The wall time of that call is kept in ``WALL``; on a shared machine it also
    counts the waits for the CPU.
    """
    best, result = (np.inf, np.inf), None
    for _ in range(repeat):
        t, w = time.process_time(), time.perf_counter()
        result = fn()
        best = min(best, (time.process_time() - t, time.perf_counter() - w))
    WALL[best[0]] = best[1]
    return best[0], result


def measure(events, cohort, root):
    """``(rows, outputs)``: timed steps of the encoder, and its outputs to compare."""
    n = len(events)
    rows = []
    t, enc = timed(lambda: EHRCountEncoder(events=events, windows=WINDOWS).fit(cohort))
    rows.append(("fit, DataFrame (validate, encode string codes, index, vocabulary)", t))
    t, ours = timed(lambda: enc.transform(cohort), repeat=3)
    rows.append(("**transform, the same DataFrame** (encoded at fit, reused)", t))
    cold = EHRCountEncoder(events=events, windows=WINDOWS).fit(cohort)

    def transform_unseen():
        cold.set_params(events=events.copy(deep=False))  # another object: encoded again
        return cold.transform(cohort)

    t, ours_cold = timed(transform_unseen, repeat=3)
    rows.append(("transform, a DataFrame not seen at fit (encoded again)", t))
    t, fenc = timed(lambda: EHRCountEncoder(events=str(root), windows=WINDOWS).fit(cohort))
    rows.append(("fit, MEDS folder (streamed: read, validate, index per chunk)", t))
    t, ours_folder = timed(lambda: fenc.transform(cohort), repeat=3)
    n_chunks = len(EventChunks(str(root), cohort["subject_id"]))
    rows.append((f"**transform, MEDS folder** (streamed in {n_chunks} chunk(s), read again)", t))
    codes = events["code"]
    t, _ = timed(lambda: np.unique(codes.to_numpy(dtype=object), return_inverse=True))
    rows.append(("code encoding alone, np.unique over the strings (the former way)", t))
    t, _ = timed(lambda: pd.factorize(codes))
    rows.append(("code encoding alone, pandas.factorize (hash, used now)", t))
    assert n == len(events)
    return rows, enc, (ours, ours_cold, ours_folder)


def main(argv=None):
    warnings.filterwarnings("ignore", message=".*invalid event", category=UserWarning)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-subjects", type=int, default=22_000)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "ehr_speed.md"))
    args = parser.parse_args(argv)

    events, cohort = make_events(args.n_subjects)
    n = len(events)
    n_codes = events["code"].nunique()
    print(f"{n:,} events, {len(cohort):,} subjects / cohort rows, {n_codes} codes")
    tmp = tempfile.TemporaryDirectory()
    root = Path(tmp.name)
    (root / "data").mkdir()
    for k, part in enumerate(np.array_split(np.arange(n), 10)):  # shards of whole subjects
        events.iloc[part].to_parquet(root / "data" / f"{k}.parquet", index=False)
    rows, enc, (ours, ours_cold, ours_folder) = measure(events, cohort, root)
    t_naive, (ref, n_used) = timed(
        lambda: naive_transform(
            events, cohort, enc.vocabulary_, enc.numeric_codes_, enc.featurizer_.numeric_fill_
        ),
        repeat=2,
    )
    rows.append(("naive pandas merge + group-by (transform only)", t_naive))
    equal = np.array_equal(ours, ref) and np.array_equal(ours_cold, ref)
    folder_identical = ours_folder.tobytes() == ours.tobytes()
    print("outputs equal to the naive pandas version:", equal)
    print("folder output bit-identical to the in-memory one:", folder_identical)
    if not (equal and folder_identical):
        raise SystemExit("MISMATCH between EHRCountEncoder paths or the naive reference")
    mean_len = events["code"].str.len().mean()
    lines = [
        "# EHRCountEncoder speed on a real-extract-shaped table",
        "",
        f"{n:,} events ({n_used:,} at or before the prediction times; "
        f"{sum(enc.invalid_events_.values()):,} exact duplicates left out), "
        f"{len(cohort):,} subjects = cohort rows, {n_codes} distinct string codes "
        f"(mean length {mean_len:.1f} characters, object dtype), windows {WINDOWS} + last "
        f"lab value -> {ours.shape[1]} features. One core (OMP/BLAS threads = 1), "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
        f"pandas {pd.__version__}, numpy {np.__version__}. Throughput = events in the table "
        "/ CPU time of the process (one thread, so what one idle core takes; the wall time, "
        "which on this shared machine also counts waiting for a core, is given beside it; "
        "best of 3 for the three transforms, of 2 for the naive version, one run for the "
        "rest). Target: >= 2 M events/s for transform from a "
        "DataFrame with string codes and from a MEDS folder.",
        "",
        "| step | CPU s | wall s | events/s (M) | vs naive |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, t in rows:
        lines.append(
            f"| {name} | {t:.3f} | {WALL[t]:.3f} | {n / t / 1e6:.2f} | {t_naive / t:.1f}x |"
        )
    lines += [
        "",
        f"Outputs equal to the naive pandas version: {equal}. MEDS folder output "
        f"bit-identical to the in-memory output: {folder_identical}.",
        "",
    ]
    table = "\n".join(lines)
    print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(table)


if __name__ == "__main__":
    main()
