"""CT rendering of the synthetic cohort: a life-size chest phantom with findings, as NIfTI.

The anatomy is defined in millimetres in the patient's frame (RAS: x towards
the patient's right, y anterior, z superior, origin near the centre of the
chest) and sampled on the site's voxel grid, so a coarser spacing gives the
same patient at a lower resolution and a smaller ``volume_shape`` crops it.
Sizes of an average adult: body 344 x 244 mm, lungs 250 mm high, heart about
120 mm, aorta 24-28 mm, vertebral bodies 44 mm, the scanner table 20 mm below
the back. The risk-bearing findings (lung nodules, arterial calcifications)
sit at random positions anywhere in the lungs and along the arteries.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from ._synthetic_latent import _Site

# Nodule diameter in mm per unit of the latent nodule radius (uniform 2-5):
# nodules are 10-25 mm across, at least 1.7 voxels at an encoder's 6 mm grid.
_NODULE_MM_PER_UNIT = 5.0


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

    Standard deviations at ``variation=1``: body size 8 %, patient position
    10 mm in each direction, lung density 40 HU (inspiration), contrast
    enhancement 35 % (bolus timing), image noise 45 % (dose and body habitus),
    kernel blur 25 % (reconstruction kernel).
    """
    v = float(variation)
    z = rng.standard_normal(9) if v > 0 else np.zeros(9)
    return {
        "size": float(np.exp(0.08 * v * z[0])),
        "offset": v * 10.0 * np.array([z[1], z[2], z[3]]),
        "lung_hu": 40.0 * v * z[4],
        "enhancement": float(np.exp(0.35 * v * z[5])),
        "noise": float(np.exp(0.45 * v * z[6])),
        "blur": float(np.exp(0.25 * v * z[7])),
    }


def _anatomy(rng, var: dict) -> dict:
    """Shapes of one patient in mm: ellipsoids ``(centre, semi-axes)`` and tube polylines."""
    s = var["size"] * (1.0 + 0.02 * rng.standard_normal())
    jx, jy = 1.0 + 0.03 * rng.standard_normal(2)
    body = (172.0 * s * jx, 122.0 * s * jy, 10.0 * s)  # semi-axes and y centre
    lung_semi = (58.0 * s * jx, 72.0 * s * jy, 120.0 * s * (1.0 + 0.03 * rng.standard_normal()))
    return {
        "body": body,
        "fat": 15.0 * s * float(np.exp(0.25 * rng.standard_normal())),
        "lungs": [((side * 80.0 * s * jx, 12.0 * s, 10.0 * s), lung_semi) for side in (1.0, -1.0)],
        # Diaphragm domes: liver under the right lung, spleen and stomach under the left.
        "domes": [
            ((60.0 * s, 10.0 * s, -175.0 * s), (95.0 * s, 95.0 * s, 110.0 * s)),
            ((-65.0 * s, 10.0 * s, -185.0 * s), (90.0 * s, 95.0 * s, 110.0 * s)),
        ],
        "heart": ((-28.0 * s, 35.0 * s, -45.0 * s), (66.0 * s, 55.0 * s, 60.0 * s)),
        "aorta": (
            np.array(
                [[10, 40, -20], [10, 40, 55], [-5, 5, 75], [-28, -45, 60], [-28, -45, -200]],
                dtype=float,
            )
            * s,
            np.array([14.0, 14.0, 13.0, 12.0]) * s,  # radius of each segment
        ),
        "spine": (0.0, -55.0 * s, 22.0 * s),  # x, y, radius of the vertebral bodies
        "sternum": ((0.0, 100.0 * s), (14.0 * s, 6.0 * s)),
    }


def _tube_distance(x, y, z, points, radii):
    """Distance (mm) to the tube around a polyline, minus the radius; <= 0 inside."""
    best = None
    for (p0, p1), r in zip(zip(points[:-1], points[1:]), radii):
        d = p1 - p0
        t = ((x - p0[0]) * d[0] + (y - p0[1]) * d[1] + (z - p0[2]) * d[2]) / float(d @ d)
        t = np.clip(t, 0.0, 1.0)
        dist = np.sqrt(
            (x - p0[0] - t * d[0]) ** 2 + (y - p0[1] - t * d[1]) ** 2 + (z - p0[2] - t * d[2]) ** 2
        )
        best = dist - r if best is None else np.minimum(best, dist - r)
    return best


