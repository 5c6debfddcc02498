"""Survival estimators: skorch networks with scikit-survival's interface."""

from ._adaptive import AdaptiveFusionSurvival
from ._base import SurvivalNet
from ._co_attention import CoAttentionFusionSurvival
from ._contrastive import ContrastiveFusionSurvival
from ._cross_attention import CrossAttentionFusionSurvival
from ._deep import DeepSurvival
from ._late import LateFusionSurvival

__all__ = [
    "AdaptiveFusionSurvival",
    "CoAttentionFusionSurvival",
    "ContrastiveFusionSurvival",
    "CrossAttentionFusionSurvival",
    "LateFusionSurvival",
    "DeepSurvival",
    "SurvivalNet",
]
