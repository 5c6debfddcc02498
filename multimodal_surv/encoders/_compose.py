"""The CT + EHR encoding step as one scikit-learn ColumnTransformer."""

from __future__ import annotations

from sklearn.compose import ColumnTransformer

__all__ = ["make_multimodal_encoder"]


def make_multimodal_encoder(ct=None, ehr=None, *, n_jobs=None):
    """Encode a cohort table into ``ct__*`` and ``ehr__*`` embedding columns.

    Builds exactly ``ColumnTransformer([("ct", ct, ["ct"]), ("ehr", ehr,
    ["subject_id", "prediction_time"])]).set_output(transform="pandas")``, the
    input the fusion estimators expect (modalities are read from the column
    prefixes).

    Parameters
    ----------
    ct : CTEncoder or None
        Encoder of the ``ct`` column; ``None`` leaves CT out.
    ehr : EHRCountEncoder, EHRTransformerEncoder or None
        Encoder of the EHR at each row's ``prediction_time``; ``None`` leaves
        EHR out.
    n_jobs : int or None
        Encode the two modalities in parallel (joblib).

    Returns
    -------
    encoder : sklearn.compose.ColumnTransformer

    Examples
    --------
    >>> import pandas as pd
    >>> from multimodal_surv.encoders import EHRCountEncoder, make_multimodal_encoder
    >>> events = pd.DataFrame({"subject_id": [1, 1, 2], "code": ["A", "B", "A"],
    ...     "time": pd.to_datetime(["2020-01-01", "2020-06-01", "2020-02-01"]),
    ...     "numeric_value": [None, None, None]})
    >>> cohort = pd.DataFrame({"subject_id": [1, 2],
    ...     "prediction_time": pd.to_datetime(["2021-01-01", "2021-01-01"])})
    >>> enc = make_multimodal_encoder(ehr=EHRCountEncoder(events, windows=("ever",)))
    >>> list(enc.fit_transform(cohort).columns)
    ['ehr__x0', 'ehr__x1', 'ehr__x2']
    """
    steps = []
    if ct is not None:
        steps.append(("ct", ct, ["ct"]))
    if ehr is not None:
        steps.append(("ehr", ehr, ["subject_id", "prediction_time"]))
    if not steps:
        raise ValueError("make_multimodal_encoder needs at least one of ct= or ehr=.")
    return ColumnTransformer(steps, n_jobs=n_jobs).set_output(transform="pandas")
