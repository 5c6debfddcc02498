"""Splitting one feature tensor into modalities, missing masks and token sequences."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ModalitySplit", "ModalityTokenizer"]


class ModalitySplit(nn.Module):
    """Split ``(n, n_features)`` into per-modality blocks plus "missing" masks.

    A row whose columns of one modality are all NaN is a patient without that
    modality: its block is returned as zeros and its mask entry is True. Any
    other NaN is also zeroed (the estimators reject partially missing blocks
    before they reach the network).

    Parameters
    ----------
    columns : sequence of sequence of int
        Column indices of each modality, in the order the block should have
        (row-major ``n_tokens x dim`` for token layouts).

    Examples
    --------
    >>> import torch
    >>> split = ModalitySplit([[0, 1], [2]])
    >>> x = torch.tensor([[1.0, 2.0, float("nan")], [float("nan")] * 2 + [3.0]])
    >>> (a, a_missing), (b, b_missing) = split(x)
    >>> a.tolist(), a_missing.tolist(), b_missing.tolist()
    ([[1.0, 2.0], [0.0, 0.0]], [False, True], [True, False])
    """

    def __init__(self, columns: Sequence[Sequence[int]]) -> None:
        super().__init__()
        if len(columns) < 1 or any(len(c) == 0 for c in columns):
            raise ValueError(f"columns must be non-empty lists of column indices; got {columns!r}.")
        self.n_modalities = len(columns)
        # A block of consecutive columns (the usual case: one prefix per
        # modality) is read as a slice, a view; others need a gather (a copy).
        self._slices: list[slice | None] = []
        for i, cols in enumerate(columns):
            cols = [int(c) for c in cols]
            self.register_buffer(f"columns_{i}", torch.as_tensor(cols, dtype=torch.long))
            consecutive = cols == list(range(cols[0], cols[0] + len(cols))) and cols[0] >= 0
            self._slices.append(slice(cols[0], cols[0] + len(cols)) if consecutive else None)

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out = []
        for i in range(self.n_modalities):
            cut = self._slices[i]
            block = x[:, cut] if cut is not None else x[:, getattr(self, f"columns_{i}")]
            nan = torch.isnan(block)
            out.append((block.masked_fill(nan, 0.0), nan.all(dim=1)))
        return out


class ModalityTokenizer(nn.Module):
    """Turn one modality's block into ``n_tokens`` vectors of width ``d_model``.

    * token layout ``token_shape=(T, D)``: the block holds ``T x D`` values
      row-major; each token is projected by a shared ``Linear(D, d_model)``;
    * plain vector (``token_shape=None``): a learned linear tokenizer maps the
      whole vector to ``n_tokens_projected`` tokens (attention over a single
      key would be a constant, so a vector is split into several tokens).

    A learned position embedding is added to each token (no normalisation
    here: a LayerNorm right after a linear map would erase the scale of the
    features, which carries the signal). Rows flagged missing get a learned
    "missing" token sequence instead.

    Parameters
    ----------
    n_features : int
        Width of the block.
    d_model : int
    token_shape : tuple of (int, int) or None, default=None
    n_tokens_projected : int, default=4
        Tokens made from a plain vector.
    dropout : float, default=0.0

    Examples
    --------
    >>> import torch
    >>> tok = ModalityTokenizer(16, 8, token_shape=(4, 4))
    >>> tok(torch.zeros(3, 16), torch.tensor([False, True, False])).shape
    torch.Size([3, 4, 8])
    >>> ModalityTokenizer(10, 8, n_tokens_projected=3)(torch.zeros(2, 10)).shape
    torch.Size([2, 3, 8])
    """

    def __init__(
        self,
        n_features: int,
        d_model: int,
        *,
        token_shape: tuple[int, int] | None = None,
        n_tokens_projected: int = 4,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if token_shape is not None:
            n_tokens, dim = (int(v) for v in token_shape)
            if n_tokens < 1 or dim < 1 or n_tokens * dim != n_features:
                raise ValueError(
                    f"token_shape={tuple(token_shape)} does not match n_features={n_features}: "
                    "n_tokens * dim must equal n_features."
                )
            self.proj = nn.Linear(dim, d_model)
        else:
            if n_tokens_projected < 1:
                raise ValueError(f"n_tokens_projected must be >= 1; got {n_tokens_projected!r}.")
            n_tokens, dim = int(n_tokens_projected), n_features
            self.proj = nn.Linear(n_features, n_tokens * d_model)
        self.token_shape = None if token_shape is None else (n_tokens, dim)
        self.n_tokens = n_tokens
        self.d_model = d_model
        self.position = nn.Parameter(torch.randn(n_tokens, d_model) * 0.02)
        self.missing = nn.Parameter(torch.randn(n_tokens, d_model) * 0.02)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, missing: torch.Tensor | None = None) -> torch.Tensor:
        n = x.shape[0]
        if self.token_shape is not None:
            tokens = self.proj(x.reshape(n, *self.token_shape))
        else:
            tokens = self.proj(x).reshape(n, self.n_tokens, self.d_model)
        tokens = tokens + self.position
        if missing is not None:
            tokens = torch.where(missing[:, None, None], self.missing.expand_as(tokens), tokens)
        return self.dropout(tokens)
