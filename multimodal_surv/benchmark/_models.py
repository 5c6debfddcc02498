"""The rows of the comparison: a registry of named models and how to fit them."""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.impute import SimpleImputer
from sklearn.model_selection import GroupKFold, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted, validate_data
from sksurv.base import SurvivalAnalysisMixin
from sksurv.linear_model import CoxnetSurvivalAnalysis

from .._hints import closest_match
from ..metrics import concordance_index
from ..models import (
    AdaptiveFusionSurvival,
    CoAttentionFusionSurvival,
    ContrastiveFusionSurvival,
    CrossAttentionFusionSurvival,
    DeepSurvival,
    LateFusionSurvival,
)

__all__ = ["ModelSpec", "TunedCoxnet", "default_models", "select_models"]

ROLES = ("unimodal", "fusion", "adaptive")
# The benchmark's adaptive row leaves out the four attention candidates of
# AdaptiveFusionSurvival's default list: on the 15 cohorts of the adaptive
# tuning and acceptance runs (benchmarks/results/adaptive_*.md) none was
# chosen, and they are most of its cross-validation time (the co-attention
# pair alone 58 % of the fold time, docs/adaptive_fusion.md). The attention
# fusions still have their own fixed rows.
ADAPTIVE_KINDS = ("unimodal", "linear", "early", "late", "contrastive")

#: Embedding keys of :func:`encode_cohort` and their display names.
EHR_LABELS = {
    "ehr_counts": "EHR counts",
    "ehr_transformer": "EHR transformer",
    "ehr_both": "EHR (counts + transformer)",
}


@dataclass
class ModelSpec:
    """One row of the benchmark.

    Parameters
    ----------
    inputs : sequence of str
        Embedding keys (``"ct"``, ``"ehr_counts"``, ``"ehr_transformer"``,
        ``"ehr_both"``) whose columns are concatenated into ``X``.
    estimator : estimator
        A scikit-survival compatible estimator (cloned before each fit).
    role : {"unimodal", "fusion", "adaptive"}
        Candidate pool of the row: the benchmark selects the best unimodal
        and the best fusion model by cross-validation on the training rows.
        ``"adaptive"``: a meta-model that makes its own choice by
        cross-validation on the training rows (such as
        :class:`~multimodal_surv.AdaptiveFusionSurvival`); it is in neither
        pool, is not cross-validated for the selection, and is scored once on
        the test sets like every row.
    """

    inputs: tuple
    estimator: object
    role: str

    def __post_init__(self):
        self.inputs = tuple(self.inputs)
        if self.role not in ROLES:
            raise ValueError(f"ModelSpec role={self.role!r} must be one of {ROLES}.")


def as_spec(name, spec):
    """A :class:`ModelSpec` from a spec or a legacy ``(inputs, estimator)`` pair."""
    if isinstance(spec, ModelSpec):
        return spec
    try:
        inputs, estimator = spec
    except (TypeError, ValueError):
        raise TypeError(
            f"model {name!r}: expected a ModelSpec or an (inputs, estimator) pair; "
            f"got {type(spec).__name__}."
        ) from None
    inputs = (inputs,) if isinstance(inputs, str) else tuple(inputs)
    modalities = {k.split("_")[0] for k in inputs}
    return ModelSpec(inputs, estimator, "fusion" if len(modalities) > 1 else "unimodal")


