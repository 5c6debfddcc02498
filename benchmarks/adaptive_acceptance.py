"""AdaptiveFusionSurvival against every fixed candidate on the synthetic cohort.

Data: ``make_synthetic_cohort`` (internal site only, 30 % internal test
subjects) at balance 0, 0.5 and 1, embedded by the library's encoders fitted
on the training subjects: ``EHRCountEncoder`` on the MEDS events and
``CTEncoder("ssl")`` (self-supervised, 12 dimensions) on the CT volumes, or
with ``--ct simulated`` the simulated CT embedding of ``_adaptive_data.py``
(encoding CT volumes costs minutes per cohort). Each cohort is encoded once
and cached (``--cache-dir``); so is each cohort's result, so a rerun resumes.

For each cohort the adaptive model is fitted on the training rows
(``cv`` folds, default candidates) and every eligible candidate is also
fitted alone on the same rows; all are scored once (Harrell's C) on the
internal test rows. The checks:

* adaptive C >= best unimodal C - 0.005 and >= best fixed candidate C - 0.01;
* at balance 0 and 1 the choice is unimodal, linear or late fusion in at
  least 2 of 3 seeds;
* the CT share of the balance index orders balance 0 < 0.5 < 1 on every seed.

Seeds 101-103 are acceptance seeds: nothing was tuned on them (defaults and
the simulated-CT noise of ``_adaptive_data.py`` were set on seeds 90 and 91).
The results page was made with 800 subjects (240 test rows), ``--ct
simulated`` and the library's default folds and training (about 15 minutes
of a shared CPU core per cohort); ``--cv`` and ``--max-epochs`` override them.
``--tuning`` runs the tuning seeds (their table is not an acceptance result).

Run: ``python benchmarks/adaptive_acceptance.py --n-subjects 800 --ct simulated``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import clone

from multimodal_surv import AdaptiveFusionSurvival

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _adaptive_data import TUNING_SEEDS, cohort_embeddings, encode_table  # noqa: E402
from _common import write_table  # noqa: E402

ACCEPTANCE_SEEDS = (101, 102, 103)
BALANCES = (0.0, 0.5, 1.0)
SIMPLE = {"unimodal", "linear", "late"}


def encode(n_subjects, balance, seed, cache_dir, ct="encoder"):
    """``X`` (ct__*, ehr__*), ``y`` and the boolean ``train`` mask, cached as parquet.

    ``ct="simulated"``: the simulated CT embedding of ``_adaptive_data.py``
    instead of ``CTEncoder("ssl")`` (minutes per cohort less).
    """
    if ct == "simulated":
        return cohort_embeddings(n_subjects, balance, seed, cache_dir=cache_dir)
    path = Path(cache_dir) / f"cohort_{n_subjects}_{balance}_{seed}.parquet"
    if not path.exists():
        table = encode_table(n_subjects, balance, seed, ct_encoder=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        table.to_parquet(path)
    table = pd.read_parquet(path)
    X = table.filter(regex="^(ct|ehr)__").reset_index(drop=True)
    y = np.empty(len(table), dtype=[("event", bool), ("time", float)])
    y["event"], y["time"] = table["event"].to_numpy(bool), table["time"].to_numpy(float)
    return X, y, table["train"].to_numpy(bool)


def run_cohort(X, y, train, seed, **params):
    """Internal-test C of the adaptive model and of every eligible candidate alone."""
    Xtr, ytr, Xte, yte = X[train], y[train], X[~train], y[~train]
    start = time.perf_counter()
    model = AdaptiveFusionSurvival(random_state=seed, **params).fit(Xtr, ytr)
    seconds = time.perf_counter() - start
    table = model.cv_results_.set_index("candidate")
    fixed = {}
    for name, est in model.candidates_:
        if name == model.best_strategy_:
            fixed[name] = float(model.score(Xte, yte))  # the refit is this candidate alone
        elif table.at[name, "eligible"]:
            fixed[name] = float(clone(est).fit(Xtr, ytr).score(Xte, yte))
    return {
        "adaptive": float(model.score(Xte, yte)),
        "chosen": model.best_strategy_,
        "kind": str(table.at[model.best_strategy_, "kind"]),
        "fixed": fixed,
        "cv_c": {n: float(c) for n, c in table["mean_c"].items()},
        "folds": {
            n: table.loc[n, [c for c in table.columns if c.startswith("split")]].tolist()
            for n in table.index
        },
        "ct_share": float(model.modality_report_.balance["ct"]),
        "ehr_share": float(model.modality_report_.balance["ehr"]),
        "adaptive_fit_s": seconds,
    }


def checks(results):
    """Per-cohort rows and the three acceptance verdicts."""
    rows = []
    for (balance, seed), r in sorted(results.items()):
        # Every one-modality candidate: the networks and, since they joined the
        # default list, the linear models on one modality.
        unimodal = max(v for k, v in r["fixed"].items() if "_only" in k)
        best_name = max(r["fixed"], key=r["fixed"].get)
        best = r["fixed"][best_name]
        rows.append(
            {
                "balance": balance,
                "seed": seed,
                "chosen": r["chosen"],
                "adaptive C": round(r["adaptive"], 4),
                "best unimodal C": round(unimodal, 4),
                "best fixed (C)": f"{best_name} ({best:.4f})",
                "vs unimodal": round(r["adaptive"] - unimodal, 4),
                "vs best fixed": round(r["adaptive"] - best, 4),
                "C ok": r["adaptive"] >= unimodal - 0.005 and r["adaptive"] >= best - 0.01,
                "CT share": round(r["ct_share"], 3),
                "fit (s)": round(r["adaptive_fit_s"], 0),
            }
        )
    table = pd.DataFrame(rows)
    seeds = sorted({s for _, s in results})
    simple = {
        b: [results[b, s]["kind"] in SIMPLE for s in seeds if (b, s) in results] for b in (0.0, 1.0)
    }
    order = {
        s: [results[b, s]["ct_share"] for b in BALANCES]
        for s in seeds
        if all((b, s) in results for b in BALANCES)
    }
    verdicts = {
        "C within margins on every cohort": bool(table["C ok"].all()),
        "simple choice at balance 0 and 1 in >= 2 of 3 seeds": all(
            sum(v) >= 2 for v in simple.values()
        ),
        "CT share orders 0 < 0.5 < 1 on every seed": all(a < b < c for a, b, c in order.values()),
    }
    return table, verdicts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-subjects", type=int, default=360)
    parser.add_argument("--cv", type=int, default=None, help="default: the library's")
    parser.add_argument("--max-epochs", type=int, default=None, help="default: the library's")
    parser.add_argument("--ct", choices=["encoder", "simulated"], default="encoder")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(ACCEPTANCE_SEEDS))
    parser.add_argument("--balances", type=float, nargs="+", default=list(BALANCES))
    parser.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "adaptive_acc"))
    parser.add_argument("--name", default="adaptive_acceptance")
    parser.add_argument(
        "--tuning", action="store_true", help="run tuning seeds (not an acceptance run)"
    )
    parser.add_argument(
        "--report-only", action="store_true", help="tabulate the cached cohorts, fit nothing"
    )
    args = parser.parse_args(argv)
    if set(args.seeds) & set(TUNING_SEEDS) and not args.tuning:
        parser.error(f"seeds {TUNING_SEEDS} were used for tuning; accept on others.")
    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", ".*reached max_epochs")
    params = {}
    if args.cv is not None:
        params["cv"] = args.cv
    if args.max_epochs is not None:
        params["candidate_params"] = {"max_epochs": args.max_epochs}
    tag = f"{args.n_subjects}_cv{args.cv}_e{args.max_epochs}_{args.ct}"
    results = {}
    for seed in args.seeds:
        for balance in args.balances:
            out = Path(args.cache_dir) / f"result_{tag}_{balance}_{seed}.json"
            if args.report_only and not out.exists():
                continue
            if not out.exists():
                start = time.perf_counter()
                X, y, train = encode(args.n_subjects, balance, seed, args.cache_dir, args.ct)
                encoded = time.perf_counter() - start
                r = run_cohort(X, y, train, seed, **params)
                r["encode_s"], r["total_s"] = encoded, time.perf_counter() - start
                out.write_text(json.dumps(r))
            results[balance, seed] = json.loads(out.read_text())
            r = results[balance, seed]
            print(
                f"balance {balance} seed {seed}: chosen {r['chosen']}, C {r['adaptive']:.4f}, "
                f"CT share {r['ct_share']:.3f} ({r['total_s']:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    report(results, args)


def report(results, args):
    """Print and write the per-cohort table, the candidates' test C and the verdicts."""
    table, verdicts = checks(results)
    n_train = "about 70 %"
    ct = {"encoder": "`CTEncoder('ssl')`", "simulated": "simulated CT embedding"}[args.ct]
    settings = (
        "the library's default folds and training"
        if args.cv is None and args.max_epochs is None
        else f"cv={args.cv}, max_epochs={args.max_epochs}"
    )
    header = (
        "# AdaptiveFusionSurvival acceptance on the synthetic cohort\n\n"
        f"`make_synthetic_cohort`, {args.n_subjects} subjects (internal site, {n_train} "
        f"training, the rest internal test), {ct} + `EHRCountEncoder` fitted on "
        f"the training subjects; {settings}, 1 torch thread. Seeds "
        f"{sorted({s for _, s in results})} "
        + (
            "(the tuning seeds: not an acceptance result). "
            if args.tuning
            else f"(not used to tune anything; tuning seeds were {list(TUNING_SEEDS)}). "
        )
        + "C: Harrell's C on the internal test rows."
    )
    fixed = pd.DataFrame(
        [
            {"balance": b, "seed": s, **{k: round(v, 4) for k, v in r["fixed"].items()}}
            for (b, s), r in sorted(results.items())
        ]
    )
    text = write_table(args.name, table, header)
    extra = (
        "\nInternal-test C of every candidate fitted alone on the training rows:\n\n"
        + fixed.to_markdown(index=False)
        + "\n\nVerdicts:\n\n"
        + "\n".join(f"- {k}: {'PASS' if v else 'MISS'}" for k, v in verdicts.items())
        + "\n"
    )
    path = Path(__file__).resolve().parent / "results" / f"{args.name}.md"
    path.write_text(text + extra)
    sys.stdout.write(extra)


if __name__ == "__main__":
    main()
