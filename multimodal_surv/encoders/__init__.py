"""Encoders: sklearn transformers turning CT volumes and EHR events into embeddings."""

from ._compose import make_multimodal_encoder
from ._ct import CTEncoder
from ._ehr import EHREncoder

__all__ = [
    "CTEncoder",
    "EHREncoder",
    "make_multimodal_encoder",
]
