"""Save the backbone a CTEncoder pretrained at ``fit`` and load it again.

A folder with ``config.json`` (architecture, preprocessing, pooling) and
``model.safetensors`` (the backbone's weights): no pickle, readable by any
safetensors reader, the same layout as
:meth:`EHRTransformerEncoder.save_pretrained
<multimodal_surv.encoders.EHRTransformerEncoder.save_pretrained>`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from sklearn.utils.validation import check_is_fitted

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "multimodal_surv.CTEncoder"
FORMAT_VERSION = 1
_PREPROCESSING = ("orientation", "spacing", "hu_window", "spatial_size", "crop_foreground")


def save_ct_encoder(encoder, folder) -> Path:
    """Write a fitted ``backbone="ssl"`` encoder's backbone to ``folder``."""
    from safetensors.torch import save_file

    from .. import __version__

    check_is_fitted(encoder, "backbone_")
    if not (isinstance(encoder.backbone, str) and encoder.backbone == "ssl"):
        name = encoder.backbone if isinstance(encoder.backbone, str) else "a torch module"
        raise ValueError(
            f"save_pretrained saves the backbone that CTEncoder pretrains at fit "
            f"(backbone='ssl'); this encoder's backbone is {name}, whose weights "
            f"already live where you loaded them from (weights={encoder.weights!r}). "
            "Keep that file or folder, or save the whole fitted encoder with joblib."
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "multimodal_surv_version": __version__,
        "backbone": "ssl",
        "pretext": encoder.pretext,
        "architecture": type(encoder.backbone_).__name__,
        **{name: encoder.preprocessing_[name] for name in _PREPROCESSING},
        "output": encoder.output,
        "token_grid": list(encoder.token_grid_),
        "pooling": encoder.pooling_,
        "n_features_out": int(encoder.n_features_out_),
    }
    state = {
        key: value.detach().to("cpu").contiguous()
        for key, value in encoder.backbone_.state_dict().items()
    }
    save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": FORMAT})
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    return folder


def read_ct_config(folder) -> dict:
    """The validated ``config.json`` of a folder written by :func:`save_ct_encoder`."""
    folder = Path(folder)
    missing = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if not (folder / n).is_file()]
    if missing:
        raise ValueError(
            f"{folder} is not a saved CTEncoder: {', '.join(missing)} not found. Pass the "
            "folder written by CTEncoder.save_pretrained (config.json + model.safetensors)."
        )
    try:
        config = json.loads((folder / CONFIG_NAME).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{folder / CONFIG_NAME} is not valid JSON ({exc}).") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise ValueError(
            f"{folder / CONFIG_NAME} was not written by CTEncoder.save_pretrained "
            f"(format {found!r}, expected {FORMAT!r}). For CT-FM's own folder use "
            "CTEncoder('ct-fm', weights=folder)."
        )
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"{folder} was saved in format version {config['format_version']} by "
            f"multimodal_surv {config.get('multimodal_surv_version')}; this version reads "
            f"up to {FORMAT_VERSION}. Upgrade multimodal_surv."
        )
    return config


def load_ct_encoder(cls, folder, **params):
    """A fitted encoder whose backbone and preprocessing come from ``folder``."""
    folder = Path(folder)
    config = read_ct_config(folder)
    init = {
        "backbone": "ssl",
        "weights": str(folder / WEIGHTS_NAME),
        "pretext": config["pretext"],
        "output": config["output"],
        "token_grid": tuple(config["token_grid"]),
        "pooling": config["pooling"],
    }
    for name in _PREPROCESSING:
        value = config[name]
        init[name] = tuple(value) if isinstance(value, list) else value
    init.update(params)
    encoder = cls(**init)
    # With weights given, fit builds the backbone and loads them strictly; it
    # pretrains nothing and reads no volume, so one row without a CT suffices.
    return encoder.fit(pd.DataFrame({"ct": [None]}))
