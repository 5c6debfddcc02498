"""The main job: unimodal baselines vs the fusion strategies, with an honest comparison.

:func:`run_benchmark` takes a cohort (the synthetic one of
:func:`~multimodal_surv.datasets.make_synthetic_cohort` or a user's folder read
by :func:`~multimodal_surv.datasets.load_cohort_folder`), encodes CT and EHR
once with the library's encoders (fitted on the training rows only), selects
the best unimodal and the best fusion model by subject-grouped
cross-validation on the training rows, and scores every model once on the
internal and external test sets: Harrell's and Uno's C, time-dependent AUC,
integrated Brier score and calibration, each with a subject-level bootstrap
CI, and the difference in C against the selected unimodal model with
Holm-corrected p-values. :func:`run_nested_cv` is the protocol for cohorts
without a test split. Only the public API is used, so the package is also a
worked example of the library.
"""

from ._encode import encode_cohort
from ._models import ModelSpec, TunedCoxnet, default_models
from ._nested import run_nested_cv
from ._run import BenchmarkResult, run_benchmark
from ._table import to_markdown

__all__ = [
    "BenchmarkResult",
    "ModelSpec",
    "TunedCoxnet",
    "default_models",
    "encode_cohort",
    "run_benchmark",
    "run_nested_cv",
    "to_markdown",
]
