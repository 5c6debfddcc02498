"""A real EHR extract as it comes: invalid events, string ids, a subject in two splits.
====================================================================================

Builds a small MEDS table with the flaws every real extract has (events dated
before birth or after death, exact duplicates, a null code), then:

1. ``EHRCountEncoder`` leaves those events out with one counted warning and
   keeps the counts in ``invalid_events_``; the embeddings equal those of the
   clean table; ``on_invalid="raise"`` refuses the same table instead;
2. string subject ids get one clear error (with the fix) and are mapped to
   integers;
3. a cohort folder with a subject in both train and test is refused by
   ``load_cohort_folder`` unless ``allow_subject_overlap=True``.

Run: ``python examples/real_ehr_extract.py`` (``--quick`` runs the same, small).
"""

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from multimodal_surv.datasets import load_cohort_folder
from multimodal_surv.encoders import EHRCountEncoder

parser = argparse.ArgumentParser(description="A real EHR extract as it comes.")
parser.add_argument("--quick", action="store_true", help="200 subjects instead of 2,000")
args = parser.parse_args()
n = 200 if args.quick else 2000
rng = np.random.default_rng(0)

# -- a clean extract: birth, visits with a diagnosis and a lab value, some deaths ----------
rows = []
for s in range(1, n + 1):
    birth = pd.Timestamp("1950-01-01") + pd.Timedelta(days=int(rng.integers(0, 15_000)))
    rows.append((s, birth, "MEDS_BIRTH", np.nan))
    day = pd.Timestamp("2015-01-01")
    for _ in range(int(rng.integers(2, 8))):
        day += pd.Timedelta(days=int(rng.integers(10, 300)))
        rows.append((s, day, f"ICD10CM/I{int(rng.integers(10, 25))}.9", np.nan))
        rows.append((s, day, "LOINC/2160-0", round(float(rng.normal(1.0, 0.2)), 2)))
    if s % 10 == 0:
        rows.append((s, day + pd.Timedelta(days=20), "MEDS_DEATH", np.nan))
clean = pd.DataFrame(rows, columns=["subject_id", "time", "code", "numeric_value"])

# -- the same extract with the usual flaws appended -----------------------------------------
birth = clean[clean.code == "MEDS_BIRTH"].set_index("subject_id").time
flaws = pd.DataFrame(
    [
        (1, birth[1] - pd.Timedelta(days=30), "RxNorm/197361", np.nan),  # before birth
        (10, pd.Timestamp("2030-01-01"), "ICD10CM/I10.9", np.nan),  # after death
        (2, pd.Timestamp("2016-03-01"), None, np.nan),  # no code
    ],
    columns=clean.columns,
)
extract = pd.concat([clean, flaws, clean.iloc[[3, 4]]], ignore_index=True)  # + 2 duplicates
cohort = pd.DataFrame({"subject_id": np.arange(1, n + 1), "prediction_time": "2031-01-01"})

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    enc = EHRCountEncoder(extract, windows=["365D", "ever"]).fit(cohort)
print("warning:", caught[0].message if caught else "none")
print("invalid_events_:", enc.invalid_events_)
same = EHRCountEncoder(clean, windows=["365D", "ever"]).fit(cohort).transform(cohort)
gap = float(np.abs(enc.transform(cohort) - same).max())
print(f"embedding vs the clean extract: max |difference| = {gap:.1e}")
if gap > 1e-6:
    raise SystemExit("the invalid events changed the embedding")
try:
    EHRCountEncoder(extract, on_invalid="raise").fit(cohort)
except ValueError as exc:
    print("on_invalid='raise':", str(exc)[:150], "...")

# -- string subject ids: one error with the fix, then the fix -------------------------------
named = extract.assign(subject_id="P" + extract.subject_id.astype(str).str.zfill(5))
try:
    EHRCountEncoder(named).fit(cohort)
except TypeError as exc:
    print("string ids:", str(exc)[:120], "...")
ids = {s: i for i, s in enumerate(sorted(set(named.subject_id)))}
named["subject_id"] = named["subject_id"].map(ids)
print("mapped to integers:", named.subject_id.dtype, f"{len(ids)} subjects")

# -- a cohort folder where subject 1 has a scan in train and one in test --------------------
root = Path(tempfile.mkdtemp()) / "cohort"
(root / "meds" / "data").mkdir(parents=True)
clean.to_parquet(root / "meds" / "data" / "0.parquet", index=False)
pd.DataFrame(
    {
        "subject_id": [1, 2, 3, 1],
        "prediction_time": ["2020-01-01", "2020-01-01", "2020-01-01", "2021-06-01"],
        "ct": [""] * 4,
        "event": [1, 0, 1, 0],
        "time": [100.0, 300.0, 50.0, 200.0],
        "split": ["train", "train", "test", "test"],
    }
).to_csv(root / "cohort.csv", index=False)
try:
    load_cohort_folder(root)
except ValueError as exc:
    print("subject in two splits:", str(exc).split(";")[0].split(": ", 1)[1])
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    data = load_cohort_folder(root, allow_subject_overlap=True)
print(f"allowed on request: {len(data.cohort)} rows loaded")
