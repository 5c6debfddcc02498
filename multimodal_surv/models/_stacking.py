"""Stacking of several risk scores by a Cox model fitted on held-out rows, cross-fitted."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.model_selection import StratifiedGroupKFold

from ..metrics import concordance_index
from ..nn import cox_partial_likelihood

__all__ = [
    "MIN_STACKING_EVENTS",
    "STACKING_FOLDS",
    "best_epoch",
    "crossfit_risks",
    "equal_combination",
    "fit_risk_combination",
    "stacking_folds",
]

# Fewer events than this in the stacking rows: equal weights instead of fitted ones.
MIN_STACKING_EVENTS = 10
# Folds of the validation rows in cross-fitted stacking.
STACKING_FOLDS = 5


def fit_risk_combination(risks, missing, time, event, *, ties="efron", ridge=1e-2):
    """Non-negative weights and missing-value fills that combine risk scores.

    Fits ``risk = sum_k w_k * r_k`` by maximising the Cox partial likelihood
    of the given (held-out) rows, with ``w >= 0`` (a risk score is "higher =
    earlier event"; a negative weight would only fit noise) and, for a score
    that is missing in a row (its modality is absent), a fitted constant in its
    place. A small ridge pulls the weights towards 0 and the fills towards the
    mean of the observed scores, which keeps the fit defined on small
    validation splits: a score the data do not support is shrunk away.

    Parameters
    ----------
    risks : Tensor, shape (n, k)
        Risk scores; values where ``missing`` is True are ignored.
    missing : Tensor of bool, shape (n, k)
    time, event : Tensor, shape (n,)
    ties : {"efron", "breslow"}, default="efron"
    ridge : float, default=1e-2

    Returns
    -------
    weights : Tensor, shape (k,)
        Non-negative.
    fills : Tensor, shape (k,)
        Risk used in place of each score where it is missing.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> signal, noise = torch.randn(400, generator=g), torch.randn(400, generator=g)
    >>> time = torch.empty(400).exponential_(generator=g) / signal.exp()
    >>> weights, _ = fit_risk_combination(
    ...     torch.stack([signal, noise], 1), torch.zeros(400, 2, dtype=torch.bool),
    ...     time, torch.ones(400))
    >>> bool(weights[0] > 0.8), bool(weights[1] < 0.1)
    (True, True)
    """
    risks = risks.detach().double()
    time, event = time.detach().double(), event.detach().double()
    observed = ~missing
    counts = observed.sum(0)
    neutral = torch.where(observed, risks, 0.0).sum(0) / counts.clamp_min(1)
    risks = torch.where(observed, risks, 0.0)
    weights = torch.ones(risks.shape[1], dtype=torch.float64, requires_grad=True)
    fills = neutral.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [weights, fills], lr=1.0, max_iter=100, line_search_fn="strong_wolfe"
    )

    def closure():
        optimizer.zero_grad()
        filled = torch.where(missing, fills.expand_as(risks), risks)
        loss = cox_partial_likelihood(filled @ weights.clamp_min(0), time, event, ties)
        loss = loss + ridge * (weights.square().sum() + (fills - neutral).square().sum())
        loss.backward()
        return loss

    optimizer.step(closure)
    return weights.detach().clamp_min(0), fills.detach()


def equal_combination(risks, missing):
    """Weight 1 for every score, and each score's mean where it is missing.

    The fallback of :func:`fit_risk_combination` when the held-out rows are
    too few to fit weights.

    Examples
    --------
    >>> import torch
    >>> weights, fills = equal_combination(
    ...     torch.tensor([[1.0, 2.0], [3.0, 0.0]]), torch.tensor([[False, False], [False, True]]))
    >>> weights.tolist(), fills.tolist()
    ([1.0, 1.0], [2.0, 2.0])
    """
    risks = risks.detach().double()
    observed = ~missing
    fills = torch.where(observed, risks, 0.0).sum(0) / observed.sum(0).clamp_min(1)
    return torch.ones(risks.shape[1], dtype=torch.float64), fills


def best_epoch(scores_risks, event, time, *, threshold=1e-4):
    """The epoch early stopping keeps: the first whose C-index beats every earlier one.

    An epoch counts as best when its Harrell's C exceeds the best so far by
    more than ``threshold`` (the rule of :class:`skorch.callbacks.EarlyStopping`
    with ``threshold_mode="abs"`` and of the per-head stopping of late
    fusion). Rows whose risk is not finite in the first epoch (an absent
    modality) are left out.

    Parameters
    ----------
    scores_risks : ndarray, shape (n_epochs, n)
        Risks of the rows after each epoch.
    event, time : ndarray, shape (n,)
    threshold : float, default=1e-4

    Returns
    -------
    epoch : int
        Index into the epochs; the last epoch when no C-index is defined.

    Examples
    --------
    >>> import numpy as np
    >>> time, event = np.arange(4.0), np.ones(4, bool)
    >>> best_epoch(np.array([time, -time, -time]), event, time)
    1
    """
    present = np.isfinite(scores_risks[0])
    event, time = np.asarray(event, dtype=bool)[present], time[present]
    best, best_score = len(scores_risks) - 1, -np.inf
    if present.sum() < 2 or not event.any():
        return best
    for epoch, risk in enumerate(scores_risks[:, present]):
        try:
            score = concordance_index(event, time, risk)
        except ValueError:  # no comparable pair, or a non-finite risk
            continue
        if score > best_score + threshold:
            best, best_score = epoch, score
    return best


def stacking_folds(event, groups, n_folds, seed):
    """Event-stratified folds of the stacking rows, whole subjects with ``groups``.

    Parameters
    ----------
    event : ndarray of bool, shape (n,)
    groups : ndarray of int, shape (n,), or None
        Subject of each row; ``None`` makes each row its own subject.
    n_folds : int
        Reduced to the number of events (at least 2).
    seed : int

    Returns
    -------
    folds : ndarray of int, shape (n,)
        Fold of each row.

    Examples
    --------
    >>> import numpy as np
    >>> folds = stacking_folds(np.arange(20) % 2 == 0, None, 5, seed=0)
    >>> np.bincount(folds).tolist()
    [4, 4, 4, 4, 4]
    """
    event = np.asarray(event, dtype=bool)
    n_folds = max(2, min(n_folds, int(event.sum())))
    groups = np.arange(len(event)) if groups is None else np.asarray(groups)
    cv = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed % 2**32)
    folds = np.empty(len(event), dtype=np.intp)
    with warnings.catch_warnings():
        # few censored rows: sklearn warns that a class has fewer members than folds
        warnings.simplefilter("ignore", UserWarning)
        for k, (_, rows) in enumerate(cv.split(np.zeros(len(event)), event, groups)):
            folds[rows] = k
    return folds


def crossfit_risks(risks, selection, units, event, time, folds, *, threshold=1e-4):
    """Out-of-fold stacking inputs: each fold's risks at the epochs the other folds chose.

    Each model whose risks are stacked keeps the weights of its best epoch
    on the validation rows. Stacked on those same rows, the combination
    weights are optimistic: a head's epoch was picked on the rows' own
    noise. Here, for each fold of the validation rows, each head's epoch is
    chosen (by :func:`best_epoch`) on the other folds only, and the fold's
    rows contribute their risks at that epoch. No row's risk was chosen with
    its own outcome.

    Parameters
    ----------
    risks : ndarray, shape (n_epochs, n, k)
        The k risks to stack, for each validation row after each epoch.
    selection : ndarray, shape (n_epochs, n, u)
        The risks whose C-index chooses the epoch of each of u selection
        units (NaN where a row does not count).
    units : sequence of int, length k
        The selection unit whose epoch each stacked risk takes.
    event, time : ndarray, shape (n,)
    folds : ndarray of int, shape (n,)
    threshold : float, default=1e-4

    Returns
    -------
    oof : ndarray, shape (n, k)
    epochs : ndarray of int, shape (n_folds, u)
        The epoch chosen for each fold (in the order of ``np.unique(folds)``)
        and unit.

    Examples
    --------
    >>> import numpy as np
    >>> time, event = np.arange(4.0), np.ones(4, bool)
    >>> good, bad = -time, time  # early events, high risk: C = 1 / C = 0
    >>> # epoch 0 ranks fold 0 (rows 0, 1) right, epoch 1 fold 1 (rows 2, 3)
    >>> epoch0 = np.array([good[0], good[1], bad[2], bad[3]])
    >>> epoch1 = np.array([bad[0], bad[1], good[2], good[3]])
    >>> risks = np.stack([epoch0, epoch1])[:, :, None]
    >>> oof, epochs = crossfit_risks(risks, risks, [0], event, time, np.array([0, 0, 1, 1]))
    >>> epochs.ravel().tolist()  # each fold takes the epoch that suits the other
    [1, 0]
    """
    fold_ids = np.unique(folds)
    oof = np.full(risks.shape[1:], np.nan)
    epochs = np.empty((len(fold_ids), selection.shape[2]), dtype=np.intp)
    for i, fold in enumerate(fold_ids):
        rest, rows = folds != fold, folds == fold
        for u in range(selection.shape[2]):
            epochs[i, u] = best_epoch(
                selection[:, rest, u], event[rest], time[rest], threshold=threshold
            )
        for col, u in enumerate(units):
            oof[rows, col] = risks[epochs[i, u], rows, col]
    return oof, epochs
