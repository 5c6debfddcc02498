"""DeepSurvival against classical and deep peers on five real survival datasets.

5-fold cross-validation (the same folds for every model) on scikit-survival's
whas500, gbsg2, veterans_lung_cancer, breast_cancer and flchain:
``DeepSurvival`` with its defaults vs Coxnet (elastic net, penalty chosen by
inner 3-fold CV), RandomSurvivalForest and pycox's DeepSurv (CoxPH with the
MLP and training recipe of pycox's tutorial). Reports mean [min-max] test C.
Usage: ``python benchmarks/real_data.py [--quick]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings

import numpy as np
import pandas as pd
import torch
from _common import write_table
from sklearn.impute import SimpleImputer
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sksurv import datasets
from sksurv.column import encode_categorical
from sksurv.ensemble import RandomSurvivalForest
from sksurv.linear_model import CoxnetSurvivalAnalysis

from multimodal_surv import DeepSurvival
from multimodal_surv.metrics import concordance_index


def load(name):
    """Numeric feature matrix (categoricals one-hot) and y of a scikit-survival dataset."""
    X, y = getattr(datasets, f"load_{name}")()
    if name == "flchain":
        X = X.drop(columns=["chapter"])  # cause of death: leaks the outcome
    X = encode_categorical(X.astype({c: "category" for c in X.select_dtypes("object")}))
    return X.astype(float), y


def preprocess():
    return [SimpleImputer(strategy="median"), StandardScaler()]


class PycoxDeepSurv:
    """pycox CoxPH, configured as in pycox's DeepSurv tutorial (02_introduction)."""

    def __init__(self, seed):
        self.seed = seed

    def fit(self, X, y):
        import torchtuples as tt
        from pycox.models import CoxPH

        event_name, time_name = y.dtype.names
        self.steps_ = make_pipeline(*preprocess()).fit(X)
        Xt = self.steps_.transform(X).astype("float32")
        rng = np.random.default_rng(self.seed)
        valid = rng.random(len(Xt)) < 0.2
        torch.manual_seed(self.seed)
        net = tt.practical.MLPVanilla(Xt.shape[1], [32, 32], 1, batch_norm=True, dropout=0.1)
        self.model_ = CoxPH(net, tt.optim.Adam(lr=0.01))
        target = (y[time_name].astype("float32"), y[event_name].astype("float32"))
        train = (Xt[~valid], tuple(t[~valid] for t in target))
        val = (Xt[valid], tuple(t[valid] for t in target))
        with tempfile.TemporaryDirectory() as tmp:  # pycox checkpoints the best weights
            stop = tt.callbacks.EarlyStopping(file_path=f"{tmp}/best.pt")
            self.model_.fit(
                *train, batch_size=256, epochs=512, callbacks=[stop], verbose=False, val_data=val
            )
        return self

    def predict(self, X):
        Xt = self.steps_.transform(X).astype("float32")
        return self.model_.predict(Xt).ravel()


def models(seed):
    alphas = [[a] for a in np.logspace(-3, 0, 8)]
    return {
        "DeepSurvival": lambda: make_pipeline(*preprocess(), DeepSurvival(random_state=seed)),
        "Coxnet": lambda: make_pipeline(
            *preprocess(),
            GridSearchCV(CoxnetSurvivalAnalysis(l1_ratio=0.5), {"alphas": alphas}, cv=3),
        ),
        "RSF": lambda: make_pipeline(
            SimpleImputer(strategy="median"),
            RandomSurvivalForest(
                n_estimators=100, min_samples_leaf=10, n_jobs=2, random_state=seed
            ),
        ),
        "pycox DeepSurv": lambda: PycoxDeepSurv(seed),
    }


def evaluate(name, n_folds, seed, max_rows=None):
    X, y = load(name)
    if max_rows is not None and len(X) > max_rows:
        keep = np.random.default_rng(seed).choice(len(X), max_rows, replace=False)
        X, y = X.iloc[keep], y[keep]
    event_name, time_name = y.dtype.names
    folds = list(StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(X, y[event_name]))
    scores = {}
    for model_name, factory in models(seed).items():
        fold_scores = []
        start = time.perf_counter()
        for train, test in folds:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = factory().fit(X.iloc[train], y[train])
                risk = model.predict(X.iloc[test])
            fold_scores.append(concordance_index(y[event_name][test], y[time_name][test], risk))
        scores[model_name] = (np.array(fold_scores), time.perf_counter() - start)
    return scores


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="3 folds, flchain subsampled to 2000 rows (for the demo)",
    )
    args = parser.parse_args(argv)
    n_folds, max_rows = (3, 2000) if args.quick else (5, None)
    names = ["whas500", "gbsg2", "veterans_lung_cancer", "breast_cancer", "flchain"]
    rows = []
    for name in names:
        scores = evaluate(name, n_folds, seed=0, max_rows=max_rows)
        best_peer = max(s.mean() for m, (s, _) in scores.items() if m != "DeepSurvival")
        for model_name, (s, seconds) in scores.items():
            rows.append(
                {
                    "dataset": name,
                    "model": model_name,
                    "mean C": round(s.mean(), 4),
                    "fold range": f"{s.min():.3f}-{s.max():.3f}",
                    "fit+predict (s)": round(seconds, 1),
                    "vs best peer": round(s.mean() - best_peer, 4)
                    if model_name == "DeepSurvival"
                    else "",
                }
            )
        print(f"done {name}", flush=True)
    write_table(
        "real_data_quick" if args.quick else "real_data",
        pd.DataFrame(rows),
        f"{n_folds}-fold CV, same folds for every model (seed 0); C = Harrell's concordance",
    )


if __name__ == "__main__":
    main()
