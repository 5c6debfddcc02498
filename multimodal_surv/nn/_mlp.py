"""Multilayer perceptron risk heads."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["MLP", "RiskMLP"]

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "selu": nn.SELU, "tanh": nn.Tanh}


def _check_hidden(hidden_units: Sequence[int]) -> tuple[int, ...]:
    hidden = tuple(hidden_units)
    if any(not isinstance(h, int) or h < 1 for h in hidden):
        raise ValueError(f"hidden_units must be positive integers; got {hidden_units!r}.")
    return hidden


class MLP(nn.Sequential):
    """Stack of ``Linear -> [BatchNorm] -> activation -> Dropout`` blocks.

    Parameters
    ----------
    in_features : int
        Input width.
    hidden_units : sequence of int
        Width of each hidden layer; empty gives the identity.
    activation : {"relu", "gelu", "selu", "tanh"}, default="relu"
    dropout : float, default=0.0
    batch_norm : bool, default=False

    Examples
    --------
    >>> import torch
    >>> MLP(4, (8, 3))(torch.zeros(2, 4)).shape
    torch.Size([2, 3])
    """

    def __init__(
        self,
        in_features: int,
        hidden_units: Sequence[int] = (),
        *,
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        hidden = _check_hidden(hidden_units)
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(_ACTIVATIONS)}; got {activation!r}."
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {dropout!r}.")
        layers: list[nn.Module] = []
        width = in_features
        for units in hidden:
            layers.append(nn.Linear(width, units))
            if batch_norm:
                layers.append(nn.BatchNorm1d(units))
            layers.append(_ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = units
        super().__init__(*layers)
        self.out_features = width


class RiskMLP(nn.Module):
    """MLP that maps features to one log-hazard ratio per sample.

    With ``hidden_units=()`` it is a linear Cox model: ``risk = x @ w + b``.

    Parameters
    ----------
    in_features : int
        Number of input features.
    hidden_units : sequence of int, default=(64, 64)
    activation, dropout, batch_norm
        See :class:`MLP`.

    Examples
    --------
    >>> import torch
    >>> RiskMLP(5, (16,))(torch.zeros(3, 5)).shape
    torch.Size([3])
    """

    def __init__(
        self,
        in_features: int,
        hidden_units: Sequence[int] = (64, 64),
        *,
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(in_features, int) or in_features < 1:
            raise ValueError(f"in_features must be a positive integer; got {in_features!r}.")
        self.body = MLP(
            in_features, hidden_units, activation=activation, dropout=dropout, batch_norm=batch_norm
        )
        self.out = nn.Linear(self.body.out_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x)).squeeze(-1)
