"""Cost of AdaptiveFusionSurvival next to the single fits of its candidates.

The adaptive model fits every candidate on K folds and refits the chosen one,
so its cost is about K x (the sum of the candidates' single fit times) plus
one refit, each fold on (K-1)/K of the rows. This script measures that on the
synthetic cohort (``_adaptive_data.py``: 900 subjects, 630 training rows,
16 CT and about 130 EHR columns), one thread, and writes
``benchmarks/results/adaptive_cost.md``.

Run: ``python benchmarks/adaptive_cost.py [--n-subjects 900] [--cv 3 5]``.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import pandas as pd
import torch
from _adaptive_data import TUNING_SEEDS, cohort_embeddings
from _common import write_table
from sklearn.base import clone

from multimodal_surv import AdaptiveFusionSurvival


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-subjects", type=int, default=900)
    parser.add_argument("--balance", type=float, default=0.5)
    parser.add_argument("--cv", type=int, nargs="+", default=[3, 5])
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=TUNING_SEEDS[0])
    parser.add_argument("--name", default="adaptive_cost")
    parser.add_argument("--cache-dir", default=None, help="reuse encoded cohorts from here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", ".*reached max_epochs")

    X, y, train = cohort_embeddings(
        args.n_subjects, args.balance, args.seed, cache_dir=args.cache_dir
    )
    Xtr, ytr, Xte, yte = X[train], y[train], X[~train], y[~train]
    rows, single = [], {}
    for k in args.cv:
        model = AdaptiveFusionSurvival(
            cv=k,
            candidate_params=None if args.max_epochs is None else {"max_epochs": args.max_epochs},
            random_state=0,
        )
        start = time.perf_counter()
        model.fit(Xtr, ytr)
        total = time.perf_counter() - start
        if not single:  # single fits on all training rows, once
            for name, est in model.candidates_:
                start = time.perf_counter()
                fitted = clone(est).fit(Xtr, ytr)
                single[name] = (time.perf_counter() - start, fitted.score(Xte, yte))
        table = model.cv_results_.set_index("candidate")
        sum_single = sum(t for t, _ in single.values())
        rows.append(
            {
                "cv": k,
                "adaptive fit (s)": round(total, 1),
                "sum of single fits (s)": round(sum_single, 1),
                "ratio": round(total / sum_single, 2),
                "CV fits (s)": round(table["total_fit_time"].sum(), 1),
                "refit (s)": round(model.refit_time_, 1),
                "chosen": model.best_strategy_,
                "test C adaptive": round(model.score(Xte, yte), 4),
                "best single test C": round(max(c for _, c in single.values()), 4),
            }
        )
    per_candidate = pd.DataFrame(
        {
            "candidate": list(single),
            "single fit (s)": [round(single[n][0], 1) for n in single],
            "test C": [round(single[n][1], 4) for n in single],
        }
    )
    header = (
        f"# AdaptiveFusionSurvival fit cost\n\nSynthetic cohort, {args.n_subjects} subjects "
        f"(balance {args.balance}, seed {args.seed}), {int(train.sum())} training rows, "
        f"{X.shape[1]} columns; max_epochs={args.max_epochs}; 1 torch thread, n_jobs=1, "
        f"{os.cpu_count()} CPUs."
    )
    write_table(args.name, pd.DataFrame(rows), header)
    with open(write_table.__globals__["RESULTS"] / f"{args.name}.md", "a") as f:
        f.write("\nSingle fits on all training rows:\n\n" + per_candidate.to_markdown(index=False))
        f.write("\n")
    print(per_candidate.to_markdown(index=False))


if __name__ == "__main__":
    main()
