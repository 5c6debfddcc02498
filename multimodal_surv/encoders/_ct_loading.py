"""Loading and preprocessing CT volumes for ``CTEncoder``: a torch Dataset and its collate."""

from __future__ import annotations

import warnings

import torch

from ..datasets._dicom import quiet_monai_dicom_plugin
from ..datasets._imaging import load_ct_volume_with_info
from ..exceptions import CTReadError
from ._ct_body import BodyCrop

_RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))


class _CTDataset(torch.utils.data.Dataset):
    """Loads and preprocesses one reference per item; errors come back as text.

    Each item is ``(row, volume or None, error message or None, info)``, where
    ``info`` describes what was read (format; DICOM series chosen).
    """

    def __init__(self, refs, indices, preprocessing: dict, max_voxels, dicom_series="largest"):
        self.refs = refs
        self.indices = indices
        self.preprocessing = preprocessing
        self.max_voxels = max_voxels
        self.dicom_series = dicom_series
        self._transform = None

    def _build(self):
        from monai.transforms import (
            Compose,
            CropForeground,
            Orientation,
            ResizeWithPadOrCrop,
            ScaleIntensityRange,
            Spacing,
        )

        quiet_monai_dicom_plugin()
        p = self.preprocessing
        steps = []
        if p["orientation"] is not None:
            steps.append(Orientation(axcodes=p["orientation"], labels=_RAS_LABELS))
        if p["spacing"] is not None:
            steps.append(Spacing(pixdim=p["spacing"], mode="bilinear"))
        if p["crop_foreground"] == "body":
            steps.append(BodyCrop())
        if p["hu_window"] is not None:
            lo, hi = p["hu_window"]
            steps.append(ScaleIntensityRange(a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True))
        if p["crop_foreground"] is True:
            steps.append(CropForeground(allow_smaller=True))
        if p["spatial_size"] is not None:
            steps.append(ResizeWithPadOrCrop(spatial_size=p["spatial_size"]))
        return Compose(steps)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item):
        i = self.indices[item]
        if self._transform is None:
            self._transform = self._build()
        try:
            with warnings.catch_warnings():
                # MONAI's optional GPU DICOM decoder announces its absence on every read.
                warnings.filterwarnings("ignore", message=".*nvImageCodec.*")
                vol, info = load_ct_volume_with_info(
                    self.refs[i], max_voxels=self.max_voxels, dicom_series=self.dicom_series
                )
                vol = self._transform(vol)
        except (CTReadError, OSError) as exc:
            return i, None, str(exc), {}
        vol = vol.as_tensor() if hasattr(vol, "as_tensor") else torch.as_tensor(vol)
        return i, vol.float().contiguous(), None, info


def _collate(items):
    return items
