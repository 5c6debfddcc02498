"""Body crop: keep the patient, drop the air around them and the scanner table."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

__all__ = ["BodyCrop", "fill_axial_holes", "lung_mask"]

# 4-connectivity within an axial slice, none across slices: labelling the
# background with it gives each slice's background regions in one call.
_AXIAL_CROSS = np.zeros((3, 3, 3), dtype=bool)
_AXIAL_CROSS[:, :, 1] = ndimage.generate_binary_structure(2, 1)


def fill_axial_holes(mask: np.ndarray) -> np.ndarray:
    """Fill the holes of every axial slice (last axis) of a 3-D boolean mask.

    The same result as :func:`scipy.ndimage.binary_fill_holes` on each slice
    ``mask[:, :, k]`` (a hole is a 4-connected background region of the slice
    that does not touch the slice's edge), from one labelling of the whole
    volume instead of an iterated dilation per slice: about three times
    faster on a body mask.
    """
    background, n = ndimage.label(~mask, structure=_AXIAL_CROSS)
    if n == 0:
        return mask.copy()
    edge = np.concatenate([background[[0, -1]].ravel(), background[:, [0, -1]].ravel()])
    outside = np.zeros(n + 1, dtype=bool)
    outside[edge] = True
    outside[0] = True  # label 0: the mask itself
    return mask | ~outside[background]


class BodyCrop:
    """Crop a Hounsfield-unit volume to the patient's body; blank everything else.

    The body is the largest 3-D connected component of voxels above
    ``threshold`` after a binary opening (which detaches the scanner table,
    cushions and clothing that touch the patient), with each axial slice's
    holes filled (lungs and airways belong to the body). Voxels outside the
    body are set to ``fill`` (air), and the volume is cropped to the body's
    bounding box plus ``margin`` voxels. A volume with no voxel above the
    threshold is returned unchanged.

    Parameters
    ----------
    threshold : float, default=-500.0
        HU above which a voxel is tissue (fat is about -100, lung parenchyma
        about -850, air -1000).
    fill : float, default=-1000.0
        HU written outside the body.
    margin : int, default=1
        Voxels kept around the body's bounding box.

    Notes
    -----
    Applied after resampling to the encoder's coarse grid (a few mm per
    voxel), where it costs a few milliseconds per volume; the input is
    ``(C, X, Y, Z)`` with axial slices along the last axis (RAS or LPS
    orientation), a MONAI ``MetaTensor`` (its affine follows the crop) or a
    tensor.
    """

    def __init__(self, threshold: float = -500.0, fill: float = -1000.0, margin: int = 1):
        self.threshold = threshold
        self.fill = fill
        self.margin = margin

    def mask(self, volume: np.ndarray) -> np.ndarray:
        """Boolean body mask of a 3-D HU array."""
        tissue = volume > self.threshold
        opened = ndimage.binary_opening(tissue, structure=ndimage.generate_binary_structure(3, 1))
        labels, n = ndimage.label(opened)
        if n == 0:
            return tissue
        sizes = np.bincount(labels.ravel())[1:]
        body = labels == 1 + int(np.argmax(sizes))
        return fill_axial_holes(body)  # axial slices: lungs and airways are inside

    def __call__(self, img):
        from monai.transforms import SpatialCrop

        data = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
        body = self.mask(data[0])
        if not body.any():
            return img
        keep = torch.as_tensor(body[None], device=img.device)
        img = torch.where(keep, img, torch.as_tensor(self.fill, dtype=img.dtype))
        idx = np.nonzero(body)
        start = [max(int(i.min()) - self.margin, 0) for i in idx]
        end = [min(int(i.max()) + 1 + self.margin, n) for i, n in zip(idx, body.shape)]
        return SpatialCrop(roi_start=start, roi_end=end)(img)


def lung_mask(hu: np.ndarray, threshold: float = -500.0, min_share: float = 0.1) -> np.ndarray:
    """Boolean lung mask of a 3-D HU array: aerated regions inside the body, holes filled.

    The lungs are the voxels below ``threshold`` inside the body of
    :meth:`BodyCrop.mask`, in connected regions that do not touch the
    volume's side faces (the first and last axes 0 and 1; a scan may end
    inside the lungs along the axial axis 2), each at least ``min_share`` of
    the largest one (drops bowel gas and small air pockets). Each axial
    slice's holes are then filled, so nodules, vessels and airway walls inside
    the lungs belong to the mask.

    Parameters
    ----------
    hu : ndarray of shape (X, Y, Z)
        Hounsfield units, axial slices along the last axis.
    threshold : float, default=-500.0
        HU below which a voxel is air or aerated lung (parenchyma is about
        -850, soft tissue and fat are above -150).
    min_share : float, default=0.1
        Regions smaller than this share of the largest region are dropped.

    Returns
    -------
    mask : ndarray of bool, same shape as ``hu``
        Empty when no aerated region lies inside the body (e.g. a head or
        abdomen CT): callers decide what to do then.
    """
    low = BodyCrop(threshold=threshold).mask(hu) & (hu < threshold)
    labels, n = ndimage.label(low)
    if n == 0:
        return low
    sides = np.concatenate(
        [labels[[0, -1]].ravel(), labels[:, [0, -1]].ravel()]
    )  # regions touching the side faces are outside air, not lungs
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    sizes[0] = 0
    sizes[np.unique(sides)] = 0
    if sizes.max() == 0:
        return np.zeros_like(low)
    lungs = np.isin(labels, np.flatnonzero(sizes >= min_share * sizes.max()))
    return fill_axial_holes(lungs)
