""":func:`run_benchmark`: select on the training rows, score the test sets once."""

from __future__ import annotations

import numbers
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import clone

from . import _clinical as clin
from ._encode import as_progress, encode_cohort
from ._models import as_spec, configure, default_models, fit_model
from ._scores import Predictions, score_site
from ._select import cv_scores, design, select, site_masks, warn_once_per_model
from ._table import build_table, headline, metadata

__all__ = ["BenchmarkResult", "run_benchmark"]

ORACLE = "Oracle (true log-hazard)"
QUICK_MAX_EPOCHS = 40
# --quick: the adaptive row screens the cheap model families on 3 folds.
QUICK_ADAPTIVE = {"cv": 3, "kinds": ["unimodal", "linear", "early", "late"]}


@dataclass
class BenchmarkResult:
    """What :func:`run_benchmark` returns (and writes when ``out`` is given).

    Attributes
    ----------
    table : DataFrame
        One row per model: role, selection score, and per test site every
        metric with its CI (the columns of ``table.csv``).
    risks : dict of str to ndarray
        Predicted risk of every cohort row, per model.
    summary : dict
        The selection, the headline difference and its test, flags, and the
        ``headline`` sentence.
    metadata : dict
        Options, versions and wall time.
    predictions : dict of str to Predictions
        Risks and survival curves at ``summary["grid"]`` (figures use them).
    modality_report : ModalityReport or None
        The adaptive row's :class:`~multimodal_surv.inspection.ModalityReport`
        (``modality_report.md``), ``None`` without an adaptive row.
    """

    table: object
    risks: dict = field(repr=False)
    summary: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    predictions: dict = field(default_factory=dict, repr=False)
    modality_report: object = field(default=None, repr=False)


def _check_positive(name, value):
    if value is not None and (
        not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1
    ):
        raise ValueError(f"{name}={value!r} must be a positive integer or None.")


def check_horizons(horizons, y_train):
    """Validated horizons (sorted, positive), or the training event-time quartiles."""
    if horizons is None:
        return clin.default_horizons(y_train)
    h = np.sort(np.asarray(horizons, dtype=float).reshape(-1))
    if h.size == 0 or not np.isfinite(h).all() or (h <= 0).any():
        raise ValueError(f"horizons={horizons!r} must be positive finite times (days).")
    return h


def predict_rows(fitted, X, grid, own_times):
    """Risk, survival at ``grid`` and at each row's own time, for every row of ``X``."""
    risk = np.asarray(fitted.predict(X), dtype=float)
    final = fitted.steps[-1][1] if hasattr(fitted, "steps") else fitted
    if not hasattr(final, "predict_survival_function"):
        return Predictions(risk)
    surv = np.asarray(fitted.predict_survival_function(X, return_array=True), dtype=float)
    times = np.asarray(final.unique_times_, dtype=float)
    # Step function: the value at the last stored time <= t (1 before the first).
    padded = np.hstack([np.ones((surv.shape[0], 1)), surv])
    at_grid = padded[:, np.searchsorted(times, grid, side="right")]
    own = padded[np.arange(len(risk)), np.searchsorted(times, own_times, side="right")]
    return Predictions(risk, at_grid, own)


def _fit_predict(estimator, X, y, train, groups, grid):
    """Predictions for all rows, the fitted adaptive model (or None), the fit's warnings.

    The warnings are ``(category, message)`` pairs, so that they survive a
    joblib worker process.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fitted = fit_model(estimator, X[train], y[train], groups[train])
        final = fitted.steps[-1][1] if hasattr(fitted, "steps") else fitted
        preds = predict_rows(fitted, X, grid, y[y.dtype.names[1]].astype(float))
    adaptive = final if hasattr(final, "best_strategy_") else None
    return preds, adaptive, [(w.category, str(w.message)) for w in caught]


def _with_n_jobs(estimator, n_jobs):
    """``estimator`` with its final step's ``n_jobs`` set, when it has one left at None."""
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    if n_jobs is None or final.get_params(deep=False).get("n_jobs", 0) is not None:
        return estimator
    key = f"{estimator.steps[-1][0]}__n_jobs" if hasattr(estimator, "steps") else "n_jobs"
    return clone(estimator).set_params(**{key: n_jobs})


