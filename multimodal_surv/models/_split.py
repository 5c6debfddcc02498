"""The internal validation split: event-stratified, subject-grouped, checked for size."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["check_groups", "halve_rows", "validation_split"]


def check_groups(groups, n_samples):
    """``groups`` as an integer code per row (or None), with a clear error.

    Examples
    --------
    >>> check_groups(["a", "b", "a"], 3).tolist()
    [0, 1, 0]
    """
    if groups is None:
        return None
    groups = np.asarray(groups)
    if groups.ndim != 1 or len(groups) != n_samples:
        raise ValueError(
            f"groups must hold one subject id per row of X ({n_samples} rows); got shape "
            f"{groups.shape}. Pass e.g. cohort['subject_id']."
        )
    if groups.dtype.kind in "fc" and np.isnan(groups.astype(complex)).any():
        raise ValueError(
            f"groups has {int(np.isnan(groups.astype(complex)).sum())} NaN values; every "
            "row needs a subject id."
        )
    return np.unique(groups, return_inverse=True)[1].reshape(-1)


def _take(stratum, fraction):
    """A random ``fraction`` of the units of ``stratum`` (torch's global generator)."""
    idx = torch.nonzero(stratum).squeeze(1)
    idx = idx[torch.randperm(len(idx))]
    return idx[: int(round(fraction * len(idx)))]


def validation_split(event, fraction, groups=None):
    """Indices of the training and validation rows.

    The split is stratified by event: ``fraction`` of the rows with an event
    and ``fraction`` of the censored rows are held out. With ``groups`` (one
    subject id per row), whole subjects are held out instead: ``fraction`` of
    the subjects with at least one event and of the others, so that no
    subject has rows on both sides.

    Parameters
    ----------
    event : Tensor of bool, shape (n,)
    fraction : float
    groups : ndarray of int, shape (n,), optional
        From :func:`check_groups`.

    Returns
    -------
    train_idx, valid_idx : Tensor of int64
        Sorted.
    """
    if groups is None:
        valid = [_take(stratum, fraction) for stratum in (event, ~event)]
        valid_idx = torch.sort(torch.cat(valid)).values
        mask = torch.ones(len(event), dtype=torch.bool)
        mask[valid_idx] = False
    else:
        codes = torch.as_tensor(groups, dtype=torch.long)
        n_groups = int(codes.max()) + 1
        has_event = torch.zeros(n_groups, dtype=torch.bool)
        has_event[codes[event]] = True
        held = torch.cat([_take(s, fraction) for s in (has_event, ~has_event)])
        in_valid = torch.zeros(n_groups, dtype=torch.bool)
        in_valid[held] = True
        mask = ~in_valid[codes]
        valid_idx = torch.nonzero(~mask).squeeze(1)
    train_idx = torch.nonzero(mask).squeeze(1)
    return train_idx, valid_idx


def halve_rows(event, groups=None):
    """Split rows into two event-stratified halves (whole subjects with ``groups``).

    Returns
    -------
    first, second : Tensor of int64
        Sorted indices; together they are every row.
    """
    second, first = validation_split(event, 0.5, groups)
    return first, second
