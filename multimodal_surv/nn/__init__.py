"""Torch building blocks: risk heads, tokenizers, attention blocks and losses.

Nothing here imports scikit-learn or skorch; estimators in
:mod:`multimodal_surv.models` wrap these modules.
"""

from ._attention import CrossModalAttention, GatedAttentionPooling
from ._contrastive import InfoNCELoss, info_nce
from ._fusion import (
    CoAttentionFusionNet,
    ContrastiveFusionNet,
    CrossAttentionFusionNet,
    LateFusionNet,
)
from ._losses import CoxPartialLikelihoodLoss, cox_partial_likelihood
from ._mlp import MLP, RiskMLP
from ._tokens import ModalitySplit, ModalityTokenizer

__all__ = [
    "CoAttentionFusionNet",
    "ContrastiveFusionNet",
    "CrossAttentionFusionNet",
    "CrossModalAttention",
    "GatedAttentionPooling",
    "InfoNCELoss",
    "LateFusionNet",
    "ModalitySplit",
    "ModalityTokenizer",
    "info_nce",
    "MLP",
    "CoxPartialLikelihoodLoss",
    "RiskMLP",
    "cox_partial_likelihood",
]
