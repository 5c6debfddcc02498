"""The main job: unimodal baselines vs the four fusion strategies, paper style.

:func:`run_benchmark` takes a cohort (the synthetic one of
:func:`~multimodal_surv.datasets.make_synthetic_cohort` or a user's folder read
by :func:`~multimodal_surv.datasets.load_cohort_folder`), encodes CT and EHR
once with the library's encoders (fitted on the training rows only), fits
every model with the same protocol, and reports Harrell's C on the internal
and external test sets with bootstrap confidence intervals, the gain over the
best unimodal model and a paired-bootstrap p-value. It uses nothing but the
public API, so it is also a worked example of the library.
"""

from __future__ import annotations

import json
import numbers
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .encoders import CTEncoder, EHRCountEncoder, EHRTransformerEncoder, make_multimodal_encoder
from .metrics import concordance_index
from .models import (
    CoAttentionFusionSurvival,
    ContrastiveFusionSurvival,
    CrossAttentionFusionSurvival,
    DeepSurvival,
    LateFusionSurvival,
)

__all__ = ["BenchmarkResult", "default_models", "encode_cohort", "run_benchmark"]

ORACLE = "Oracle (true log-hazard)"
UNIMODAL = ("CT only", "EHR counts only", "EHR transformer only")


_T0 = time.perf_counter()


def _log(message, progress):
    if progress:
        elapsed = time.perf_counter() - _T0
        print(f"[multimodal-surv {elapsed:6.0f}s] {message}", file=sys.stderr, flush=True)


def _prefixed(frame, prefix):
    """Rename all columns to ``<prefix>__x<j>`` (one modality, plain vector)."""
    out = frame.copy()
    out.columns = [f"{prefix}__x{j}" for j in range(frame.shape[1])]
    return out


def encode_cohort(data, *, quick=False, random_state=0, cache_dir=None, progress=True):
    """Embed every row of a cohort with the library's CT and EHR encoders.

    Encoders are fitted on the training rows (``site == "internal"`` and
    ``split == "train"``) only, then applied to all rows.

    Parameters
    ----------
    data : Bunch
        As returned by :func:`~multimodal_surv.datasets.load_cohort_folder`.
    quick : bool, default=False
        Smaller pretraining budgets.
    random_state : int, default=0
    cache_dir : path-like or None
        On-disk cache of CT embeddings (reruns skip the CT backbone).
    progress : bool, default=True

    Returns
    -------
    embeddings : dict of str to DataFrame
        ``"ct"`` (columns ``ct__*``), ``"ehr_counts"``, ``"ehr_transformer"``
        and their concatenation ``"ehr_both"`` (columns ``ehr__*``), indexed
        like ``data.cohort``.
    """
    cohort = data.cohort.reset_index(drop=True)
    train = _masks(cohort)["train"]
    ct = CTEncoder(
        "ssl",
        pretrain_epochs=10 if quick else 30,
        cache_dir=cache_dir,
        on_error="nan",
        verbose=progress,
        random_state=random_state,
    )
    counts = EHRCountEncoder(data.meds_root)
    _log("encoding CT (self-supervised backbone) and EHR counts", progress)
    encoder = make_multimodal_encoder(ct=ct, ehr=counts)
    encoder.fit(cohort[train])
    both = encoder.transform(cohort)
    ct_cols = [c for c in both.columns if c.startswith("ct__")]
    ehr_cols = [c for c in both.columns if c.startswith("ehr__")]
    _log("pretraining the EHR transformer (next-code prediction)", progress)
    transformer = EHRTransformerEncoder(
        data.meds_root,
        pretrain_epochs=2 if quick else 5,
        verbose=int(progress),
        random_state=random_state,
    )
    ehr_fm = make_multimodal_encoder(ehr=transformer).fit(cohort[train]).transform(cohort)
    return {
        "ct": both[ct_cols],
        "ehr_counts": _prefixed(both[ehr_cols], "ehr"),
        "ehr_transformer": _prefixed(ehr_fm, "ehr"),
        "ehr_both": _prefixed(pd.concat([both[ehr_cols], ehr_fm], axis=1), "ehr"),
    }


