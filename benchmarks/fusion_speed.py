"""Fit time of each fusion strategy on CPU (issue 3, item 7).

n=5,000 patients, CT = 8 tokens x 64 (`ct__t{k}_{j}`), EHR = 768-d vector,
50 epochs, no early stopping, default estimator sizes. Writes
benchmarks/results/fusion_speed.md.

    python benchmarks/fusion_speed.py              # full size
    python benchmarks/fusion_speed.py --n 500 --epochs 3   # smoke run
"""

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sksurv.util import Surv

from multimodal_surv import (
    CoAttentionFusionSurvival,
    ContrastiveFusionSurvival,
    CrossAttentionFusionSurvival,
    DeepSurvival,
    LateFusionSurvival,
)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "fusion_speed.md"))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    ct, ehr = rng.normal(size=(args.n, 8, 64)), rng.normal(size=(args.n, 768))
    risk = ct[:, 0, 0] + ehr[:, 0]
    time_ = rng.exponential(np.exp(-risk))
    y = Surv.from_arrays(rng.random(args.n) < 0.7, time_)
    cols = [f"ct__t{k}_{j}" for k in range(8) for j in range(64)]
    cols += [f"ehr__x{j}" for j in range(768)]
    X = pd.DataFrame(np.hstack([ct.reshape(args.n, -1), ehr]).astype(np.float32), columns=cols)
    common = {"max_epochs": args.epochs, "patience": None, "random_state": 0}
    models = {
        "DeepSurvival (early fusion, reference)": DeepSurvival(**common),
        "LateFusionSurvival": LateFusionSurvival(**common),
        "ContrastiveFusionSurvival": ContrastiveFusionSurvival(**common),
        "CrossAttentionFusionSurvival": CrossAttentionFusionSurvival(**common),
        "CoAttentionFusionSurvival": CoAttentionFusionSurvival(**common),
    }
    rows = []
    for name, model in models.items():
        start = time.perf_counter()
        model.fit(X, y)
        seconds = time.perf_counter() - start
        # The machine is shared: the median epoch is robust to bursts of load
        # from other jobs, the total is not.
        epoch_ms = 1000 * float(np.median(model.history_[:, "dur"]))
        rows.append((name, model.batch_size, seconds, epoch_ms))
        print(f"{name:40s} {seconds:8.1f} s  {epoch_ms:8.0f} ms/epoch (median)", flush=True)
    reference = rows[0][3]
    header = (
        f"# Fusion fit time (CPU, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()})\n\n"
        f"n={args.n}, CT 8 tokens x 64, EHR 768-d, {args.epochs} epochs, "
        "validation split on, no early stopping, default sizes and batch sizes.\n\n"
        "| estimator | batch size | fit time (s) | median ms / epoch "
        "| epoch time / DeepSurvival |\n"
        "|---|---:|---:|---:|---:|\n"
    )
    table = header + "".join(
        f"| {n} | {b} | {s:.1f} | {m:.0f} | {m / reference:.2f} |\n" for n, b, s, m in rows
    )
    print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(table)


if __name__ == "__main__":
    main()