class TunedCoxnet(SurvivalAnalysisMixin, BaseEstimator):
    """Elastic-net Cox model whose penalty is chosen by inner cross-validation.

    :class:`sksurv.linear_model.CoxnetSurvivalAnalysis` computes its whole
    penalty path at once (warm starts). The path is fitted on each of ``cv``
    inner folds (grouped by subject when ``groups`` is passed to ``fit``),
    every ``alpha`` of the path is scored by Harrell's C on the held-out
    fold, and the ``alpha`` with the best mean C is kept. The final path is
    fitted on all rows with a Breslow baseline hazard; predictions use the
    chosen ``alpha``.

    Parameters
    ----------
    l1_ratio : float, default=0.5
    n_alphas : int, default=30
    alpha_min_ratio : float, default=0.01
    cv : int, default=3
    random_state : int, RandomState or None, default=None
        Shuffles the inner folds.

    Attributes
    ----------
    path_ : CoxnetSurvivalAnalysis
        Fitted on all rows.
    alpha_ : float
        The chosen penalty.
    cv_scores_ : ndarray of shape (n_alphas,)
        Mean inner-fold C of each ``alpha`` of ``path_.alphas_``.
    unique_times_ : ndarray
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` has string column names.
    """

    def __init__(self, l1_ratio=0.5, n_alphas=30, alpha_min_ratio=0.01, cv=3, random_state=None):
        self.l1_ratio = l1_ratio
        self.n_alphas = n_alphas
        self.alpha_min_ratio = alpha_min_ratio
        self.cv = cv
        self.random_state = random_state

    def _path(self, alphas=None):
        return CoxnetSurvivalAnalysis(
            l1_ratio=self.l1_ratio,
            n_alphas=self.n_alphas,
            alpha_min_ratio=self.alpha_min_ratio,
            alphas=alphas,
            fit_baseline_model=alphas is not None,
        )

    def fit(self, X, y, groups=None):
        """Choose ``alpha`` by inner CV over the penalty path, then fit all rows.

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)
        y : structured array, shape (n_samples,)
        groups : array-like of shape (n_samples,) or None
            Subject of each row; inner folds keep a subject's rows together.

        Returns
        -------
        self
        """
        if y is None:
            raise ValueError(
                "TunedCoxnet requires y to be passed, but the target y is None; pass a "
                "structured array of (event, time), e.g. sksurv.util.Surv.from_arrays."
            )
        X = validate_data(self, X, dtype=float)
        alphas = self._path().fit(X, y).alphas_
        if groups is None:
            splits = KFold(self.cv, shuffle=True, random_state=self.random_state).split(X)
        else:
            cv = GroupKFold(self.cv, shuffle=True, random_state=self.random_state)
            splits = cv.split(X, groups=groups)
        event_name, time_name = y.dtype.names
        scores = []
        for fit_idx, val_idx in splits:
            path = self._path(alphas).fit(X[fit_idx], y[fit_idx])
            yv = y[val_idx]
            scores.append([_cindex(yv, path.predict(X[val_idx], alpha=a)) for a in alphas])
        self.cv_scores_ = np.nanmean(np.array(scores, dtype=float), axis=0)
        if not np.isfinite(self.cv_scores_).any():
            raise ValueError(
                "TunedCoxnet: no penalty of the path could be scored in inner "
                f"cross-validation ({self.cv} folds of {len(X)} rows); use fewer folds."
            )
        self.alpha_ = float(alphas[int(np.nanargmax(self.cv_scores_))])
        self.path_ = self._path(alphas).fit(X, y)
        return self

    @property
    def unique_times_(self):
        check_is_fitted(self)
        return self.path_.unique_times_

    def predict(self, X):
        """Linear predictor (log-hazard ratio) of each sample at the chosen ``alpha``."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=float, reset=False)
        return self.path_.predict(X, alpha=self.alpha_)

    def predict_survival_function(self, X, return_array=False):
        """Survival function of each sample at the chosen ``alpha`` (Breslow baseline)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=float, reset=False)
        return self.path_.predict_survival_function(X, alpha=self.alpha_, return_array=return_array)


def _cindex(y, risk):
    try:
        return concordance_index(y[y.dtype.names[0]], y[y.dtype.names[1]], risk)
    except ValueError:  # a fold without a comparable pair
        return np.nan


def _pipeline(estimator, *, impute):
    steps = [StandardScaler().set_output(transform="pandas"), estimator]
    if impute:
        # Single-network baselines cannot take a missing modality: they see the
        # training mean instead (the fusion estimators mask it natively).
        steps.insert(0, SimpleImputer(keep_empty_features=True).set_output(transform="pandas"))
    return make_pipeline(*steps)


