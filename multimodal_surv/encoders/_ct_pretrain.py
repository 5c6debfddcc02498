"""The offline default CT backbones, pretrained self-supervised on the fit volumes.

Two pretext tasks, selected by ``CTEncoder(pretext=...)``:

``"reconstruction"`` (the default): :class:`ResidualAutoencoder`, a small
convolutional autoencoder trained to reconstruct the preprocessed volumes
through a narrow bottleneck. What the bottleneck can carry is what is common
across the cohort (the anatomy); small, rare structures (nodules,
calcifications, focal lesions) are reconstructed poorly. The embedding is the
reconstruction *residual* pooled over scales: mean and max of its positive and
negative parts at 1, 2 and 4 voxels. It describes how much, and how strongly,
a scan departs from the anatomy the model learned, i.e. unsupervised anomaly
detection by reconstruction (Baur et al. 2021; Chen & Konukoglu 2018). It says
little about the anatomy itself (body size, organ shape): when that drives
risk, use ``pretext="contrastive"`` or a CT foundation model.

``"contrastive"``: :class:`CompactCTNet` pretrained with SimCLR (Chen et al.
2020) on the volumes held once in memory: two random views of each volume are
encoded, pooled exactly as at transform time (multi-scale mean + max, see
:func:`pool_features`), projected, and pulled together against the other
volumes of the batch with the NT-Xent loss.

The contrastive views are made with vectorised torch operations on whole
batches (no per-volume MONAI pipeline per epoch): flips along each axis, a
small circular shift (at most 3 voxels), optional 3x3x3 smoothing, a global
intensity scale and shift, and Gaussian noise of a random level. They model
what changes between two acquisitions of the same patient (position, scanner
kernel, calibration, noise) and deliberately do **not** crop or rescale: a
random crop-and-resize removes or resizes small findings (nodules,
calcifications), which would teach the network to ignore exactly the content
that carries risk. The global intensity scale and shift stay although
Hounsfield units are calibrated: scanners and sites still differ by small
offsets, and without them the embeddings generalised worse to the synthetic
cohort's external site (which has such an offset).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CompactCTNet",
    "ResidualAutoencoder",
    "augment_views",
    "pool_features",
    "pretrain_contrastive",
    "pretrain_reconstruction",
]


class CompactCTNet(nn.Module):
    """Small 3-D CNN: stride-2 stages of conv-BN-ReLU (cheap enough to pretrain on CPU).

    Parameters
    ----------
    in_channels : int, default=1
    widths : tuple of int, default=(16, 32, 64, 64)
        Channels of the stages; each stage halves the spatial size.

    Returns the list of the stages' feature maps, finest first; the last one
    is ``(B, widths[-1], X/2**n, Y/2**n, Z/2**n)``.
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

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i % 3 == 2:  # after each conv-BN-ReLU stage
                maps.append(x)
        return maps


