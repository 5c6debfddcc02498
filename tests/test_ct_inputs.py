"""CT inputs as scanners and PACS export them: DICOM exports with non-image objects,
several series, nested folders, files without extension, multi-frame files, NRRD
and MetaImage volumes. Each messy input gives the embedding of the clean input
(a NIfTI file of the same volume) to 1e-6, or a one-line error naming the file
and the fix."""

from __future__ import annotations

import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    GrayscaleSoftcopyPresentationStateStorage,
    KeyObjectSelectionDocumentStorage,
    generate_uid,
)
from sklearn.base import clone
from sklearn.compose import ColumnTransformer

from multimodal_surv import CTReadError
from multimodal_surv.datasets import load_ct_volume, write_dicom_series, write_nifti
from multimodal_surv.encoders import CTEncoder

SPACING = (1.0, 1.25, 2.5)
# pydicom's own test files: real exports of the non-image objects found beside CT series.
REAL_NON_IMAGE = ["rtstruct.dcm", "liver_1frame.dcm", "test-SR.dcm", "reportsi.dcm"]
REAL_NON_IMAGE += ["rtdose.dcm", "rtplan.dcm"]


def _volume(seed, shape=(24, 20, 12)):
    """A CT-like volume: air, a soft-tissue body, an off-centre bright nodule (not symmetric)."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    vol = np.where(x**2 + (y / 0.8) ** 2 < 0.7, 40.0, -1000.0)
    vol += np.where((x - 0.3) ** 2 + (y + 0.2) ** 2 + (z - 0.4) ** 2 < 0.05, 300.0, 0.0)
    return np.round(vol + rng.normal(0, 20, shape))


def _encoder():
    # pretrain_epochs=0: a frozen random backbone; the embedding is a fixed function of
    # the voxels, so any difference in orientation, spacing or HU shows.
    return CTEncoder(spacing=(2.0, 2.0, 2.0), pretrain_epochs=0, random_state=11)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    root = tmp_path_factory.mktemp("clean")
    vols = {"a": _volume(1), "b": _volume(2, shape=(24, 20, 8))}
    refs = {k: write_nifti(v, root / f"{k}.nii.gz", spacing=SPACING) for k, v in vols.items()}
    enc = _encoder().fit([str(r) for r in refs.values()])
    emb = {k: enc.transform([str(r)])[0] for k, r in refs.items()}
    return {"vols": vols, "refs": refs, "enc": enc, "emb": emb}


def _write_object(path: Path, sop_class, modality: str) -> None:
    """A minimal non-image DICOM object (key-object note, presentation state)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID = modality, generate_uid()
    ds.save_as(path, enforce_file_format=True)


def _encode(clean, ref, **params):
    enc = clean["enc"]
    if params:
        enc = _encoder().set_params(**params).fit([str(clean["refs"]["a"])])
    return enc.transform([str(ref)])[0], enc


def test_ct_series_plus_rtstruct_and_other_objects(clean, tmp_path, caplog):
    folder = write_dicom_series(clean["vols"]["a"], tmp_path / "export", spacing=SPACING)
    for name in REAL_NON_IMAGE:
        shutil.copy(get_testdata_file(name), folder / name)
    _write_object(folder / "ko.dcm", KeyObjectSelectionDocumentStorage, "KO")
    _write_object(folder / "pr.dcm", GrayscaleSoftcopyPresentationStateStorage, "PR")
    (folder / "README.TXT").write_text("exported by a PACS viewer")
    with caplog.at_level(logging.DEBUG, logger="multimodal_surv"):
        emb, enc = _encode(clean, folder)
    np.testing.assert_allclose(emb, clean["emb"]["a"], atol=1e-6)
    skipped = caplog.text
    for modality in ("RTSTRUCT", "SEG", "SR", "KO", "PR", "RTDOSE", "RTPLAN", "not a DICOM"):
        assert modality in skipped
    assert all(r.levelno == logging.DEBUG for r in caplog.records if "skipping" in r.message)
    row = enc.input_report_.iloc[0]
    assert (row.status, row.format, row.n_slices, row.n_ct_series) == ("encoded", "dicom", 12, 1)
    assert row.n_skipped_files == len(REAL_NON_IMAGE) + 3