def _in_lung(a: dict, p, margin: float) -> bool:
    """Whether a sphere of radius ``margin`` around ``p`` lies in the aerated lungs."""

    def inside(shape, grow):
        c, semi = shape
        return sum(((p[k] - c[k]) / (semi[k] + grow)) ** 2 for k in range(3)) <= 1.0

    if not any(inside(lung, -margin) for lung in a["lungs"]):
        return False
    if any(inside(shape, margin) for shape in (*a["domes"], a["heart"])):
        return False
    aorta = _tube_distance(p[0], p[1], p[2], *a["aorta"])
    return bool(aorta > margin)


def _lung_point(rng, a: dict, r: float):
    """A uniform random centre for a nodule of radius ``r`` (mm) inside the lungs."""
    for _ in range(2000):
        c, semi = a["lungs"][int(rng.integers(2))]
        p = np.asarray(c) + (2.0 * rng.uniform(size=3) - 1.0) * np.asarray(semi)
        if _in_lung(a, p, r):
            return p
    return np.asarray(a["lungs"][0][0])  # unreachable for the sizes drawn here


def _artery_point(rng, a: dict):
    """A random point on an arterial wall: the aorta or a coronary artery on the heart."""
    if rng.uniform() < 0.5:
        points, radii = a["aorta"]
        lengths = np.linalg.norm(np.diff(points, axis=0), axis=1)
        k = int(rng.choice(len(lengths), p=lengths / lengths.sum()))
        axis = points[k + 1] - points[k]
        axis /= np.linalg.norm(axis)
        ortho = np.cross(axis, rng.standard_normal(3))
        ortho /= np.linalg.norm(ortho)
        return points[k] + rng.uniform() * (points[k + 1] - points[k]) + 0.85 * radii[k] * ortho
    c, semi = a["heart"]
    d = rng.standard_normal(3)
    d[1] = abs(d[1])  # coronaries run over the anterior and upper surface
    d /= np.linalg.norm(d)
    return np.asarray(c) + d * np.asarray(semi)


def _add_sphere(vol, axes, spacing, center, radius, hu) -> None:
    """Blend a sphere into ``vol`` with partial volume that conserves its mass."""
    reach = radius + 2.0 * max(spacing)
    sl = []
    for ax, c in zip(axes, center):
        lo, hi = np.searchsorted(ax, [c - reach, c + reach])
        if hi <= lo:
            return  # outside the field of view
        sl.append(slice(int(lo), int(hi)))
    x, y, z = (ax[s] for ax, s in zip(axes, sl))
    dist = np.sqrt(
        (x[:, None, None] - center[0]) ** 2
        + (y[None, :, None] - center[1]) ** 2
        + (z[None, None, :] - center[2]) ** 2
    )
    w = np.clip((radius - dist) / min(spacing) + 0.5, 0.0, 1.0)
    total = float(w.sum()) * float(np.prod(spacing))
    true = 4.0 / 3.0 * np.pi * radius**3
    if total > true:  # sub-voxel findings: the voxel holds only part of them
        w *= true / total
    box = vol[tuple(sl)]
    box += (w * (hu - box)).astype(np.float32)


def _lung_texture(rng, shape, spacing, lung_hu):
    """Lung parenchyma: mild density texture plus a random network of thin vessels."""
    sigma = [max(0.5, 8.0 / sp) for sp in spacing]  # correlation length of about 8 mm
    fields = [gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma) for _ in "abc"]
    fields = [f / max(float(f.std()), 1e-6) for f in fields]
    # Vessels: where two smooth fields are both near zero (a network of curves).
    vessel = np.clip(1.0 - np.hypot(fields[0], fields[1]) / 0.25, 0.0, 1.0)
    return lung_hu + 20.0 * fields[2] + 0.5 * vessel * (40.0 - lung_hu)