def default_models(*, fusion_ehr="both", random_state=0):
    """The comparison of the paper: name -> (embedding keys, estimator).

    Every estimator sits behind a ``StandardScaler`` (pandas output, so the
    ``ct__`` / ``ehr__`` prefixes reach the fusion estimators) and uses its
    library defaults with a shared ``random_state``. ``DeepSurvival`` rows
    impute a missing modality (NaN columns) with the training mean; the fusion
    estimators handle it natively.

    Parameters
    ----------
    fusion_ehr : {"both", "counts", "transformer"}, default="both"
        Which EHR embedding the multimodal models use ("both": counts and
        transformer embeddings side by side, as one ``ehr`` modality).
    random_state : int, default=0

    Returns
    -------
    models : dict
    """
    ehr = f"ehr_{fusion_ehr}"
    rs = {"random_state": random_state}
    fused = ["ct", ehr]
    specs = {
        "CT only": (["ct"], DeepSurvival(**rs)),
        "EHR counts only": (["ehr_counts"], DeepSurvival(**rs)),
        "EHR transformer only": (["ehr_transformer"], DeepSurvival(**rs)),
        "Early fusion (concatenation)": (fused, DeepSurvival(**rs)),
        "Late fusion": (fused, LateFusionSurvival(**rs)),
        "Contrastive fusion": (fused, ContrastiveFusionSurvival(**rs)),
        "Cross-attention (CT queries EHR)": (fused, CrossAttentionFusionSurvival(query="ct", **rs)),
        "Cross-attention (EHR queries CT)": (
            fused,
            CrossAttentionFusionSurvival(query="ehr", **rs),
        ),  # noqa: E501
        "Co-attention (CT-guided)": (fused, CoAttentionFusionSurvival(guide="ct", **rs)),
        "Co-attention (EHR-guided)": (fused, CoAttentionFusionSurvival(guide="ehr", **rs)),
    }
    models = {}
    for name, (keys, est) in specs.items():
        steps = [StandardScaler().set_output(transform="pandas"), est]
        if isinstance(est, DeepSurvival):
            # Unimodal and early-fusion baselines cannot take a missing modality:
            # they see the training mean instead (fusion estimators mask it).
            steps.insert(0, SimpleImputer(keep_empty_features=True).set_output(transform="pandas"))
        models[name] = (keys, make_pipeline(*steps))
    return models


def _masks(cohort):
    site = cohort["site"].to_numpy()
    split = cohort["split"].to_numpy()
    masks = {
        "train": (site == "internal") & (split == "train"),
        "internal": (site == "internal") & (split == "test"),
        "external": site == "external",
    }
    for name in ("train", "internal"):
        if not masks[name].any():
            raise ValueError(
                f"the cohort has no {name!r} rows (site='internal', split="
                f"'{'train' if name == 'train' else 'test'}'); the benchmark trains on internal "
                "train rows and tests on internal test rows (and external rows if any)."
            )
    return masks


def _bootstrap_indices(n, n_bootstrap, rng):
    return rng.integers(0, n, size=(n_bootstrap, n))


def _cindex_or_nan(event, time, risk):
    try:
        return concordance_index(event, time, risk)
    except ValueError:  # a resample without comparable pairs
        return np.nan


@dataclass
class BenchmarkResult:
    """What :func:`run_benchmark` returns (and writes when ``out`` is given)."""

    table: pd.DataFrame
    risks: dict = field(repr=False)
    summary: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)