def test_two_ct_series_default_error_and_named_uid(clean, tmp_path):
    folder = tmp_path / "two"
    write_dicom_series(clean["vols"]["a"], folder / "s1", spacing=SPACING, series_uid="1.2.3.1")
    write_dicom_series(clean["vols"]["b"], folder / "s2", spacing=SPACING, series_uid="1.2.3.2")
    # default: the series with the most slices (12 > 8)
    emb, enc = _encode(clean, folder)
    np.testing.assert_allclose(emb, clean["emb"]["a"], atol=1e-6)
    assert enc.input_report_.loc[0, "series_uid"] == "1.2.3.1"
    assert enc.input_report_.loc[0, "n_ct_series"] == 2
    emb, enc = _encode(clean, folder, dicom_series="1.2.3.2")
    np.testing.assert_allclose(emb, clean["emb"]["b"], atol=1e-6)
    assert enc.input_report_.loc[0, "series_uid"] == "1.2.3.2"
    enc = _encoder().set_params(dicom_series="error").fit([str(clean["refs"]["a"])])
    match = (
        r"DICOM folder '.*two' holds 2 CT image series: 1\.2\.3\.1 \(12 slices, 2\.5 mm\), "
        r"1\.2\.3\.2 \(8 slices, 2\.5 mm\); pass dicom_series='largest'"
    )
    with pytest.raises(CTReadError, match=match) as info:
        enc.transform([str(folder)])
    assert "\n" not in str(info.value)
    with pytest.raises(CTReadError, match=r"has no CT series with SeriesInstanceUID '1\.2\.9'"):
        load_ct_volume(folder, dicom_series="1.2.9")
    with pytest.raises(ValueError, match=r"dicom_series='larggest'.*Did you mean 'largest'"):
        _encoder().set_params(dicom_series="larggest").fit([str(clean["refs"]["a"])])


def test_equal_slice_counts_take_the_thinnest_slices(clean, tmp_path):
    vol = clean["vols"]["a"]
    write_dicom_series(vol, tmp_path / "f" / "thick", spacing=(1.0, 1.25, 5.0), series_uid="1.9.1")
    write_dicom_series(vol, tmp_path / "f" / "thin", spacing=SPACING, series_uid="1.9.2")
    emb, enc = _encode(clean, tmp_path / "f")
    assert enc.input_report_.loc[0, "series_uid"] == "1.9.2"
    np.testing.assert_allclose(emb, clean["emb"]["a"], atol=1e-6)


def test_nested_folders_and_files_without_extension(clean, tmp_path):
    series = tmp_path / "PATIENT" / "STUDY_20240101" / "SERIES_3"
    write_dicom_series(clean["vols"]["a"], series, spacing=SPACING)
    for f in sorted(series.iterdir()):
        f.rename(series / f"IM{f.stem[-4:]}")
    assert not list(tmp_path.rglob("*.dcm"))
    emb, _ = _encode(clean, tmp_path / "PATIENT")
    np.testing.assert_allclose(emb, clean["emb"]["a"], atol=1e-6)


def test_multiframe_enhanced_ct_file_and_folder(clean, tmp_path):
    folder = write_dicom_series(clean["vols"]["a"], tmp_path / "mf", spacing=SPACING, enhanced=True)
    (path,) = folder.iterdir()
    assert pydicom.dcmread(path).NumberOfFrames == 12
    for ref in (folder, path):
        emb, enc = _encode(clean, ref)
        np.testing.assert_allclose(emb, clean["emb"]["a"], atol=1e-6)
        assert enc.input_report_.loc[0, "n_slices"] == 12


