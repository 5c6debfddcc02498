"""Reading and writing CT volumes: NIfTI files, DICOM series folders, arrays.

Every reader returns a MONAI ``MetaTensor`` of shape ``(1, X, Y, Z)`` whose
``affine`` maps voxel indices to RAS millimetres, so MONAI's spatial transforms
(``Orientation``, ``Spacing``) treat all three input kinds the same way.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..exceptions import CTReadError

__all__ = [
    "CTReadError",
    "load_ct_volume",
    "write_dicom_series",
    "write_nifti",
]

_NIFTI_SUFFIXES = (".nii", ".nii.gz")


def _describe(ref) -> str:
    if isinstance(ref, np.ndarray):
        return f"array of shape {ref.shape}"
    return repr(str(ref))


def _dicom_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def _check_dicom_folder(folder: Path, max_voxels: int | None) -> None:
    """Refuse folders that are empty, not DICOM, mixed series or too large."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    files = _dicom_files(folder)
    if not files:
        raise CTReadError(
            f"DICOM folder {str(folder)!r} contains no files; pass a folder holding one "
            "DICOM series or a NIfTI file"
        )
    series: dict[str, int] = {}
    rows = cols = 0
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except (InvalidDicomError, OSError) as exc:
            raise CTReadError(
                f"file {str(f)!r} in DICOM folder {str(folder)!r} is not a readable DICOM "
                f"file ({exc}); remove it or pass a folder with only one DICOM series"
            ) from None
        uid = str(getattr(ds, "SeriesInstanceUID", "<missing SeriesInstanceUID>"))
        series[uid] = series.get(uid, 0) + 1
        rows, cols = int(getattr(ds, "Rows", 0)), int(getattr(ds, "Columns", 0))
    if len(series) > 1:
        listing = ", ".join(f"{uid} ({n} files)" for uid, n in sorted(series.items()))
        raise CTReadError(
            f"DICOM folder {str(folder)!r} mixes {len(series)} series: {listing}; "
            "put each series in its own folder and pass one folder per volume"
        )
    if len(files) < 2:
        raise CTReadError(
            f"DICOM folder {str(folder)!r} holds a single slice, i.e. a 2-D image; "
            "a CT volume needs a series of at least 2 slices"
        )
    n_vox = rows * cols * len(files)
    if max_voxels is not None and n_vox > max_voxels:
        raise CTReadError(
            f"DICOM series {str(folder)!r} has {n_vox} voxels ({cols}x{rows}x{len(files)}), "
            f"more than max_voxels={max_voxels}; raise max_voxels or downsample the series"
        )


def _check_nifti_header(path: Path, max_voxels: int | None) -> None:
    import nibabel as nib

    try:
        shape = nib.load(str(path)).shape
    except Exception as exc:  # nibabel raises many types for broken headers
        raise CTReadError(
            f"NIfTI file {str(path)!r} could not be read ({type(exc).__name__}: {exc}); "
            "the file is corrupt or not NIfTI - re-export it"
        ) from None
    n_vox = int(np.prod(shape))
    if max_voxels is not None and n_vox > max_voxels:
        raise CTReadError(
            f"NIfTI file {str(path)!r} has {n_vox} voxels (shape {shape}), more than "
            f"max_voxels={max_voxels}; raise max_voxels or downsample the volume"
        )


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


