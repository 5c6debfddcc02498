"""Reading a CT volume from a DICOM export: finding the CT series, choosing one, stacking it.

A DICOM export folder holds more than one CT series: structure sets (RTSTRUCT),
segmentations (SEG), reports (SR), key-object notes (KO), presentation states
(PR), plans and doses (RTPLAN, RTDOSE), scout and dose-report screenshots.
Files are classified by SOP Class UID (by ``Modality`` where the class is
absent); only CT image storage counts as an image series, everything else is
skipped with a debug-level log line on the ``multimodal_surv.datasets`` logger.
Among several CT image series the one with the most slices (then the thinnest
slices, then the smallest SeriesInstanceUID) is taken, unless the caller asks
for an error or names a SeriesInstanceUID. The voxels and the geometry come
from MONAI's ``PydicomReader``; multi-frame (enhanced) CT files are split into
their frames first so that the same geometry code stacks them.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..exceptions import CTReadError

logger = logging.getLogger("multimodal_surv.datasets")


class _DropMessage(logging.Filter):
    """Drop one known, harmless log line (MONAI announces a missing GPU DICOM decoder
    every time a DICOM reader is built, i.e. once per volume)."""

    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def quiet_monai_dicom_plugin() -> None:
    """Silence MONAI's notice that its optional GPU DICOM decoder is absent."""
    monai_logger = logging.getLogger("monai.data.nvimgcodec_pydicom_plugin")
    if not any(isinstance(f, _DropMessage) for f in monai_logger.filters):
        monai_logger.addFilter(_DropMessage("nvImageCodec is not available"))


CT_IMAGE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.2": "CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.2": "Legacy Converted Enhanced CT Image Storage",
}
SERIES_RULES = ("largest", "error")
#: Largest accepted deviation of a gap between neighbouring slices from the
#: series' median gap, relative to that median (and never under 0.01 mm).
SLICE_GAP_RTOL = 0.1