def test_nrrd_volume(clean, tmp_path):
    nrrd = pytest.importorskip("nrrd")
    vol = clean["vols"]["a"]
    header = {
        "space": "left-posterior-superior",
        "space directions": np.diag([-SPACING[0], -SPACING[1], SPACING[2]]),
        "space origin": np.zeros(3),
    }
    # LPS with negative x/y steps is the same grid as the RAS identity affine.
    nrrd.write(str(tmp_path / "a.nrrd"), vol.astype(np.int16), header)
    emb, enc = _encode(clean, tmp_path / "a.nrrd")
    np.testing.assert_allclose(emb, clean["emb"]["a"], atol=1e-6)
    assert enc.input_report_.loc[0, "format"] == "nrrd"


@pytest.mark.parametrize("suffix", [".mha", ".mhd"])
def test_metaimage_volume(clean, tmp_path, suffix):
    itk = pytest.importorskip("itk", reason="MetaImage needs the optional itk-io package")
    vol = clean["vols"]["a"]
    # ITK stores LPS; direction diag(-1, -1, 1) with the RAS voxel order is the NIfTI grid.
    img = itk.image_from_array(np.ascontiguousarray(vol.astype(np.int16).transpose(2, 1, 0)))
    img.SetSpacing(list(SPACING))
    img.SetDirection(itk.matrix_from_array(np.diag([-1.0, -1.0, 1.0])))
    itk.imwrite(img, str(tmp_path / f"a{suffix}"))
    emb, enc = _encode(clean, tmp_path / f"a{suffix}")
    np.testing.assert_allclose(emb, clean["emb"]["a"], atol=1e-6)
    assert enc.input_report_.loc[0, "format"] == "metaimage"


def test_flipped_volume_gives_another_embedding(clean, tmp_path):
    """The comparisons above can fail: a mirrored volume changes the embedding."""
    path = write_nifti(clean["vols"]["a"][::-1], tmp_path / "f.nii.gz", spacing=SPACING)
    emb, _ = _encode(clean, path)
    assert np.abs(emb - clean["emb"]["a"]).max() > 1e-3


def _real_ct_series(folder: Path, n: int = 4) -> Path:
    """A series made of pydicom's real CT_small.dcm header and pixels, one slice per position."""
    src = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    uid = generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    # read once: ``copy()`` is shallow, so setting a copy's position changes the source's
    x, y, z = (float(v) for v in src.ImagePositionPatient)
    for k in range(n):
        ds = src.copy()
        ds.SeriesInstanceUID, ds.SOPInstanceUID = uid, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [x, y, z + 5.0 * k]  # 5 mm apart, as SliceThickness
        ds.save_as(folder / f"{k:08d}")
    return folder


def test_real_pydicom_files_messy_export_equals_clean(tmp_path):
    clean_dir = _real_ct_series(tmp_path / "clean")
    messy = tmp_path / "messy"
    shutil.copytree(clean_dir, messy / "DICOM" / "S0001")
    for name in REAL_NON_IMAGE:
        shutil.copy(get_testdata_file(name), messy / "DICOM" / name.upper().replace(".DCM", ""))
    a, b = load_ct_volume(clean_dir), load_ct_volume(messy)
    assert tuple(a.shape) == (1, 128, 128, 4)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_allclose(a.affine.numpy(), b.affine.numpy())


def test_one_line_errors_name_the_file_and_the_fix(tmp_path):
    only_rt = tmp_path / "rt"
    only_rt.mkdir()
    shutil.copy(get_testdata_file("rtstruct.dcm"), only_rt / "rs.dcm")
    with pytest.raises(
        CTReadError,
        match=r"'.*rt' holds no CT image series \(found 1 RT Structure Set Storage \(RTSTRUCT\)\)",
    ):
        load_ct_volume(only_rt)
    with pytest.raises(CTReadError, match=r"CT_small.dcm' is a single CT slice; pass the folder"):
        load_ct_volume(get_testdata_file("CT_small.dcm"))
    broken = _real_ct_series(tmp_path / "broken", n=3)
    data = (broken / "00000001").read_bytes()
    (broken / "00000001").write_bytes(data[:400])  # a header cut short
    with pytest.raises(
        CTReadError,
        match=r"00000001' has no SeriesInstanceUID, Rows, Columns; the file is truncated",
    ) as info:
        load_ct_volume(broken)
    assert "\n" not in str(info.value)
    with pytest.raises(CTReadError, match=r"'.*notes.txt' is not a file format read here"):
        (tmp_path / "notes.txt").write_text("x")
        load_ct_volume(tmp_path / "notes.txt")


