"""Survival estimators: skorch networks with scikit-survival's interface."""

from ._base import SurvivalNet
from ._deep import DeepSurvival

__all__ = [
    "DeepSurvival",
    "SurvivalNet",
]