@dataclass
class DicomSeries:
    """One CT image series found in a folder."""

    uid: str
    files: list = field(default_factory=list)
    n_slices: int = 0
    thickness: float = float("inf")
    n_multiframe: int = 0
    shape: tuple = (0, 0)
    #: (slice label, ImagePositionPatient) per slice; ImageOrientationPatient of the first
    positions: list = field(default_factory=list)
    orientation: tuple | None = None

    def describe(self) -> str:
        mm = f"{self.thickness:g} mm" if np.isfinite(self.thickness) else "thickness unknown"
        return f"{self.uid} ({self.n_slices} slices, {mm})"


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def read_header(path: Path):
    """The header of a DICOM file (no pixels), or None for a file that is not DICOM.

    Files without the 128-byte preamble (older exports) are read with
    ``force=True`` and kept only when they carry a SOP Class UID or a modality.
    A file that announces itself as DICOM but cannot be parsed is an error.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        pass
    except Exception as exc:  # pydicom raises many types for truncated headers
        raise CTReadError(
            f"DICOM file {str(path)!r} could not be parsed ({type(exc).__name__}: {exc}); the "
            "file is corrupt or truncated - re-export it or remove it from the folder"
        ) from None
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception:  # not DICOM at all
        return None
    return ds if ("SOPClassUID" in ds or "Modality" in ds) else None


def _sop_class(ds):
    """The SOP Class UID, from the file meta information if the data set lost it."""
    sop = ds.get("SOPClassUID", None)
    meta = getattr(ds, "file_meta", None)
    if not sop and meta is not None:
        sop = meta.get("MediaStorageSOPClassUID", None)
    return sop


def is_ct_image(ds) -> bool:
    """CT image storage by SOP Class UID, or by ``Modality`` when the class is absent."""
    sop = str(_sop_class(ds) or "")
    if sop:
        return sop in CT_IMAGE_SOP_CLASSES
    return str(ds.get("Modality", "")).upper() == "CT" and "Rows" in ds


def _object_name(ds) -> str:
    sop = _sop_class(ds)
    name = getattr(sop, "name", None) or (str(sop) if sop else "no SOP Class UID")
    return f"{name} ({ds.get('Modality', '?')})"


def _functional_item(ds, name: str, frame: int | None = None):
    """Item of a functional-group sequence: per-frame first, then shared."""
    if frame is not None and "PerFrameFunctionalGroupsSequence" in ds:
        group = ds.PerFrameFunctionalGroupsSequence[frame]
        if name in group and len(group[name].value):
            return group[name].value[0]
    if "SharedFunctionalGroupsSequence" in ds:
        group = ds.SharedFunctionalGroupsSequence[0]
        if name in group and len(group[name].value):
            return group[name].value[0]
    return None


def _thickness(ds) -> float:
    value = ds.get("SliceThickness", None)
    if value in (None, ""):
        item = _functional_item(ds, "PixelMeasuresSequence")
        value = None if item is None else item.get("SliceThickness", None)
    try:
        return float(value) if value not in (None, "") else float("inf")
    except (TypeError, ValueError):
        return float("inf")


def scan_dicom_folder(folder: Path) -> tuple[dict[str, DicomSeries], dict[str, int]]:
    """CT image series in ``folder`` (searched recursively) and counts of what was skipped."""
    series: dict[str, DicomSeries] = {}
    skipped: dict[str, int] = {}
    for f in _files(folder):
        ds = read_header(f)
        if ds is None:
            logger.debug("skipping %s: not a DICOM file", f)
            skipped["not DICOM"] = skipped.get("not DICOM", 0) + 1
            continue
        if not is_ct_image(ds):
            what = _object_name(ds)
            logger.debug("skipping %s: %s is not a CT image", f, what)
            skipped[what] = skipped.get(what, 0) + 1
            continue
        _add_file(series, f, ds)
    return series, skipped


def _add_file(series: dict[str, DicomSeries], path: Path, ds) -> None:
    missing = [k for k in ("SeriesInstanceUID", "Rows", "Columns") if not ds.get(k, None)]
    if missing:
        raise CTReadError(
            f"CT image file {str(path)!r} has no {', '.join(missing)}; the file is truncated "
            "or corrupt - re-export it or remove it from the folder"
        )
    uid = str(ds.SeriesInstanceUID)
    s = series.setdefault(uid, DicomSeries(uid))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    s.files.append(path)
    s.n_slices += frames
    s.n_multiframe += frames > 1 or "PerFrameFunctionalGroupsSequence" in ds
    s.thickness = min(s.thickness, _thickness(ds))
    s.shape = (int(ds.get("Rows", 0)), int(ds.get("Columns", 0)))
    _add_positions(s, path, ds, frames)


def _add_positions(s: DicomSeries, path: Path, ds, frames: int) -> None:
    """Note the slice positions (and the orientation) of a file's slices or frames."""
    multi = frames > 1 or "PerFrameFunctionalGroupsSequence" in ds
    for k in range(frames) if multi else [None]:
        if k is None:
            position, orientation = ds, ds
        else:
            position = _functional_item(ds, "PlanePositionSequence", k)
            orientation = _functional_item(ds, "PlaneOrientationSequence", k)
        xyz = None if position is None else position.get("ImagePositionPatient", None)
        s.positions.append((path.name if k is None else f"frame {k + 1}", xyz))
        iop = None if orientation is None else orientation.get("ImageOrientationPatient", None)
        if s.orientation is None and iop is not None:
            s.orientation = tuple(float(v) for v in iop)


