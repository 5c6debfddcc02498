"""Bring your own embeddings: frozen foundation-model features from parquet files.
================================================================================

The paper's own setup: the CT and EHR foundation models (Merlin or CT-FM for
the scans, CLMBR or MOTOR for the records) run once, elsewhere, often on a
GPU, and write one embedding per prediction to a file. Here the two files are
simulated: ``ct_embeddings.parquet`` holds 8 spatial tokens x 16 values per
scan (the layout of a CT model's token grid) and ``ehr_embeddings.parquet`` a
32-d vector per prediction, both keyed by ``subject_id`` and
``prediction_time``; 25 % of the predictions have no CT.

The script reads the files back, joins them onto the cohort table (a missing
CT becomes an all-NaN row: the modality is missing, not an error), names the
columns ``ct__t{token}_{j}`` and ``ehr__x{j}``, and compares unimodal models
with late, contrastive and cross-attention fusion on held-out patients. The
figure shows Kaplan-Meier curves of the held-out patients by tertile of the
fused model's risk. Run it at full size or at the small size of this page::

    python examples/own_embeddings.py            # 2000 predictions, 200 epochs
    python examples/own_embeddings.py --quick    # 400 predictions, 30 epochs
"""

# %%
# Embeddings computed elsewhere, written to parquet
# -------------------------------------------------
import argparse
import tempfile
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sksurv.nonparametric import kaplan_meier_estimator
from sksurv.util import Surv

from multimodal_surv import (
    ContrastiveFusionSurvival,
    CrossAttentionFusionSurvival,
    DeepSurvival,
    LateFusionSurvival,
)

parser = argparse.ArgumentParser(description="Bring your own embeddings.")
parser.add_argument("--quick", action="store_true", help="400 predictions, 30 epochs")
args = parser.parse_args()
n, epochs = (400, 30) if args.quick else (2000, 200)
warnings.filterwarnings("ignore", message=".*reached max_epochs")

rng = np.random.default_rng(7)
folder = Path(tempfile.mkdtemp())
keys = pd.DataFrame(
    {
        "subject_id": np.arange(1000, 1000 + n),
        "prediction_time": pd.Timestamp("2018-01-01")
        + pd.to_timedelta(rng.integers(0, 1000, n), "D"),
    }
)
ct_tokens = rng.normal(size=(n, 8, 16))  # e.g. a 2x2x2 grid of CT feature tokens
ehr_vector = rng.normal(size=(n, 32))  # e.g. a CLMBR representation
log_hazard = np.tanh(ct_tokens[:, 2, 0] + ct_tokens[:, 2, 1]) + 0.8 * ehr_vector[:, 0]

has_ct = rng.random(n) >= 0.25
ct_values = pd.DataFrame(ct_tokens[has_ct].reshape(-1, 8 * 16)).add_prefix("f")
ct_file = pd.concat([keys[has_ct].reset_index(drop=True), ct_values], axis=1)
ct_file.to_parquet(folder / "ct_embeddings.parquet", index=False)
ehr_file = pd.concat([keys, pd.DataFrame(ehr_vector).add_prefix("dim_")], axis=1)
ehr_file.to_parquet(folder / "ehr_embeddings.parquet", index=False)

time = rng.exponential(np.exp(-log_hazard))
censor = rng.exponential(2 * np.median(time), n)
cohort = keys.assign(event=time <= censor, time=np.minimum(time, censor) * 365.0)
cohort["split"] = np.where(rng.random(n) < 0.6, "train", "test")
print(f"wrote {len(ct_file)} CT and {len(ehr_file)} EHR embeddings to {folder}")

# %%
# Read them back and join onto the cohort
# ---------------------------------------
# A left join on the keys keeps every prediction; the predictions without a CT
# get NaN in every CT column, which the estimators read as "CT missing". The
# CT columns hold 8 tokens x 16 values, row-major, named ``ct__t{token}_{j}``;
# the EHR vector becomes ``ehr__x{j}``.
on = ["subject_id", "prediction_time"]
ct = pd.read_parquet(folder / "ct_embeddings.parquet")
ct.columns = on + [f"ct__t{k}_{j}" for k in range(8) for j in range(16)]
ehr = pd.read_parquet(folder / "ehr_embeddings.parquet")
ehr.columns = on + [f"ehr__x{j}" for j in range(32)]
table = cohort.merge(ehr, on=on, how="left", validate="1:1")
table = table.merge(ct, on=on, how="left", validate="1:1")
features = [c for c in table.columns if c.startswith(("ct__", "ehr__"))]
X, y = table[features], Surv.from_arrays(table["event"], table["time"])
train = (table["split"] == "train").to_numpy()
print(f"{X.shape[1]} columns; {X.filter(like='ct__').isna().all(axis=1).sum()} rows without CT")

# %%
# Unimodal models and fusion
# --------------------------
# A unimodal model sees the rows that have its modality; the fusion
# estimators see every row and handle the missing CT themselves.
common = {"max_epochs": epochs, "random_state": 0}
for prefix in ("ct__", "ehr__"):
    cols = [c for c in features if c.startswith(prefix)]
    rows = X[cols].notna().all(axis=1).to_numpy()
    model = DeepSurvival(**common).fit(X.loc[train & rows, cols], y[train & rows])
    c = model.score(X.loc[~train & rows, cols], y[~train & rows])
    print(f"{prefix[:-2] + ' only (rows with it)':40s} held-out C = {c:.3f}")
models = {
    "late fusion": LateFusionSurvival(**common),
    "contrastive fusion": ContrastiveFusionSurvival(**common),
    "cross-attention (EHR queries CT)": CrossAttentionFusionSurvival(query="ehr", **common),
}
for name, model in models.items():
    model.fit(X[train], y[train])
    print(f"{name:40s} held-out C = {model.score(X[~train], y[~train]):.3f}")
print("CT token layout seen by cross-attention:", models[name].token_shapes_)

# %%
# Kaplan-Meier curves by tertile of the fused risk
# ------------------------------------------------
risk = models["contrastive fusion"].predict(X[~train])
tertile = np.digitize(risk, np.quantile(risk, [1 / 3, 2 / 3]))
fig, ax = plt.subplots(figsize=(5, 3.5))
for k, label in enumerate(["low", "middle", "high"]):
    rows = tertile == k
    t, s = kaplan_meier_estimator(y[~train]["event"][rows], y[~train]["time"][rows])
    ax.step(t, s, where="post", label=f"{label} risk (n={rows.sum()})")
ax.set(xlabel="days after prediction time", ylabel="survival", title="held-out patients")
ax.legend()
fig.tight_layout()
