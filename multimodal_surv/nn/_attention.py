"""Attention blocks for token fusion: cross-modal attention and gated attention pooling."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["CrossModalAttention", "GatedAttentionPooling"]


class GatedAttentionPooling(nn.Module):
    """Gated attention pooling of a token sequence into one vector.

    ``a_t = w^T (tanh(V h_t) * sigmoid(U h_t))``, weights ``softmax_t(a_t)``,
    output ``sum_t weight_t h_t``.

    Parameters
    ----------
    d_model : int
        Token width.
    hidden : int, default=32
        Width of the gating networks.
    dropout : float, default=0.0

    Examples
    --------
    >>> import torch
    >>> pooled, weights = GatedAttentionPooling(8)(torch.randn(2, 5, 8))
    >>> pooled.shape, weights.shape, bool(torch.allclose(weights.sum(1), torch.ones(2)))
    (torch.Size([2, 8]), torch.Size([2, 5]), True)

    References
    ----------
    .. [1] Ilse, M., Tomczak, J. and Welling, M. "Attention-based deep multiple
       instance learning", ICML 2018.
    """

    def __init__(self, d_model: int, hidden: int = 32, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model < 1 or hidden < 1:
            raise ValueError(f"d_model and hidden must be >= 1; got {d_model!r}, {hidden!r}.")
        self.tanh_branch = nn.Sequential(nn.Linear(d_model, hidden), nn.Tanh(), nn.Dropout(dropout))
        self.gate_branch = nn.Sequential(
            nn.Linear(d_model, hidden), nn.Sigmoid(), nn.Dropout(dropout)
        )
        self.score = nn.Linear(hidden, 1)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.score(self.tanh_branch(tokens) * self.gate_branch(tokens)).squeeze(-1)
        weights = torch.softmax(scores, dim=1)
        return torch.einsum("nt,ntd->nd", weights, tokens), weights


class CrossModalAttention(nn.Module):
    """Multi-head attention of one modality's tokens over another's, with a null key.

    Query tokens attend to the key modality's tokens plus one learned "null"
    token that is always available. When the key modality is missing for a
    row, its tokens are masked out and the queries attend to the null token
    only, so the softmax stays defined (no NaN) and the model learns what to
    do without that modality. A residual connection, LayerNorm and a small
    feed-forward block follow (a transformer decoder's cross-attention layer).

    Parameters
    ----------
    d_model : int
    n_heads : int, default=2
    dropout : float, default=0.0

    Examples
    --------
    >>> import torch
    >>> attn = CrossModalAttention(8, n_heads=2).eval()  # weights are computed in eval mode
    >>> missing = torch.tensor([False, True, False])
    >>> out, w = attn(torch.randn(3, 4, 8), torch.randn(3, 6, 8), missing)
    >>> out.shape, w.shape
    (torch.Size([3, 4, 8]), torch.Size([3, 4, 7]))
    >>> float(w[1, :, :6].detach().sum())  # a missing key modality: all weight on the null token
    0.0
    """

    def __init__(self, d_model: int, n_heads: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}.")
        self.attention = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.null = nn.Parameter(torch.randn(1, 1, d_model) * 0.02)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.feed_forward = nn.Sequential(
            nn.Linear(d_model, 2 * d_model),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(2 * d_model, d_model),
        )
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        key_missing: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the updated query tokens and the head-averaged attention weights.

        The weights have shape ``(n, n_query, n_key + 1)``; the last key is the
        null token. Each row sums to 1. In training mode they are not computed
        (``None``), which keeps the fused attention kernel.
        """
        n, n_key = key.shape[0], key.shape[1]
        keys = torch.cat([key, self.null.expand(n, 1, -1)], dim=1)
        mask = torch.zeros(n, n_key + 1, dtype=torch.bool, device=key.device)
        if key_missing is not None:
            mask[:, :n_key] = key_missing[:, None]
        # The weights are only for inspection: in training they are not
        # materialised, which lets torch use its fused attention kernel.
        attended, weights = self.attention(
            query,
            keys,
            keys,
            key_padding_mask=mask,
            need_weights=not self.training,
            average_attn_weights=True,
        )
        x = self.norm1(query + self.dropout(attended))
        x = self.norm2(x + self.dropout(self.feed_forward(x)))
        return x, weights
