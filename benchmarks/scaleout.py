"""Wall time of GridSearchCV over a fusion estimator on a Dask cluster, 1 vs 2 workers
(issue 7, item 5).

A ``dask.distributed.LocalCluster`` (loopback, worker processes with one
thread each, torch limited to one thread per worker) runs
``GridSearchCV(LateFusionSurvival, 8 candidates x 3 folds, n_jobs=-1)`` under
``joblib.parallel_backend("dask")``; the serial local run is the reference and
the best scores must agree. Writes benchmarks/results/scaleout.md.

    python benchmarks/scaleout.py                    # default size
    python benchmarks/scaleout.py --n 300 --epochs 3 # smoke run
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import GridSearchCV, KFold
from sksurv.util import Surv

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_table  # noqa: E402

from multimodal_surv import LateFusionSurvival  # noqa: E402


def _limit_threads():
    torch.set_num_threads(1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args()
    from dask.distributed import Client, LocalCluster

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    X = pd.DataFrame(
        rng.normal(size=(args.n, 64 + 96)).astype(np.float32),
        columns=[f"ct__x{j}" for j in range(64)] + [f"ehr__x{j}" for j in range(96)],
    )
    risk = X["ct__x0"] + X["ehr__x0"]
    y = Surv.from_arrays(rng.random(args.n) < 0.7, rng.exponential(np.exp(-risk)))
    grid = {"lr": [1e-3, 3e-3], "dropout": [0.0, 0.2], "weight_decay": [1e-4, 1e-2]}
    est = LateFusionSurvival(max_epochs=args.epochs, validation_fraction=None, random_state=0)

    def search(n_jobs):
        t0 = time.perf_counter()
        gs = GridSearchCV(est, grid, cv=KFold(3), n_jobs=n_jobs).fit(X, y)
        return time.perf_counter() - t0, gs

    rows = []
    t_local, ref = search(None)
    rows.append({"backend": "local, serial", "workers": 1, "wall time (s)": t_local})
    for workers in (1, 2):
        with (
            LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
            ) as cluster,
            Client(cluster) as client,
        ):
            client.run(_limit_threads)
            with joblib.parallel_backend("dask"):
                t, gs = search(-1)
        assert np.array_equal(
            gs.cv_results_["mean_test_score"], ref.cv_results_["mean_test_score"]
        ), "dask results differ from the local run"
        rows.append({"backend": "dask LocalCluster", "workers": workers, "wall time (s)": t})
    table = pd.DataFrame(rows)
    table["speed-up vs dask 1 worker"] = (
        table.loc[table["backend"] == "dask LocalCluster", "wall time (s)"].iloc[0]
        / table["wall time (s)"]
    )
    table = table.round(2)
    header = (
        "# Scale-out: GridSearchCV over LateFusionSurvival on Dask (benchmarks/scaleout.py)\n\n"
        f"n={args.n}, 64 + 96 features, {args.epochs} epochs, 8 candidates x 3 folds = 24 "
        f"fits, torch 1 thread per worker; CPU cores here: {os.cpu_count()} (shared). "
        "cv scores identical to the serial run in every case."
    )
    write_table("scaleout", table, header)


if __name__ == "__main__":
    main()