def check_slice_gaps(series: DicomSeries, where: str) -> None:
    """Refuse a series whose slices are not evenly spaced along the slice normal.

    MONAI stacks the slices with their mean spacing, so a missing slice (or
    two acquisitions under one SeriesInstanceUID) would give a silently
    stretched volume. Positions are ``ImagePositionPatient`` projected on the
    normal of ``ImageOrientationPatient``; every gap between neighbours must be
    within :data:`SLICE_GAP_RTOL` of the median gap. Series without positions
    are not checked (MONAI then stacks them by instance number).
    """
    if series.orientation is None or any(xyz is None for _, xyz in series.positions):
        return
    try:
        iop = np.asarray(series.orientation, dtype=float)
        xyz = np.asarray([[float(v) for v in p] for _, p in series.positions], dtype=float)
    except (TypeError, ValueError):
        return  # malformed geometry: left to the reader's own error
    if iop.shape != (6,) or xyz.ndim != 2 or xyz.shape[1] != 3 or len(xyz) < 3:
        return
    along = xyz @ np.cross(iop[:3], iop[3:])
    order = np.argsort(along, kind="stable")
    gaps = np.diff(along[order])
    median = float(np.median(gaps))
    off = np.abs(gaps - median)
    if off.max() <= max(SLICE_GAP_RTOL * median, 0.01):
        return
    i = int(np.argmax(off))
    (a, _), (b, _) = series.positions[order[i]], series.positions[order[i + 1]]
    kind = "duplicate slice positions" if gaps[i] < 0.01 else f"a gap of {gaps[i]:.4g} mm"
    if median > 0.01 and gaps[i] > 1.5 * median:
        kind += f" (about {round(gaps[i] / median) - 1} missing slice(s))"
    raise CTReadError(
        f"DICOM series {series.uid} in {where} has unevenly spaced slices: {kind} between "
        f"{a} and {b} (slices {i + 1} and {i + 2} of {len(gaps) + 1} along the slice normal, "
        f"at {along[order[i]]:.4g} and {along[order[i + 1]]:.4g} mm), while the median "
        f"spacing is {median:.4g} mm; stacking them would distort the volume - re-export "
        "the complete series, or name another series with dicom_series='<SeriesInstanceUID>'"
    )


def select_series(series: dict[str, DicomSeries], rule: str, where: str) -> DicomSeries:
    """The series chosen by ``rule``: "largest", "error" or a SeriesInstanceUID."""
    ranked = sorted(series.values(), key=lambda s: (-s.n_slices, s.thickness, s.uid))
    listing = ", ".join(s.describe() for s in ranked[:5])
    listing += f" and {len(ranked) - 5} more" if len(ranked) > 5 else ""
    if rule == "largest":
        return ranked[0]
    if rule == "error":
        if len(ranked) > 1:
            raise CTReadError(
                f"DICOM folder {where} holds {len(ranked)} CT image series: {listing}; pass "
                "dicom_series='largest' to take the one with the most slices, or "
                "dicom_series='<SeriesInstanceUID>' to name one"
            )
        return ranked[0]
    if rule not in series:
        raise CTReadError(
            f"DICOM folder {where} has no CT series with SeriesInstanceUID {rule!r}; its CT "
            f"series are {listing}; pass one of these UIDs or dicom_series='largest'"
        )
    return series[rule]


def _skipped_text(skipped: dict[str, int]) -> str:
    if not skipped:
        return "nothing else"
    return ", ".join(f"{n} {what}" for what, n in sorted(skipped.items()))


def choose_series(folder: Path, rule: str, max_voxels: int | None) -> tuple[DicomSeries, dict]:
    """Scan ``folder``, choose its CT series and check its size; also describe the choice."""
    where = repr(str(folder))
    series, skipped = scan_dicom_folder(folder)
    if not series:
        if not skipped:
            raise CTReadError(
                f"DICOM folder {where} contains no files; pass a folder holding a DICOM CT "
                "series, or a NIfTI/NRRD/MHA file"
            )
        raise CTReadError(
            f"DICOM folder {where} holds no CT image series (found {_skipped_text(skipped)}); "
            "pass a folder holding a CT series (SOP class CT Image Storage or Enhanced CT)"
        )
    chosen = select_series(series, rule, where)
    return chosen, _check_and_describe(chosen, series, skipped, where, max_voxels)


def choose_series_of_file(path: Path, ds, max_voxels: int | None) -> tuple[DicomSeries, dict]:
    """The series of one multi-frame DICOM CT file, checked and described."""
    series: dict[str, DicomSeries] = {}
    _add_file(series, path, ds)
    chosen = next(iter(series.values()))
    return chosen, _check_and_describe(chosen, series, {}, repr(str(path)), max_voxels)