class ResidualAutoencoder(nn.Module):
    """Convolutional autoencoder whose output is its reconstruction residual.

    Parameters
    ----------
    in_channels : int, default=1
    widths : tuple of int, default=(16, 32, 32)
        Channels of the encoder's stride-2 conv-ReLU stages (mirrored by the
        decoder's transposed convolutions).
    bottleneck : int, default=8
        Channels of the code, at ``1 / 2**len(widths)`` of the input size per
        axis (8 x 4^3 = 512 numbers for a 32^3 volume): narrow enough that
        small rare structures do not fit through.
    scales : tuple of int, default=(1, 2, 4)
        Residual maps are returned averaged over these cube sizes (voxels).

    :meth:`forward` returns the list of residual maps ``r = x - reconstruct(x)``,
    one per scale, each ``(B, 2 * in_channels, ...)`` holding ``relu(r)`` and
    ``relu(-r)`` (what is brighter / darker than the model expects), so the
    encoder's multi-scale pooling gives mean and max of both at every scale.
    Inputs of any size are padded (edge values) to a multiple of
    ``2**len(widths)`` and the reconstruction cropped back.
    """

    def __init__(
        self,
        in_channels: int = 1,
        widths: tuple[int, ...] = (16, 32, 32),
        bottleneck: int = 8,
        scales: tuple[int, ...] = (1, 2, 4),
    ):
        super().__init__()
        if in_channels < 1 or bottleneck < 1 or not widths or min(widths) < 1:
            raise ValueError(
                "in_channels, bottleneck and widths must be positive, got "
                f"{in_channels}, {bottleneck} and {widths}"
            )
        if not scales or min(scales) < 1:
            raise ValueError(f"scales must be positive integers, got {scales}")
        enc: list[nn.Module] = []
        c_in = in_channels
        for c_out in widths:
            enc += [nn.Conv3d(c_in, c_out, kernel_size=3, stride=2, padding=1), nn.ReLU()]
            c_in = c_out
        enc.append(nn.Conv3d(c_in, bottleneck, kernel_size=1))
        dec: list[nn.Module] = [nn.Conv3d(bottleneck, c_in, kernel_size=1), nn.ReLU()]
        for c_out in [*reversed(widths[:-1]), in_channels]:
            dec.append(nn.ConvTranspose3d(c_in, c_out, kernel_size=4, stride=2, padding=1))
            dec.append(nn.ReLU())
            c_in = c_out
        dec.pop()  # linear output
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)
        self.factor = 2 ** len(widths)
        self.scales = tuple(int(s) for s in scales)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The autoencoder's reconstruction of ``x`` (same shape)."""
        size = x.shape[2:]
        pad = [(-n) % self.factor for n in size]
        if any(pad):
            x = F.pad(x, [p for n in reversed(pad) for p in (0, n)], mode="replicate")
        out = self.decoder(self.encoder(x))
        return out[..., : size[0], : size[1], : size[2]]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        r = x - self.reconstruct(x)
        maps = []
        for s in self.scales:
            rs = F.avg_pool3d(r, s, ceil_mode=True) if s > 1 else r
            maps.append(torch.cat([F.relu(rs), F.relu(-rs)], dim=1))
        return maps


def _maps(out) -> list[torch.Tensor]:
    return list(out) if isinstance(out, list | tuple) else [out]


def pool_features(out, pooling: str, grid: tuple[int, int, int] | None = None) -> torch.Tensor:
    """Pool a backbone output (a feature map or a list of them) to vectors or tokens.

    Parameters
    ----------
    out : tensor (B, C, X, Y, Z) or list of them
        Feature map(s); for a list, ``"mean"`` uses the last one.
    pooling : {"mean", "multiscale"}
        ``"mean"``: spatial mean of the last map. ``"multiscale"``: spatial
        mean *and* max of every map, concatenated (all means first, then all
        maxima). The mean of a fine map counts how much of a pattern there is
        (e.g. how many small bright blobs); the max says how strong the
        strongest instance is; coarse maps describe the larger anatomy.
    grid : tuple of 3 ints or None
        None: one vector per volume. Otherwise pool each cell of this grid
        (adaptive pooling), giving ``(B, n_cells * dim)`` in row-major token order.

    Returns
    -------
    tensor of shape (B, dim) or (B, n_cells * dim)
    """
    maps = _maps(out)
    if pooling == "mean":
        maps = maps[-1:]
    if grid is None:
        means = [m.mean(dim=(2, 3, 4)) for m in maps]
        if pooling == "mean":
            return means[0]
        return torch.cat(means + [m.amax(dim=(2, 3, 4)) for m in maps], dim=1)
    means = [F.adaptive_avg_pool3d(m, grid) for m in maps]
    if pooling == "multiscale":
        means += [F.adaptive_max_pool3d(m, grid) for m in maps]
    cells = torch.cat(means, dim=1)  # (B, dim, *grid)
    return cells.flatten(2).transpose(1, 2).flatten(1)


