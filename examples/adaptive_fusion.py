"""Let the data choose: unimodal, linear, early or a fusion model, with a modality report.
=======================================================================================

Two synthetic modalities ("ct" and "ehr" embeddings) share the log-hazard in a
proportion set by ``--balance`` (share of its variance carried by the CT).
The script prints the modality report (what each modality brings) and the
cross-validation table of ``AdaptiveFusionSurvival``, then scores the chosen
model on held-out patients.

Run:        python examples/adaptive_fusion.py --balance 0.5
Run small:  python examples/adaptive_fusion.py --quick   (= --n 240 --epochs 5 --cv 2)
"""

import argparse
import warnings

import numpy as np
import pandas as pd
from sksurv.util import Surv

from multimodal_surv import AdaptiveFusionSurvival


def make_embeddings(n, balance, seed=0, missing_ct=0.1):
    """CT: 12 columns; EHR: 16 columns; log-hazard = sqrt(b) CT part + sqrt(1-b) EHR part."""
    rng = np.random.default_rng(seed)
    ct, ehr = rng.normal(size=(n, 12)), rng.normal(size=(n, 16))
    ct_part = np.tanh(ct[:, 0] + ct[:, 1]) + 0.5 * ct[:, 2]
    ehr_part = np.sin(1.5 * ehr[:, 0]) + 0.5 * ehr[:, 1]
    ct_part, ehr_part = (p / p.std() for p in (ct_part, ehr_part))
    risk = 1.5 * (np.sqrt(balance) * ct_part + np.sqrt(1 - balance) * ehr_part)
    time = rng.exponential(np.exp(-risk))
    censor = rng.exponential(3 * np.median(time), size=n)
    cols = [f"ct__x{j}" for j in range(12)] + [f"ehr__x{j}" for j in range(16)]
    X = pd.DataFrame(np.hstack([ct, ehr]), columns=cols)
    X.loc[rng.random(n) < missing_ct, X.columns.str.startswith("ct__")] = np.nan  # no CT
    return X, Surv.from_arrays(time <= censor, np.minimum(time, censor))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1500, help="patients (70 %% train)")
    parser.add_argument("--balance", type=float, default=0.5, help="CT share of the risk")
    parser.add_argument("--epochs", type=int, default=None, help="cap on every candidate")
    parser.add_argument("--cv", type=int, default=5)
    parser.add_argument("--n-jobs", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="--n 240 --epochs 5 --cv 2")
    args = parser.parse_args()
    if args.quick:
        args.n, args.epochs, args.cv = 240, 5, 2
    warnings.filterwarnings("ignore", ".*reached max_epochs")

    X, y = make_embeddings(args.n, args.balance)
    n_train = int(0.7 * args.n)
    model = AdaptiveFusionSurvival(
        cv=args.cv,
        candidate_params=None if args.epochs is None else {"max_epochs": args.epochs},
        n_jobs=args.n_jobs,
        random_state=0,
        verbose=1,
    )
    model.fit(X[:n_train], y[:n_train])

    print(model.modality_report_)  # Markdown: unimodal C, gains, balance, redundancy
    columns = ["candidate", "mean_c", "sd_c", "total_fit_time", "within_1se", "chosen"]
    print(model.cv_results_[columns].round(3).to_string(index=False))
    print(f"\nchosen: {model.best_strategy_} ({model.selection_reason_})")
    print(f"held-out C: {model.score(X[n_train:], y[n_train:]):.3f}")


if __name__ == "__main__":
    main()
