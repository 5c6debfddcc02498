"""Which rows the stacking weights of late and contrastive fusion are fitted on.

Late fusion (each head's best epoch) and contrastive fusion (the epoch of
the whole network) choose epochs on the validation split, then fit the
combination weights on validation rows. Three ways are compared, by
held-out Harrell's C:

* ``same``: the weights are fitted on the validation rows that chose the
  epochs, with the final model's risks (optimistic: each head's epoch was
  picked on those rows' noise);
* ``crossfit``: the same rows, but each of 5 subject-grouped folds brings its
  risks at the epochs chosen on the other folds (out of fold);
* ``separate``: one half of the validation split chooses the epochs, the
  other half fits the weights.

``same`` and ``crossfit`` differ only after training (the training run is
identical), so both come from one fit: the cross-fitted model is scored,
then its weights are refitted on the same rows by the estimator's own
stacking step and it is scored again. ``--check`` also fits ``same`` on its
own for the first seed and reports the largest difference in predictions.

Data: the two-modality generator of ``tests/test_fusion_synthetic.py``
(imported, with its estimator settings), 1000 training and 1000 test rows;
complete data, and 30 % of the training rows missing CT and 10 % missing EHR.
Seeds: the tuning seeds 0-11 of that file (``--seeds`` to change).

Run from the repository root::

    nice -n 19 env OMP_NUM_THREADS=1 python benchmarks/stacking_rows.py
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]
from _common import write_table  # noqa: E402
from test_fusion_synthetic import (  # noqa: E402
    FUSIONS,
    N_TEST,
    N_TRAIN,
    TUNING_SEEDS,
    make_two_modality,
)

MODELS = ("late", "contrastive")
CASES = {"complete": {}, "missing": {"missing_ct": 0.3, "missing_ehr": 0.1}}


def _data(seed, missing):
    X, y = make_two_modality(N_TRAIN + N_TEST, seed)
    X_train = X.iloc[:N_TRAIN]
    if missing:
        X_train = make_two_modality(N_TRAIN + N_TEST, seed, **missing)[0].iloc[:N_TRAIN]
    return X_train, y[:N_TRAIN], X.iloc[N_TRAIN:], y[N_TRAIN:]


def _restack_same_rows(model, data):
    """Refit the weights on the validation rows with the final model's risks."""
    module = model.module_
    module.eval()
    with torch.no_grad():
        risks, missing = model._stacking_inputs(module(data.X))
    weights, fills = model._combine(risks, missing, data)
    with torch.no_grad():
        model._set_combination(weights, fills)


def _paired_fit(name, seed, X_train, y_train):
    """One cross-fitted fit; returns the model and its validation rows."""
    model = FUSIONS[name](seed)
    model._stacking_rows = "crossfit"
    combine, seen = model._combine, {}

    def spy(risks, missing, data):
        seen["data"] = data
        return combine(risks, missing, data)

    model._combine = spy
    model.fit(X_train, y_train)
    del model._combine
    return model, seen["data"]


def run_seed(seed, check=False, report=print):
    """Score the three ways on one seed; ``report(row)`` after each model."""
    rows = []
    for case, missing in CASES.items():
        X_train, y_train, X_test, y_test = _data(seed, missing)
        for name in MODELS:
            start = time.perf_counter()
            model, data = _paired_fit(name, seed, X_train, y_train)
            row = {"seed": seed, "case": case, "model": name}
            row["crossfit"] = model.score(X_test, y_test)
            _restack_same_rows(model, data)
            row["same"] = model.score(X_test, y_test)
            if check:
                reference = FUSIONS[name](seed)
                reference._stacking_rows = "same"
                reference.fit(X_train, y_train)
                diff = np.abs(reference.predict(X_test) - model.predict(X_test)).max()
                print(f"check seed {seed} {case} {name}: max |same - restacked| = {diff:.2g}")
            separate = FUSIONS[name](seed)
            separate._stacking_rows = "separate"
            row["separate"] = separate.fit(X_train, y_train).score(X_test, y_test)
            row["seconds"] = time.perf_counter() - start
            rows.append(row)
            report(row)
    return rows


def summary(raw):
    out = []
    for (case, name), g in raw.groupby(["case", "model"], sort=False):
        line = {"case": case, "model": name, "seeds": len(g)}
        for col in ("same", "crossfit", "separate"):
            line[f"C {col}"] = f"{g[col].mean():.4f}"
        for col in ("crossfit", "separate"):
            d = g[col] - g["same"]
            se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else np.nan
            line[f"{col} - same (SE)"] = f"{d.mean():+.4f} ({se:.4f})"
            line[f"{col} better / worse"] = f"{int((d > 0).sum())} / {int((d < 0).sum())}"
        out.append(line)
    return pd.DataFrame(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(TUNING_SEEDS))
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message=".*reached max_epochs")
    rows = []

    def report(row):
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})
        rows.append(row)
        write_results(pd.DataFrame(rows))

    for i, seed in enumerate(args.seeds):
        run_seed(seed, check=args.check and i == 0, report=report)


def write_results(raw):
    """Print the summary of ``raw`` (one row per seed, case and model) and write both."""
    header = (
        "# Stacking rows of late and contrastive fusion\n\n"
        f"Held-out C, mean over seeds {sorted(set(raw['seed']))} of the two-modality "
        f"generator (tests/test_fusion_synthetic.py), {N_TRAIN} training / {N_TEST} "
        "test rows; missing: 30 % of the training rows without CT, 10 % without EHR. "
        "Differences are paired by seed (SE over seeds). "
        "Run: `python benchmarks/stacking_rows.py`."
    )
    text = write_table("stacking_rows", summary(raw), header)
    per_seed = raw.round(4).to_markdown(index=False)
    path = ROOT / "benchmarks" / "results" / "stacking_rows.md"
    path.write_text(text + "\nPer seed:\n\n" + per_seed + "\n")


if __name__ == "__main__":
    main()
