"""Encoders: sklearn transformers turning CT volumes and EHR events into embeddings."""

from ._compose import make_multimodal_encoder
from ._ct import CTEncoder
from ._ehr_count_encoder import EHRCountEncoder
from ._ehr_transformer_encoder import EHRTransformerEncoder

__all__ = [
    "CTEncoder",
    "EHRCountEncoder",
    "EHRTransformerEncoder",
    "make_multimodal_encoder",
]
