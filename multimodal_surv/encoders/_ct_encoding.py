"""Running a fitted ``CTEncoder``'s backbone over rows: batches, pooling and the cache.

:meth:`CTEncoder.transform <multimodal_surv.encoders.CTEncoder.transform>`
looks each row up in the on-disk cache (:func:`read_cache`), then encodes the
rest batch by batch (:func:`encode_rows`): the DataLoader preprocesses the
volumes, volumes of one shape go through the backbone together, its output is
pooled to a vector or a token grid (:func:`backbone_features`), and each
batch's embeddings are written to the cache as soon as they exist.
"""

from __future__ import annotations

import numpy as np
import torch

from ._cache import EmbeddingCache, content_hash
from ._ct_inputs import _is_missing, report_read_errors
from ._ct_loading import _collate, _CTDataset
from ._ct_lung import batch_masks, lung_statistics, masked_pool
from ._ct_pretrain import pool_features, pretrain_contrastive, pretrain_reconstruction

__all__ = [
    "backbone_features",
    "encode_rows",
    "iter_preprocessed",
    "preprocess_volumes",
    "pretrain_ssl",
    "probe_width",
    "read_cache",
]


def backbone_features(encoder, batch: torch.Tensor, lung_shares=None) -> torch.Tensor:
    """The fitted backbone's output for ``batch``, pooled as ``encoder`` is set to.

    With ``pooling_ == "lung"`` each volume's share of the grid inside its
    lung mask is appended to ``lung_shares`` (a list) when one is given.
    """
    out = encoder.backbone_(batch)
    maps = None
    if isinstance(out, list | tuple):
        if all(isinstance(m, torch.Tensor) and m.ndim == 5 for m in out):
            maps = list(out)
        out = out[-1]
    if isinstance(out, dict):
        raise TypeError(
            "backbone returned a dict; wrap it in a module that returns a feature map "
            "(B, C, X, Y, Z) or a vector (B, C)"
        )
    if out.ndim == 5 and encoder.pooling_ == "lung":
        masks, shares = batch_masks(batch, encoder.preprocessing_["hu_window"])
        if lung_shares is not None:
            lung_shares.extend(shares.tolist())
        pooled = masked_pool(maps if maps is not None else [out], masks)
        stats = lung_statistics(batch, masks, encoder.preprocessing_["hu_window"])
        return torch.cat([pooled, stats.to(pooled.dtype)], dim=1)
    if out.ndim == 5:
        grid = encoder.token_grid_ if encoder.output == "tokens" else None
        return pool_features(maps if maps is not None else out, encoder.pooling_, grid)
    if out.ndim == 2:
        if encoder.output == "tokens":
            raise ValueError(
                "output='tokens' needs a backbone returning a spatial feature map "
                f"(B, C, X, Y, Z); {type(encoder.backbone_).__name__} returns vectors "
                f"of shape {tuple(out.shape)}; use output='pooled'"
            )
        return out
    raise ValueError(
        f"backbone output has shape {tuple(out.shape)}; expected (B, C, X, Y, Z) or (B, C)"
    )


def probe_width(encoder) -> int:
    """Number of output columns, from one blank volume (at most 32^3 for large inputs)."""
    size = encoder.preprocessing_["spatial_size"]
    if size is None or int(np.prod(size)) > 96**3:
        size = (32, 32, 32)
    x = torch.zeros((1, 1, *size), device=encoder.device_)
    with torch.no_grad():
        return int(backbone_features(encoder, x).shape[1])


def iter_preprocessed(encoder, refs, indices, desc, progress=None):
    """Batches of ``(row, volume or None, error or None, info)`` for ``refs[indices]``."""
    dataset = _CTDataset(
        refs, indices, encoder.preprocessing_, encoder.max_voxels, encoder.dicom_series
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=encoder.batch_size,
        num_workers=encoder.num_workers,
        collate_fn=_collate,
        shuffle=False,
    )
    if (encoder.verbose >= 1) if progress is None else progress:
        from tqdm.auto import tqdm

        return tqdm(loader, desc=desc, total=len(loader))
    return loader


def preprocess_volumes(encoder, refs, rows, desc):
    """Preprocessed volumes of ``refs[rows]`` (float16, in memory) and ``(row, error)`` pairs."""
    volumes, errors = [], []
    for batch in iter_preprocessed(encoder, refs, rows, desc):
        for i, vol, err, _ in batch:
            if err is not None:
                errors.append((i, err))
            else:
                volumes.append(vol.to(torch.float16))
    return volumes, errors


