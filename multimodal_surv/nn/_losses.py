"""Survival losses: Cox negative log partial likelihood (Efron / Breslow ties)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["CoxPartialLikelihoodLoss", "cox_partial_likelihood"]

_TIES = ("efron", "breslow")


def cox_partial_likelihood(
    risk: torch.Tensor, time: torch.Tensor, event: torch.Tensor, ties: str = "efron"
) -> torch.Tensor:
    """Mean negative log Cox partial likelihood over the events of a batch.

    The risk set of an event at time ``t`` is every sample of the batch with
    time ``>= t``. Tied event times are handled by Efron's or Breslow's
    approximation. All sums over risk sets are done in log space (``logcumsumexp``
    and per-group max shifts), so large risk scores neither overflow nor
    underflow. A batch without events returns a zero that carries a zero
    gradient, never NaN.

    Parameters
    ----------
    risk : Tensor, shape (n,)
        Log-hazard ratio (linear predictor) of each sample.
    time : Tensor, shape (n,)
        Event or censoring times.
    event : Tensor, shape (n,)
        Event indicator (bool or 0/1).
    ties : {"efron", "breslow"}, default="efron"
        Approximation for tied event times.

    Returns
    -------
    loss : Tensor, scalar
        ``-log L / n_events``.

    Examples
    --------
    >>> import torch
    >>> risk = torch.tensor([0.0, 0.0])
    >>> loss = cox_partial_likelihood(risk, torch.tensor([1.0, 2.0]), torch.tensor([1, 0]))
    >>> round(float(loss), 6)  # log 2: the first event's risk set has two equal members
    0.693147

    References
    ----------
    .. [1] Cox, D. R. "Regression models and life-tables", JRSS B 34 (1972).
    .. [2] Efron, B. "The efficiency of Cox's likelihood function for censored
       data", JASA 72 (1977).
    """
    if ties not in _TIES:
        raise ValueError(f"ties must be one of {_TIES}; got {ties!r}.")
    risk = risk.reshape(-1)
    time = time.reshape(-1)
    event = event.reshape(-1).to(dtype=torch.bool)
    if not (risk.shape == time.shape == event.shape):
        raise ValueError(
            f"risk, time and event must have the same length; got {risk.numel()}, "
            f"{time.numel()} and {event.numel()}."
        )
    n_events = int(event.sum())
    if n_events == 0:
        return (risk * 0.0).sum()

    # Descending time: a running logsumexp then covers {j : t_j >= t_i}.
    time_s, order = torch.sort(time, descending=True, stable=True)
    event_s, risk_s = event[order], risk[order]
    log_cumsum = torch.logcumsumexp(risk_s, 0)
    if not bool((time_s[1:] == time_s[:-1]).any()):
        # No tied times: Efron and Breslow coincide (the common, fast path).
        return -((risk_s - log_cumsum) * event_s).sum() / n_events
    _, group, counts = torch.unique_consecutive(time_s, return_inverse=True, return_counts=True)
    # With ties, a group's risk set is complete at its last member.
    log_risk_set = log_cumsum[torch.cumsum(counts, 0) - 1]

    ev_idx = torch.nonzero(event_s).squeeze(1)
    ev_group = group[ev_idx]
    ev_risk = risk_s[ev_idx]
    log_lik = ev_risk - log_risk_set[ev_group]
    if ties == "efron":
        n_groups = counts.shape[0]
        n_tied = torch.zeros(n_groups, dtype=risk.dtype, device=risk.device)
        n_tied = n_tied.index_add(0, ev_group, torch.ones_like(ev_risk))
        # log of the summed exp(risk) of the tied events, shifted by the group max
        group_max = torch.full((n_groups,), float("-inf"), dtype=risk.dtype, device=risk.device)
        group_max = group_max.scatter_reduce(0, ev_group, ev_risk.detach(), reduce="amax")
        shifted = torch.exp(ev_risk - group_max[ev_group])
        tied_sum = torch.zeros(n_groups, dtype=risk.dtype, device=risk.device)
        tied_sum = tied_sum.index_add(0, ev_group, shifted)
        log_tied = torch.log(tied_sum[ev_group]) + group_max[ev_group]
        # rank l = 0..d-1 of each event inside its tie group
        first_event = torch.ones_like(ev_group, dtype=torch.bool)
        first_event[1:] = ev_group[1:] != ev_group[:-1]
        first_pos = torch.cummax(
            torch.where(first_event, torch.arange(len(ev_group), device=risk.device), 0), 0
        ).values
        rank = (torch.arange(len(ev_group), device=risk.device) - first_pos).to(risk.dtype)
        fraction = rank / n_tied[ev_group]
        # log(R - l/d * S) = log R + log1p(-(l/d) * S / R); S <= R keeps it finite.
        ratio = torch.exp(log_tied - log_risk_set[ev_group])
        log_lik = log_lik - torch.log1p(-fraction * ratio)
    return -log_lik.sum() / n_events


class CoxPartialLikelihoodLoss(nn.Module):
    """Cox negative log partial likelihood as a criterion module.

    The target is a ``(n, 2)`` tensor of ``(time, event)`` columns, the layout
    that :class:`~multimodal_surv.SurvivalNet` feeds its criterion.

    Parameters
    ----------
    ties : {"efron", "breslow"}, default="efron"
        Approximation for tied event times.

    Examples
    --------
    >>> import torch
    >>> loss = CoxPartialLikelihoodLoss(ties="breslow")
    >>> target = torch.tensor([[1.0, 1.0], [2.0, 0.0]])
    >>> round(float(loss(torch.zeros(2), target)), 6)
    0.693147
    """

    def __init__(self, ties: str = "efron") -> None:
        super().__init__()
        if ties not in _TIES:
            raise ValueError(f"ties must be one of {_TIES}; got {ties!r}.")
        self.ties = ties

    def forward(self, risk: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.ndim != 2 or target.shape[1] != 2:
            raise ValueError(
                f"target must have shape (n, 2) holding (time, event); got {tuple(target.shape)}."
            )
        return cox_partial_likelihood(risk, target[:, 0], target[:, 1], ties=self.ties)
