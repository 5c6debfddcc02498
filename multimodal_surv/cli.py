"""Command line: ``multimodal-surv benchmark`` (also ``python -m multimodal_surv``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__

__all__ = ["main"]

#: Written into every folder the CLI creates; only such folders are written into again.
MARKER = ".multimodal-surv"


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
    bench.add_argument(
        "--allow-subject-overlap",
        action="store_true",
        help="accept a cohort folder where a subject has rows in both train and test",
    )
    bench.add_argument("--no-progress", action="store_true", help="silence progress messages")
    bench.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return parser


def _check_ours(folder: Path, what: str) -> bool:
    """Whether ``folder`` holds an earlier run's files; refuse a non-empty folder not ours.

    A folder is the CLI's when it holds the :data:`MARKER` file, written by
    :func:`_mark` into every folder the CLI creates. Any other non-empty
    folder is the user's: never written into, nothing in it removed.
    """
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{what} {str(folder)!r} is a file; pass a folder (created if absent).")
    earlier = folder.is_dir() and any(folder.iterdir())
    if earlier and not (folder / MARKER).is_file():
        raise ValueError(
            f"{what} {str(folder)!r} is not empty and was not created by multimodal-surv "
            f"(no {MARKER} file in it); the CLI never writes into such a folder: pass a new "
            "or empty folder."
        )
    return earlier


def _mark(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    marker = {"created_by": "multimodal-surv", "version": __version__}
    (folder / MARKER).write_text(json.dumps(marker) + "\n")


def _synthetic_cohort(args, out, balance):
    from .datasets import make_synthetic_cohort

    n = args.n_subjects or (300 if args.quick else 3600)
    root = out / "cohort"
    # Replaces only a synthetic cohort this CLI wrote there before.
    earlier = _check_ours(root, "synthetic cohort folder")
    if not args.no_progress:
        print(
            f"[multimodal-surv] writing synthetic cohort ({n} subjects, balance "
            f"{balance}) to {root}",
            file=sys.stderr,
            flush=True,
        )
    data = make_synthetic_cohort(
        root, n_subjects=n, balance=balance, seed=args.seed, overwrite=earlier
    )
    _mark(root)
    return data


def _benchmark(args):
    from .benchmark import run_benchmark, to_markdown
    from .datasets import load_cohort_folder

    out = Path(args.out)
    # Cheap checks first: nothing is written or encoded before they pass.
    if args.bootstrap is not None and args.bootstrap < 1:
        raise ValueError(f"--bootstrap {args.bootstrap} must be a positive number of resamples.")
    if args.cohort != "synthetic" and len(args.balance) > 1:
        raise ValueError("--balance sweeps need the synthetic cohort (--cohort synthetic).")
    user_data = None
    if args.cohort != "synthetic":  # validated (tables, MEDS schema, splits) before any work
        user_data = load_cohort_folder(
            args.cohort, allow_subject_overlap=args.allow_subject_overlap
        )
    runs = {b: out if len(args.balance) == 1 else out / f"balance_{b:g}" for b in args.balance}
    for folder in {out, *runs.values()}:
        _check_ours(folder, "--out folder")
    sweep = []
    for balance, run_out in runs.items():
        _mark(out)
        _mark(run_out)
        data = user_data if user_data is not None else _synthetic_cohort(args, run_out, balance)
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


def _user_errors() -> tuple[type[BaseException], ...]:
    """The errors that mean "bad input": one line and exit code 2, not a traceback."""
    import pyarrow as pa

    from .exceptions import CTReadError

    # CTReadError is a ValueError; named for the reader. pyarrow's own errors
    # (a corrupt shard, a column of another type) are not all ValueErrors.
    return (ValueError, TypeError, OSError, CTReadError, pa.ArrowException)


def main(argv=None):
    """Entry point of the ``multimodal-surv`` console script.

    Errors in the input (the library's ``ValueError`` / ``TypeError``,
    ``OSError``, ``CTReadError``, pyarrow errors) print one line and exit with
    code 2; ``--debug`` shows the traceback instead.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "benchmark":
        try:
            return _benchmark(args)
        except _user_errors() as exc:
            if args.debug:
                raise
            message = " ".join(str(exc).split()) or type(exc).__name__
            print(f"{parser.prog}: error: {message} (--debug shows the traceback)", file=sys.stderr)
            raise SystemExit(2) from None
    return 2  # pragma: no cover - argparse requires a command


if __name__ == "__main__":
    sys.exit(main())
