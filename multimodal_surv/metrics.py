"""Evaluation metrics for survival models.

:func:`concordance_index` computes exactly the same Harrell's C as
:func:`sksurv.metrics.concordance_index_censored`, including its handling of
ties in time and in risk, in vectorised numpy: one pairwise comparison for up
to ``_PAIRWISE_MAX_N`` rows (the validation split scored at every training
epoch), and :math:`O(n \\log^2 n)` dominance counting above, so the bootstrap
confidence intervals of the benchmark stay cheap at large ``n``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["concordance_index"]

# Up to this many rows the pairwise comparison is faster than the dominance
# counting (measured: 0.13 vs 7.8 ms at n = 150, 0.95 vs 10.5 ms at 500,
# 23 vs 8.8 ms at 1000).
_PAIRWISE_MAX_N = 600


def _pairwise(event, time, risk, tied_tol):
    """Harrell's C by comparing every event with every row (small ``n``)."""
    ev = np.flatnonzero(event)
    t_ev, r_ev = time[ev][:, None], risk[ev][:, None]
    comparable = (time > t_ev) | ((time == t_ev) & ~event)
    ties = np.abs(risk - r_ev) <= tied_tol
    concordant = (risk < r_ev) & ~ties
    total = np.count_nonzero(comparable)
    if total == 0:
        raise ValueError(
            "Data has no comparable pairs (every event is at the largest time); "
            "the concordance index is undefined."
        )
    n_concordant = np.count_nonzero(concordant & comparable)
    return float((n_concordant + 0.5 * np.count_nonzero(ties & comparable)) / total)


def _count_below(positions, values, n_positions, query_pos, query_val):
    """Count elements with position < ``query_pos`` and value < ``query_val``.

    Offline 2-D dominance counting with a merge-sort tree built from
    ``np.sort`` per level: position ``p`` is decomposed into dyadic blocks and
    each block is answered with one ``searchsorted``, all queries at once.
    ``values`` and ``query_val`` are non-negative integer ranks.
    """
    counts = np.zeros(len(query_pos), dtype=np.int64)
    if len(positions) == 0:
        return counts
    stride = np.int64(max(int(values.max(initial=0)), int(query_val.max(initial=0))) + 1)
    n_levels = max(int(n_positions).bit_length(), 1)
    for level in range(n_levels):
        has_block = (query_pos >> level) & 1 == 1
        if not has_block.any():
            continue
        keys = np.sort((positions >> level) * stride + values)
        block = (query_pos[has_block] >> level) - 1
        lo = np.searchsorted(keys, block * stride, side="left")
        hi = np.searchsorted(keys, block * stride + query_val[has_block], side="left")
        counts[has_block] += hi - lo
    return counts


def concordance_index(event_indicator, event_time, estimate, *, tied_tol=1e-8):
    """Harrell's concordance index for right-censored data.

    A pair is comparable when the subject with the shorter time had an event
    (or both share a time and only the first had an event). It is concordant
    when that subject has the higher risk ``estimate``; risks within
    ``tied_tol`` count one half. The definition, including ties, is the one
    of :func:`sksurv.metrics.concordance_index_censored`, which this function
    reproduces to floating-point precision.

    Parameters
    ----------
    event_indicator : array-like of bool, shape (n_samples,)
        Whether the event occurred.
    event_time : array-like of float, shape (n_samples,)
        Time of event or of censoring.
    estimate : array-like of float, shape (n_samples,)
        Predicted risk; higher means an earlier event.
    tied_tol : float, default=1e-8
        Absolute tolerance below which two risks are considered tied.

    Returns
    -------
    cindex : float
        Concordance index in [0, 1].

    Raises
    ------
    ValueError
        If inputs differ in length, contain NaN/inf, or no pair is comparable.

    Examples
    --------
    >>> from multimodal_surv import concordance_index
    >>> concordance_index([True, True, False], [1.0, 2.0, 3.0], [0.9, 0.5, 0.1])
    1.0

    References
    ----------
    .. [1] Harrell, F. E., Califf, R. M., Pryor, D. B., Lee, K. L. and
       Rosati, R. A. "Evaluating the yield of medical tests", JAMA 247 (1982).
    """
    event = np.asarray(event_indicator)
    time = np.asarray(event_time, dtype=float)
    risk = np.asarray(estimate, dtype=float)
    if event.ndim != 1 or time.ndim != 1 or risk.ndim != 1:
        raise ValueError(
            "event_indicator, event_time and estimate must be 1-D arrays; got shapes "
            f"{event.shape}, {time.shape} and {risk.shape}."
        )
    if not (len(event) == len(time) == len(risk)):
        raise ValueError(
            "event_indicator, event_time and estimate must have the same length; got "
            f"{len(event)}, {len(time)} and {len(risk)}."
        )
    if event.dtype != bool:
        if not np.isin(event, (0, 1)).all():
            raise ValueError("event_indicator must be boolean (or 0/1); got other values.")
        event = event.astype(bool)
    if not np.isfinite(time).all():
        raise ValueError("event_time contains NaN or infinite values; pass finite times.")
    if not np.isfinite(risk).all():
        raise ValueError("estimate contains NaN or infinite values; check the model's predictions.")
    if not event.any():
        raise ValueError("All samples are censored; the concordance index is undefined.")

    n = len(time)
    if n <= _PAIRWISE_MAX_N:
        return _pairwise(event, time, risk, tied_tol)
    order = np.argsort(time, kind="mergesort")
    time_s, event_s, risk_s = time[order], event[order], risk[order]
    # Tied-time groups: an event is comparable with everyone after its group
    # and with the censored subjects inside its group.
    new_group = np.r_[True, time_s[1:] != time_s[:-1]]
    group = np.cumsum(new_group) - 1
    starts = np.flatnonzero(new_group)
    ends = np.r_[starts[1:], n]
    group_start, group_end = starts[group], ends[group]

    uniq = np.unique(risk_s)
    rank = np.searchsorted(uniq, risk_s)
    positions = np.arange(n, dtype=np.int64)
    ev = np.flatnonzero(event_s)
    lo = np.searchsorted(uniq, risk_s[ev] - tied_tol, side="left")  # rank < lo: lower risk
    hi = np.searchsorted(uniq, risk_s[ev] + tied_tol, side="right")  # rank < hi: <= +tol
    start_ev, end_ev = group_start[ev].astype(np.int64), group_end[ev].astype(np.int64)

    def in_range(pos, vals, a, b, v):
        return _count_below(pos, vals, n, b, v) - _count_below(pos, vals, n, a, v)

    all_end = np.full(len(ev), n, dtype=np.int64)
    cens = np.flatnonzero(~event_s).astype(np.int64)
    cens_rank = rank[cens]
    below_lo = in_range(positions, rank, end_ev, all_end, lo) + in_range(
        cens, cens_rank, start_ev, end_ev, lo
    )
    below_hi = in_range(positions, rank, end_ev, all_end, hi) + in_range(
        cens, cens_rank, start_ev, end_ev, hi
    )
    n_censored_in_group = np.bincount(group[cens], minlength=len(starts))[group[ev]]
    comparable = (n - end_ev) + n_censored_in_group

    total = comparable.sum()
    if total == 0:
        raise ValueError(
            "Data has no comparable pairs (every event is at the largest time); "
            "the concordance index is undefined."
        )
    concordant = below_lo.sum()
    tied_risk = (below_hi - below_lo).sum()
    return float((concordant + 0.5 * tied_risk) / total)