def test_unreadable_input_warns_once_at_the_callers_line(clean, tmp_path):
    refs = [str(clean["refs"]["a"]), str(tmp_path / "missing.nii.gz"), None]
    enc = CTEncoder(spacing=(2.0, 2.0, 2.0), pretrain_epochs=1, random_state=0, on_error="nan")
    refs = [str(clean["refs"]["b"])] + refs
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = enc.fit_transform(refs)
    ours = [w for w in caught if "could not be read" in str(w.message)]
    assert len(ours) == 1, [str(w.message) for w in caught]
    assert ours[0].filename == __file__
    assert str(ours[0].message).startswith("1 of 4 CT inputs could not be read")
    assert "missing.nii.gz" in str(ours[0].message)
    assert np.isnan(out[2:]).all() and np.isfinite(out[:2]).all()
    report = enc.input_report_
    assert report["status"].tolist() == ["encoded", "encoded", "error", "missing"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        enc.transform(refs)
    ours = [w for w in caught if "could not be read" in str(w.message)]
    assert len(ours) == 1 and ours[0].filename == __file__
    # inside a ColumnTransformer (scikit-learn and joblib frames between): still one, here
    ct = ColumnTransformer([("ct", clone(enc), ["ct"])])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ct.fit_transform(pd.DataFrame({"ct": refs}))
    ours = [w for w in caught if "could not be read" in str(w.message)]
    assert len(ours) == 1 and ours[0].filename == __file__, [w.filename for w in ours]


def test_missing_middle_slice_is_refused_not_stretched(clean, tmp_path):
    folder = write_dicom_series(clean["vols"]["a"], tmp_path / "gap", spacing=SPACING)
    files = sorted(folder.iterdir())
    files[6].unlink()  # slices 0..11 at 2.5 mm: 6 is gone, a 5 mm gap between 5 and 7
    match = (
        rf"DICOM series \S+ in '.*gap' has unevenly spaced slices: a gap of 5 mm \(about 1 "
        rf"missing slice\(s\)\) between {files[5].name} and {files[7].name} \(slices 6 and 7 "
        r"of 11 .*median spacing is 2\.5 mm; .* re-export the complete series"
    )
    with pytest.raises(CTReadError, match=match) as info:
        load_ct_volume(folder)
    assert "\n" not in str(info.value)
    # on_error="nan": a NaN row, one warning at the caller's line naming the folder
    enc = _encoder().set_params(on_error="nan").fit([str(clean["refs"]["a"])])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = enc.transform([str(clean["refs"]["a"]), str(folder)])
    ours = [w for w in caught if "could not be read" in str(w.message)]
    assert len(ours) == 1 and ours[0].filename == __file__
    assert "unevenly spaced slices" in str(ours[0].message)
    assert np.isnan(out[1]).all() and np.isfinite(out[0]).all()
    assert enc.input_report_["status"].tolist() == ["encoded", "error"]
    # the control: a series cut at one end is evenly spaced, and is read
    end = write_dicom_series(clean["vols"]["a"], tmp_path / "end", spacing=SPACING)
    sorted(end.iterdir())[-1].unlink()
    assert tuple(load_ct_volume(end).shape) == (1, 24, 20, 11)


def test_real_series_with_a_missing_slice_or_a_repeated_position(tmp_path):
    broken = _real_ct_series(tmp_path / "real", n=5)
    (broken / "00000002").unlink()
    with pytest.raises(CTReadError, match=r"a gap of 10 mm .* between 00000001 and 00000003"):
        load_ct_volume(broken)
    twice = _real_ct_series(tmp_path / "twice", n=4)
    ds = pydicom.dcmread(twice / "00000003")
    ds.ImagePositionPatient = pydicom.dcmread(twice / "00000002").ImagePositionPatient
    ds.save_as(twice / "00000003")
    with pytest.raises(CTReadError, match=r"duplicate slice positions between 0000000[23] and"):
        load_ct_volume(twice)
