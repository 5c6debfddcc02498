""":func:`run_nested_cv`: nested cross-validation for cohorts without a test split."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.model_selection import GroupKFold

from ._encode import as_progress
from ._run import _prepare_run
from ._select import (
    check_folds,
    cv_scores_caught,
    design,
    fold_cindex,
    select,
    warn_once_per_model,
)
from ._table import markdown_table, metadata

__all__ = ["run_nested_cv"]


def _outer_fold(specs, embeddings, y, groups, rows, k, seed, log, n_jobs):
    """Select on ``rows[0]`` by inner CV, fit every model there, score ``rows[1]``.

    Returns the held-out C per model, the selection, and per model the
    warnings of its inner-fold fits and of its outer-fold fit (re-issued
    once per model over all outer folds by :func:`_warn_nested`).
    """
    fit_rows, test_rows = rows
    cv, inner = cv_scores_caught(
        specs, embeddings, y, fit_rows, groups, k=k, random_state=seed, log=log, n_jobs=n_jobs
    )
    chosen = select(specs, cv)
    tasks = [
        delayed(fold_cindex)(
            spec.estimator, design(embeddings, spec.inputs), y, groups, fit_rows, test_rows
        )
        for spec in specs.values()
    ]
    results = Parallel(n_jobs=n_jobs)(tasks)
    outer = {name: [caught] for name, (_, caught) in zip(specs, results)}
    return dict(zip(specs, (c for c, _ in results))), chosen, (inner, outer)


def _warn_nested(names, caught_per_fold, k, cv):
    """Each model's warnings once over all outer folds, with their fold counts."""
    for i, (what, n) in enumerate((("selection folds", k * cv), ("outer-fold fits", cv))):
        flat = [c for name in names for fold in caught_per_fold for c in fold[i][name]]
        warn_once_per_model(names, flat, n, what)


def run_nested_cv(
    data,
    *,
    cv=5,
    selection_folds=5,
    out=None,
    quick=False,
    fusion_ehr="both",
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
    """Nested cross-validation of every model on the whole cohort.

    The protocol for cohorts of a few hundred patients without a test split:
    ``cv`` outer folds hold out whole subjects; inside each outer training
    part, the best unimodal and the best fusion model are selected by
    ``selection_folds``-fold cross-validation, every model is fitted, and
    all are scored on the held-out fold. The table reports Harrell's C as
    mean ± sd over the outer folds, and the headline the difference between
    the selected fusion and the selected unimodal model of each fold.

    The encoders (self-supervised CT backbone, EHR vocabulary and
    transformer) never see outcomes; they are fitted once on all rows.

    Parameters
    ----------
    data : Bunch
        A cohort (``site`` and ``split`` are ignored: every row takes part).
    cv : int, default=5
        Outer folds.
    selection_folds : int, default=5
        Inner folds of the selection.
    out, quick, fusion_ehr, device, random_state : see :func:`run_benchmark`
    cache_dir, embeddings, models, n_jobs, verbose : see :func:`run_benchmark`
    ct_backbone, ct_weights : default="ssl", None
        The CT encoder's backbone and weights (see :func:`encode_cohort`).

    Returns
    -------
    table : DataFrame
        One row per model: role, mean and sd of C over the outer folds, and
        how often it was selected.
    summary : dict
        Per-fold selections and differences, their mean and sd, ``headline``.
    """
    start = time.perf_counter()
    log = as_progress(verbose)
    cohort = data.cohort.reset_index(drop=True)
    y, groups = data.y, cohort["subject_id"].to_numpy()
    check_folds(cv, groups, what="--cv")
    options = {"models": models, "fusion_ehr": fusion_ehr, "random_state": random_state,
               "device": device, "quick": quick}  # fmt: skip
    specs, out, embeddings = _prepare_run(
        data, out, cache_dir, embeddings, options, log, fit_rows=np.ones(len(cohort), bool),
        ct_backbone=ct_backbone, ct_weights=ct_weights, n_jobs=n_jobs,
    )  # fmt: skip
    outer = GroupKFold(n_splits=cv, shuffle=True, random_state=random_state)
    folds, caught_per_fold = [], []
    for i, rows in enumerate(outer.split(cohort, groups=groups), 1):
        log(f"outer fold {i}/{cv}")
        seed = random_state + i
        *scores, caught = _outer_fold(
            specs, embeddings, y, groups, rows, selection_folds, seed, log, n_jobs
        )
        folds.append(tuple(scores))
        caught_per_fold.append(caught)
    _warn_nested(list(specs), caught_per_fold, selection_folds, cv)
    table, summary = _summarise(specs, folds, cv, selection_folds)
    if out is not None:
        table.to_csv(out / "table.csv", index=False, float_format="%.4f")
        (out / "table.md").write_text(summary["headline"] + "\n\n" + markdown_table(table))
        options = {"cv": cv, "selection_folds": selection_folds, "quick": quick,
                   "fusion_ehr": fusion_ehr, "random_state": random_state,
                   "ct_backbone": ct_backbone,
                   "ct_weights": None if ct_weights is None else str(ct_weights)}  # fmt: skip
        meta = metadata(options, time.perf_counter() - start)
        (out / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    return table, summary


def _summarise(specs, folds, cv, selection_folds):
    rows = []
    for name, spec in specs.items():
        c = np.array([scores[name] for scores, _ in folds])
        rows.append(
            {
                "model": name,
                "role": spec.role,
                "C mean": round(float(c.mean()), 4),
                "C sd": round(float(c.std(ddof=1)), 4),
                "times selected": sum(chosen[spec.role] == name for _, chosen in folds),
            }
        )
    table = pd.DataFrame(rows)
    summary = {"outer_folds": cv, "selection_folds": selection_folds}
    pairs = [(ch["unimodal"], ch["fusion"], sc) for sc, ch in folds]
    if all(u and f for u, f, _ in pairs):
        diffs = np.array([sc[f] - sc[u] for u, f, sc in pairs])
        summary.update(
            selections=[{"unimodal": u, "fusion": f} for u, f, _ in pairs],
            dC=diffs.tolist(),
            dC_mean=float(diffs.mean()),
            dC_sd=float(diffs.std(ddof=1)),
        )
        summary["headline"] = (
            f"Nested {cv}-fold cross-validation (selection by {selection_folds}-fold CV inside "
            f"each outer training part): selected fusion minus selected unimodal "
            f"ΔC = {diffs.mean():+.3f} ± {diffs.std(ddof=1):.3f} (mean ± sd over the outer "
            f"folds; positive in {int((diffs > 0).sum())} of {cv})."
        )
    else:
        summary["headline"] = f"Nested {cv}-fold cross-validation: C per model, mean ± sd."
    return table, summary
