"""Training speed: DeepSurvival vs pycox CoxPH with the same MLP, side by side.

Same network (64-64 ReLU MLP, dropout 0.1), Adam lr 1e-3, batch 256, 20 epochs,
n=10,000 samples x 64 features, no validation split; the two libraries are
timed alternately, 5 times each, and the median wall times compared.
Usage: ``python benchmarks/fit_speed.py [--quick]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch
from _common import write_table

from multimodal_surv import DeepSurvival


def _data(n, p, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)).astype(np.float32)
    risk = X[:, :4].sum(axis=1) * 0.5
    t = rng.exponential(np.exp(-risk)).astype(np.float32)
    c = rng.exponential(2.0, size=n).astype(np.float32)
    return X, np.minimum(t, c), (t <= c)


def fit_ours(X, time_, event, epochs, batch):
    from sksurv.util import Surv

    y = Surv.from_arrays(event, time_)
    model = DeepSurvival(
        hidden_units=(64, 64),
        dropout=0.1,
        weight_decay=0.0,
        optimizer=torch.optim.Adam,
        lr=1e-3,
        batch_size=batch,
        max_epochs=epochs,
        validation_fraction=None,
        random_state=0,
    )
    return model.fit(X, y)


def fit_pycox(X, time_, event, epochs, batch):
    import torchtuples as tt
    from pycox.models import CoxPH

    torch.manual_seed(0)
    net = tt.practical.MLPVanilla(X.shape[1], [64, 64], 1, batch_norm=False, dropout=0.1)
    model = CoxPH(net, tt.optim.Adam(lr=1e-3))
    model.fit(X, (time_, event.astype(np.float32)), batch_size=batch, epochs=epochs, verbose=False)
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="n=2000, 5 epochs, 3 runs")
    args = parser.parse_args(argv)
    n, epochs, runs = (2_000, 5, 3) if args.quick else (10_000, 20, 5)
    torch.set_num_threads(1)
    X, time_, event = _data(n, 64)
    fit_ours(X, time_, event, 1, 256)  # warm-up both (imports, allocator)
    fit_pycox(X, time_, event, 1, 256)
    times = {"DeepSurvival": [], "pycox CoxPH": []}
    for _ in range(runs):
        for name, fn in (("DeepSurvival", fit_ours), ("pycox CoxPH", fit_pycox)):
            start = time.perf_counter()
            fn(X, time_, event, epochs, 256)
            times[name].append(time.perf_counter() - start)
    med = {k: float(np.median(v)) for k, v in times.items()}
    table = pd.DataFrame(
        [
            {
                "model": k,
                "median fit time (s)": round(v, 3),
                "all runs (s)": ", ".join(f"{t:.2f}" for t in times[k]),
            }
            for k, v in med.items()
        ]
    )
    ratio = med["DeepSurvival"] / med["pycox CoxPH"]
    write_table(
        "fit_speed",
        table,
        f"n={n}, 64 features, MLP 64-64, batch 256, {epochs} epochs, 1 thread, "
        f"{runs} alternating runs. Ratio DeepSurvival / pycox = {ratio:.2f}",
    )


if __name__ == "__main__":
    main()
