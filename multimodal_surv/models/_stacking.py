"""Stacking of several risk scores by a Cox model fitted on held-out rows."""

from __future__ import annotations

import torch

from ..nn import cox_partial_likelihood

__all__ = ["MIN_STACKING_EVENTS", "equal_combination", "fit_risk_combination"]

# Fewer events than this in the stacking rows: equal weights instead of fitted ones.
MIN_STACKING_EVENTS = 10


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
