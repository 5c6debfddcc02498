"""The rows of the comparison: a registry of named models and how to fit them."""

from __future__ import annotations

import inspect
import re
import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import FitFailedWarning
from sklearn.impute import SimpleImputer
from sklearn.model_selection import GridSearchCV, GroupKFold, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sksurv.base import SurvivalAnalysisMixin
from sksurv.linear_model import CoxnetSurvivalAnalysis

from .._hints import closest_match
from ..models import (
    CoAttentionFusionSurvival,
    ContrastiveFusionSurvival,
    CrossAttentionFusionSurvival,
    DeepSurvival,
    LateFusionSurvival,
)

__all__ = ["ModelSpec", "TunedCoxnet", "default_models", "select_models"]

ROLES = ("unimodal", "fusion")

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
    role : {"unimodal", "fusion"}
        Candidate pool of the row: the benchmark selects the best unimodal
        and the best fusion model by cross-validation on the training rows.
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

    The penalty path of :class:`sksurv.linear_model.CoxnetSurvivalAnalysis`
    is computed on the training rows, then :class:`~sklearn.model_selection.GridSearchCV`
    picks the ``alpha`` with the best Harrell's C over ``cv`` folds (grouped
    by subject when ``groups`` is passed to ``fit``) and refits it with a
    Breslow baseline hazard.

    Parameters
    ----------
    l1_ratio : float, default=0.5
    n_alphas : int, default=20
    alpha_min_ratio : float, default=0.01
    cv : int, default=3
    random_state : int or None, default=0
        Shuffles the inner folds.

    Attributes
    ----------
    best_estimator_ : CoxnetSurvivalAnalysis
    alpha_ : float
        The chosen penalty.
    unique_times_ : ndarray
    """

    def __init__(self, l1_ratio=0.5, n_alphas=20, alpha_min_ratio=0.01, cv=3, random_state=0):
        self.l1_ratio = l1_ratio
        self.n_alphas = n_alphas
        self.alpha_min_ratio = alpha_min_ratio
        self.cv = cv
        self.random_state = random_state

    def fit(self, X, y, groups=None):
        """Compute the penalty path, choose ``alpha`` by inner CV, refit.

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
        base = {"l1_ratio": self.l1_ratio, "fit_baseline_model": True}
        path = CoxnetSurvivalAnalysis(
            n_alphas=self.n_alphas, alpha_min_ratio=self.alpha_min_ratio, **base
        ).fit(X, y)
        if groups is None:
            cv = KFold(self.cv, shuffle=True, random_state=self.random_state)
        else:
            cv = GroupKFold(self.cv, shuffle=True, random_state=self.random_state)
        grid = {"alphas": [[a] for a in path.alphas_]}
        search = GridSearchCV(CoxnetSurvivalAnalysis(**base), grid, cv=cv, error_score=np.nan)
        with warnings.catch_warnings():
            # Coxnet fails for the weakest penalties on collinear embeddings; those
            # grid points score NaN and are not chosen (an all-NaN grid raises below).
            warnings.simplefilter("ignore", FitFailedWarning)
            warnings.simplefilter("ignore", UserWarning)
            search.fit(X, y, groups=groups)
        if not np.isfinite(search.best_score_):
            raise ValueError(
                "TunedCoxnet: every penalty of the path failed in inner cross-validation; "
                "standardise the features or raise alpha_min_ratio "
                f"(now {self.alpha_min_ratio})."
            )
        self.best_estimator_ = search.best_estimator_
        self.alpha_ = float(search.best_params_["alphas"][0])
        return self

    @property
    def unique_times_(self):
        return self.best_estimator_.unique_times_

    def predict(self, X):
        """Linear predictor (log-hazard ratio) of each sample."""
        return self.best_estimator_.predict(X)

    def predict_survival_function(self, X, return_array=False):
        """Survival function of each sample (Breslow baseline)."""
        return self.best_estimator_.predict_survival_function(X, return_array=return_array)


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
    modality with the training mean. The dictionary is a registry: add or
    remove entries to change the rows.

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
    """Set ``max_epochs`` / ``device`` on every final estimator that takes them."""
    out = {}
    for name, spec in models.items():
        estimator = clone(spec.estimator)
        final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
        prefix = f"{estimator.steps[-1][0]}__" if hasattr(estimator, "steps") else ""
        params = final.get_params()
        update = {}
        if max_epochs is not None and "max_epochs" in params:
            update[prefix + "max_epochs"] = max_epochs
        if device is not None and "device" in params:
            update[prefix + "device"] = device
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
