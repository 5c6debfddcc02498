"""Two-modality fusion networks: late, contrastive, cross-attention and co-attention.

Every network takes ONE float tensor ``(n, n_features)`` holding both
modalities side by side (NaN where a modality is missing) and the column
indices of each modality, and returns a tuple whose first element is the risk
``(n,)``. The first modality in ``columns`` is the query (cross-attention) or
guide (co-attention) modality.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ._attention import CrossModalAttention, GatedAttentionPooling
from ._contrastive import InfoNCELoss
from ._mlp import MLP, RiskMLP
from ._tokens import ModalitySplit, ModalityTokenizer

__all__ = [
    "CoAttentionFusionNet",
    "ContrastiveFusionNet",
    "CrossAttentionFusionNet",
    "LateFusionNet",
]


def _check_two(columns: Sequence[Sequence[int]]) -> list[list[int]]:
    columns = [list(c) for c in columns]
    if len(columns) != 2:
        raise ValueError(f"a fusion network needs exactly 2 modalities; got {len(columns)}.")
    return columns


def _check_token_shapes(token_shapes, n_modalities):
    if token_shapes is None:
        return [None] * n_modalities
    token_shapes = list(token_shapes)
    if len(token_shapes) != n_modalities:
        raise ValueError(
            f"token_shapes must have one entry per modality ({n_modalities}); "
            f"got {len(token_shapes)}."
        )
    return [None if s is None else tuple(int(v) for v in s) for s in token_shapes]


class LateFusionNet(nn.Module):
    """One risk head per modality, combined by learned weights.

    ``risk = sum_m w_m * r_m``, where ``r_m`` is modality ``m``'s MLP risk, or
    a learned constant when the modality is missing for the row (only the
    available heads vary with the input).

    Parameters
    ----------
    columns : sequence of two sequences of int
        Column indices of each modality.
    hidden_units : sequence of int, default=(64,)
    activation : str, default="relu"
    dropout : float, default=0.0

    Notes
    -----
    ``forward(x)`` returns a tuple, in this order:
    risk : (n,), modality_risks : (n, 2) (NaN where missing), weights : (n, 2),
    missing : (n, 2) bool

    Examples
    --------
    >>> import torch
    >>> net = LateFusionNet([[0, 1], [2, 3, 4]], hidden_units=(8,))
    >>> risk, per_modality, weights, missing = net(torch.randn(6, 5))
    >>> risk.shape, per_modality.shape
    (torch.Size([6]), torch.Size([6, 2]))
    """

    def __init__(
        self,
        columns: Sequence[Sequence[int]],
        hidden_units: Sequence[int] = (64,),
        *,
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        columns = _check_two(columns)
        self.split = ModalitySplit(columns)
        self.heads = nn.ModuleList(
            RiskMLP(len(c), hidden_units, activation=activation, dropout=dropout) for c in columns
        )
        self.weights = nn.Parameter(torch.ones(2))
        self.missing_risk = nn.Parameter(torch.zeros(2))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        risks, missings = [], []
        for (block, missing), head, fill in zip(self.split(x), self.heads, self.missing_risk):
            r = head(block)
            risks.append(torch.where(missing, fill.expand_as(r), r))
            missings.append(missing)
        per_modality = torch.stack(risks, dim=1)
        risk = per_modality @ self.weights
        # What is shown for a missing modality is NaN (the fill is a model detail);
        # the estimator trains each head on its own rows through this output.
        missing = torch.stack(missings, dim=1)
        shown = per_modality.masked_fill(missing, float("nan"))
        return risk, shown, self.weights.detach().expand(x.shape[0], 2), missing


class ContrastiveFusionNet(nn.Module):
    """Per-modality projections aligned by InfoNCE, then a risk head on both.

    Each modality passes an MLP encoder and a linear projection into a shared
    ``projection_dim`` space; a missing modality is replaced by a learned
    embedding. The risk head sees the concatenated projections. The
    contrastive loss itself is computed by the estimator
    (``info_nce(z_a, z_b, net.contrastive.logit_scale())`` on rows where both
    modalities are present).

    Parameters
    ----------
    columns : sequence of two sequences of int
    projection_dim : int, default=64
    hidden_units : sequence of int, default=(64,)
        Encoder widths, also the risk head's hidden layers.
    activation : str, default="relu"
    dropout : float, default=0.0
    temperature : float, default=0.07
        Initial InfoNCE temperature (learnable, ``1/tau`` clamped to ``max_logit_scale``).
    max_logit_scale : float, default=100.0
    unimodal_heads : bool, default=False
        Add a linear risk head on each modality's encoder output (before the
        projection). The returned risk is then
        ``c_0 * fused + c_1 * r_1 + c_2 * r_2`` with the buffer
        ``combination`` (ones until the estimator fits it) and, where a
        modality is missing, the buffer ``missing_risk`` in place of its
        ``r_m`` (and, for a row missing both, the buffer
        ``fused_missing_risk`` in place of ``fused``).

    Notes
    -----
    ``forward(x)`` returns a tuple, in this order:
    risk : (n,), z_a : (n, projection_dim), z_b : (n, projection_dim),
    both_present : (n,) bool; with ``unimodal_heads`` also
    parts : (n, 3) (fused risk, r_1, r_2; NaN where a modality is missing) and
    missing : (n, 2) bool

    Examples
    --------
    >>> import torch
    >>> net = ContrastiveFusionNet([[0, 1], [2, 3, 4]], projection_dim=4, hidden_units=(8,))
    >>> risk, z_a, z_b, both = net(torch.randn(6, 5))
    >>> risk.shape, z_a.shape, bool(both.all())
    (torch.Size([6]), torch.Size([6, 4]), True)

    References
    ----------
    .. [1] Radford, A. et al. "Learning transferable visual models from natural
       language supervision" (CLIP), ICML 2021.
    """

    def __init__(
        self,
        columns: Sequence[Sequence[int]],
        projection_dim: int = 64,
        hidden_units: Sequence[int] = (64,),
        *,
        activation: str = "relu",
        dropout: float = 0.0,
        temperature: float = 0.07,
        max_logit_scale: float = 100.0,
        unimodal_heads: bool = False,
    ) -> None:
        super().__init__()
        columns = _check_two(columns)
        if projection_dim < 1:
            raise ValueError(f"projection_dim must be >= 1; got {projection_dim!r}.")
        self.split = ModalitySplit(columns)
        encoders = []
        for c in columns:
            body = MLP(len(c), hidden_units, activation=activation, dropout=dropout)
            encoders.append(nn.Sequential(body, nn.Linear(body.out_features, projection_dim)))
        self.encoders = nn.ModuleList(encoders)
        self.missing = nn.Parameter(torch.zeros(2, projection_dim))
        self.contrastive = InfoNCELoss(temperature, max_logit_scale=max_logit_scale)
        self.head = RiskMLP(
            2 * projection_dim, hidden_units, activation=activation, dropout=dropout
        )
        self.unimodal = None
        if unimodal_heads:
            self.unimodal = nn.ModuleList(
                nn.Linear(encoder[0].out_features, 1) for encoder in self.encoders
            )
            self.register_buffer("combination", torch.ones(3))
            self.register_buffer("missing_risk", torch.zeros(2))
            self.register_buffer("fused_missing_risk", torch.zeros(()))

    def forward(self, x: torch.Tensor):
        zs, unimodal, missings = [], [], []
        for i, ((block, missing), encoder) in enumerate(zip(self.split(x), self.encoders)):
            h = encoder[0](block)
            z = encoder[1](h)
            zs.append(torch.where(missing[:, None], self.missing[i].expand_as(z), z))
            missings.append(missing)
            if self.unimodal is not None:
                unimodal.append(self.unimodal[i](h).squeeze(-1))
        fused = self.head(torch.cat(zs, dim=1))
        both = ~(missings[0] | missings[1])
        if self.unimodal is None:
            return fused, zs[0], zs[1], both
        missing = torch.stack(missings, dim=1)
        unimodal = torch.stack(unimodal, dim=1)
        filled = torch.where(missing, self.missing_risk.expand_as(unimodal), unimodal)
        fused_filled = torch.where(
            missing.all(dim=1), self.fused_missing_risk.expand_as(fused), fused
        )
        risk = self.combination[0] * fused_filled + filled @ self.combination[1:]
        parts = torch.cat([fused[:, None], unimodal.masked_fill(missing, float("nan"))], dim=1)
        return risk, zs[0], zs[1], both, parts, missing


class CrossAttentionFusionNet(nn.Module):
    """Tokens of the query modality attend to the other modality's tokens.

    Both modalities are tokenised (:class:`ModalityTokenizer`); the query
    tokens pass a :class:`CrossModalAttention` layer over the key tokens (with
    a null key for rows missing the key modality), are pooled by gated
    attention, and concatenated with the mean key token (a skip path, so the
    key modality reaches the head even where attention is diffuse) before the
    risk MLP.

    Parameters
    ----------
    columns : sequence of two sequences of int
        Query modality first.
    token_shapes : sequence of two (n_tokens, dim) tuples or None, default=None
        ``None`` for a plain vector (tokenised by a learned projection).
    d_model : int, default=64
    n_heads : int, default=2
    n_tokens_projected : int, default=4
    hidden_units : sequence of int, default=(64,)
    dropout : float, default=0.0

    Notes
    -----
    ``forward(x)`` returns a tuple, in this order:
    risk : (n,), attention : (n, n_query_tokens, n_key_tokens + 1) (last key =
    null token; ``None`` in training mode), pooling : (n, n_query_tokens)

    Examples
    --------
    >>> import torch
    >>> net = CrossAttentionFusionNet([range(8), range(8, 14)], [(2, 4), None], d_model=8)
    >>> risk, attention, pooling = net.eval()(torch.randn(5, 14))  # weights: eval mode only
    >>> risk.shape, attention.shape, pooling.shape
    (torch.Size([5]), torch.Size([5, 2, 5]), torch.Size([5, 2]))
    """

    def __init__(
        self,
        columns: Sequence[Sequence[int]],
        token_shapes: Sequence[tuple[int, int] | None] | None = None,
        *,
        d_model: int = 64,
        n_heads: int = 2,
        n_tokens_projected: int = 4,
        hidden_units: Sequence[int] = (64,),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        columns = _check_two(columns)
        token_shapes = _check_token_shapes(token_shapes, 2)
        self.split = ModalitySplit(columns)
        self.tokenizers = nn.ModuleList(
            ModalityTokenizer(
                len(c),
                d_model,
                token_shape=s,
                n_tokens_projected=n_tokens_projected,
                dropout=dropout,
            )
            for c, s in zip(columns, token_shapes)
        )
        self.cross = CrossModalAttention(d_model, n_heads, dropout=dropout)
        self.pool = GatedAttentionPooling(d_model, hidden=d_model // 2 or 1, dropout=dropout)
        self.head = RiskMLP(2 * d_model, hidden_units, dropout=dropout)

    def forward(self, x: torch.Tensor):
        (q_block, q_missing), (k_block, k_missing) = self.split(x)
        query = self.tokenizers[0](q_block, q_missing)
        key = self.tokenizers[1](k_block, k_missing)
        attended, attention = self.cross(query, key, k_missing)
        pooled, pooling = self.pool(attended)
        risk = self.head(torch.cat([pooled, key.mean(dim=1)], dim=1))
        return risk, attention, pooling


class CoAttentionFusionNet(nn.Module):
    """MCAT-style co-attention: the guide's tokens query the other's, two streams.

    The guide modality's tokens attend to the other modality's tokens (genomic-
    guided co-attention in MCAT); the co-attended tokens and the guide's own
    tokens then each pass a small transformer encoder and gated attention
    pooling, and the two pooled vectors are concatenated into the risk MLP.

    Parameters
    ----------
    columns : sequence of two sequences of int
        Guide modality first.
    token_shapes : sequence of two (n_tokens, dim) tuples or None, default=None
    d_model : int, default=64
    n_heads : int, default=2
    n_layers : int, default=1
        Transformer encoder layers per stream.
    n_tokens_projected : int, default=4
    hidden_units : sequence of int, default=(64,)
    dropout : float, default=0.0

    Notes
    -----
    ``forward(x)`` returns a tuple, in this order:
    risk : (n,), coattention : (n, n_guide_tokens, n_other_tokens + 1) (last
    key = null token; ``None`` in training mode), guide_pooling : (n, n_guide_tokens),
    coattended_pooling : (n, n_guide_tokens)

    Examples
    --------
    >>> import torch
    >>> net = CoAttentionFusionNet([range(8), range(8, 14)], [(2, 4), None], d_model=8)
    >>> risk, coattention, guide_pool, other_pool = net.eval()(torch.randn(5, 14))
    >>> risk.shape, coattention.shape, guide_pool.shape
    (torch.Size([5]), torch.Size([5, 2, 5]), torch.Size([5, 2]))

    References
    ----------
    .. [1] Chen, R. J. et al. "Multimodal co-attention transformer for survival
       prediction in gigapixel whole slide images", ICCV 2021.
    """

    def __init__(
        self,
        columns: Sequence[Sequence[int]],
        token_shapes: Sequence[tuple[int, int] | None] | None = None,
        *,
        d_model: int = 64,
        n_heads: int = 2,
        n_layers: int = 1,
        n_tokens_projected: int = 4,
        hidden_units: Sequence[int] = (64,),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        columns = _check_two(columns)
        token_shapes = _check_token_shapes(token_shapes, 2)
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1; got {n_layers!r}.")
        self.split = ModalitySplit(columns)
        self.tokenizers = nn.ModuleList(
            ModalityTokenizer(
                len(c),
                d_model,
                token_shape=s,
                n_tokens_projected=n_tokens_projected,
                dropout=dropout,
            )
            for c, s in zip(columns, token_shapes)
        )
        self.coattention = CrossModalAttention(d_model, n_heads, dropout=dropout)

        def stream():
            layer = nn.TransformerEncoderLayer(
                d_model, n_heads, 2 * d_model, dropout, batch_first=True, norm_first=True
            )
            return nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)

        self.guide_stream = stream()
        self.coattended_stream = stream()
        self.guide_pool = GatedAttentionPooling(d_model, hidden=d_model // 2 or 1, dropout=dropout)
        self.coattended_pool = GatedAttentionPooling(
            d_model, hidden=d_model // 2 or 1, dropout=dropout
        )
        self.head = RiskMLP(2 * d_model, hidden_units, dropout=dropout)

    def forward(self, x: torch.Tensor):
        (g_block, g_missing), (o_block, o_missing) = self.split(x)
        guide = self.tokenizers[0](g_block, g_missing)
        other = self.tokenizers[1](o_block, o_missing)
        coattended, coattention = self.coattention(guide, other, o_missing)
        guide_pooled, guide_pooling = self.guide_pool(self.guide_stream(guide))
        co_pooled, co_pooling = self.coattended_pool(self.coattended_stream(coattended))
        risk = self.head(torch.cat([guide_pooled, co_pooled], dim=1))
        return risk, coattention, guide_pooling, co_pooling
