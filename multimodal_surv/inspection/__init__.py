"""Inspection: what each modality brings to a survival model."""

from ._modality_report import ModalityReport, linear_cka, modality_report

__all__ = ["ModalityReport", "linear_cka", "modality_report"]
