"""EHR embeddings from a MEDS folder: counts vs a pretrained CLMBR-style transformer.
==================================================================================

Writes a small synthetic MEDS root (parquet shards under ``data/``) whose codes
follow a temporal rule, with an outcome that depends on the most recent codes.
Then:

1. ``EHRCountEncoder`` (windows 30D / 365D / ever, TF-IDF) and
   ``EHRTransformerEncoder`` (next-code pretraining at ``fit``) are
   put in a ``ColumnTransformer`` -> ``ehr__`` columns -> a Cox model;
2. the transformer is saved with ``save_pretrained`` and reloaded with
   ``from_pretrained`` (identical embeddings);
3. held-out C-index of each encoding is printed.

Run: ``python examples/ehr_encoder.py`` (``--quick`` for a ~20-second run).
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.util import Surv

from multimodal_surv.datasets import read_meds
from multimodal_surv.encoders import EHRCountEncoder, EHRTransformerEncoder

parser = argparse.ArgumentParser(description="EHR embeddings from a MEDS folder.")
parser.add_argument("--quick", action="store_true", help="300 subjects, 3 pretraining epochs")
args = parser.parse_args()
n_subjects = 300 if args.quick else 1500
pretrain_epochs = 3 if args.quick else 10

# -- a MEDS root folder: 30 codes, next = (7 * previous + 3) mod 30 with p = 0.8 -----
rng = np.random.default_rng(0)
n_events = 30
codes = np.empty((n_subjects, n_events), int)
codes[:, 0] = rng.integers(0, 30, n_subjects)
for j in range(1, n_events):
    follow = rng.random(n_subjects) < 0.8
    codes[:, j] = np.where(follow, (7 * codes[:, j - 1] + 3) % 30, rng.integers(0, 30, n_subjects))
days = np.cumsum(rng.exponential(20, (n_subjects, n_events)).round(), axis=1)
events = pd.DataFrame(
    {
        "subject_id": np.repeat(np.arange(n_subjects), n_events),
        "time": pd.Timestamp("2015-01-01") + pd.to_timedelta(days.ravel(), "D"),
        "code": [f"DX/{c:02d}" for c in codes.ravel()],
        "numeric_value": np.nan,
    }
)
root = Path(tempfile.mkdtemp()) / "meds"
(root / "data").mkdir(parents=True)
for k, part in enumerate(np.array_split(np.arange(len(events)), 4)):
    events.iloc[part].to_parquet(root / "data" / f"{k}.parquet", index=False)
print(f"MEDS root {root}: {len(read_meds(root)):,} events in 4 shards")

# -- cohort: prediction time inside each history; risk from the two latest codes ----
cut = rng.integers(10, n_events, n_subjects)
pt = events.time.to_numpy().reshape(n_subjects, n_events)[np.arange(n_subjects), cut - 1]
cohort = pd.DataFrame({"subject_id": np.arange(n_subjects), "prediction_time": pt})
last = codes[np.arange(n_subjects), cut - 1]
prev = codes[np.arange(n_subjects), cut - 2]
risk = 1.5 * (last < 10) + 1.0 * (prev % 2 == 0)
t_event = rng.exponential(np.exp(-risk))
t_cens = rng.exponential(2 * np.exp(-risk).mean(), n_subjects)
y = Surv.from_arrays(t_event <= t_cens, np.minimum(t_event, t_cens))
train = np.arange(n_subjects) < int(0.6 * n_subjects)

encoders = {
    "counts (ever)": EHRCountEncoder(events=root, windows=["ever"], numeric=None),
    "counts (30D/365D/ever, tf-idf)": EHRCountEncoder(events=root, tfidf=True, numeric=None),
    "transformer": EHRTransformerEncoder(
        events=root, pretrain_epochs=pretrain_epochs, random_state=0, verbose=1
    ),
}
for name, enc in encoders.items():
    ct = ColumnTransformer([("ehr", enc, ["subject_id", "prediction_time"])])
    model = make_pipeline(
        ct.set_output(transform="pandas"), StandardScaler(), CoxPHSurvivalAnalysis(alpha=1.0)
    )
    model.fit(cohort[train], y[train])
    z = model[0].transform(cohort[:2])
    c = model.score(cohort[~train], y[~train])
    print(f"{name:32s} {z.shape[1]:4d} columns ({z.columns[0]} ...)  held-out C = {c:.3f}")

# -- pretrain once, reuse: save_pretrained / from_pretrained ------------------------
fitted = model[0].named_transformers_["ehr"]
folder = Path(tempfile.mkdtemp()) / "ehr_model"
fitted.save_pretrained(folder)
reloaded = EHRTransformerEncoder.from_pretrained(folder, events=root)
same = np.array_equal(reloaded.transform(cohort), fitted.transform(cohort))
print(f"saved to {folder} ({sorted(p.name for p in folder.iterdir())}); reload identical: {same}")
if not same:
    raise SystemExit("reloaded transformer gives different embeddings")