def default_models(*, fusion_ehr="both", random_state=0):
    """The comparison: row name -> :class:`ModelSpec`.

    Every fusion row's inputs are the union of two unimodal rows' inputs
    (``"ct"`` and the ``fusion_ehr`` EHR embedding), so a gain over the best
    unimodal row measures what adding a modality brings. Each estimator sits
    behind a ``StandardScaler`` with its library defaults and a shared
    ``random_state``; ``DeepSurvival`` and Coxnet rows impute a missing
    modality with the training mean. The last row, ``"Adaptive"``, is an
    :class:`~multimodal_surv.AdaptiveFusionSurvival` on the fusion inputs
    (role ``"adaptive"``: it chooses among unimodal, linear, early, late and
    contrastive models by its own cross-validation on the training rows;
    :data:`ADAPTIVE_KINDS`). The dictionary is a registry: add or remove
    entries to change the rows.

    Parameters
    ----------
    fusion_ehr : {"both", "counts", "transformer"}, default="both"
        The EHR embedding of the fusion rows ("both": counts and transformer
        embeddings side by side as one ``ehr`` modality, with a matching
        "EHR (counts + transformer)" unimodal row).
    random_state : int, default=0

    Returns
    -------
    models : dict of str to ModelSpec
    """
    if fusion_ehr not in ("both", "counts", "transformer"):
        raise ValueError(f"fusion_ehr={fusion_ehr!r} must be 'both', 'counts' or 'transformer'.")
    ehr = f"ehr_{fusion_ehr}"
    rs = {"random_state": random_state}
    fused = ("ct", ehr)

    def deep(inputs, role):
        return ModelSpec(inputs, _pipeline(DeepSurvival(**rs), impute=True), role)

    def fusion(estimator):
        return ModelSpec(fused, _pipeline(estimator, impute=False), "fusion")

    def coxnet(inputs, role):
        return ModelSpec(inputs, _pipeline(TunedCoxnet(**rs), impute=True), role)

    models = {
        "CT only": deep(("ct",), "unimodal"),
        "EHR counts only": deep(("ehr_counts",), "unimodal"),
        "EHR transformer only": deep(("ehr_transformer",), "unimodal"),
    }
    if fusion_ehr == "both":
        models["EHR (counts + transformer)"] = deep(("ehr_both",), "unimodal")
    models.update(
        {
            "Early fusion (concatenation)": deep(fused, "fusion"),
            "Late fusion": fusion(LateFusionSurvival(**rs)),
            "Contrastive fusion": fusion(ContrastiveFusionSurvival(**rs)),
            "Cross-attention (CT queries EHR)": fusion(
                CrossAttentionFusionSurvival(query="ct", **rs)
            ),
            "Cross-attention (EHR queries CT)": fusion(
                CrossAttentionFusionSurvival(query="ehr", **rs)
            ),
            "Co-attention (CT-guided)": fusion(CoAttentionFusionSurvival(guide="ct", **rs)),
            "Co-attention (EHR-guided)": fusion(CoAttentionFusionSurvival(guide="ehr", **rs)),
            "Coxnet CT": coxnet(("ct",), "unimodal"),
            f"Coxnet {EHR_LABELS[ehr]}": coxnet((ehr,), "unimodal"),
            "Coxnet CT + EHR": coxnet(fused, "fusion"),
            "Adaptive": ModelSpec(
                fused, AdaptiveFusionSurvival(kinds=list(ADAPTIVE_KINDS), **rs), "adaptive"
            ),
        }
    )
    return models


def slug(name):
    """Short command-line id of a row name: ``"Late fusion"`` -> ``"late-fusion"``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def select_models(models, names):
    """Keep the rows named in ``names`` (row names or their slugs), in registry order.

    Raises
    ------
    ValueError
        For a name that is no row, with the closest one and the full list.
    """
    by_key = {}
    for name in models:
        by_key[name.lower()] = name
        by_key[slug(name)] = name
    chosen = set()
    for raw in names:
        key = raw.strip()
        name = by_key.get(key.lower()) or by_key.get(slug(key))
        if name is None:
            hint = closest_match(key, [slug(n) for n in models])
            raise ValueError(
                f"--models: no row named {key!r}"
                + (f"; did you mean {hint!r}?" if hint else ".")
                + " Rows: "
                + ", ".join(slug(n) for n in models)
            )
        chosen.add(name)
    return {name: spec for name, spec in models.items() if name in chosen}


def configure(models, *, max_epochs=None, device=None):
    """Set ``max_epochs`` / ``device`` on every final estimator that takes them.

    A meta-estimator with ``candidate_params`` (an adaptive row) passes them
    on to its candidates.
    """
    wanted = {"max_epochs": max_epochs, "device": device}
    wanted = {k: v for k, v in wanted.items() if v is not None}
    out = {}
    for name, spec in models.items():
        estimator = clone(spec.estimator)
        final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
        prefix = f"{estimator.steps[-1][0]}__" if hasattr(estimator, "steps") else ""
        params = final.get_params(deep=False)
        update = {prefix + k: v for k, v in wanted.items() if k in params}
        if wanted and "candidate_params" in params:
            update[prefix + "candidate_params"] = {**(params["candidate_params"] or {}), **wanted}
        estimator.set_params(**update)
        out[name] = ModelSpec(spec.inputs, estimator, spec.role)
    return out


def fit_model(estimator, X, y, groups):
    """Clone and fit; subject ``groups`` reach a final step whose ``fit`` takes them."""
    estimator = clone(estimator)
    if hasattr(estimator, "steps"):
        step, final = estimator.steps[-1]
        key = f"{step}__groups"
    else:
        final, key = estimator, "groups"
    takes_groups = "groups" in inspect.signature(final.fit).parameters
    return estimator.fit(X, y, **({key: groups} if takes_groups else {}))