def fit_all(specs, embeddings, y, train, groups, grid, log, n_jobs=None):
    """Fit every model on the training rows; predictions for all rows.

    The ordinary rows are fitted in parallel (``n_jobs``); an adaptive row,
    which cross-validates its own candidates, is fitted after them with its
    candidates' fits in parallel instead.

    Returns the predictions and the fitted adaptive models (by row name).
    """
    log(f"fitting {len(specs)} models on all {int(train.sum())} training rows")
    meta = [n for n, s in specs.items() if s.role == "adaptive"]
    plain = [n for n in specs if n not in meta]
    tasks = [
        delayed(_fit_predict)(
            specs[n].estimator, design(embeddings, specs[n].inputs), y, train, groups, grid
        )
        for n in plain
    ]
    out = dict(zip(plain, Parallel(n_jobs=n_jobs)(tasks)))
    for n in meta:
        estimator = _with_n_jobs(specs[n].estimator, n_jobs)
        out[n] = _fit_predict(
            estimator, design(embeddings, specs[n].inputs), y, train, groups, grid
        )
    out = {n: out[n] for n in specs}
    warn_once_per_model(
        list(out), [caught for _, _, caught in out.values()], 1, "refit on all training rows"
    )
    return {n: p for n, (p, _, _) in out.items()}, {n: a for n, (_, a, _) in out.items() if a}


def name_adaptive_rows(specs, preds, adaptive):
    """Rename each adaptive row ``"<name> (chosen: <strategy>)"``; its summary entries.

    Returns the renamed ``specs`` and ``preds`` and a summary dict (empty
    without an adaptive row) for the first adaptive row.
    """
    names = {n: f"{n} (chosen: {a.best_strategy_})" for n, a in adaptive.items()}
    specs = {names.get(n, n): s for n, s in specs.items()}
    preds = {names.get(n, n): p for n, p in preds.items()}
    if not adaptive:
        return specs, preds, {}
    first, model = next(iter(adaptive.items()))
    summary = {
        "adaptive_row": names[first],
        "adaptive_chosen": model.best_strategy_,
        "adaptive_folds": model.n_splits_,
        "adaptive_reason": model.selection_reason_,
    }
    return specs, preds, summary


def add_adaptive_headline(summary, sites):
    """Append the line about the adaptive row to ``summary["headline"]`` (if it has one)."""
    row = summary.get("adaptive_row")
    if row is None:
        return
    line = (
        f"Adaptive row (a meta-model, not part of the selection above): its own "
        f"{summary['adaptive_folds']}-fold CV on the training rows chose "
        f"'{summary['adaptive_chosen']}'"
    )
    if "internal" in sites:
        line += f"; internal test C = {sites['internal'][0][row]['C']:.3f}"
    summary["headline"] = "\n".join(filter(None, [summary["headline"], line + "."]))


def score_sites(preds, y, groups, masks, horizons, grid, chosen, fusion, n_boot, seed):
    """Score every model on each test site; warn about flagged sites."""
    train = masks["train"]
    sites = {}
    for k, site in enumerate(s for s in ("internal", "external") if masks[s].any()):
        rows = masks[site]
        outcome = clin.site_outcome(site, y[rows], y[train], horizons)
        sites[site] = score_site(
            {n: p.take(rows) for n, p in preds.items()}, outcome, groups[rows],
            y_train=y[train], grid=grid, reference=chosen["unimodal"], fusion=fusion,
            primary=chosen["fusion"], n_bootstrap=n_boot[0], n_metric_bootstrap=n_boot[1],
            rng=np.random.default_rng([seed, k]),
        )  # fmt: skip
        flags = sites[site][1]["flags"]
        if flags:
            warnings.warn(
                f"{site} test set flagged: {'; '.join(flags)}; its estimates are too "
                "uncertain to compare models.",
                UserWarning,
                stacklevel=3,
            )
    return sites


def quick_adaptive(models):
    """Set ``QUICK_ADAPTIVE`` on every adaptive row of ``models`` (in place)."""
    for spec in models.values():
        if getattr(spec, "role", None) == "adaptive":
            spec.estimator.set_params(**QUICK_ADAPTIVE)
    return models


