"""Torch building blocks: risk heads, tokenizers, attention blocks and losses.

Nothing here imports scikit-learn or skorch; estimators in
:mod:`multimodal_surv.models` wrap these modules.
"""

from ._losses import CoxPartialLikelihoodLoss, cox_partial_likelihood
from ._mlp import MLP, RiskMLP

__all__ = [
    "MLP",
    "CoxPartialLikelihoodLoss",
    "RiskMLP",
    "cox_partial_likelihood",
]