def _site_scores(risks, y, masks, site, n_bootstrap, seed):
    """Point C, bootstrap CI and paired-bootstrap draws for every model on one site."""
    event_name, time_name = y.dtype.names
    mask = masks[site]
    event, time_ = y[event_name][mask], y[time_name][mask]
    idx = _bootstrap_indices(mask.sum(), n_bootstrap, np.random.default_rng(seed))
    point, draws = {}, {}
    for name, risk in risks.items():
        r = risk[mask]
        point[name] = concordance_index(event, time_, r)
        draws[name] = np.array([_cindex_or_nan(event[i], time_[i], r[i]) for i in idx])
    return point, draws


def _format_ci(point, draws):
    lo, hi = np.nanpercentile(draws, [2.5, 97.5])
    return f"{point:.3f} [{lo:.3f}, {hi:.3f}]"


def run_benchmark(
    data,
    *,
    out=None,
    quick=False,
    fusion_ehr="both",
    n_bootstrap=None,
    random_state=0,
    cache_dir=None,
    embeddings=None,
    models=None,
    progress=True,
):
    """Run the unimodal vs fusion comparison on one cohort.

    Parameters
    ----------
    data : Bunch
        A cohort as returned by :func:`~multimodal_surv.datasets.load_cohort_folder`
        or :func:`~multimodal_surv.datasets.make_synthetic_cohort` (``cohort``
        with ``site`` and ``split`` columns, ``y``, ``meds_root``, optional
        ``oracle``).
    out : path-like or None
        Folder for ``table.md``, ``table.csv``, figures and ``metadata.json``.
    quick : bool, default=False
        Smaller encoder budgets and bootstrap (for smoke runs).
    fusion_ehr : {"both", "counts", "transformer"}, default="both"
        The EHR embedding used by the multimodal models.
    n_bootstrap : int or None
        Bootstrap resamples for the CIs and p-values (default 1000, 200 if quick).
    random_state : int, default=0
        Seeds encoders, models and the bootstrap: same seed, same table.
    cache_dir : path-like or None
        CT embedding cache (default ``<out>/cache`` when ``out`` is given).
    embeddings : dict or None
        Precomputed output of :func:`encode_cohort` (skips encoding).
    models : dict or None
        Replaces :func:`default_models` (same structure).
    progress : bool, default=True

    Returns
    -------
    result : BenchmarkResult
        ``table`` (one row per model), ``risks`` (model -> risk per cohort row),
        ``summary`` (best unimodal / fusion, gain, share of the oracle margin)
        and ``metadata`` (versions, seed, wall time).
    """
    start = time.perf_counter()
    if n_bootstrap is not None and (
        not isinstance(n_bootstrap, numbers.Integral)
        or isinstance(n_bootstrap, bool)
        or n_bootstrap < 1
    ):
        raise ValueError(f"n_bootstrap={n_bootstrap!r} must be a positive integer or None.")
    n_bootstrap = n_bootstrap or (200 if quick else 1000)
    cohort = data.cohort.reset_index(drop=True)
    y = data.y
    masks = _masks(cohort)
    out = None if out is None else Path(out)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        cache_dir = cache_dir or out / "cache"
    if embeddings is None:
        embeddings = encode_cohort(
            data, quick=quick, random_state=random_state, cache_dir=cache_dir, progress=progress
        )
    models = models or default_models(fusion_ehr=fusion_ehr, random_state=random_state)

    risks = {}
    oracle = getattr(data, "oracle", None)
    if oracle is not None:
        risks[ORACLE] = np.asarray(oracle, dtype=float)
    train = masks["train"]
    for i, (name, (keys, model)) in enumerate(models.items(), 1):
        _log(f"[{i}/{len(models)}] fitting {name}", progress)
        X = pd.concat([embeddings[k] for k in keys], axis=1)
        fitted = clone(model).fit(X[train], y[train])
        risks[name] = fitted.predict(X)

    sites = ["internal"] + (["external"] if masks["external"].any() else [])
    scores = {
        site: _site_scores(risks, y, masks, site, n_bootstrap, random_state + k)
        for k, site in enumerate(sites)
    }
    internal_point, internal_draws = scores["internal"]
    unimodal = [m for m in risks if m in UNIMODAL]
    best_uni = max(unimodal, key=internal_point.get) if unimodal else None
    rows = []
    for name in risks:
        row = {"model": name}
        for site in sites:
            point, draws = scores[site]
            row[f"{site} C [95% CI]"] = _format_ci(point[name], draws[name])
        row["internal C"] = round(internal_point[name], 4)
        if "external" in scores:
            row["external C"] = round(scores["external"][0][name], 4)
        if best_uni is not None and name not in (ORACLE, best_uni):
            base = internal_point[best_uni]
            row["gain vs best unimodal (%)"] = round(100 * (internal_point[name] - base) / base, 2)
            diff = internal_draws[name] - internal_draws[best_uni]
            diff = diff[np.isfinite(diff)]
            p = 2 * min((diff <= 0).mean(), (diff >= 0).mean())
            row["paired bootstrap p"] = round(min(p, 1.0), 4)
        else:
            row["gain vs best unimodal (%)"] = np.nan
            row["paired bootstrap p"] = np.nan
        rows.append(row)
    table = pd.DataFrame(rows)

    fusion = [m for m in risks if m not in UNIMODAL and m != ORACLE]
    summary = {}
    if best_uni is not None and fusion:
        best_fusion = max(fusion, key=internal_point.get)
        summary = {
            "best_unimodal": best_uni,
            "best_unimodal_C": internal_point[best_uni],
            "best_fusion": best_fusion,
            "best_fusion_C": internal_point[best_fusion],
            "fusion_gain_pct": 100 * (internal_point[best_fusion] / internal_point[best_uni] - 1),
        }
        if ORACLE in risks:
            best = max(internal_point[m] for m in risks if m != ORACLE)
            summary["oracle_C"] = internal_point[ORACLE]
            summary["share_of_oracle_margin"] = (best - 0.5) / (internal_point[ORACLE] - 0.5)
    metadata = _metadata(random_state, quick, fusion_ehr, n_bootstrap, time.perf_counter() - start)
    result = BenchmarkResult(table=table, risks=risks, summary=summary, metadata=metadata)
    if out is not None:
        write_outputs(result, data, masks, out)
    return result