def _prepare(models, fusion_ehr, random_state, device, quick, adaptive=False):
    """The rows to run: ``models`` or the defaults, on ``device``.

    With ``quick``, the default rows train for at most ``QUICK_MAX_EPOCHS``
    epochs and the default adaptive row uses ``QUICK_ADAPTIVE`` (rows passed
    in ``models`` keep their own settings). Adaptive rows are dropped unless
    ``adaptive`` (nested cross-validation has none).
    """
    if models is None:
        models = default_models(fusion_ehr=fusion_ehr, random_state=random_state)
        max_epochs = QUICK_MAX_EPOCHS if quick else None
        if quick:
            quick_adaptive(models)
    else:
        max_epochs = None
    specs = {name: as_spec(name, spec) for name, spec in models.items()}
    specs = {n: s for n, s in specs.items() if adaptive or s.role != "adaptive"}
    return configure(specs, max_epochs=max_epochs, device=device)


def _prepare_run(
    data, out, cache_dir, embeddings, options, log, only_used_inputs=False, **encode_options
):
    """What every protocol starts with: the rows to run, the output folder, the embeddings.

    ``options`` holds ``models``, ``fusion_ehr``, ``random_state``, ``device``
    and ``quick``. ``out`` is created and the CT cache defaults to
    ``<out>/cache``; ``embeddings`` come from :func:`encode_cohort` (with
    ``encode_options``; ``only_used_inputs`` skips the embeddings no row
    uses) unless given.
    """
    quick, random_state, device = options["quick"], options["random_state"], options["device"]
    specs = _prepare(
        options["models"], options["fusion_ehr"], random_state, device, quick,
        adaptive=options.get("adaptive", False),
    )  # fmt: skip
    out = None if out is None else Path(out)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        cache_dir = cache_dir or out / "cache"
    if only_used_inputs:
        encode_options["inputs"] = {i for spec in specs.values() for i in spec.inputs}
    if embeddings is None:
        embeddings = encode_cohort(
            data, quick=quick, random_state=random_state, cache_dir=cache_dir, verbose=log,
            device=device, **encode_options,
        )  # fmt: skip
    return specs, out, embeddings


