"""Reading CT volumes: NIfTI, NRRD and MetaImage files, DICOM exports, arrays.

Every reader returns a MONAI ``MetaTensor`` of shape ``(1, X, Y, Z)`` whose
``affine`` maps voxel indices to RAS millimetres, so MONAI's spatial transforms
(``Orientation``, ``Spacing``) treat all input kinds the same way. Files are
read by MONAI's readers: ``NibabelReader`` (NIfTI), ``NrrdReader`` (NRRD,
through pynrrd), ``ITKReader`` (MetaImage ``.mha``/``.mhd``, through the
optional ``itk-io``) and ``PydicomReader`` (DICOM, see :mod:`._dicom`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..exceptions import CTReadError
from ._dicom import choose_series, choose_series_of_file, is_ct_image, read_header, read_series

__all__ = ["load_ct_volume"]

_FILE_FORMATS = {  # suffix -> (format, MONAI reader)
    ".nii": ("nifti", "NibabelReader"),
    ".nii.gz": ("nifti", "NibabelReader"),
    ".nrrd": ("nrrd", "NrrdReader"),
    ".nhdr": ("nrrd", "NrrdReader"),
    ".mha": ("metaimage", "ITKReader"),
    ".mhd": ("metaimage", "ITKReader"),
}
_SHORT_NAMES = {"nifti": "NIfTI", "nrrd": "NRRD", "metaimage": "MetaImage"}
_FORMAT_NAMES = {"nifti": "NIfTI file", "nrrd": "NRRD file", "metaimage": "MetaImage file"}
_ACCEPTED = (
    "a NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr) or MetaImage (.mha, .mhd) file, a "
    "multi-frame DICOM CT file, a folder holding a DICOM CT series, or a 3-D array"
)


def _describe(ref) -> str:
    if isinstance(ref, np.ndarray):
        return f"array of shape {ref.shape}"
    return repr(str(ref))


def _file_format(path: Path):
    name = path.name.lower()
    for suffix, value in _FILE_FORMATS.items():
        if name.endswith(suffix):
            return value
    return None


def _header_shape(path: Path, fmt: str) -> tuple:
    """Volume shape from the file header, before any voxel is read."""
    if fmt == "nifti":
        import nibabel as nib

        return tuple(nib.load(str(path)).shape)
    if fmt == "nrrd":
        import nrrd

        return tuple(nrrd.read_header(str(path))["sizes"])
    with open(path, "rb") as fh:  # MetaImage: a text header of "Key = value" lines
        for line in fh.read(65536).decode("latin-1").splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "DimSize":
                return tuple(int(v) for v in value.split())
            if key.strip() == "ElementDataFile":
                break
    raise ValueError("no DimSize in the MetaImage header")


def _check_file_header(path: Path, fmt: str, max_voxels: int | None) -> None:
    what = _FORMAT_NAMES[fmt]
    try:
        shape = _header_shape(path, fmt)
    except ImportError:
        raise
    except Exception as exc:  # readers raise many types for broken headers
        raise CTReadError(
            f"{what} {str(path)!r} could not be read ({type(exc).__name__}: {exc}); "
            f"the file is corrupt or not {_SHORT_NAMES[fmt]} - re-export it"
        ) from None
    n_vox = int(np.prod(shape))
    if max_voxels is not None and n_vox > max_voxels:
        raise CTReadError(
            f"{what} {str(path)!r} has {n_vox} voxels (shape {shape}), more than "
            f"max_voxels={max_voxels}; raise max_voxels or downsample the volume"
        )


def _reader(name: str):
    if name == "NrrdReader":
        try:
            import nrrd  # noqa: F401
        except ImportError:
            raise ImportError("reading NRRD volumes needs pynrrd; pip install pynrrd") from None
    if name == "ITKReader":
        try:
            import itk  # noqa: F401
        except ImportError:
            raise ImportError(
                "reading MetaImage (.mha/.mhd) volumes needs ITK's IO modules; "
                "pip install 'multimodal-surv[itk]' (or itk-io)"
            ) from None
    return name


def _as_volume(img, ref) -> object:
    """Check that a channel-first MetaTensor holds one finite 3-D volume."""
    spatial = tuple(int(s) for s in img.shape[1:])
    if img.shape[0] != 1:
        raise CTReadError(
            f"CT reference {_describe(ref)} has {img.shape[0]} channels; pass a single-channel "
            "(grey-level) 3-D volume"
        )
    non_trivial = [s for s in spatial if s > 1]
    if len(spatial) != 3 or len(non_trivial) < 3:
        raise CTReadError(
            f"CT reference {_describe(ref)} is not a 3-D volume (spatial shape {spatial}); "
            "pass a 3-D CT volume (a 2-D image or a single slice cannot be encoded)"
        )
    arr = img.as_tensor() if hasattr(img, "as_tensor") else img
    import torch

    finite = torch.isfinite(arr)
    if not bool(finite.all()):
        n_bad = int((~finite).sum())
        raise CTReadError(
            f"CT reference {_describe(ref)} contains {n_bad} NaN or infinite voxels; "
            "fix or mask them before encoding (e.g. replace by -1024 HU)"
        )
    return img


def _array_volume(ref: np.ndarray, max_voxels):
    import torch
    from monai.data import MetaTensor

    if ref.ndim != 3:
        raise CTReadError(
            f"CT array has {ref.ndim} dimensions (shape {ref.shape}); pass a 3-D volume"
        )
    if max_voxels is not None and ref.size > max_voxels:
        raise CTReadError(
            f"CT array has {ref.size} voxels (shape {ref.shape}), more than "
            f"max_voxels={max_voxels}; raise max_voxels or downsample the volume"
        )
    if not np.issubdtype(ref.dtype, np.number):
        raise CTReadError(f"CT array has non-numeric dtype {ref.dtype}; pass HU values")
    data = torch.as_tensor(np.asarray(ref, dtype=np.float32))[None]
    return MetaTensor(data, affine=torch.eye(4, dtype=torch.float64))


def _single_dicom_file(path: Path):
    """A path that is neither a known volume format nor a folder: a multi-frame DICOM CT?"""
    ds = read_header(path)
    if ds is None:
        raise CTReadError(f"CT path {str(path)!r} is not a file format read here; pass {_ACCEPTED}")
    if not is_ct_image(ds) or int(ds.get("NumberOfFrames", 1) or 1) < 2:
        kind = "not a CT image" if not is_ct_image(ds) else "a single CT slice"
        raise CTReadError(
            f"DICOM file {str(path)!r} is {kind}; pass the folder holding the whole CT "
            "series (or a multi-frame CT file)"
        )
    return ds


def load_ct_volume_with_info(ref, *, max_voxels=None, dicom_series="largest"):
    """:func:`load_ct_volume`, plus a dict describing what was read (format, DICOM series)."""
    import torch
    from monai.transforms import LoadImage

    info = {"format": "array"}
    if isinstance(ref, np.ndarray):
        return _as_volume(_array_volume(ref, max_voxels), ref), info
    if not isinstance(ref, str | os.PathLike):
        raise CTReadError(
            f"CT reference {ref!r} of type {type(ref).__name__} is not a path or an array; "
            f"pass {_ACCEPTED}"
        )
    if not isinstance(dicom_series, str):
        raise TypeError(
            f"dicom_series={dicom_series!r} must be 'largest', 'error' or a SeriesInstanceUID"
        )
    path = Path(ref)
    if not path.exists():
        raise CTReadError(
            f"CT path {str(path)!r} does not exist; pass an existing NIfTI file or DICOM "
            "series folder, or set on_error='nan' to encode it as missing"
        )
    fmt = None if path.is_dir() else _file_format(path)
    if fmt is None:
        if path.is_dir():
            series, info = choose_series(path, dicom_series, max_voxels)
        else:
            ds = _single_dicom_file(path)
            series, info = choose_series_of_file(path, ds, max_voxels)
        try:
            img = read_series(series)
        except CTReadError:
            raise
        except Exception as exc:  # readers raise many exception types on broken data
            raise CTReadError(
                f"DICOM series {str(path)!r} could not be read ({type(exc).__name__}: {exc}); "
                "the data are corrupt or truncated - re-export them"
            ) from None
    else:
        fmt, reader = fmt
        _check_file_header(path, fmt, max_voxels)
        loader = LoadImage(reader=_reader(reader), image_only=True, ensure_channel_first=True)
        try:
            img = loader(str(path))
        except Exception as exc:  # readers raise many exception types on broken data
            raise CTReadError(
                f"{_FORMAT_NAMES[fmt]} {str(path)!r} could not be read "
                f"({type(exc).__name__}: {exc}); the data are corrupt or truncated - "
                "re-export them"
            ) from None
        info = {"format": fmt}
    img = img.float() if img.dtype != torch.float32 else img
    return _as_volume(img, ref), info


def load_ct_volume(ref, *, max_voxels: int | None = None, dicom_series: str = "largest"):
    """Load one CT volume as a channel-first MONAI ``MetaTensor``.

    Parameters
    ----------
    ref : str, os.PathLike or ndarray
        A NIfTI (``.nii`` / ``.nii.gz``), NRRD (``.nrrd`` / ``.nhdr``) or
        MetaImage (``.mha`` / ``.mhd``, needs ``itk-io``) file; a folder
        holding a DICOM CT series (searched recursively; files need no
        ``.dcm`` extension; non-image objects such as RTSTRUCT, SEG or SR are
        skipped); a multi-frame (enhanced) DICOM CT file; or a 3-D array of
        Hounsfield units (taken as RAS with 1 mm isotropic voxels).
    max_voxels : int or None, default=None
        Refuse volumes with more voxels than this (checked from the header,
        before the voxels are read).
    dicom_series : str, default="largest"
        Which CT series of a DICOM folder holding several: ``"largest"``
        (most slices, then thinnest slices, then smallest UID), ``"error"``
        (refuse the folder), or a SeriesInstanceUID.

    Returns
    -------
    volume : monai.data.MetaTensor of shape (1, X, Y, Z)
        float32 voxels with the RAS ``affine`` in its metadata.

    Raises
    ------
    CTReadError
        Missing path, unreadable or corrupt file, a DICOM folder with no CT
        series (or several, under ``dicom_series="error"``), a 2-D image,
        non-finite voxels, or more voxels than ``max_voxels``.

    Examples
    --------
    >>> import numpy as np
    >>> from multimodal_surv.datasets import load_ct_volume
    >>> vol = load_ct_volume(np.zeros((4, 5, 6)))
    >>> tuple(vol.shape)
    (1, 4, 5, 6)
    """
    return load_ct_volume_with_info(ref, max_voxels=max_voxels, dicom_series=dicom_series)[0]


def describe_ct_reference(ref, dicom_series: str = "largest") -> dict:
    """What :func:`load_ct_volume` would read, from headers only (no voxel is read)."""
    if isinstance(ref, np.ndarray):
        return {"format": "array"}
    path = Path(ref)
    if path.is_dir():
        return choose_series(path, dicom_series, None)[1]
    fmt = _file_format(path)
    if fmt is not None:
        return {"format": fmt[0]}
    ds = _single_dicom_file(path)
    return choose_series_of_file(path, ds, None)[1]
