"""Subject-level bootstrap, paired differences and multiplicity correction."""

from __future__ import annotations

import numpy as np

from ..metrics import concordance_index

__all__ = ["holm", "paired_difference", "percentile_ci", "subject_bootstrap"]

#: A test set with fewer events, or a C-index CI wider than this, is flagged.
MIN_EVENTS = 50
MAX_CI_WIDTH = 0.10


def subject_bootstrap(groups, n_bootstrap, rng):
    """Resamples of whole subjects: a list of row-index arrays.

    Each resample draws as many subjects as there are, with replacement, and
    takes all rows of every drawn subject, so a subject with two scans moves
    as one unit (the rows of one subject are not independent).

    Parameters
    ----------
    groups : ndarray, shape (n_rows,)
        Subject of each row of the test set.
    n_bootstrap : int
    rng : numpy.random.Generator

    Returns
    -------
    resamples : list of ndarray of int
    """
    codes, _ = _codes(groups)
    n_subjects = codes.max() + 1
    order = np.argsort(codes, kind="stable")
    starts = np.searchsorted(codes[order], np.arange(n_subjects + 1))
    draws = rng.integers(0, n_subjects, size=(n_bootstrap, n_subjects))
    if starts[-1] == n_subjects:  # one row per subject: row order is subject order
        return list(order[draws])
    return [np.concatenate([order[starts[s] : starts[s + 1]] for s in d]) for d in draws]


def _codes(groups):
    uniques, codes = np.unique(np.asarray(groups), return_inverse=True)
    return codes.reshape(-1), uniques


def percentile_ci(draws, level=0.95):
    """Percentile interval of finite bootstrap draws (NaN, NaN when none is finite)."""
    draws = np.asarray(draws, dtype=float)
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return np.nan, np.nan
    alpha = 1.0 - level
    lo, hi = np.percentile(draws, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


#: Largest test set whose bootstrap C-indices are computed with the pair matrix.
PAIR_MATRIX_MAX_ROWS = 2500


def cindex_draws(event, time, risk, resamples):
    """Harrell's C of ``risk`` on each resample (NaN where no pair is comparable).

    A resample of row indices is the same data as the original rows weighted
    by how often each was drawn, so up to :data:`PAIR_MATRIX_MAX_ROWS` rows
    the C-indices of all resamples come from one matrix of the comparable and
    concordant pairs (two matrix products instead of one sort per resample).
    The pairs follow :func:`multimodal_surv.metrics.concordance_index`
    (Harrell's definition with its time ties and ``tied_tol`` risk ties); a
    row drawn twice is tied in time with its copy, so the copy is never a
    pair. Larger sets call that function on each resample.
    """
    event = np.asarray(event, dtype=bool)
    time = np.asarray(time, dtype=float)
    risk = np.asarray(risk, dtype=float)
    n = len(time)
    if n > PAIR_MATRIX_MAX_ROWS or not np.isfinite(risk).all():
        return _cindex_draws_loop(event, time, risk, resamples)
    comparable = event[:, None] & (
        (time[:, None] < time[None, :]) | ((time[:, None] == time[None, :]) & ~event[None, :])
    )
    gap = risk[:, None] - risk[None, :]
    tol = 1e-8  # concordance_index's default tied_tol
    credit = comparable * ((gap > tol) + 0.5 * (np.abs(gap) <= tol))
    out = np.empty(len(resamples))
    for start in range(0, len(resamples), 256):
        chunk = resamples[start : start + 256]
        weights = np.stack([np.bincount(idx, minlength=n) for idx in chunk]).astype(float)
        total = np.einsum("bi,bi->b", weights @ comparable, weights)
        scored = np.einsum("bi,bi->b", weights @ credit, weights)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start : start + len(chunk)] = np.where(total > 0, scored / total, np.nan)
    return out


def _cindex_draws_loop(event, time, risk, resamples):
    out = np.empty(len(resamples))
    for b, idx in enumerate(resamples):
        try:
            out[b] = concordance_index(event[idx], time[idx], risk[idx])
        except ValueError:  # no comparable pair in this resample
            out[b] = np.nan
    return out


def paired_difference(draws, reference):
    """Two-sided bootstrap p-value that the paired difference ``draws - reference`` is 0.

    The difference is computed on the same resamples (paired), and the
    p-value is twice the smaller tail share of the difference around 0, with
    the usual ``(1 + count) / (1 + B)`` correction so it is never 0.
    """
    diff = np.asarray(draws, dtype=float) - np.asarray(reference, dtype=float)
    diff = diff[np.isfinite(diff)]
    if diff.size == 0:
        return np.nan
    n = diff.size
    lower = (1 + np.sum(diff <= 0)) / (1 + n)
    upper = (1 + np.sum(diff >= 0)) / (1 + n)
    return float(min(1.0, 2 * min(lower, upper)))


def holm(p_values):
    """Holm-Bonferroni adjusted p-values (NaN entries stay NaN and are not counted).

    Examples
    --------
    >>> holm([0.01, 0.04, 0.03]).round(2).tolist()
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    if m == 0:
        return adjusted
    order = finite[np.argsort(p[finite], kind="stable")]
    steps = (m - np.arange(m)) * p[order]
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(steps))
    return adjusted


def site_flags(n_events, ci_width):
    """Reasons a test set is too small to trust (empty list: none)."""
    flags = []
    if n_events < MIN_EVENTS:
        flags.append(f"{n_events} events < {MIN_EVENTS}")
    if not np.isfinite(ci_width) or ci_width > MAX_CI_WIDTH:
        flags.append(f"C CI width {ci_width:.2f} > {MAX_CI_WIDTH:.2f}")
    return flags
