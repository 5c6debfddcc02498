"""CT rendering of the synthetic cohort: a chest phantom with findings, written as NIfTI."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from ._synthetic_latent import _Site


def _grid(site: _Site):
    axes = [
        (np.arange(n, dtype=np.float32) - (n - 1) / 2.0) * sp
        for n, sp in zip(site.shape, site.spacing)
    ]
    return axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]


def _ellipsoid(grid, center, semi):
    x, y, z = grid
    return (
        ((x - center[0]) / semi[0]) ** 2
        + ((y - center[1]) / semi[1]) ** 2
        + ((z - center[2]) / semi[2]) ** 2
    )


def _patient_variation(rng, variation: float) -> dict:
    """Per-scan nuisance factors; all neutral (1 or 0) when ``variation`` is 0.

    Standard deviations at ``variation=1``: body size 8 %, patient position 6 %
    of the field of view in-plane (4 % along z), lung density 40 HU
    (inspiration), contrast enhancement 35 % (bolus timing), image noise 45 %
    (dose and body habitus), kernel blur 25 % (reconstruction kernel).
    """
    v = float(variation)
    z = rng.standard_normal(9) if v > 0 else np.zeros(9)
    return {
        "size": float(np.exp(0.08 * v * z[0])),
        "offset": v * np.array([0.06 * z[1], 0.06 * z[2], 0.04 * z[3]]),
        "lung_hu": 40.0 * v * z[4],
        "enhancement": float(np.exp(0.35 * v * z[5])),
        "noise": float(np.exp(0.45 * v * z[6])),
        "blur": float(np.exp(0.25 * v * z[7])),
    }


def _render_ct(rng, site: _Site, fov, grid, radii, n_calcium, var=None) -> np.ndarray:
    """Hounsfield-unit volume of a miniature chest phantom (x: left->right, RAS).

    ``var`` holds the per-scan nuisance factors of :func:`_patient_variation`
    (None: none). The findings keep their size and HU whatever the anatomy does.
    """
    if var is None:
        var = _patient_variation(None, 0.0)
    fx, fy, fz = fov
    # Everything scales with the field of view: the phantom looks the same in voxel
    # space whatever the spacing; its "mm" are true mm at the default 48 mm width.
    unit = fx / 48.0
    if np.any(var["offset"] != 0.0):  # patient off the scanner's centre
        grid = tuple(g - np.float32(o * f) for g, o, f in zip(grid, var["offset"], fov))
    x, y, _ = grid
    # Anatomy scales with the body size; the findings (below) do not.
    ax, ay = fx * var["size"], fy * var["size"]
    jit = 1.0 + np.array([0.02, 0.02, 0.01, 0.01]) * rng.standard_normal(4)
    vol = np.full(site.shape, -1000.0, dtype=np.float32)
    body = ((x / (0.44 * ax * jit[0])) ** 2 + (y / (0.34 * ay * jit[1])) ** 2) <= 1.0
    inner = (
        (x / (0.44 * ax * jit[0] - 0.07 * ax)) ** 2 + (y / (0.34 * ay * jit[1] - 0.07 * ax)) ** 2
    ) <= 1.0
    vol = np.where(body, np.float32(-100.0), vol)  # subcutaneous fat
    vol = np.where(inner & body, np.float32(40.0), vol)  # muscle / soft tissue
    lung_semi = (0.17 * ax * jit[2], 0.22 * ay * jit[3], 0.40 * fz)
    lung_hu = np.float32(-850.0 + 15.0 * rng.standard_normal() + var["lung_hu"])
    lungs = []
    for side in (-1.0, 1.0):
        center = (side * 0.2 * ax, 0.0, 0.02 * fz)
        lungs.append((center, lung_semi))
        vol = np.where(_ellipsoid(grid, center, lung_semi) <= 1.0, lung_hu, vol)
    heart = _ellipsoid(grid, (-0.05 * ax, 0.12 * ay, -0.12 * fz), (0.12 * ax, 0.12 * ay, 0.2 * fz))
    enh = var["enhancement"]  # contrast-enhanced blood pool
    vol = np.where(heart <= 1.0, np.float32(40.0 + 110.0 * enh), vol)
    aorta = ((x + 0.04 * ax) ** 2 + (y + 0.06 * ay) ** 2) <= (0.045 * ax) ** 2
    vol = np.where(np.broadcast_to(aorta, site.shape), np.float32(40.0 + 160.0 * enh), vol)
    spine_r2 = (x**2 + (y + 0.19 * ay) ** 2) / (0.075 * ax) ** 2
    vol = np.where(np.broadcast_to(spine_r2 <= 1.0, site.shape), np.float32(700.0), vol)
    vol = np.where(np.broadcast_to(spine_r2 <= 0.55, site.shape), np.float32(300.0), vol)

    voxel = float(min(site.spacing))
    for r in radii * unit:  # solid nodules, soft edge = partial volume
        center, semi = lungs[int(rng.integers(2))]
        d = rng.standard_normal(3)
        d *= rng.uniform() ** (1.0 / 3.0) / np.linalg.norm(d)
        c = [center[k] + d[k] * max(semi[k] - r, 0.0) for k in range(3)]
        dist = np.sqrt(_ellipsoid(grid, c, (1.0, 1.0, 1.0)))
        w = np.clip((r - dist) / voxel + 0.5, 0.0, 1.0)
        vol += w * (np.float32(35.0 + 15.0 * rng.standard_normal()) - vol)
    for _ in range(int(n_calcium)):  # coronary calcifications on the heart surface
        d = rng.standard_normal(3)
        d[1] = abs(d[1])
        d /= np.linalg.norm(d)
        c = (
            -0.05 * ax + d[0] * 0.12 * ax,
            0.12 * ay + d[1] * 0.12 * ay,
            -0.12 * fz + d[2] * 0.2 * fz,
        )
        r = rng.uniform(1.0, 2.0) * unit
        dist = np.sqrt(_ellipsoid(grid, c, (1.0, 1.0, 1.0)))
        w = np.clip((r - dist) / voxel + 0.5, 0.0, 1.0)
        vol += w * (np.float32(rng.uniform(600.0, 1000.0)) - vol)

    blur = site.blur * var["blur"]
    vol = gaussian_filter(vol, sigma=(blur, blur, 0.5 * blur), mode="nearest")
    vol += site.noise_hu * var["noise"] * rng.standard_normal(site.shape, dtype=np.float32)
    vol += site.hu_offset
    return np.clip(np.rint(vol), -1024, 3071).astype(np.int16)


def _write_nifti(volume: np.ndarray, spacing, path: Path) -> None:
    import nibabel as nib

    shape = np.asarray(volume.shape, dtype=float)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -(shape - 1.0) / 2.0 * np.asarray(spacing)  # volume centred on 0 mm
    img = nib.Nifti1Image(volume, affine)
    img.header.set_data_dtype(np.int16)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header["scl_slope"] = 1.0
    img.header["scl_inter"] = 0.0
    # gzip with mtime=0 so that the same seed gives byte-identical files.
    path.write_bytes(gzip.compress(img.to_bytes(), compresslevel=1, mtime=0))
