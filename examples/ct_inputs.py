"""Encode CT inputs as a PACS exports them: messy DICOM folders, multi-frame files, NRRD.
======================================================================================

Writes each CT volume twice: once as a clean NIfTI file, once as a "real export":
patient/study/series sub-folders, slice files without the ``.dcm`` extension, an
RTSTRUCT and a structured report beside the images (pydicom's own test files),
a short scout series, and for some volumes a single multi-frame (Enhanced CT)
file or an NRRD volume. ``CTEncoder`` picks the CT series by the documented rule
(most slices, then thinnest), skips the non-image objects, and gives the same
embedding as the clean NIfTI. ``input_report_`` shows what was read for each row.
Last, a series that lost a middle slice is refused (stacked, it would be stretched).

    python examples/ct_inputs.py            # 12 volumes
    python examples/ct_inputs.py --quick    # 4 volumes (seconds); --small = alias
"""

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from pydicom.data import get_testdata_file

from multimodal_surv import CTReadError
from multimodal_surv.datasets import load_ct_volume, write_dicom_series, write_nifti
from multimodal_surv.encoders import CTEncoder

SPACING = (0.8, 0.8, 2.5)  # mm: in-plane finer than the slice distance, as in most CTs


def phantom(rng, shape):
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    vol = np.where(x**2 + (y / 0.8) ** 2 < rng.uniform(0.5, 0.8), 40.0, -1000.0)
    c = rng.uniform(-0.4, 0.4, 3)
    vol[(x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 < 0.02] = 200.0  # a nodule
    return np.round(vol + rng.normal(0, 20, shape))


def write_messy_export(vol, root: Path, k: int) -> Path:
    """One patient's export: nested folders, no extensions, non-image objects, a scout."""
    series = root / f"PAT{k:03d}" / "STUDY1" / "SERIES2"
    if k % 3 == 1:  # a scanner that writes one Enhanced CT file per series
        write_dicom_series(vol, series, spacing=SPACING, enhanced=True)
    else:
        write_dicom_series(vol, series, spacing=SPACING)
    for f in series.iterdir():
        f.rename(f.with_suffix(""))
    scout = vol[:, :, vol.shape[2] // 2 - 1 : vol.shape[2] // 2 + 1]
    write_dicom_series(scout, series.parent / "SERIES1", spacing=SPACING)  # 2-slice scout
    extra = series.parent / "SERIES900"
    extra.mkdir()
    shutil.copy(get_testdata_file("rtstruct.dcm"), extra / "RS000001")
    shutil.copy(get_testdata_file("test-SR.dcm"), extra / "SR000001")
    return root / f"PAT{k:03d}"


def write_nrrd(vol, path: Path) -> Path:
    import nrrd

    header = {
        "space": "left-posterior-superior",
        "space directions": np.diag([-SPACING[0], -SPACING[1], SPACING[2]]),
        "space origin": np.zeros(3),
    }
    nrrd.write(str(path), vol.astype(np.int16), header)
    return path


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", "--small", action="store_true", help="tiny run for tests")
    args = ap.parse_args(argv)
    n = 4 if args.quick else 12
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clean, messy = [], []
        for k in range(n):
            vol = phantom(rng, (40, 36, 12))
            clean.append(str(write_nifti(vol, tmp / f"clean_{k}.nii.gz", spacing=SPACING)))
            if k % 3 == 2:
                messy.append(str(write_nrrd(vol, tmp / f"ct_{k}.nrrd")))
            else:
                messy.append(str(write_messy_export(vol, tmp / "export", k)))
        # These small block phantoms hold no lungs: pool over the whole grid (the
        # default, pooling="lung", is for chest CT and would warn here).
        enc = CTEncoder(
            pooling="multiscale", pretrain_epochs=1 if args.quick else 5, random_state=0
        )
        z_clean = enc.fit(clean).transform(clean)
        z_messy = enc.transform(messy)
        report = enc.input_report_.assign(
            reference=[Path(r).name for r in messy],
            series_uid=enc.input_report_["series_uid"].str[-12:],
        )
        cols = ["reference", "format", "series_uid", "n_slices", "n_ct_series"]
        print(report[cols + ["n_skipped_files"]].to_string())
        diff = float(np.abs(z_clean - z_messy).max())
        print(f"\nlargest |messy - clean| embedding difference: {diff:.2e}")
        if diff > 1e-6:
            raise SystemExit("the messy export did not give the clean embedding")
        print(pd.DataFrame(z_messy[:, :4]).round(4).to_string())
        gap = write_dicom_series(phantom(rng, (40, 36, 12)), tmp / "gap", spacing=SPACING)
        sorted(gap.iterdir())[6].unlink()  # a slice lost in transfer
        try:
            load_ct_volume(gap)
        except CTReadError as exc:
            print(f"\nrefused, not stretched: {exc}")
        else:
            raise SystemExit("a series with a missing slice was read")


if __name__ == "__main__":
    main()
