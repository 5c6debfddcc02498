"""Compare the four fusion strategies with the unimodal baselines on synthetic embeddings.
=======================================================================================

Run small:  python examples/fusion_strategies.py --quick   (= --n 200 --epochs 10)
"""

import argparse
import warnings

import numpy as np
import pandas as pd
from sksurv.util import Surv

from multimodal_surv import (
    CoAttentionFusionSurvival,
    ContrastiveFusionSurvival,
    CrossAttentionFusionSurvival,
    DeepSurvival,
    LateFusionSurvival,
)


def make_embeddings(n, seed=0, missing_ct=0.3):
    """CT: 4 spatial tokens x 8 (`ct__t{k}_{j}`); EHR: 16-d vector (`ehr__x{j}`)."""
    rng = np.random.default_rng(seed)
    ct, ehr = rng.normal(size=(n, 4, 8)), rng.normal(size=(n, 16))
    risk = np.tanh(ct[:, 1, 0] + ct[:, 1, 1]) + np.sin(1.5 * ehr[:, 0]) + 0.5 * ehr[:, 2]
    time = rng.exponential(np.exp(-risk))
    censor = rng.exponential(3 * np.median(time), size=n)
    cols = [f"ct__t{k}_{j}" for k in range(4) for j in range(8)] + [f"ehr__x{j}" for j in range(16)]
    X = pd.DataFrame(np.hstack([ct.reshape(n, -1), ehr]), columns=cols)
    X.loc[rng.random(n) < missing_ct, X.columns.str.startswith("ct__")] = np.nan  # no CT
    return X, Surv.from_arrays(time <= censor, np.minimum(time, censor))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000, help="patients (half train, half test)")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="small run: --n 200 --epochs 10")
    args = parser.parse_args()
    if args.quick:
        args.n, args.epochs = 200, 10
    warnings.filterwarnings("ignore", message=".*reached max_epochs")

    X, y = make_embeddings(args.n)
    half = args.n // 2
    X_train, X_test, y_train, y_test = X.iloc[:half], X.iloc[half:], y[:half], y[half:]
    common = {"max_epochs": args.epochs, "random_state": 0}
    models = {
        "late": LateFusionSurvival(**common),
        "contrastive": ContrastiveFusionSurvival(alpha=0.5, **common),
        "cross-attention (query=ehr)": CrossAttentionFusionSurvival(query="ehr", **common),
        "co-attention (guide=ct)": CoAttentionFusionSurvival(guide="ct", **common),
    }
    print(f"{'model':32s} held-out C")
    has_ct = X_test.filter(like="ct__").notna().all(axis=1)
    for prefix in ("ct__", "ehr__"):
        cols = X.columns[X.columns.str.startswith(prefix)]
        rows = X_train[cols].notna().all(axis=1)  # a unimodal model needs its modality
        model = DeepSurvival(**common).fit(X_train.loc[rows, cols], y_train[rows.to_numpy()])
        test_rows = X_test[cols].notna().all(axis=1).to_numpy()
        c = model.score(X_test.loc[test_rows, cols], y_test[test_rows])
        print(f"{'unimodal ' + prefix[:-2] + ' (rows with it)':32s} {c:.3f}")
    for name, model in models.items():
        model.fit(X_train, y_train)
        print(f"{name:32s} {model.score(X_test, y_test):.3f}")
    # EHR tokens attending over the CT tokens (+ null key); the signal is in CT token 1.
    attention = models["cross-attention (query=ehr)"].get_attention(X_test[has_ct.to_numpy()])
    weights = attention["attention"].mean(axis=(0, 1)).round(3)
    print("mean cross-attention over CT tokens 0-3 and the null key:", weights)


if __name__ == "__main__":
    main()