def _check_and_describe(chosen, series, skipped, where, max_voxels) -> dict:
    if chosen.n_multiframe and len(chosen.files) > 1:
        raise CTReadError(
            f"DICOM series {chosen.uid} in {where} is split over {len(chosen.files)} "
            "multi-frame files; convert it to one file or to one file per slice"
        )
    if chosen.n_slices < 2:
        raise CTReadError(
            f"DICOM series {where} holds a single slice, i.e. a 2-D image; "
            "a CT volume needs a series of at least 2 slices"
        )
    check_slice_gaps(chosen, where)
    rows, cols = chosen.shape
    n_vox = rows * cols * chosen.n_slices
    if max_voxels is not None and n_vox > max_voxels:
        raise CTReadError(
            f"DICOM series {where} has {n_vox} voxels ({cols}x{rows}x{chosen.n_slices}), "
            f"more than max_voxels={max_voxels}; raise max_voxels or downsample the series"
        )
    info = {
        "format": "dicom",
        "series_uid": chosen.uid,
        "n_slices": chosen.n_slices,
        "slice_thickness": chosen.thickness if np.isfinite(chosen.thickness) else np.nan,
        "n_ct_series": len(series),
        "n_skipped_files": int(sum(skipped.values())),
    }
    return info


def _frame_slices(ds, path) -> list:
    """The frames of a multi-frame (enhanced) CT file as single-slice datasets."""
    from pydicom.dataset import Dataset

    class _Frame(Dataset):
        @property
        def pixel_array(self):
            return self._pixels

    pixels = ds.pixel_array
    pixels = pixels[None] if pixels.ndim == 2 else pixels
    rescale = (ds.get("RescaleSlope", None), ds.get("RescaleIntercept", None))
    out = []
    for k in range(pixels.shape[0]):
        position = _functional_item(ds, "PlanePositionSequence", k)
        orientation = _functional_item(ds, "PlaneOrientationSequence", k)
        measures = _functional_item(ds, "PixelMeasuresSequence", k)
        if position is None or orientation is None or measures is None:
            raise CTReadError(
                f"multi-frame DICOM file {str(path)!r} lacks the plane position, plane "
                f"orientation or pixel measures of frame {k}; re-export it as enhanced CT "
                "with its functional groups, or as one file per slice"
            )
        frame = _Frame()
        frame._pixels = pixels[k]
        frame.ImagePositionPatient = position.ImagePositionPatient
        frame.ImageOrientationPatient = orientation.ImageOrientationPatient
        frame.PixelSpacing = measures.PixelSpacing
        value = _functional_item(ds, "PixelValueTransformationSequence", k)
        slope, intercept = (
            rescale if value is None else (value.RescaleSlope, value.RescaleIntercept)
        )
        if slope is not None:
            frame.RescaleSlope, frame.RescaleIntercept = slope, intercept or 0
        out.append(frame)
    # MONAI stacks slices by InstanceNumber: number the frames along the slice normal.
    iop = np.asarray(out[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    order = np.argsort([float(np.dot(normal, f.ImagePositionPatient)) for f in out])
    for rank, k in enumerate(order):
        out[k].InstanceNumber = rank + 1
    return out


def read_series(series: DicomSeries):
    """Read the chosen series with MONAI's ``PydicomReader``; a channel-first MetaTensor."""
    import pydicom
    from monai.data import PydicomReader
    from monai.transforms import LoadImage

    if series.n_multiframe:
        path = series.files[0]
        slices = _frame_slices(pydicom.dcmread(path), path)
        names = [str(path)] * len(slices)
    else:
        slices = [pydicom.dcmread(f) for f in series.files]
        names = [str(f) for f in series.files]

    class _ChosenSlices(PydicomReader):
        """MONAI's reader, stacking the slices chosen here instead of a folder's files."""

        def read(self, data, **kwargs):
            self.filenames = [names]
            self.has_series = True
            return slices

    quiet_monai_dicom_plugin()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*nvImageCodec.*")
        loader = LoadImage(reader=_ChosenSlices(), image_only=True, ensure_channel_first=True)
        return loader(names[0])
