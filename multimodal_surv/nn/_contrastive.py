"""Symmetric InfoNCE (CLIP) loss between paired embeddings of two modalities."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["InfoNCELoss", "info_nce"]


def info_nce(
    z_a: torch.Tensor, z_b: torch.Tensor, logit_scale: torch.Tensor | float
) -> torch.Tensor:
    """Symmetric InfoNCE loss of paired embeddings (CLIP's objective).

    Row ``i`` of ``z_a`` and row ``i`` of ``z_b`` belong to the same patient
    (a positive pair); every other row of the batch is a negative. Both
    embeddings are L2-normalised, the cosine similarities are multiplied by
    ``logit_scale`` (the inverse temperature), and the loss is the mean of the
    cross-entropies of matching ``a -> b`` and ``b -> a``.

    Parameters
    ----------
    z_a, z_b : Tensor, shape (n, d)
        Embeddings of the two modalities, paired by row.
    logit_scale : Tensor or float
        Inverse temperature ``1 / tau`` (already exponentiated and clamped).

    Returns
    -------
    loss : Tensor, scalar
        Zero (with a zero gradient) when fewer than two pairs are given: a
        single pair has no negatives.

    Examples
    --------
    >>> import torch
    >>> z = torch.eye(3)
    >>> round(float(info_nce(z, z, 1.0)), 4)  # log(1 + 2 e^-1) for orthogonal negatives
    0.5514

    References
    ----------
    .. [1] van den Oord, A. et al. "Representation learning with contrastive
       predictive coding", arXiv:1807.03748 (2018).
    .. [2] Radford, A. et al. "Learning transferable visual models from natural
       language supervision" (CLIP), ICML 2021.
    """
    if z_a.ndim != 2 or z_a.shape != z_b.shape:
        raise ValueError(
            f"z_a and z_b must be 2-D with the same shape; got {tuple(z_a.shape)} and "
            f"{tuple(z_b.shape)}."
        )
    if z_a.shape[0] < 2:
        return (z_a.sum() + z_b.sum()) * 0.0
    z_a = F.normalize(z_a, dim=1)
    z_b = F.normalize(z_b, dim=1)
    logits = logit_scale * (z_a @ z_b.T)
    labels = torch.arange(z_a.shape[0], device=z_a.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


class InfoNCELoss(nn.Module):
    """Symmetric InfoNCE with a learnable, clamped temperature.

    The log inverse temperature is the parameter (as in CLIP); it is clamped
    to ``[0, log(max_logit_scale)]`` in the forward pass so that training
    cannot make the softmax arbitrarily sharp.

    Parameters
    ----------
    temperature : float, default=0.07
        Initial temperature ``tau``; the logit scale starts at ``1 / tau``.
    max_logit_scale : float, default=100.0
        Upper bound on ``1 / tau`` (CLIP's value).
    learnable : bool, default=True

    Examples
    --------
    >>> import torch
    >>> loss = InfoNCELoss(temperature=1.0)
    >>> round(float(loss(torch.eye(3), torch.eye(3)).detach()), 4)
    0.5514
    """

    def __init__(
        self, temperature: float = 0.07, max_logit_scale: float = 100.0, learnable: bool = True
    ) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0; got {temperature!r}.")
        if not max_logit_scale >= 1.0 / temperature:
            raise ValueError(
                f"max_logit_scale={max_logit_scale!r} is below the initial logit scale "
                f"1/temperature={1.0 / temperature:.4g}; raise max_logit_scale or temperature."
            )
        init = torch.tensor(float(torch.log(torch.tensor(1.0 / temperature))))
        if learnable:
            self.log_logit_scale = nn.Parameter(init)
        else:
            self.register_buffer("log_logit_scale", init)
        self.max_log_logit_scale = float(torch.log(torch.tensor(max_logit_scale)))

    def logit_scale(self) -> torch.Tensor:
        """The current inverse temperature, clamped to ``[1, max_logit_scale]``."""
        return self.log_logit_scale.clamp(0.0, self.max_log_logit_scale).exp()

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        return info_nce(z_a, z_b, self.logit_scale())