def run_benchmark(
    data,
    *,
    out=None,
    quick=False,
    fusion_ehr="both",
    selection_folds=5,
    horizons=None,
    n_bootstrap=None,
    n_metric_bootstrap=None,
    device="cpu",
    random_state=0,
    cache_dir=None,
    embeddings=None,
    models=None,
    n_jobs=None,
    verbose=0,
    ct_backbone="ssl",
    ct_weights=None,
):
    """Run the unimodal vs fusion comparison on one cohort.

    The best unimodal and the best fusion model are selected by
    ``selection_folds``-fold cross-validation on the training rows (whole
    subjects per fold, mean Harrell's C); every model is then refitted on all
    training rows and scored once on each test set. Differences in C against
    the selected unimodal model come from a paired subject-level bootstrap;
    the fusion rows' p-values are Holm-corrected and their difference CIs are
    simultaneous (Bonferroni) intervals, both weighted so that the selected
    fusion model, fixed before any test row is seen, carries half of the
    5 % family-wise error rate. The headline reports a gain only
    when the selected fusion model's simultaneous CI lies above 0 on an
    internal test set that is not flagged as too small.

    Parameters
    ----------
    data : Bunch
        A cohort as returned by :func:`~multimodal_surv.datasets.load_cohort_folder`
        or :func:`~multimodal_surv.datasets.make_synthetic_cohort` (``cohort``
        with ``subject_id``, ``site`` and ``split`` columns, ``y``,
        ``meds_root``, optional ``oracle``).
    out : path-like or None
        Folder for the tables, figures and ``metadata.json``.
    quick : bool, default=False
        Smaller encoder budgets, fewer resamples, and ``max_epochs=40`` for
        the default rows.
    fusion_ehr : {"both", "counts", "transformer"}, default="both"
    selection_folds : int, default=5
        Folds of the selection cross-validation on the training rows.
    horizons : sequence of float or None
        Clinical horizons (days) of the time-dependent AUC, Brier score and
        calibration; default the quartiles of the training event times.
    n_bootstrap : int or None
        Subject-level resamples for C and its differences (default 1000,
        200 if quick).
    n_metric_bootstrap : int or None
        Resamples for the other metrics (default 100, 20 if quick).
    device : str or None
        Torch device of the encoders and of every neural model (it replaces
        the models' own ``device``).
    random_state : int, default=0
        Seeds encoders, models, folds and the bootstrap: same seed, same table.
    cache_dir : path-like or None
        CT embedding cache (default ``<out>/cache`` when ``out`` is given).
    embeddings : dict or None
        Precomputed output of :func:`encode_cohort` (skips encoding).
    models : dict or None
        Replaces :func:`default_models`: name -> :class:`ModelSpec` (or an
        ``(inputs, estimator)`` pair).
    n_jobs : int or None, default=None
        Model fits run in parallel through joblib processes (-1: every
        core); the table is the same for any value.
    verbose : int, default=0
        0 silent; 1 timestamped progress lines on stderr and the encoders'
        progress bars.
    ct_backbone, ct_weights : default="ssl", None
        The CT encoder's backbone and weights (see :func:`encode_cohort`).

    Returns
    -------
    result : BenchmarkResult
    """
    start = time.perf_counter()
    log = as_progress(verbose)
    for name, value in (("n_bootstrap", n_bootstrap), ("n_metric_bootstrap", n_metric_bootstrap)):
        _check_positive(name, value)
    n_bootstrap = n_bootstrap or (200 if quick else 1000)
    n_metric_bootstrap = min(n_metric_bootstrap or (20 if quick else 100), n_bootstrap)
    cohort = data.cohort.reset_index(drop=True)
    y, groups = data.y, cohort["subject_id"].to_numpy()
    masks = site_masks(cohort)
    train = masks["train"]
    horizons = check_horizons(horizons, y[train])
    options = {"models": models, "fusion_ehr": fusion_ehr, "random_state": random_state,
               "device": device, "quick": quick, "adaptive": True}  # fmt: skip
    specs, out, embeddings = _prepare_run(
        data, out, cache_dir, embeddings, options, log, only_used_inputs=True,
        ct_backbone=ct_backbone, ct_weights=ct_weights, n_jobs=n_jobs,
    )  # fmt: skip
    selectable = {n: s for n, s in specs.items() if s.role != "adaptive"}
    cv = cv_scores(
        selectable, embeddings, y, np.flatnonzero(train), groups,
        k=selection_folds, random_state=random_state, log=log, n_jobs=n_jobs,
    )  # fmt: skip
    chosen = select(selectable, cv)
    grid = clin.time_grid(horizons)
    preds, adaptive = fit_all(specs, embeddings, y, train, groups, grid, log, n_jobs)
    specs, preds, adaptive_summary = name_adaptive_rows(specs, preds, adaptive)
    if getattr(data, "oracle", None) is not None:
        preds = {ORACLE: Predictions(np.asarray(data.oracle, dtype=float)), **preds}
    log("scoring the test sets (subject-level bootstrap)")
    fusion = [n for n, s in specs.items() if s.role == "fusion"]
    sites = score_sites(
        preds, y, groups, masks, horizons, grid, chosen, fusion,
        (n_bootstrap, n_metric_bootstrap), random_state,
    )  # fmt: skip
    table = build_table(specs, preds, cv, sites)
    summary = headline(chosen, cv, sites, selection_folds, preds)
    summary.update(horizons=horizons.tolist(), grid=grid.tolist(), **adaptive_summary)
    add_adaptive_headline(summary, sites)
    options = {
        "random_state": random_state, "quick": quick, "fusion_ehr": fusion_ehr,
        "selection_folds": selection_folds, "n_bootstrap": n_bootstrap, "n_jobs": n_jobs,
        "n_metric_bootstrap": n_metric_bootstrap, "device": device,
    }  # fmt: skip
    result = BenchmarkResult(
        table=table,
        risks={n: p.risk for n, p in preds.items()},
        summary=summary,
        metadata=metadata(options, time.perf_counter() - start),
        predictions=preds,
        modality_report=next((a.modality_report_ for a in adaptive.values()), None),
    )
    if out is not None:
        from ._outputs import write_outputs

        write_outputs(result, data, masks, out)
    return result
