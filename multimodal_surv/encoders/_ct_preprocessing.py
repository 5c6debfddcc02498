"""Preprocessing recipes of ``CTEncoder``: each parameter's "auto" resolved and validated."""

from __future__ import annotations

import numbers

import numpy as np

from ._ct_backbones import BACKBONE_DEFAULTS

__all__ = ["resolve_preprocessing"]

_AUTO = "auto"
_PREPROCESSING = ("orientation", "spacing", "hu_window", "spatial_size", "crop_foreground")


def resolve_preprocessing(kind: str, **params) -> dict:
    """The preprocessing of backbone ``kind``: each "auto" value replaced by its recipe.

    ``params`` holds ``orientation``, ``spacing``, ``hu_window``,
    ``spatial_size`` and ``crop_foreground`` as given to ``CTEncoder``; the
    result holds their validated values (tuples, floats, upper-case codes).
    """
    defaults = BACKBONE_DEFAULTS[kind]

    def pick(name):
        value = params[name]
        return defaults[name] if isinstance(value, str) and value == _AUTO else value

    orientation = pick("orientation")
    if orientation is not None:
        ok = isinstance(orientation, str) and len(orientation) == 3
        ok = ok and all(
            sum(c in pair for c in orientation.upper()) == 1 for pair in ("LR", "AP", "IS")
        )
        if not ok:
            raise ValueError(
                f"orientation={orientation!r} is not a valid 3-letter axis code; pass e.g. "
                "'RAS' or 'SPL' (one of L/R, one of A/P, one of I/S), None or 'auto'"
            )
        orientation = orientation.upper()
    spacing = pick("spacing")
    if spacing is not None:
        spacing = _triple(spacing, "spacing", float, "e.g. (1.5, 1.5, 3.0) mm")
    hu = pick("hu_window")
    if hu is not None:
        if (
            not isinstance(hu, list | tuple)
            or len(hu) != 2
            or not all(isinstance(v, numbers.Real) for v in hu)
            or not hu[0] < hu[1]
        ):
            raise ValueError(
                f"hu_window={hu!r} must be (low, high) HU with low < high, e.g. "
                "(-1000, 1000), None or 'auto'"
            )
        hu = (float(hu[0]), float(hu[1]))
    size = pick("spatial_size")
    if size is not None:
        size = _triple(size, "spatial_size", int, "e.g. (64, 64, 64)")
    crop = pick("crop_foreground")
    if kind == "ssl" and size is None:
        raise ValueError(
            "backbone='ssl' needs a fixed spatial_size for pretraining; pass e.g. "
            "spatial_size=(64, 64, 64) (or 'auto')"
        )
    return {
        "orientation": orientation,
        "spacing": spacing,
        "hu_window": hu,
        "spatial_size": size,
        "crop_foreground": crop if crop == "body" else bool(crop),
    }


def _triple(value, name, cast, example):
    if (
        not isinstance(value, list | tuple | np.ndarray)
        or len(value) != 3
        or not all(isinstance(v, numbers.Real) and v > 0 for v in value)
        or (cast is int and not all(float(v).is_integer() for v in value))
    ):
        raise ValueError(
            f"{name}={value!r} must be 3 positive {'integers' if cast is int else 'numbers'} "
            f"({example}), None or 'auto'"
        )
    return tuple(cast(v) for v in value)
