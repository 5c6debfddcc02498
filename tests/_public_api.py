"""The public estimators and encoders, and a tiny fit of each (shared by the API tests).

``public_objects()`` walks ``__all__`` of the package and of its public
subpackages, so a new public class is picked up without editing the tests;
``TINY`` says how to build a small, fast instance of each estimator and encoder
and the data to fit it on. A public estimator missing from ``TINY`` fails the
tests that need a fit, with a message saying to add it here.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sksurv.util import Surv

# modules that are entry points, not API
NOT_API = {"multimodal_surv.__main__", "multimodal_surv.cli"}


def public_modules():
    """The package and every submodule whose dotted name has no ``_``-prefixed part."""
    root = importlib.import_module("multimodal_surv")
    names = ["multimodal_surv"]
    for info in pkgutil.walk_packages(root.__path__, prefix="multimodal_surv."):
        parts = info.name.split(".")
        if not any(p.startswith("_") for p in parts[1:]) and info.name not in NOT_API:
            names.append(info.name)
    return names


def public_objects():
    """``{qualified name: class or function}`` listed in a public ``__all__``."""
    found = {}
    for package in public_modules():
        module = importlib.import_module(package)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isroutine(obj)):
                continue  # constants such as MEDS_COLUMNS
            key = f"{obj.__module__}.{getattr(obj, '__qualname__', name)}"
            found.setdefault(key, obj)
    return found


def public_estimators():
    """``{class name: class}`` of the public scikit-learn estimators (models and encoders)."""
    return {
        obj.__name__: obj
        for obj in public_objects().values()
        if inspect.isclass(obj) and issubclass(obj, BaseEstimator)
    }


def init_defaults(obj):
    """``{parameter: default}`` of a class's ``__init__`` or of a function (no ``*args``)."""
    target = obj.__init__ if inspect.isclass(obj) else obj
    params = inspect.signature(target).parameters.values()
    return {
        p.name: p.default
        for p in params
        if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


# ---------------------------------------------------------------------------- tiny data
def survival_data(n=48, seed=0):
    """Two named modalities ("ct__", "ehr__") carrying risk, and a survival target."""
    rng = np.random.default_rng(seed)
    ct = rng.normal(size=(n, 4))
    ehr = rng.normal(size=(n, 3))
    time = rng.exponential(np.exp(-(ct[:, 0] + ehr[:, 0]))) * 10 + 0.01
    censor = rng.exponential(15, size=n)
    y = Surv.from_arrays(time <= censor, np.minimum(time, censor))
    columns = [f"ct__x{j}" for j in range(4)] + [f"ehr__x{j}" for j in range(3)]
    return pd.DataFrame(np.hstack([ct, ehr]), columns=columns), y


def ct_volumes(n=4, shape=(12, 12, 12), seed=0):
    """Smooth 3-D arrays in HU (the CT encoder also reads NIfTI / DICOM paths)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=float) for s in shape], indexing="ij"))
    volumes = []
    for _ in range(n):
        centre = (
            rng.uniform(0.3, 0.7, size=3)[:, None, None, None]
            * np.array(shape)[:, None, None, None]
        )
        blob = np.exp(-((grid - centre) ** 2).sum(0) / 8.0)
        volumes.append(-200.0 + 600.0 * blob + rng.normal(0, 5, size=shape))
    return pd.DataFrame({"ct": volumes})


def meds_cohort(n_subjects=12, n_events=300, seed=0):
    """MEDS events and a cohort of (subject_id, prediction_time) rows."""
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp("2020-01-01")
    events = pd.DataFrame(
        {
            "subject_id": rng.integers(0, n_subjects, n_events),
            "time": t0 + pd.to_timedelta(rng.integers(0, 300, n_events), "D"),
            "code": np.array([f"C{j}" for j in range(6)])[rng.integers(0, 6, n_events)],
            "numeric_value": np.nan,
        }
    ).drop_duplicates(ignore_index=True)  # a real extract's duplicates are another test's
    cohort = pd.DataFrame(
        {
            "subject_id": np.arange(n_subjects),
            "prediction_time": t0 + pd.to_timedelta(rng.integers(150, 320, n_subjects), "D"),
        }
    )
    return events, cohort


_FAST = {"max_epochs": 1, "validation_fraction": None, "random_state": 0}
_SMALL_NET = {"hidden_units": (4,), **_FAST}
_ATTENTION = {"d_model": 8, "n_heads": 2, "n_tokens_projected": 2, **_SMALL_NET}


def _survival(**params):
    def make(cls):
        X, y = survival_data()
        return cls(**params), X, y

    return make


def _survival_net(cls):
    from multimodal_surv.nn import RiskMLP

    X, y = survival_data()
    module = {"module__in_features": X.shape[1], "module__hidden_units": (4,)}
    return cls(RiskMLP, **module, **_FAST), X, y


def _ct(cls):
    return (
        cls(pretrain_epochs=1, spatial_size=(8, 8, 8), spacing=None, random_state=0),
        (ct_volumes()),
        None,
    )


def _ehr_counts(cls):
    events, cohort = meds_cohort()
    return cls(events), cohort, None


def _ehr_transformer(cls):
    events, cohort = meds_cohort()
    params = {"hidden_size": 8, "n_layers": 1, "n_heads": 2, "max_length": 16}
    return cls(events, pretrain_epochs=1, random_state=0, **params), cohort, None


def _adaptive(cls):
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline

    from multimodal_surv import DeepSurvival, LateFusionSurvival

    X, y = survival_data()
    early = make_pipeline(SimpleImputer(keep_empty_features=True), DeepSurvival(**_SMALL_NET))
    candidates = [("early", early), ("late", LateFusionSurvival(**_SMALL_NET))]
    # the unimodal references of the modality report get the same small budget
    small = {"max_epochs": 1, "validation_fraction": None, "hidden_units": (4,)}
    return cls(candidates, cv=2, candidate_params=small, random_state=0), X, y


# class name -> callable(cls) -> (small estimator, X, y or None)
TINY = {
    "AdaptiveFusionSurvival": _adaptive,
    "DeepSurvival": _survival(**_SMALL_NET),
    "SurvivalNet": _survival_net,
    "LateFusionSurvival": _survival(**_SMALL_NET),
    "ContrastiveFusionSurvival": _survival(projection_dim=4, unimodal_weight=0.0, **_SMALL_NET),
    "CrossAttentionFusionSurvival": _survival(**_ATTENTION),
    "CoAttentionFusionSurvival": _survival(**_ATTENTION),
    "CTEncoder": _ct,
    "EHRCountEncoder": _ehr_counts,
    "EHRTransformerEncoder": _ehr_transformer,
    "TunedCoxnet": _survival(n_alphas=5, cv=2, random_state=0),
}


def tiny(cls):
    """A small instance of ``cls`` and the data to fit it: ``(estimator, X, y)``."""
    if cls.__name__ not in TINY:
        raise KeyError(
            f"{cls.__name__} is public but tests/_public_api.py has no tiny set-up for it; "
            "add an entry to TINY (a small instance and the data to fit it)."
        )
    return TINY[cls.__name__](cls)
