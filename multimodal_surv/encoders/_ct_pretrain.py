"""The offline default CT backbone: a compact 3-D CNN pretrained self-supervised.

Pretraining is SimCLR-style contrastive learning (Chen et al. 2020): two random
views of each volume (MONAI random crop-and-resize, flips, intensity scale and
shift, Gaussian noise and blur) are encoded, projected, and pulled together
against the other volumes of the batch with the NT-Xent loss. The views keep
what a finding *is* while changing where it lies and how the scan was
acquired, so the frozen features describe content rather than nuisance.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CompactCTNet", "pretrain_contrastive"]


class CompactCTNet(nn.Module):
    """Small 3-D CNN: stride-2 stages of conv-BN-ReLU (cheap enough to pretrain on CPU).

    Parameters
    ----------
    in_channels : int, default=1
    widths : tuple of int, default=(16, 32, 64, 64)
        Channels of the stages; each stage halves the spatial size.

    Returns a feature map ``(B, widths[-1], X/2**n, Y/2**n, Z/2**n)``.
    """

    def __init__(self, in_channels: int = 1, widths: tuple[int, ...] = (16, 32, 64, 64)):
        super().__init__()
        if in_channels < 1 or not widths or min(widths) < 1:
            raise ValueError(
                f"in_channels and widths must be positive, got {in_channels} and {widths}"
            )
        layers: list[nn.Module] = []
        c_in = in_channels
        for c_out in widths:
            layers += [
                nn.Conv3d(c_in, c_out, kernel_size=3, stride=2, padding=1, bias=False),
                nn.BatchNorm3d(c_out),
                nn.ReLU(),
            ]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.out_channels = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def _augmenter(spatial_size, rng_seed: int):
    from monai.transforms import (
        Compose,
        RandFlip,
        RandGaussianNoise,
        RandGaussianSmooth,
        RandScaleIntensity,
        RandShiftIntensity,
        RandSpatialCrop,
        Resize,
    )

    roi = [max(4, int(round(0.7 * s))) for s in spatial_size]
    aug = Compose(
        [
            RandSpatialCrop(roi_size=roi, max_roi_size=list(spatial_size), random_size=True),
            Resize(spatial_size=list(spatial_size), mode="trilinear"),
            RandFlip(prob=0.5, spatial_axis=0),
            RandFlip(prob=0.5, spatial_axis=1),
            RandFlip(prob=0.5, spatial_axis=2),
            RandScaleIntensity(factors=0.2, prob=0.8),
            RandShiftIntensity(offsets=0.1, prob=0.8),
            RandGaussianNoise(prob=0.5, std=0.05),
            RandGaussianSmooth(prob=0.3, sigma_x=(0.25, 1.0), sigma_y=(0.25, 1.0)),
        ]
    )
    aug.set_random_state(seed=rng_seed)
    return aug


def _plain(x) -> torch.Tensor:
    return x.as_tensor() if hasattr(x, "as_tensor") else torch.as_tensor(x)


def _nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    n = z1.shape[0]
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


def pretrain_contrastive(
    backbone: CompactCTNet,
    volumes: torch.Tensor,
    *,
    epochs: int,
    batch_size: int = 32,
    lr: float = 1e-3,
    temperature: float = 0.2,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> list[float]:
    """Pretrain ``backbone`` in place with SimCLR on preprocessed volumes.

    Parameters
    ----------
    backbone : CompactCTNet
    volumes : tensor of shape (n, 1, X, Y, Z)
        Preprocessed volumes in [0, 1] (at least 2).
    epochs : int
        Passes over ``volumes``.
    batch_size, lr, temperature, seed, device, progress
        Optimiser and loss settings; ``seed`` fixes shuffling, augmentations and
        the projection head.

    Returns
    -------
    losses : list of float
        Mean NT-Xent loss per epoch.

    References
    ----------
    Chen, Kornblith, Norouzi, Hinton, "A Simple Framework for Contrastive
    Learning of Visual Representations", ICML 2020.
    """
    n = volumes.shape[0]
    if n < 2:
        raise ValueError(
            f"self-supervised pretraining needs at least 2 volumes, got {n}; pass more volumes "
            "to fit or use pretrained weights"
        )
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    dim = backbone.out_channels
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 32))
    backbone.to(device).train()
    head.to(device).train()
    opt = torch.optim.Adam([*backbone.parameters(), *head.parameters()], lr=lr)
    aug = _augmenter(tuple(volumes.shape[2:]), int(rng.integers(2**31)))
    bs = max(2, min(batch_size, n))
    losses = []
    iterator = range(epochs)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="CT ssl pretraining")
    for _ in iterator:
        perm = torch.randperm(n, generator=gen)
        total, count = 0.0, 0
        for start in range(0, n - 1, bs):
            idx = perm[start : start + bs]
            if len(idx) < 2:
                continue
            batch = volumes[idx].float()
            v1 = torch.stack([_plain(aug(v)) for v in batch]).to(device)
            v2 = torch.stack([_plain(aug(v)) for v in batch]).to(device)
            z1 = head(backbone(v1).mean(dim=(2, 3, 4)))
            z2 = head(backbone(v2).mean(dim=(2, 3, 4)))
            loss = _nt_xent(z1, z2, temperature)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        losses.append(total / max(count, 1))
    backbone.eval()
    return losses