def read_cache(encoder, refs, todo, out, infos):
    """Fill ``out`` from the cache; ``(cache keys, rows still to encode, hits)``.

    A row whose file cannot be hashed is left to the loader, which reports the
    problem.
    """
    cache = EmbeddingCache(encoder.cache_dir, encoder.cache_namespace_)
    keys: dict[int, str] = {}
    remaining, hits = [], 0
    for i in todo:
        try:
            keys[i] = cache.key(content_hash(refs[i]))
        except OSError:
            remaining.append(i)
            continue
        hit = cache.get(keys[i])
        if hit is not None and hit.shape == (encoder.n_features_out_,):
            out[i] = hit
            hits += 1
            infos[i] = {"status": "cached"}
        else:
            remaining.append(i)
    return keys, remaining, hits


def encode_rows(encoder, refs, rows, keys, *, progress=False):
    """Encode ``refs[i]`` for ``i`` in ``rows``, writing each batch's cache entries at once.

    Returns the embeddings (one row per ``rows`` item), a mask of rows
    encoded, ``(position in rows, message)`` of each unreadable input (with
    ``on_error="raise"`` it stops at the first one) and ``(position in rows,
    dict)`` describing what was read.
    """
    cache = None
    if encoder.cache_dir is not None:
        cache = EmbeddingCache(encoder.cache_dir, encoder.cache_namespace_)
    pos = {i: k for k, i in enumerate(rows)}
    emb_out = np.full((len(rows), encoder.n_features_out_), np.nan, dtype=np.float32)
    computed = np.zeros(len(rows), dtype=bool)
    errors: list[tuple[int, str]] = []
    infos: list[tuple[int, dict]] = []
    info_of: dict[int, dict] = {}
    with torch.no_grad():
        for batch in iter_preprocessed(encoder, refs, rows, "CT encoding", progress):
            good = []
            for i, vol, err, info in batch:
                infos.append((pos[i], info))
                info_of[i] = info
                if err is None:
                    good.append((i, vol))
                else:
                    errors.append((pos[i], err))
                    if encoder.on_error == "raise":
                        return emb_out, computed, errors, infos
            for group in _same_shape_groups(good):
                idx = [i for i, _ in group]
                x = torch.stack([v for _, v in group]).to(encoder.device_)
                shares: list[float] = []
                emb = backbone_features(encoder, x, shares).float().cpu().numpy()
                where = [pos[i] for i in idx]
                for i, share in zip(idx, shares):
                    info_of[i]["lung_share"] = share
                emb_out[where] = emb
                computed[where] = True
                if cache is not None:
                    for i, row in zip(idx, emb, strict=True):
                        if keys.get(i) is not None:
                            cache.put(keys[i], row)
    return emb_out, computed, errors, infos


def _same_shape_groups(items):
    """``(row, volume)`` pairs grouped by volume shape (native-size inputs differ)."""
    groups: dict[tuple, list] = {}
    for i, vol in items:
        groups.setdefault(tuple(vol.shape), []).append((i, vol))
    return list(groups.values())


def pretrain_ssl(encoder, backbone, refs, rng, seed: int):
    """Preprocess (a subset of) the fit volumes once and pretrain ``backbone`` in place.

    Returns the loss per epoch and the rows that could not be read.
    """
    present = [i for i, r in enumerate(refs) if not _is_missing(r)]
    if len(present) > encoder.pretrain_max_volumes:
        present = sorted(rng.choice(present, encoder.pretrain_max_volumes, replace=False))
    volumes, errors = preprocess_volumes(encoder, refs, present, "CT preprocessing (fit)")
    if encoder.on_error == "raise":
        report_read_errors(errors, encoder.on_error)
    if len(volumes) < 2:
        raise ValueError(
            f"backbone='ssl' pretrains on the volumes given to fit, but only "
            f"{len(volumes)} readable volumes were given; pass at least 2 or pass "
            "weights=<state dict>"
        )
    reconstruction = encoder.pretext == "reconstruction"
    batch_size = encoder.pretrain_batch_size
    if batch_size == "auto":
        batch_size = 4 if reconstruction else 32
    common = {
        "epochs": encoder.pretrain_epochs,
        "batch_size": batch_size,
        "lr": encoder.pretrain_lr,
        "seed": seed,
        "device": encoder.device_,
        "progress": encoder.verbose >= 1,
    }
    stacked = torch.stack(volumes)
    if reconstruction:
        losses = pretrain_reconstruction(backbone, stacked, **common)
    else:
        pooling = "multiscale" if encoder.pooling_ == "lung" else encoder.pooling_
        losses = pretrain_contrastive(backbone, stacked, pooling=pooling, **common)
    if encoder.verbose >= 2:
        name = "reconstruction MSE" if reconstruction else "NT-Xent"
        for epoch, loss in enumerate(losses, start=1):
            print(f"CT pretraining epoch {epoch:3d}  {name} {loss:.5f}")
    return losses, errors
