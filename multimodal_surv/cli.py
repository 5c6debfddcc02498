"""Command line: ``multimodal-surv benchmark`` (also ``python -m multimodal_surv``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__

__all__ = ["main"]


def _balances(text):
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--balance takes a number in [0, 1] or a comma-separated list; got {text!r}"
        ) from None
    bad = [v for v in values if not 0.0 <= v <= 1.0]
    if bad:
        raise argparse.ArgumentTypeError(f"--balance values must be in [0, 1]; got {bad}")
    return values


def _parser():
    parser = argparse.ArgumentParser(
        prog="multimodal-surv",
        description="Time-to-event prediction from CT + EHR: unimodal vs fusion benchmark.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser(
        "benchmark",
        help="run the paper-style comparison table",
        description="Encode CT and EHR, fit unimodal baselines and the four fusion "
        "strategies, and report C-index with bootstrap CIs on internal and external "
        "test sets.",
    )
    bench.add_argument(
        "--cohort",
        default="synthetic",
        help="'synthetic' (default) or the path of a cohort folder (see docs/cohort_format.md)",
    )
    bench.add_argument(
        "--balance",
        type=_balances,
        default=[0.5],
        help="synthetic cohort: share of the log-hazard carried by CT; a "
        "comma-separated list runs a sweep (e.g. 0,0.25,0.5,0.75,1)",
    )
    bench.add_argument(
        "--n-subjects",
        type=int,
        default=None,
        help="synthetic cohort size (default 3600, 300 with --quick)",
    )
    bench.add_argument("--out", default="results", help="output folder (default: results)")
    bench.add_argument("--quick", action="store_true", help="small, fast smoke run")
    bench.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    bench.add_argument(
        "--fusion-ehr",
        choices=["both", "counts", "transformer"],
        default="both",
        help="EHR embedding used by the fusion models: both (default; counts and "
        "transformer side by side), counts or transformer",
    )
    bench.add_argument(
        "--bootstrap",
        type=int,
        default=None,
        help="bootstrap resamples (default 1000; 200 with --quick)",
    )
    bench.add_argument("--no-progress", action="store_true", help="silence progress messages")
    bench.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return parser


def _cohort(args, out, balance):
    from .datasets import load_cohort_folder, make_synthetic_cohort

    if args.cohort != "synthetic":
        return load_cohort_folder(args.cohort)
    n = args.n_subjects or (300 if args.quick else 3600)
    root = out / "cohort"
    if not args.no_progress:
        print(
            f"[multimodal-surv] writing synthetic cohort ({n} subjects, balance "
            f"{balance}) to {root}",
            file=sys.stderr,
            flush=True,
        )
    return make_synthetic_cohort(
        root, n_subjects=n, balance=balance, seed=args.seed, overwrite=True
    )


def _benchmark(args):
    from .benchmark import run_benchmark, to_markdown

    out = Path(args.out)
    if args.bootstrap is not None and args.bootstrap < 1:
        raise ValueError(f"--bootstrap {args.bootstrap} must be a positive number of resamples.")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file; pass a folder (created if absent).")
    if args.cohort != "synthetic" and len(args.balance) > 1:
        raise ValueError("--balance sweeps need the synthetic cohort (--cohort synthetic).")
    sweep = []
    for balance in args.balance:
        run_out = out if len(args.balance) == 1 else out / f"balance_{balance:g}"
        data = _cohort(args, run_out, balance)
        result = run_benchmark(
            data,
            out=run_out,
            quick=args.quick,
            fusion_ehr=args.fusion_ehr,
            n_bootstrap=args.bootstrap,
            random_state=args.seed,
            progress=not args.no_progress,
        )
        print(to_markdown(result.table))
        for key, value in result.summary.items():
            print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
        print(
            f"written: {run_out}/table.md, table.csv, cindex.png, kaplan_meier.png, metadata.json\n"
        )
        sweep.append({"balance (CT share)": balance, **result.summary})
    if len(sweep) > 1:
        import pandas as pd

        table = pd.DataFrame(sweep)
        cols = [
            "balance (CT share)",
            "best_unimodal",
            "best_unimodal_C",
            "best_fusion",
            "best_fusion_C",
            "fusion_gain_pct",
        ]
        table = table[[c for c in cols if c in table]].round(4)
        table.to_csv(out / "sweep.csv", index=False)
        text = to_markdown(table)
        (out / "sweep.md").write_text(text)
        print("Fusion gain vs modality balance\n\n" + text)
    return 0


def main(argv=None):
    """Entry point of the ``multimodal-surv`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "benchmark":
        try:
            return _benchmark(args)
        except (ValueError, FileNotFoundError) as exc:
            # Bad cohorts and arguments are user errors: a message, not a traceback
            # (--debug shows the traceback).
            if args.debug:
                raise
            parser.error(str(exc))
    return 2  # pragma: no cover - argparse requires a command


if __name__ == "__main__":
    sys.exit(main())
