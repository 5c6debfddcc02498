"""Pooling inside the lungs: lung masks of a preprocessed batch and masked statistics.

``CTEncoder(pooling="lung")`` (the default of the ``"ssl"`` backbone) pools
the backbone's maps inside a lung mask instead of over the whole field of
view, so that a focal finding anywhere in the lungs is not averaged away by
the body's normal edges (ribs, heart, chest wall). A volume whose lung mask
is empty or tiny (a head or abdomen CT, a small phantom) is pooled over its
body instead, and :class:`~multimodal_surv.encoders.CTEncoder` warns once.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F

from ._ct_body import BodyCrop, lung_mask

__all__ = [
    "LUNG_STATISTICS",
    "MIN_LUNG_SHARE",
    "batch_masks",
    "lung_statistics",
    "masked_pool",
    "warn_tiny_lungs",
]

# A lung mask under this share of the grid is "tiny": adult lungs fill about
# 10 % of the default 384 x 384 x 288 mm grid, and the smallest mask among the
# real chest CTs of benchmarks/ct_real_anatomy.py (a field of view that cuts
# the anterior chest wall) about 2 %.
MIN_LUNG_SHARE = 0.005
_LUNG_HU = -500.0


def batch_masks(batch: torch.Tensor, hu_window) -> tuple[torch.Tensor, np.ndarray]:
    """Lung masks of a preprocessed batch ``(B, 1, X, Y, Z)``; body masks where lungs are tiny.

    Parameters
    ----------
    batch : tensor
        Volumes as the backbone receives them: HU scaled by ``hu_window`` to
        [0, 1] (or HU when ``hu_window`` is None).
    hu_window : (low, high) or None
        The encoder's HU window.

    Returns
    -------
    masks : bool tensor of shape (B, 1, X, Y, Z), on ``batch``'s device
    lung_share : ndarray of shape (B,)
        Share of the grid inside each lung mask; below :data:`MIN_LUNG_SHARE`
        the mask returned is the body's (or the whole grid without a body).
    """
    hu = batch[:, 0].detach().float().cpu().numpy()
    if hu_window is not None:
        lo, hi = hu_window
        hu = hu * (hi - lo) + lo
    masks, shares = [], []
    for vol in hu:
        lungs = lung_mask(vol, threshold=_LUNG_HU)
        shares.append(float(lungs.mean()))
        if shares[-1] < MIN_LUNG_SHARE:
            lungs = BodyCrop(threshold=_LUNG_HU).mask(vol)
            if not lungs.any():
                lungs = np.ones_like(lungs)
        masks.append(lungs)
    out = torch.as_tensor(np.stack(masks)[:, None], device=batch.device)
    return out, np.asarray(shares)


def masked_pool(maps, masks: torch.Tensor) -> torch.Tensor:
    """Mean, maximum and 99th percentile of each map's channels inside ``masks``.

    Parameters
    ----------
    maps : list of tensors (B, C, x, y, z)
        Feature or residual maps; a map coarser than the mask (average-pooled
        by an integer factor, ``ceil_mode``) is weighted by the share of each
        of its cells inside the mask.
    masks : bool tensor (B, 1, X, Y, Z)

    Returns
    -------
    tensor of shape (B, 3 * sum of C)
        All masked means first (map by map), then all maxima, then all 99th
        percentiles. The maximum and percentile are taken over the cells at
        least half inside the mask.
    """
    weight = masks.float()
    means, maxima, tops = [], [], []
    for m in maps:
        factor = int(round(weight.shape[2] / m.shape[2]))
        w = F.avg_pool3d(weight, factor, ceil_mode=True) if factor > 1 else weight
        w = w[..., : m.shape[2], : m.shape[3], : m.shape[4]].to(m.dtype)
        means.append((m * w).sum((2, 3, 4)) / w.sum((2, 3, 4)).clamp_min(1e-6))
        inside = (w >= 0.5).expand_as(m).flatten(2)
        flat = m.flatten(2)
        top = torch.where(inside, flat, torch.finfo(m.dtype).min).amax(2)
        maxima.append(torch.where(inside.any(2), top, torch.zeros_like(top)))
        tops.append(_masked_quantile(flat, inside, 0.99))
    return torch.cat(means + maxima + tops, dim=1)


def _masked_quantile(flat: torch.Tensor, inside: torch.Tensor, q: float) -> torch.Tensor:
    """``q``-quantile of ``flat`` (B, C, N) over the ``inside`` entries (0 where none)."""
    out = torch.zeros(flat.shape[:2], dtype=flat.dtype, device=flat.device)
    for b in range(flat.shape[0]):
        sel = inside[b, 0]
        if sel.any():
            out[b] = torch.quantile(flat[b][:, sel], q, dim=1)
    return out


def warn_tiny_lungs(report) -> None:
    """One warning for the rows of ``input_report_`` pooled over the body, not the lungs."""
    shares = report["lung_share"].dropna()
    tiny = shares[shares < MIN_LUNG_SHARE]
    if len(tiny) == 0:
        return
    warnings.warn(
        f"CTEncoder(pooling='lung'): {len(tiny)} of {len(shares)} volumes encoded have a "
        f"lung mask under {MIN_LUNG_SHARE:.1%} of the grid (smallest {tiny.min():.2%}; "
        f"adult lungs fill about 10 %), so their maps were pooled over the body instead "
        "(rows with lung_share under that in input_report_). For CT without the lungs in "
        "the field of view (head, abdomen) pass pooling='multiscale'; for a chest CT check "
        "its HU calibration and that the preprocessing keeps the chest in the grid.",
        UserWarning,
        stacklevel=3,
    )


LUNG_STATISTICS = (
    "lung_share",
    "hu_mean",
    "hu_std",
    "hu_q50",
    "hu_q75",
    "hu_q90",
    "hu_q95",
    "hu_q99",
    "dense_share",
    "soft_tissue_share",
    "soft_tissue_volume",
)


def lung_statistics(batch: torch.Tensor, masks: torch.Tensor, hu_window) -> torch.Tensor:
    """First-order HU statistics inside each mask, in the order of :data:`LUNG_STATISTICS`.

    ``lung_share``: the mask's share of the grid; ``hu_*``: mean, standard
    deviation and quantiles of the HU inside it (clipped to ``hu_window``);
    ``dense_share``: share of its voxels above -500 HU; ``soft_tissue_share``:
    share within -300..200 HU (nodules, consolidation, vessels);
    ``soft_tissue_volume``: those voxels as a share of the grid.
    """
    hu = batch[:, 0].float()
    if hu_window is not None:
        lo, hi = hu_window
        hu = hu * (hi - lo) + lo
    rows = []
    qs = torch.tensor([0.5, 0.75, 0.9, 0.95, 0.99], device=hu.device)
    for vol, mask in zip(hu, masks[:, 0]):
        v = vol[mask]
        if v.numel() == 0:
            v = vol.flatten()
        soft = ((v > -300.0) & (v < 200.0)).float()
        share = v.numel() / vol.numel()
        rows.append(
            torch.cat(
                [
                    torch.tensor([share, float(v.mean()), float(v.std(unbiased=False))]),
                    torch.quantile(v, qs).cpu(),
                    torch.tensor(
                        [
                            float((v > -500.0).float().mean()),
                            float(soft.mean()),
                            float(soft.sum()) / vol.numel(),
                        ]  # fmt: skip
                    ),
                ]
            )
        )
    return torch.stack(rows).to(batch.device)
