"""Data: MEDS event IO, imaging IO and the synthetic cohort generator."""

from ..exceptions import CTReadError
from ._cohort import load_cohort_folder
from ._events import MEDSEvents
from ._imaging import load_ct_volume
from ._meds import MEDS_COLUMNS, read_meds, validate_cohort
from ._synthetic import make_synthetic_cohort
from ._writers import write_dicom_series, write_nifti

__all__ = [
    "CTReadError",
    "load_ct_volume",
    "write_dicom_series",
    "write_nifti",
    "MEDS_COLUMNS",
    "MEDSEvents",
    "read_meds",
    "validate_cohort",
    "load_cohort_folder",
    "make_synthetic_cohort",
]
