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


def _numbers(text, option, takes, ok, bad_values):
    """Comma-separated floats of ``option``, each passing ``ok``; argparse errors otherwise."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{option} takes {takes}; got {text!r}") from None
    bad = [v for v in values if not ok(v)]
    if bad:
        raise argparse.ArgumentTypeError(f"{option} values must be {bad_values}; got {bad}")
    return values


def _balances(text):
    takes = "a number in [0, 1] or a comma-separated list"
    return _numbers(text, "--balance", takes, lambda v: 0.0 <= v <= 1.0, "in [0, 1]")


def _horizons(text):
    takes = "comma-separated times in days (e.g. 365,730,1095)"
    return _numbers(text, "--horizons", takes, lambda v: v > 0, "positive days")


def _positive(text, option):
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"{option} takes a positive integer; got {text!r}")
    return value


def _parser():
    parser = argparse.ArgumentParser(
        prog="multimodal-surv",
        description="Time-to-event prediction from CT + EHR: unimodal vs fusion benchmark.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser(
        "benchmark",
        help="run the comparison table",
        description="Encode CT and EHR, select the best unimodal and fusion models by "
        "cross-validation on the training rows, and score every model on the internal "
        "and external test sets with subject-level bootstrap CIs.",
    )
    _add_cohort_options(bench)
    _add_protocol_options(bench)
    bench.add_argument(
        "--allow-subject-overlap",
        action="store_true",
        help="accept a cohort folder where a subject has rows in both train and test",
    )
    bench.add_argument(
        "--ct-weights", default=None, help="CT backbone weights: a state-dict file or folder"
    )
    bench.add_argument("--no-progress", action="store_true", help="silence progress messages")
    bench.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return parser


def _add_cohort_options(bench):
    bench.add_argument(
        "--cohort",
        default="synthetic",
        help="'synthetic' (default) or the path of a cohort folder (see docs/cohort_format.md)",
    )
    bench.add_argument(
        "--balance",
        type=_balances,
        default=None,
        help="synthetic cohort only: share of the log-hazard carried by CT (default 0.5); a "
        "comma-separated list runs a sweep (e.g. 0,0.25,0.5,0.75,1)",
    )
    bench.add_argument(
        "--n-subjects",
        type=int,
        default=None,
        help="synthetic cohort only: its size (default 3600, 300 with --quick)",
    )
    bench.add_argument("--out", default="results", help="output folder (default: results)")
    bench.add_argument(
        "--quick",
        action="store_true",
        help="small, fast smoke run: synthetic volumes on an 8 mm grid, shorter encoder "
        "pretraining, --max-epochs 40, 200 bootstrap resamples",
    )
    bench.add_argument(
        "--random-state", type=int, default=0, help="random seed of every step (default 0)"
    )


def _positive_int(option):
    """An argparse type: an integer >= 1, errors naming ``option``."""
    return lambda text: _positive(text, option)


# flag, choices, default, help
_CHOICE_OPTIONS = (
    (
        "--fusion-ehr",
        ("both", "counts", "transformer"),
        "both",
        "EHR embedding used by the fusion models: both (default; counts and "
        "transformer side by side, with a matching unimodal row), counts or transformer",
    ),
    (
        "--ct-backbone",
        ("ssl", "merlin", "ct-fm"),
        "ssl",
        "CT encoder backbone (default ssl: self-supervised on the training scans; merlin: "
        "the packaged checkpoint unless --ct-weights; ct-fm needs --ct-weights)",
    ),
)

# flag, type, default, help
_PROTOCOL_OPTIONS = (
    (
        "--models",
        str,
        None,
        "comma-separated rows to run, by name or id (e.g. ct-only,late-fusion); default all",
    ),
    (
        "--selection-folds",
        _positive_int("--selection-folds"),
        5,
        "folds of the subject-grouped CV on the training rows that selects the best "
        "unimodal and fusion models (default 5)",
    ),
    (
        "--cv",
        _positive_int("--cv"),
        None,
        "nested K-fold cross-validation on the whole cohort instead of the "
        "train/test split (for cohorts without a test split)",
    ),
    (
        "--horizons",
        _horizons,
        None,
        "clinical horizons in days, comma-separated (default: quartiles of the "
        "training event times)",
    ),
    (
        "--max-epochs",
        _positive_int("--max-epochs"),
        None,
        "max_epochs of every neural model (default: library defaults; 40 with --quick)",
    ),
    (
        "--device",
        str,
        "cpu",
        "torch device of the encoders and every neural model: cpu (default), cuda, cuda:N or auto",
    ),
    (
        "--n-jobs",
        int,
        -1,
        "model fits in parallel processes (default -1: one per core; 1: in this process)",
    ),
    (
        "--bootstrap",
        int,
        None,
        "subject-level bootstrap resamples for C and ΔC (default 1000; 200 with --quick)",
    ),
    (
        "--metric-bootstrap",
        _positive_int("--metric-bootstrap"),
        None,
        "resamples for the other metrics' CIs (default 100; 20 with --quick)",
    ),
)


def _add_protocol_options(bench):
    for flag, choices, default, help_ in _CHOICE_OPTIONS:
        bench.add_argument(flag, choices=choices, default=default, help=help_)
    for flag, type_, default, help_ in _PROTOCOL_OPTIONS:
        bench.add_argument(flag, type=type_, default=default, help=help_)


def _check_args(args):
    if args.bootstrap is not None and args.bootstrap < 1:
        raise ValueError(f"--bootstrap {args.bootstrap} must be a positive number of resamples.")
    if args.cohort != "synthetic":
        for option, value in (("--n-subjects", args.n_subjects), ("--balance", args.balance)):
            if value is not None:
                sweep = (
                    " (balance sweeps need the synthetic cohort)" if option == "--balance" else ""
                )
                raise ValueError(
                    f"{option} applies to the synthetic cohort only{sweep}, not to the cohort "
                    f"folder {args.cohort!r}; drop {option}."
                )
    if args.cv is not None and args.balance is not None and len(args.balance) > 1:
        raise ValueError("--cv runs one cohort; drop the --balance sweep or --cv.")
    if args.cv is not None:  # nested CV reports Harrell's C per outer fold only
        for option, value in (
            ("--horizons", args.horizons),
            ("--bootstrap", args.bootstrap),
            ("--metric-bootstrap", args.metric_bootstrap),
        ):
            if value is not None:
                raise ValueError(
                    f"{option} does not apply to --cv (nested cross-validation reports "
                    f"Harrell's C over the outer folds, without a bootstrap); drop {option}."
                )
    if not (args.device in ("cpu", "cuda", "auto") or args.device.startswith("cuda:")):
        raise ValueError(f"--device {args.device!r} must be cpu, cuda, cuda:N or auto.")


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
    # --quick: the same 400 x 400 x 288 mm chest on a coarser 8 mm grid (a quarter
    # of the voxels), so smoke runs write and read less.
    grid = {"volume_shape": (50, 50, 36), "spacing": (8.0, 8.0, 8.0)} if args.quick else {}
    data = make_synthetic_cohort(
        root, n_subjects=n, balance=balance, random_state=args.random_state,
        overwrite=earlier, n_jobs=args.n_jobs, **grid,
    )  # fmt: skip
    _mark(root)
    return data


def _models(args):
    from .benchmark import default_models
    from .benchmark._models import configure, select_models
    from .benchmark._run import QUICK_MAX_EPOCHS, quick_adaptive

    models = default_models(fusion_ehr=args.fusion_ehr, random_state=args.random_state)
    if args.quick:
        quick_adaptive(models)
    if args.models is not None:
        models = select_models(models, [m for m in args.models.split(",") if m.strip()])
    max_epochs = args.max_epochs or (QUICK_MAX_EPOCHS if args.quick else None)
    return configure(models, max_epochs=max_epochs)


def _common(args):
    return {
        "quick": args.quick,
        "fusion_ehr": args.fusion_ehr,
        "selection_folds": args.selection_folds,
        "device": args.device,
        "random_state": args.random_state,
        "n_jobs": args.n_jobs,
        "models": _models(args),
        "verbose": 0 if args.no_progress else 1,
    }


def _nested(args, out, common, user_data):
    from .benchmark import run_nested_cv
    from .benchmark._table import markdown_table

    _check_ours(out, "--out folder")
    _mark(out)
    balance = (args.balance or [0.5])[0]
    data = user_data if user_data is not None else _synthetic_cohort(args, out, balance)
    table, summary = run_nested_cv(
        data, cv=args.cv, out=out, ct_backbone=args.ct_backbone, ct_weights=args.ct_weights,
        **common,
    )  # fmt: skip
    print(summary["headline"] + "\n")
    print(markdown_table(table))
    print(f"written: {out}/table.md, table.csv, metadata.json\n")
    return 0


def _benchmark(args):
    from .benchmark import run_benchmark, to_markdown
    from .benchmark._outputs import FIGURES
    from .datasets import load_cohort_folder

    out = Path(args.out)
    # Cheap checks first: nothing is written or encoded before they pass.
    _check_args(args)
    common = _common(args)  # an unknown --models row fails here
    user_data = None
    if args.cohort != "synthetic":  # validated (tables, MEDS schema, splits) before any work
        user_data = load_cohort_folder(
            args.cohort, allow_subject_overlap=args.allow_subject_overlap
        )
    if args.cv is not None:
        return _nested(args, out, common, user_data)
    balances = args.balance or [0.5]
    runs = {b: out if len(balances) == 1 else out / f"balance_{b:g}" for b in balances}
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
            horizons=args.horizons,
            n_bootstrap=args.bootstrap,
            n_metric_bootstrap=args.metric_bootstrap,
            **common,
            ct_backbone=args.ct_backbone,
            ct_weights=args.ct_weights,
        )
        print(to_markdown(result.table, result.summary))
        report = ("modality_report.md",) if result.modality_report is not None else ()
        files = ", ".join(("table.csv", "calibration.csv", *FIGURES, "metadata.json", *report))
        print(f"written: {run_out}/table.md, {files}\n")
        s = result.summary
        sweep.append(
            {
                "balance (CT share)": balance,
                "selected unimodal": s.get("selected_unimodal"),
                "selected fusion": s.get("selected_fusion"),
                "internal ΔC": s.get("internal_dC"),
                "simultaneous CI": s.get("internal_dC_simult_ci"),
                "p (Holm)": s.get("internal_p_holm"),
                "gain detected": s.get("gain_detected"),
                "adaptive chose": s.get("adaptive_chosen"),
            }
        )
    if len(sweep) > 1:
        _write_sweep(sweep, out)
    return 0


def _write_sweep(sweep, out):
    import pandas as pd

    from .benchmark._table import markdown_table

    table = pd.DataFrame(sweep)
    table["internal ΔC"] = table["internal ΔC"].round(4)
    table["p (Holm)"] = table["p (Holm)"].round(4)
    table["simultaneous CI"] = [
        f"[{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "" for ci in table["simultaneous CI"]
    ]
    table.to_csv(out / "sweep.csv", index=False)
    text = markdown_table(table)
    (out / "sweep.md").write_text(text)
    print("Fusion gain and the adaptive choice vs modality balance\n\n" + text)


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
