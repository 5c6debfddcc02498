"""The one place where survival targets are checked."""

from __future__ import annotations

import numpy as np
from sksurv.util import check_y_survival

__all__ = ["check_survival_target"]


def check_survival_target(y, *, n_samples=None, require_events=True):
    """Validate a scikit-survival structured array and split it.

    Parameters
    ----------
    y : structured array, shape (n_samples,)
        First field: event indicator (bool); second field: time. Field names
        are free, as in scikit-survival.
    n_samples : int, optional
        Expected length (the number of rows of ``X``).
    require_events : bool, default=True
        Raise when every sample is censored (nothing to learn from).

    Returns
    -------
    event : ndarray of bool
    time : ndarray of float64

    Examples
    --------
    >>> from sksurv.util import Surv
    >>> event, time = check_survival_target(Surv.from_arrays([True, False], [2.0, 3.0]))
    >>> event.tolist(), time.tolist()
    ([True, False], [2.0, 3.0])
    """
    hint = (
        "Build y with sksurv.util.Surv.from_arrays(event, time) (or "
        "Surv.from_dataframe) so that it is a structured array whose first field is "
        "the event indicator (bool) and second field the time."
    )
    if y is None:
        raise ValueError(
            "this estimator requires y to be passed, but the target y is None. " + hint
        )
    if not isinstance(y, np.ndarray) or y.dtype.names is None:
        raise TypeError(f"y must be a structured array; got {type(y).__name__}. {hint}")
    if len(y.dtype.names) != 2:
        raise ValueError(
            f"y must have exactly 2 fields (event, time); got {len(y.dtype.names)}: "
            f"{list(y.dtype.names)}. {hint}"
        )
    event_field, time_field = y.dtype.names
    if y[event_field].dtype != bool:
        values = np.unique(y[event_field])[:5]
        raise ValueError(
            f"the event indicator y[{event_field!r}] must be boolean; got dtype "
            f"{y[event_field].dtype} with values {values.tolist()}. {hint}"
        )
    time = np.asarray(y[time_field])
    if not np.issubdtype(time.dtype, np.number):
        raise ValueError(f"the time y[{time_field!r}] must be numeric; got dtype {time.dtype}.")
    time = time.astype(np.float64)
    if not np.isfinite(time).all():
        raise ValueError(
            f"the time y[{time_field!r}] has {int((~np.isfinite(time)).sum())} NaN or "
            "infinite values; every sample needs a finite event or censoring time."
        )
    if (time < 0).any():
        first = float(time[time < 0][0])
        raise ValueError(
            f"the time y[{time_field!r}] has {int((time < 0).sum())} negative values "
            f"(first: {first}); times are durations since the index time and must be >= 0."
        )
    if n_samples is not None and len(y) != n_samples:
        raise ValueError(
            f"X has {n_samples} rows but y has {len(y)}; pass one outcome per row of X."
        )
    if require_events and not y[event_field].any():
        raise ValueError(
            f"all {len(y)} samples are censored (y[{event_field!r}] is all False); a "
            "survival model needs at least one event to learn from."
        )
    event, time = check_y_survival(y, allow_all_censored=not require_events)
    return event, time
