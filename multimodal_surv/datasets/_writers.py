"""Writing CT volumes: NIfTI files and DICOM CT series (one file per slice, or enhanced)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["write_dicom_series", "write_nifti"]


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


def _dicom_meta(sop_class):
    from pydicom.dataset import Dataset as DicomDataset
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = DicomDataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    return ds


def _set_pixels(ds, pixels: np.ndarray) -> None:
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()


def _item(**tags):
    from pydicom.dataset import Dataset as DicomDataset

    item = DicomDataset()
    for key, value in tags.items():
        setattr(item, key, value)
    return item


def write_dicom_series(
    volume: np.ndarray,
    folder,
    *,
    spacing=(1.0, 1.0, 1.0),
    series_uid: str | None = None,
    enhanced: bool = False,
) -> Path:
    """Write a 3-D array of Hounsfield units as a DICOM CT series.

    The geometry matches :func:`write_nifti` with the same ``spacing``: after
    loading and reorienting to RAS both give the same voxel grid.

    Parameters
    ----------
    volume : ndarray of shape (X, Y, Z)
        Voxel values in HU in RAS index order (see :func:`write_nifti`).
    folder : str or os.PathLike
        Output folder (created); files ``slice_0000.dcm`` ... are written, or
        one ``enhanced_ct.dcm`` when ``enhanced=True``.
    spacing : tuple of 3 floats, default=(1, 1, 1)
        Voxel size in mm along X, Y, Z.
    series_uid : str or None
        SeriesInstanceUID; a fresh one when None.
    enhanced : bool, default=False
        Write one multi-frame Enhanced CT file (geometry in its functional
        groups) instead of one CT Image file per slice.

    Returns
    -------
    folder : pathlib.Path
    """
    from pydicom.sequence import Sequence
    from pydicom.uid import CTImageStorage, EnhancedCTImageStorage, generate_uid

    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"volume must be 3-D, got shape {volume.shape}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sx, sy, sz = map(float, spacing)
    nx, ny, nz = volume.shape
    common = {
        "StudyInstanceUID": generate_uid(),
        "SeriesInstanceUID": series_uid or generate_uid(),
        "FrameOfReferenceUID": generate_uid(),
        "Modality": "CT",
        "PatientID": "synthetic",
    }
    orientation = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]

    def position(k):
        return [-(nx - 1) * sx, -(ny - 1) * sy, k * sz]

    # DICOM patient axes are LPS; rows run along +P (= -A), columns along +L (= -R).
    # Pixel (r, c) of slice k is RAS voxel (nx-1-c, ny-1-r, k).
    frames = np.round(volume[::-1, ::-1, :].transpose(2, 1, 0)).astype(np.int16)
    if enhanced:
        ds = _dicom_meta(EnhancedCTImageStorage)
        for key, value in common.items():
            setattr(ds, key, value)
        ds.NumberOfFrames = nz
        shared = _item(
            PixelMeasuresSequence=Sequence([_item(PixelSpacing=[sy, sx], SliceThickness=sz)]),
            PlaneOrientationSequence=Sequence([_item(ImageOrientationPatient=orientation)]),
            PixelValueTransformationSequence=Sequence(
                [_item(RescaleIntercept=0, RescaleSlope=1, RescaleType="HU")]
            ),
        )
        ds.SharedFunctionalGroupsSequence = Sequence([shared])
        ds.PerFrameFunctionalGroupsSequence = Sequence(
            [
                _item(PlanePositionSequence=Sequence([_item(ImagePositionPatient=position(k))]))
                for k in range(nz)
            ]
        )
        _set_pixels(ds, frames)
        ds.save_as(folder / "enhanced_ct.dcm", enforce_file_format=True)
        return folder
    for k in range(nz):
        ds = _dicom_meta(CTImageStorage)
        for key, value in common.items():
            setattr(ds, key, value)
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = orientation
        ds.ImagePositionPatient = position(k)
        ds.PixelSpacing = [sy, sx]  # row spacing, column spacing
        ds.SliceThickness = sz
        ds.RescaleIntercept = 0
        ds.RescaleSlope = 1
        _set_pixels(ds, frames[k])
        ds.save_as(folder / f"slice_{k:04d}.dcm", enforce_file_format=True)
    return folder