def load_ct_volume(ref, *, max_voxels: int | None = None):
    """Load one CT volume as a channel-first MONAI ``MetaTensor``.

    Parameters
    ----------
    ref : str, os.PathLike or ndarray
        A NIfTI file (``.nii`` / ``.nii.gz``), a folder holding exactly one DICOM
        series, or a 3-D array of Hounsfield units (taken as RAS with 1 mm
        isotropic voxels).
    max_voxels : int or None, default=None
        Refuse volumes with more voxels than this (checked from the header,
        before the voxels are read).

    Returns
    -------
    volume : monai.data.MetaTensor of shape (1, X, Y, Z)
        float32 voxels with the RAS ``affine`` in its metadata.

    Raises
    ------
    CTReadError
        Missing path, unreadable or corrupt file, DICOM folder mixing series,
        a 2-D image, non-finite voxels, or more voxels than ``max_voxels``.

    Examples
    --------
    >>> import numpy as np
    >>> from multimodal_surv.datasets import load_ct_volume
    >>> vol = load_ct_volume(np.zeros((4, 5, 6)))
    >>> tuple(vol.shape)
    (1, 4, 5, 6)
    """
    import torch
    from monai.data import MetaTensor
    from monai.transforms import LoadImage

    if isinstance(ref, np.ndarray):
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
        return _as_volume(MetaTensor(data, affine=torch.eye(4, dtype=torch.float64)), ref)
    if not isinstance(ref, str | os.PathLike):
        raise CTReadError(
            f"CT reference {ref!r} of type {type(ref).__name__} is not a path or an array; "
            "pass a NIfTI path, a DICOM series folder or a 3-D numpy array"
        )
    path = Path(ref)
    if not path.exists():
        raise CTReadError(
            f"CT path {str(path)!r} does not exist; pass an existing NIfTI file or DICOM "
            "series folder, or set on_error='nan' to encode it as missing"
        )
    if path.is_dir():
        _check_dicom_folder(path, max_voxels)
        reader = "PydicomReader"
    elif path.name.lower().endswith(_NIFTI_SUFFIXES):
        _check_nifti_header(path, max_voxels)
        reader = "NibabelReader"
    else:
        raise CTReadError(
            f"CT path {str(path)!r} is neither a NIfTI file (.nii, .nii.gz) nor a folder; "
            "pass a NIfTI file or a folder holding one DICOM series"
        )
    loader = LoadImage(reader=reader, image_only=True, ensure_channel_first=True)
    try:
        img = loader(str(path))
    except Exception as exc:  # readers raise many exception types on broken data
        kind = "DICOM series" if reader == "PydicomReader" else "NIfTI file"
        raise CTReadError(
            f"{kind} {str(path)!r} could not be read ({type(exc).__name__}: {exc}); "
            "the data are corrupt or truncated - re-export them"
        ) from None
    img = img.float() if img.dtype != torch.float32 else img
    return _as_volume(img, ref)


def write_nifti(volume: np.ndarray, path, *, spacing=(1.0, 1.0, 1.0), affine=None) -> Path:
    """Write a 3-D array of Hounsfield units as a NIfTI file (int16, RAS).

    Parameters
    ----------
    volume : ndarray of shape (X, Y, Z)
        Voxel values in HU, first axis left->right, second posterior->anterior,
        third inferior->superior.
    path : str or os.PathLike
        Destination ending in ``.nii`` or ``.nii.gz``.
    spacing : tuple of 3 floats, default=(1, 1, 1)
        Voxel size in mm (ignored when ``affine`` is given).
    affine : ndarray of shape (4, 4) or None
        Voxel-to-RAS affine; default ``diag(spacing + (1,))``.

    Returns
    -------
    path : pathlib.Path
    """
    import nibabel as nib

    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"volume must be 3-D, got shape {volume.shape}")
    if affine is None:
        affine = np.diag([*map(float, spacing), 1.0])
    img = nib.Nifti1Image(np.round(volume).astype(np.int16), np.asarray(affine, float))
    path = Path(path)
    nib.save(img, str(path))
    return path


def write_dicom_series(
    volume: np.ndarray,
    folder,
    *,
    spacing=(1.0, 1.0, 1.0),
    series_uid: str | None = None,
) -> Path:
    """Write a 3-D array of Hounsfield units as a DICOM CT series (one file per slice).

    The geometry matches :func:`write_nifti` with the same ``spacing``: after
    loading and reorienting to RAS both give the same voxel grid.

    Parameters
    ----------
    volume : ndarray of shape (X, Y, Z)
        Voxel values in HU in RAS index order (see :func:`write_nifti`).
    folder : str or os.PathLike
        Output folder (created); files ``slice_0000.dcm`` ... are written.
    spacing : tuple of 3 floats, default=(1, 1, 1)
        Voxel size in mm along X, Y, Z.
    series_uid : str or None
        SeriesInstanceUID; a fresh one when None.

    Returns
    -------
    folder : pathlib.Path
    """
    from pydicom.dataset import Dataset as DicomDataset
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"volume must be 3-D, got shape {volume.shape}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sx, sy, sz = map(float, spacing)
    nx, ny, nz = volume.shape
    series_uid = series_uid or generate_uid()
    study_uid = generate_uid()
    frame_uid = generate_uid()
    # DICOM patient axes are LPS; rows run along +P (= -A), columns along +L (= -R).
    # Pixel (r, c) of slice k is RAS voxel (nx-1-c, ny-1-r, k).
    for k in range(nz):
        pixels = np.round(volume[::-1, ::-1, k].T).astype(np.int16)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        sop_uid = generate_uid()
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = DicomDataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.Modality = "CT"
        ds.PatientID = "synthetic"
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.ImagePositionPatient = [-(nx - 1) * sx, -(ny - 1) * sy, k * sz]
        ds.PixelSpacing = [sy, sx]  # row spacing, column spacing
        ds.SliceThickness = sz
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = 0
        ds.RescaleSlope = 1
        ds.PixelData = pixels.tobytes()
        ds.save_as(folder / f"slice_{k:04d}.dcm", enforce_file_format=True)
    return folder