def _metadata(random_state, quick, fusion_ehr, n_bootstrap, seconds):
    import monai
    import sklearn
    import skorch
    import sksurv
    import torch
    import transformers

    return {
        "random_state": random_state,
        "quick": quick,
        "fusion_ehr": fusion_ehr,
        "n_bootstrap": n_bootstrap,
        "wall_time_s": round(seconds, 1),
        "python": platform.python_version(),
        "versions": {
            m.__name__: m.__version__
            for m in (np, pd, torch, sklearn, sksurv, skorch, monai, transformers)
        },
    }


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (NaN shown as empty cells)."""
    cols = [c for c in table.columns if c not in ("internal C", "external C")]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in table[cols].iterrows():
        cells = ["" if (isinstance(v, float) and np.isnan(v)) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_outputs(result, data, masks, out):
    """Write ``table.md``, ``table.csv``, figures and ``metadata.json`` into ``out``."""
    from ._plots import plot_cindex, plot_kaplan_meier

    out = Path(out)
    result.table.to_csv(out / "table.csv", index=False, float_format="%.4f")
    summary = "".join(
        f"- {k}: {v:.4f}\n" if isinstance(v, float) else f"- {k}: {v}\n"
        for k, v in result.summary.items()
    )
    (out / "table.md").write_text(to_markdown(result.table) + ("\n" + summary if summary else ""))
    plot_cindex(result.table, out / "cindex.png")
    best = result.summary.get("best_fusion") or result.table["model"].iloc[-1]
    plot_kaplan_meier(result.risks[best], data.y, masks, best, out / "kaplan_meier.png")
    (out / "metadata.json").write_text(json.dumps(result.metadata, indent=2) + "\n")
