"""Time-to-event prediction from CT scans plus longitudinal EHR.

Encoders turn CT volumes and MEDS event streams into embeddings; survival
estimators (unimodal and four fusion strategies) follow scikit-survival's
conventions, so ``Pipeline``, ``GridSearchCV``, ``clone`` and the concordance
scorers work unchanged.
"""

from .encoders import CTEncoder, EHRCountEncoder, EHRTransformerEncoder, make_multimodal_encoder
from .exceptions import CTReadError, WeightsMismatchError
from .inspection import modality_report
from .metrics import concordance_index
from .models import (
    AdaptiveFusionSurvival,
    CoAttentionFusionSurvival,
    ContrastiveFusionSurvival,
    CrossAttentionFusionSurvival,
    DeepSurvival,
    LateFusionSurvival,
    SurvivalNet,
)

__version__ = "0.1.0"

__all__ = [
    "CTEncoder",
    "EHRCountEncoder",
    "EHRTransformerEncoder",
    "make_multimodal_encoder",
    "AdaptiveFusionSurvival",
    "CoAttentionFusionSurvival",
    "ContrastiveFusionSurvival",
    "CrossAttentionFusionSurvival",
    "LateFusionSurvival",
    "DeepSurvival",
    "SurvivalNet",
    "concordance_index",
    "CTReadError",
    "WeightsMismatchError",
    "modality_report",
]
