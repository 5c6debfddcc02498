"""Subject-level bootstrap, paired differences and multiplicity correction."""

from __future__ import annotations

import numpy as np

from ..metrics import concordance_index

__all__ = [
    "CindexDraws",
    "cindex_draws",
    "holm",
    "paired_difference",
    "percentile_ci",
    "subject_bootstrap",
]

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


#: Largest test set whose bootstrap draws are computed with pair matrices.
PAIR_MATRIX_MAX_ROWS = 2500

#: ``concordance_index``'s default tolerance for tied risks.
TIED_TOL = 1e-8


def count_matrix(resamples, n):
    """How often each of ``n`` rows is drawn in each resample: shape (n_resamples, n)."""
    return np.stack([np.bincount(idx, minlength=n) for idx in resamples]).astype(float)


def comparable_pairs(event, time):
    """Harrell's comparable pairs as a 0/1 matrix: row ``i`` had its event first.

    ``i`` is comparable with ``j`` when ``i`` is an event and ``j`` is
    followed up longer, or as long without an event (the definition of
    :func:`sksurv.metrics.concordance_index_censored`, with its time ties).
    """
    event = np.asarray(event, dtype=bool)
    time = np.asarray(time, dtype=float)
    later = (time[:, None] < time[None, :]) | ((time[:, None] == time[None, :]) & ~event[None, :])
    return (event[:, None] & later).astype(float)


def concordance_credit(risk, tied_tol=TIED_TOL):
    """1 where row ``i``'s risk exceeds row ``j``'s, 0.5 within ``tied_tol``, else 0."""
    gap = risk[:, None] - risk[None, :]
    return (gap > tied_tol) + 0.5 * (np.abs(gap) <= tied_tol)


class CindexDraws:
    """Harrell's C of any risk vector on each of a site's resamples.

    A resample of row indices is the same data as the original rows weighted
    by how often each was drawn, so the C-indices of all resamples come from
    one matrix of the comparable pairs (shared by every risk vector) and one
    of the concordant pairs: two matrix products instead of one sort per
    resample. The pairs follow :func:`multimodal_surv.metrics.concordance_index`
    (Harrell's definition with its time ties and ``tied_tol`` risk ties); a
    row drawn twice is tied in time with its copy, so the copy is never a
    pair. Sets above :data:`PAIR_MATRIX_MAX_ROWS` rows, and risks with a
    non-finite value, call that function on each resample.
    """

    def __init__(self, event, time, resamples):
        self.event = np.asarray(event, dtype=bool)
        self.time = np.asarray(time, dtype=float)
        self.resamples = resamples
        self.pairs = len(self.time) <= PAIR_MATRIX_MAX_ROWS and len(resamples) > 0
        if not self.pairs:
            return
        self.rows = np.flatnonzero(self.event)  # only an event starts a comparable pair
        counts = count_matrix(resamples, len(self.time))
        # float32 is exact here: every partial sum is a multiple of 1/2 below 2**23.
        self.counts32 = counts[:, self.rows].astype(np.float32)
        self.counts = counts
        self.comparable = comparable_pairs(self.event, self.time)[self.rows]
        self.total = self._quadratic(self.comparable)

    def _quadratic(self, matrix):
        left = (self.counts32 @ matrix.astype(np.float32)).astype(float)
        return np.einsum("bi,bi->b", left, self.counts)

    def __call__(self, risk):
        """Harrell's C of ``risk`` on each resample (NaN where no pair is comparable)."""
        risk = np.asarray(risk, dtype=float)
        if not (self.pairs and np.isfinite(risk).all()):
            return _cindex_draws_loop(self.event, self.time, risk, self.resamples)
        credit = concordance_credit(risk)[self.rows] * self.comparable
        scored = self._quadratic(credit)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.total > 0, scored / self.total, np.nan)


def cindex_draws(event, time, risk, resamples):
    """Harrell's C of ``risk`` on each resample (NaN where no pair is comparable).

    See :class:`CindexDraws`, which shares the comparable pairs between
    several risk vectors of one test set.
    """
    return CindexDraws(event, time, resamples)(risk)


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


def holm(p_values, weights=None):
    """Holm-Bonferroni adjusted p-values (NaN entries stay NaN and are not counted).

    With ``weights`` this is Holm's weighted procedure (Holm 1979): hypothesis
    ``i`` is tested at ``alpha * w_i / sum(w over the hypotheses left)``, in
    the order of ``p_i / w_i``. Equal weights give the usual Holm correction.
    The family-wise error rate is at most ``alpha`` for any weights fixed
    before the data are seen.

    Parameters
    ----------
    p_values : array-like of float
    weights : array-like of float, optional
        Positive; normalised over the finite p-values. Default: equal.

    Examples
    --------
    >>> holm([0.01, 0.04, 0.03]).round(2).tolist()
    [0.03, 0.06, 0.06]
    >>> holm([0.03, 0.01, 0.04], weights=[2, 1, 1]).round(3).tolist()
    [0.045, 0.04, 0.045]
    """
    p = np.asarray(p_values, dtype=float)
    w = np.ones_like(p) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != p.shape or not (w > 0).all():
        raise ValueError(
            f"weights must be positive, one per p-value; got {w.tolist()} for {p.size} p-values."
        )
    adjusted = np.full_like(p, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    if finite.size == 0:
        return adjusted
    w = w / w[finite].sum()
    order = finite[np.argsort(p[finite] / w[finite], kind="stable")]
    left = w[order][::-1].cumsum()[::-1]  # weight of the hypotheses not yet rejected
    steps = p[order] / w[order] * left
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
