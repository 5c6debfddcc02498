"""AdaptiveFusionSurvival's candidates: the default list, their order and preparation."""

from __future__ import annotations

import numpy as np
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state
from sksurv.linear_model import CoxnetSurvivalAnalysis

from ._co_attention import CoAttentionFusionSurvival
from ._contrastive import ContrastiveFusionSurvival
from ._cross_attention import CrossAttentionFusionSurvival
from ._deep import DeepSurvival
from ._late import LateFusionSurvival

# Complexity of the default candidates: the one-standard-error rule moves toward
# the lowest level. User candidates are ranked by their position in the list.
LEVELS = {"unimodal": 0, "linear": 1, "early": 2, "late": 3, "contrastive": 4, "attention": 5}


def resolve_modalities(X, modalities):
    """Modality names and their columns, as the fusion estimators resolve them.

    Returns ``names`` (list) and ``columns`` (dict name -> list of column
    names for a DataFrame, of indices otherwise). Errors are the fusion
    estimators' own (missing prefixes, overlapping columns, != 2 modalities).
    """
    probe = LateFusionSurvival(modalities=modalities)
    feature_names = np.asarray(X.columns, dtype=object) if hasattr(X, "columns") else None
    if feature_names is not None:
        probe.feature_names_in_ = feature_names
    probe._resolve_modalities(np.empty((0, X.shape[1])))
    names = sorted(probe.modality_names_)
    columns = {
        m: (
            feature_names[probe.modality_columns_[m]].tolist()
            if feature_names is not None
            else probe.modality_columns_[m].tolist()
        )
        for m in names
    }
    return names, columns


def _scaler(pandas):
    scaler = StandardScaler()
    return scaler.set_output(transform="pandas") if pandas else scaler


def _coxnet():
    return CoxnetSurvivalAnalysis(l1_ratio=0.5, alpha_min_ratio=0.05, fit_baseline_model=True)


def default_candidates(columns, *, pandas, kinds=None):
    """The default candidate list: ``(name, estimator, kind)``, simplest first.

    ``columns``: dict modality -> its columns (names or indices), two modalities.
    ``kinds``: keep only candidates of these kinds (``None``: all).
    """
    names = list(columns)
    explicit = {m: list(cols) for m, cols in columns.items()}

    def one_modality(m, model):
        select = ColumnTransformer([(m, "passthrough", list(columns[m]))], remainder="drop")
        return make_pipeline(
            select, SimpleImputer(keep_empty_features=True), StandardScaler(), model
        )

    out = [(f"{m}_only", one_modality(m, DeepSurvival()), "unimodal") for m in names]
    # The simplest model of one modality: a penalised linear Cox model on its
    # columns alone (same level as the unimodal network; the better CV C wins).
    out += [(f"{m}_only_linear", one_modality(m, _coxnet()), "unimodal") for m in names]
    out.append(("linear", make_pipeline(SimpleImputer(), StandardScaler(), _coxnet()), "linear"))
    early = make_pipeline(SimpleImputer(keep_empty_features=True), StandardScaler(), DeepSurvival())
    out.append(("early", early, "early"))
    out.append(
        ("late", make_pipeline(_scaler(pandas), LateFusionSurvival(modalities=explicit)), "late")
    )
    contrastive = ContrastiveFusionSurvival(modalities=explicit)
    out.append(("contrastive", make_pipeline(_scaler(pandas), contrastive), "contrastive"))
    for m in names:
        cross = CrossAttentionFusionSurvival(modalities=explicit, query=m)
        out.append((f"cross_attention_{m}", make_pipeline(_scaler(pandas), cross), "attention"))
    for m in names:
        co = CoAttentionFusionSurvival(modalities=explicit, guide=m)
        out.append((f"co_attention_{m}", make_pipeline(_scaler(pandas), co), "attention"))
    return [c for c in out if not kinds or c[2] in kinds]


def _check_user_candidates(candidates):
    """``(name, estimator, "user", position, True)`` for a user's list, validated."""
    out = []
    for i, item in enumerate(candidates):
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise TypeError(f"candidates[{i}] must be a (name, estimator) tuple; got {item!r}.")
        name, est = item
        if not (hasattr(est, "fit") and hasattr(est, "predict")):
            raise TypeError(
                f"candidate {name!r} must be an estimator with fit and predict; got "
                f"{type(est).__name__}."
            )
        out.append((name, est, "user", i, True))
    names = [o[0] for o in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if not out or dupes or any("__" in n for n in names):
        raise ValueError(
            "candidates must be a non-empty list with unique names without '__'; got names "
            f"{names}."
        )
    return out


def _check_kinds(kinds, candidates):
    """The kinds to keep (always with the modality report's references), validated."""
    if kinds is None:
        return None
    unknown = sorted(set(kinds) - set(LEVELS))
    if unknown or candidates is not None:
        raise ValueError(
            f"kinds={list(kinds)!r} must list kinds from {list(LEVELS)}, with candidates=None"
            + (f"; unknown: {unknown}." if unknown else "; got a candidates list too.")
        )
    return {"unimodal", "early", *kinds}


def candidate_list(candidates, columns, *, pandas, kinds=None):
    """``(name, estimator, kind, level, eligible)`` for every model to cross-validate.

    With a user's list, the default ``"<modality>_only"`` and ``"early"``
    models it lacks are added as not eligible: the modality report needs
    their folds.
    """
    kinds = _check_kinds(kinds, candidates)
    if candidates is None:
        return [
            (n, e, k, LEVELS[k], True)
            for n, e, k in default_candidates(columns, pandas=pandas, kinds=kinds)
        ]
    out = _check_user_candidates(candidates)
    names = [o[0] for o in out]
    report_refs = {f"{m}_only" for m in columns} | {"early"}  # what the report reads
    for name, est, kind in default_candidates(columns, pandas=pandas, kinds=("unimodal", "early")):
        if name in report_refs and name not in names:
            out.append((name, est, kind, LEVELS[kind], False))
    return out


def set_everywhere(estimator, name, value):
    """Set parameter ``name`` on the estimator and every nested estimator having it."""
    keys = [k for k in estimator.get_params(deep=True) if k == name or k.endswith(f"__{name}")]
    if keys:
        estimator.set_params(**dict.fromkeys(keys, value))
    return estimator


def prepare(listed, random_state, candidate_params):
    """Clone, seed and override every listed candidate; returns them and the folds' seed.

    Each candidate gets its own seed (the same in every fold and in the
    refit) when ``random_state`` is not None.
    """
    rng = check_random_state(random_state)
    prepared = []
    for name, est, kind, level, eligible in listed:
        est = clone(est)
        if random_state is not None:
            set_everywhere(est, "random_state", int(rng.randint(np.iinfo(np.int32).max)))
        for param, value in (candidate_params or {}).items():
            set_everywhere(est, param, value)
        prepared.append((name, est, kind, level, eligible))
    split_seed = None if random_state is None else int(rng.randint(np.iinfo(np.int32).max))
    return prepared, split_seed
