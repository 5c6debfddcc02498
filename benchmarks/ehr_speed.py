"""EHRCountEncoder speed: vectorised transform vs a naive pandas group-by.

Synthetic MEDS table (default 10 million events, 50k subjects, 200 codes, 20
of them labs with values), one cohort row per subject with its prediction time
inside its history. Both implementations compute the same features (windows
30D / 365D / ever + the last value of each lab code); the script checks they
are equal, then reports wall time, throughput and peak traced memory
(``tracemalloc``, which sees numpy and pandas buffers) on one core.

Usage::

    python benchmarks/ehr_speed.py               # 10M events (needs ~6 GB RAM)
    python benchmarks/ehr_speed.py --n-events 200000   # quick

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
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from multimodal_surv.datasets import MEDSEvents  # noqa: E402
from multimodal_surv.datasets._events import EventChunks  # noqa: E402
from multimodal_surv.encoders import EHRCountEncoder  # noqa: E402

WINDOWS = ["30D", "365D", "ever"]


def make_events(n_events: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    n_subjects = max(n_events // 200, 10)
    sid = np.sort(rng.integers(0, n_subjects, n_events))
    days = rng.integers(0, 5 * 365, n_events)
    order = np.lexsort((days, sid))
    sid, days = sid[order], days[order]
    codes = np.array([f"DX/{j:03d}" for j in range(180)] + [f"LAB/{j:02d}" for j in range(20)])
    code_idx = np.minimum(rng.zipf(1.3, n_events) - 1, codes.size - 1)
    code_idx = (code_idx * 37) % codes.size  # spread the frequent codes over both kinds
    value = np.where(code_idx >= 180, rng.normal(size=n_events).round(2), np.nan)
    events = pd.DataFrame(
        {
            "subject_id": sid,
            "time": pd.Timestamp("2015-01-01") + pd.to_timedelta(days, "D"),
            "code": pd.Categorical.from_codes(code_idx, codes),
            "numeric_value": value,
        }
    )
    subj = np.unique(sid)
    pt = pd.Timestamp("2015-01-01") + pd.to_timedelta(rng.integers(30, 5 * 365, subj.size), "D")
    cohort = pd.DataFrame({"subject_id": subj, "prediction_time": pt})
    return events, cohort


def naive_transform(events, cohort, vocab, numeric_codes, numeric_fill):
    """Merge, filter, group-by: the straightforward pandas implementation."""
    ev = events.assign(order=np.arange(len(events)), code=events.code.astype(str))
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
    out = np.hstack(blocks + [last])
    out[~np.isin(np.arange(m), merged.row.unique())] = 0.0
    return out, len(merged)


def timed(fn, repeat=1):
    best, result = np.inf, None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def peak_mib(fn):
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-events", type=int, default=10_000_000)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "ehr_speed.md"))
    parser.add_argument("--skip-memory", action="store_true", help="no tracemalloc passes")
    args = parser.parse_args(argv)

    events, cohort = make_events(args.n_events)
    n = len(events)
    print(f"{n:,} events, {len(cohort):,} subjects / cohort rows")
    handle = MEDSEvents(events)
    rows = []

    t_fit, enc = timed(lambda: EHRCountEncoder(events=handle, windows=WINDOWS).fit(cohort))
    rows.append(("fit (first use: validate, sort check, build arrays, vocabulary)", t_fit, None))
    t_warm, ours = timed(lambda: enc.transform(cohort), repeat=3)
    rows.append(("transform, MEDSEvents handle (arrays cached)", t_warm, None))
    raw = EHRCountEncoder(events=events, windows=WINDOWS).fit(cohort)
    t_cold, ours_raw = timed(lambda: raw.transform(cohort))
    rows.append(("transform, plain DataFrame (validates + builds arrays every call)", t_cold, None))
    # MEDS root folder (10 parquet shards of whole subjects): streamed in chunks of subjects.
    tmp = tempfile.TemporaryDirectory()
    root = Path(tmp.name)
    (root / "data").mkdir()
    for k, part in enumerate(np.array_split(np.arange(n), 10)):
        events.iloc[part].to_parquet(root / "data" / f"{k}.parquet", index=False)
    t_ffit, fenc = timed(lambda: EHRCountEncoder(events=str(root), windows=WINDOWS).fit(cohort))
    rows.append(("fit, MEDS folder (streamed: read + validate + arrays per chunk)", t_ffit, None))
    t_fold, ours_folder = timed(lambda: fenc.transform(cohort))
    n_chunks = len(EventChunks(str(root), cohort["subject_id"]))
    rows.append(
        (f"transform, MEDS folder (streamed in {n_chunks} chunks, read every call)", t_fold, None)
    )
    t_naive, (ref, n_used) = timed(
        lambda: naive_transform(
            events,
            cohort,
            enc.vocabulary_,
            enc.numeric_codes_,
            enc.featurizer_.numeric_fill_,
        )
    )
    rows.append(("naive pandas merge + group-by", t_naive, None))
    equal = np.array_equal(ours, ref) and np.array_equal(ours_raw, ref)
    folder_identical = ours_folder.tobytes() == ours.tobytes()
    print("folder output bit-identical to the in-memory one:", folder_identical)
    if not folder_identical:
        raise SystemExit("MISMATCH between the MEDS folder and the in-memory path")
    print("outputs equal to the naive pandas version:", equal)
    if not equal:
        raise SystemExit("MISMATCH between EHRCountEncoder and the naive pandas reference")

    if not args.skip_memory:
        mems = [
            peak_mib(
                lambda: EHRCountEncoder(events=MEDSEvents(events), windows=WINDOWS).fit(cohort)
            ),
            peak_mib(lambda: enc.transform(cohort)),
            peak_mib(lambda: raw.transform(cohort)),
            None,  # Arrow buffers are invisible to tracemalloc: RSS in memory.md
            None,
            peak_mib(
                lambda: naive_transform(
                    events,
                    cohort,
                    enc.vocabulary_,
                    enc.numeric_codes_,
                    enc.featurizer_.numeric_fill_,
                )
            ),
        ]
        rows = [(r[0], r[1], m) for r, m in zip(rows, mems)]

    out_mib = ours.nbytes / 2**20
    lines = [
        "# EHRCountEncoder speed",
        "",
        f"{n:,} events ({n_used:,} at or before the prediction times), {len(cohort):,} cohort "
        f"rows, {enc.vocabulary_.size} codes, windows {WINDOWS} + last lab value -> "
        f"{ours.shape[1]} features ({out_mib:.0f} MiB float64 output). One core "
        f"(OMP/BLAS threads = 1), {platform.processor() or platform.machine()}, shared machine. "
        "Throughput = events in the table / wall time. Peak memory = tracemalloc peak of "
        "the step (numpy + pandas buffers), input table not included; folder rows: '-' "
        "(Arrow buffers are invisible to tracemalloc; see the RSS peak in memory.md).",
        "",
        "| step | wall s | events/s (M) | peak MiB | vs naive |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, t, mem in rows:
        mem_s = "-" if mem is None else f"{mem:,.0f}"
        lines.append(f"| {name} | {t:.2f} | {n / t / 1e6:.2f} | {mem_s} | {t_naive / t:.1f}x |")
    lines += [
        "",
        f"Outputs identical to the naive pandas version: {equal}. MEDS folder output "
        f"bit-identical to the in-memory output: {folder_identical}.",
        "",
    ]
    table = "\n".join(lines)
    print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(table)


if __name__ == "__main__":
    main()