def _render_ct(rng, site: _Site, grid, radii, n_calcium, var=None) -> np.ndarray:
    """Hounsfield-unit volume of a life-size chest phantom (RAS, mm, centred on 0).

    ``var`` holds the per-scan nuisance factors of :func:`_patient_variation`
    (None: none). ``radii`` are the latent nodule radii (2-5; diameter
    ``5 * radius`` mm). The findings keep their size and HU whatever the
    anatomy does.
    """
    if var is None:
        var = _patient_variation(None, 0.0)
    x, y, z = (g - np.float32(o) for g, o in zip(grid, var["offset"]))  # patient frame
    a = _anatomy(rng, var)
    enh = var["enhancement"]  # contrast-enhanced blood pool
    bx, by, bc = a["body"]
    vol = np.full(site.shape, -1000.0, dtype=np.float32)

    def put(mask, hu):
        np.copyto(vol, np.float32(hu), where=np.broadcast_to(mask, vol.shape))

    put((x / bx) ** 2 + ((y - bc) / by) ** 2 <= 1.0, -100.0)  # subcutaneous fat
    inner = (x / (bx - a["fat"])) ** 2 + ((y - bc) / (by - a["fat"])) ** 2 <= 1.0
    put(inner, 40.0)  # muscle and mediastinum
    table_top = bc - by - 20.0  # 20 mm of air between the back and the table
    put((y <= table_top) & (y > table_top - 12.0) & (np.abs(x) < 230.0), 120.0)
    lung = np.zeros(site.shape, dtype=bool)
    for shape in a["lungs"]:
        lung |= _ellipsoid((x, y, z), *shape) <= 1.0
    for k, shape in enumerate(a["domes"]):  # liver 60 HU, spleen and stomach 45 HU
        dome = _ellipsoid((x, y, z), *shape) <= 1.0
        put(dome & inner, 60.0 if k == 0 else 45.0)
        lung &= ~dome
    heart = _ellipsoid((x, y, z), *a["heart"])
    lung &= heart > 1.0
    aorta = _tube_distance(x, y, z, *a["aorta"]) <= 0.0
    lung &= ~aorta
    lung_hu = -850.0 + 15.0 * rng.standard_normal() + var["lung_hu"]
    np.copyto(vol, _lung_texture(rng, site.shape, site.spacing, lung_hu), where=lung)
    put(heart <= 1.0, 40.0)  # myocardium
    put(_ellipsoid((x, y, z), a["heart"][0], [v - 9.0 for v in a["heart"][1]]) <= 1.0,
        40.0 + 110.0 * enh)  # fmt: skip
    put(aorta, 40.0 + 160.0 * enh)
    _render_bones(put, x, y, z, a)

    axes = [g.ravel() for g in (x, y, z)]
    for r in np.asarray(radii, dtype=float) * (_NODULE_MM_PER_UNIT / 2.0):  # solid nodules
        center = _lung_point(rng, a, r)
        _add_sphere(vol, axes, site.spacing, center, r, 35.0 + 15.0 * rng.standard_normal())
    for _ in range(int(n_calcium)):  # calcified plaques in the aorta and coronary arteries
        center = _artery_point(rng, a)
        r = rng.uniform(2.0, 3.5)
        _add_sphere(vol, axes, site.spacing, center, r, rng.uniform(700.0, 1100.0))

    blur = site.blur * var["blur"]
    vol = gaussian_filter(vol, sigma=(blur, blur, 0.5 * blur), mode="nearest")
    vol += site.noise_hu * var["noise"] * rng.standard_normal(site.shape, dtype=np.float32)
    vol += site.hu_offset
    return np.clip(np.rint(vol), -1024, 3071).astype(np.int16)


def _render_bones(put, x, y, z, a: dict) -> None:
    """Thoracic spine (cortex 700 HU, cancellous bone 400 HU, discs, canal) and sternum."""
    sx, sy, sr = a["spine"]
    r2 = ((x - sx) ** 2 + (y - sy) ** 2) / sr**2
    put(r2 <= 1.0, 700.0)
    put(r2 <= 0.6, 400.0)
    put((r2 <= 1.0) & (np.mod(z, 30.0) < 6.0), 80.0)  # intervertebral discs
    canal = ((x - sx) ** 2 + (y - sy + 1.45 * sr) ** 2) / (0.4 * sr) ** 2
    put((canal <= 2.6) & (canal > 1.0), 600.0)  # vertebral arch
    put(canal <= 1.0, 20.0)  # spinal canal
    put((np.abs(x - sx) < 0.25 * sr) & (y < sy - 1.9 * sr) & (y > sy - 2.4 * sr), 600.0)
    (cx, cy), (ex, ey) = a["sternum"]
    put(((x - cx) / ex) ** 2 + ((y - cy) / ey) ** 2 <= 1.0, 500.0)


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