def augment_views(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One random view per volume of a batch ``(B, 1, X, Y, Z)`` in [0, 1] (see module doc)."""
    b = x.shape[0]
    for axis in (2, 3, 4):
        flip = (torch.rand(b, generator=gen) < 0.5).view(b, 1, 1, 1, 1)
        x = torch.where(flip, x.flip(axis), x)
    shift = torch.randint(-3, 4, (3,), generator=gen)
    x = torch.roll(x, shifts=tuple(int(s) for s in shift), dims=(2, 3, 4))
    smooth = (torch.rand(b, generator=gen) < 0.5).view(b, 1, 1, 1, 1)
    x = torch.where(smooth, 0.5 * x + 0.5 * F.avg_pool3d(x, 3, 1, 1, count_include_pad=False), x)
    scale = 1.0 + 0.1 * torch.randn(b, 1, 1, 1, 1, generator=gen)
    offset = 0.03 * torch.randn(b, 1, 1, 1, 1, generator=gen)
    level = 0.02 * torch.rand(b, 1, 1, 1, 1, generator=gen)
    return x * scale + offset + level * torch.randn(x.shape, generator=gen)


def _nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    n = z1.shape[0]
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


def _epochs(n: int, epochs: int, progress: bool, desc: str):
    """Range over the pretraining epochs (a tqdm bar with ``progress``); needs 2+ volumes."""
    if n < 2:
        raise ValueError(
            f"self-supervised pretraining needs at least 2 volumes, got {n}; pass more volumes "
            "to fit or use pretrained weights"
        )
    if not progress:
        return range(epochs)
    from tqdm.auto import tqdm

    return tqdm(range(epochs), desc=desc)


def pretrain_contrastive(
    backbone: nn.Module,
    volumes: torch.Tensor,
    *,
    epochs: int,
    pooling: str = "multiscale",
    batch_size: int = 32,
    lr: float = 1e-3,
    temperature: float = 0.1,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> list[float]:
    """Pretrain ``backbone`` in place with SimCLR on preprocessed volumes.

    Parameters
    ----------
    backbone : CompactCTNet
    volumes : tensor of shape (n, 1, X, Y, Z)
        Preprocessed volumes in [0, 1] (at least 2), any float dtype; batches
        are cast to float32 as they are used.
    epochs : int
        Passes over ``volumes``.
    pooling : {"mean", "multiscale"}, default="multiscale"
        How feature maps are pooled before the projection head (the same
        pooling as at transform time, so what is trained is what is used).
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
    epoch_iter = _epochs(n, epochs, progress, "CT ssl pretraining (contrastive)")
    gen = torch.Generator().manual_seed(seed)
    backbone.to(device)
    with torch.no_grad():
        backbone.eval()
        dim = pool_features(backbone(volumes[:1].float().to(device)), pooling).shape[1]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        head = nn.Sequential(nn.Linear(dim, 128), nn.ReLU(), nn.Linear(128, 64))
    backbone.train()
    head.to(device).train()
    opt = torch.optim.Adam([*backbone.parameters(), *head.parameters()], lr=lr)
    bs = max(2, min(batch_size, n))
    losses = []
    for _ in epoch_iter:
        perm = torch.randperm(n, generator=gen)
        total, count = 0.0, 0
        for start in range(0, n - 1, bs):
            idx = perm[start : start + bs]
            if len(idx) < 2:
                continue
            batch = volumes[idx].float()
            v1 = augment_views(batch, gen).to(device)
            v2 = augment_views(batch, gen).to(device)
            z1 = head(pool_features(backbone(v1), pooling))
            z2 = head(pool_features(backbone(v2), pooling))
            loss = _nt_xent(z1, z2, temperature)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        losses.append(total / max(count, 1))
    backbone.eval()
    return losses


def pretrain_reconstruction(
    model: ResidualAutoencoder,
    volumes: torch.Tensor,
    *,
    epochs: int,
    batch_size: int = 32,
    lr: float = 2e-3,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> list[float]:
    """Train ``model`` in place to reconstruct preprocessed volumes (mean squared error).

    Parameters
    ----------
    model : ResidualAutoencoder
    volumes : tensor of shape (n, 1, X, Y, Z)
        Preprocessed volumes in [0, 1] (at least 2), any float dtype; batches
        are cast to float32 as they are used.
    epochs : int
        Passes over ``volumes``.
    batch_size, lr, seed, device, progress
        Optimiser settings (Adam); ``seed`` fixes the shuffling.

    Returns
    -------
    losses : list of float
        Mean squared reconstruction error per epoch.

    References
    ----------
    Baur, Denner, Wiestler, Navab, Albarqouni, "Autoencoders for unsupervised
    anomaly segmentation in brain MR images: a comparative study", Medical
    Image Analysis 69, 2021.
    """
    n = volumes.shape[0]
    epoch_iter = _epochs(n, epochs, progress, "CT ssl pretraining (reconstruction)")
    gen = torch.Generator().manual_seed(seed)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    bs = max(1, min(batch_size, n))
    losses = []
    for _ in epoch_iter:
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for start in range(0, n, bs):
            batch = volumes[perm[start : start + bs]].float().to(device)
            loss = F.mse_loss(model.reconstruct(batch), batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(batch)
        losses.append(total / n)
    model.eval()
    return losses
