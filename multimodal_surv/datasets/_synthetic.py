"""Synthetic CT + EHR survival cohort with a known oracle risk.

Every subject has two independent latent risk parts:

* a CT part, carried by what the volume shows: the burden of lung nodules
  (count and size) and the number of coronary calcifications;
* an EHR part, carried by the event stream: chronic diagnoses (counts), a
  recent versus an old atrial-fibrillation diagnosis and hospital admissions
  in the last year (recency), and the creatinine trajectory (last value and
  slope).

Both parts are standardised with population moments (fixed Monte Carlo, so the
oracle does not depend on the sample) and mixed as
``log_hazard = scale * (sqrt(balance) * ct_part + sqrt(1 - balance) * ehr_part)``,
so ``balance`` is the share of the log-hazard variance that the CT carries.
Event times are Weibull given the log-hazard; censoring is administrative (end
of study) plus random, tuned to the requested rate.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import shutil
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.ndimage import gaussian_filter
from sklearn.utils import Bunch
from sklearn.utils._param_validation import Interval, validate_params

from ._cohort import load_cohort_folder

__all__ = ["make_synthetic_cohort"]

_DAY_US = 86_400_000_000
_YEAR = 365.25
_EPOCH = np.datetime64("1970-01-01T00:00:00", "us")
_INDEX_START = np.datetime64("2014-01-01", "D")
_INDEX_SPAN_DAYS = 6 * 365
_STUDY_END = np.datetime64("2023-01-01", "D")
_WEIBULL_SHAPE = 1.3
_WEIBULL_SCALE_DAYS = 4.0 * _YEAR  # baseline (log-hazard 0) scale
_DEFAULT_SCALE = 1.45  # sd of the log-hazard: oracle C ~ 0.77 at 30 % censoring

# Chronic conditions: name, code, code used by the external site's habits (None =
# same code), risk weight, base logit, loading on the EHR frailty, medications.
_CONDITIONS = (
    (
        "hypertension",
        "ICD10CM/I10",
        "SNOMEDCT/38341003",
        0.3,
        0.4,
        0.9,
        ("RxNorm/29046", "RxNorm/17767"),
    ),
    ("hyperlipidemia", "ICD10CM/E78.5", None, 0.15, 0.0, 0.5, ("RxNorm/83367",)),
    (
        "type2_diabetes",
        "ICD10CM/E11.9",
        "SNOMEDCT/44054006",
        0.5,
        -0.9,
        0.9,
        ("RxNorm/6809", "RxNorm/274783"),
    ),
    ("ckd", "ICD10CM/N18.3", None, 0.6, -1.6, 1.0, ()),
    ("copd", "ICD10CM/J44.9", None, 0.6, -1.5, 0.9, ("RxNorm/69120",)),
    ("heart_failure", "ICD10CM/I50.9", None, 1.0, -2.1, 1.2, ("RxNorm/4603",)),
    # Conditions unrelated to the outcome.
    ("low_back_pain", "ICD10CM/M54.50", None, 0.0, -0.8, 0.0, ("RxNorm/5640",)),
    ("gerd", "ICD10CM/K21.9", None, 0.0, -1.0, 0.0, ("RxNorm/7646",)),
    ("knee_osteoarthritis", "ICD10CM/M17.9", None, 0.0, -1.3, 0.0, ("RxNorm/161",)),
    ("allergic_rhinitis", "ICD10CM/J30.9", None, 0.0, -1.3, 0.0, ("RxNorm/20610",)),
    ("hypothyroidism", "ICD10CM/E03.9", None, 0.0, -1.9, 0.0, ("RxNorm/10582",)),
)
_AF_CODE, _AF_MEDS = "ICD10CM/I48.91", ("RxNorm/1364430", "RxNorm/6918")
_CREAT, _CREAT_SI, _CREAT_SI_FACTOR = "LOINC/2160-0", "LOINC/14682-9", 88.42
_DESCRIPTIONS = {
    "MEDS_BIRTH": "Birth",
    "MEDS_DEATH": "Death",
    "GENDER/F": "Female",
    "GENDER/M": "Male",
    "Visit/OP": "Outpatient visit",
    "Visit/IP": "Inpatient admission",
    "CPT4/71260": "CT thorax with contrast (index scan)",
    "ICD10CM/I10": "Essential (primary) hypertension",
    "SNOMEDCT/38341003": "Hypertensive disorder, systemic arterial",
    "ICD10CM/E78.5": "Hyperlipidemia, unspecified",
    "ICD10CM/E11.9": "Type 2 diabetes mellitus without complications",
    "SNOMEDCT/44054006": "Diabetes mellitus type 2",
    "ICD10CM/N18.3": "Chronic kidney disease, stage 3",
    "ICD10CM/J44.9": "Chronic obstructive pulmonary disease, unspecified",
    "ICD10CM/I50.9": "Heart failure, unspecified",
    "ICD10CM/M54.50": "Low back pain, unspecified",
    "ICD10CM/K21.9": "Gastro-esophageal reflux disease without esophagitis",
    "ICD10CM/M17.9": "Osteoarthritis of knee, unspecified",
    "ICD10CM/J30.9": "Allergic rhinitis, unspecified",
    "ICD10CM/E03.9": "Hypothyroidism, unspecified",
    "ICD10CM/I48.91": "Unspecified atrial fibrillation",
    "RxNorm/29046": "lisinopril",
    "RxNorm/17767": "amlodipine",
    "RxNorm/83367": "atorvastatin",
    "RxNorm/6809": "metformin",
    "RxNorm/274783": "insulin glargine",
    "RxNorm/69120": "tiotropium",
    "RxNorm/4603": "furosemide",
    "RxNorm/5640": "ibuprofen",
    "RxNorm/7646": "omeprazole",
    "RxNorm/161": "acetaminophen",
    "RxNorm/20610": "cetirizine",
    "RxNorm/10582": "levothyroxine",
    "RxNorm/1364430": "apixaban",
    "RxNorm/6918": "metoprolol",
    "LOINC/2160-0": "Creatinine [Mass/volume] in Serum or Plasma (mg/dL)",
    "LOINC/14682-9": "Creatinine [Moles/volume] in Serum or Plasma (umol/L)",
    "LOINC/4548-4": "Hemoglobin A1c/Hemoglobin.total in Blood (%)",
    "LOINC/13457-7": "Cholesterol in LDL [Mass/volume] in Serum or Plasma by calculation (mg/dL)",
    "LOINC/718-7": "Hemoglobin [Mass/volume] in Blood (g/dL)",
    "LOINC/2951-2": "Sodium [Moles/volume] in Serum or Plasma (mmol/L)",
    "LOINC/30934-4": "Natriuretic peptide B [Mass/volume] in Serum or Plasma (pg/mL)",
    "LOINC/8480-6": "Systolic blood pressure (mm[Hg])",
}
_PARENTS = {  # the external site's codes map onto the internal ones
    "SNOMEDCT/38341003": ["ICD10CM/I10"],
    "SNOMEDCT/44054006": ["ICD10CM/E11.9"],
    "LOINC/14682-9": ["LOINC/2160-0"],
}


@dataclass(frozen=True)
class _Site:
    """Acquisition and coding habits of one site."""

    name: str
    spacing: tuple[float, float, float]
    shape: tuple[int, int, int]
    noise_hu: float
    hu_offset: float
    blur: float
    code_prob: float
    alt_code_prob: float
    si_creatinine_prob: float
    visit_rate: float


def _sites(volume_shape, spacing, shift) -> tuple[_Site, _Site]:
    spacing = tuple(float(s) for s in spacing)
    fov = np.asarray(volume_shape) * np.asarray(spacing)
    internal = _Site(
        "internal",
        spacing,
        tuple(int(v) for v in volume_shape),
        noise_hu=12.0,
        hu_offset=0.0,
        blur=0.6,
        code_prob=0.7,
        alt_code_prob=0.0,
        si_creatinine_prob=0.0,
        visit_rate=1.0,
    )
    ext_spacing = tuple(float(s) * (1.0 + 0.25 * shift) for s in spacing)
    ext_shape = tuple(max(4, int(round(f / s))) for f, s in zip(fov, ext_spacing))
    external = _Site(
        "external",
        ext_spacing,
        ext_shape,
        noise_hu=12.0 * (1.0 + shift),
        hu_offset=25.0 * shift,
        blur=0.6 * (1.0 + 0.5 * shift),
        code_prob=0.7 * max(0.3, 1.0 - 0.35 * shift),
        alt_code_prob=min(1.0, 0.8 * shift),
        si_creatinine_prob=min(1.0, 0.9 * shift),
        visit_rate=1.0 + 0.3 * shift,
    )
    return internal, external


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _draw_state(rng: np.random.Generator, n: int) -> dict:
    """Latent clinical state of ``n`` subjects and the raw CT / EHR risk scores."""
    s = {}
    # CT: lung nodules (count and radius) and coronary calcifications.
    z_nod, z_cac = rng.standard_normal(n), rng.standard_normal(n)
    s["n_nodules"] = np.minimum(rng.poisson(np.exp(0.2 + 0.8 * z_nod)), 10)
    s["nodule_radius"] = rng.uniform(2.0, 5.0, size=int(s["n_nodules"].sum()))
    owner = np.repeat(np.arange(n), s["n_nodules"])
    burden = np.bincount(owner, weights=4.0 / 3.0 * np.pi * s["nodule_radius"] ** 3, minlength=n)
    s["n_calcium"] = np.minimum(rng.poisson(np.exp(-0.3 + 0.9 * z_cac)), 10)
    s["ct_raw"] = np.log1p(burden / 20.0) + 0.5 * np.log1p(s["n_calcium"])

    # EHR: one frailty drives chronic conditions, atrial fibrillation,
    # admissions and the creatinine trajectory.
    u = rng.standard_normal(n)
    n_cond = len(_CONDITIONS)
    base = np.array([c[4] for c in _CONDITIONS])
    load = np.array([c[5] for c in _CONDITIONS])
    weight = np.array([c[3] for c in _CONDITIONS])
    p = _sigmoid(base[None, :] + load[None, :] * u[:, None])
    s["present"] = rng.uniform(size=(n, n_cond)) < p
    # Years before index of the onset (present) or after index (later onset).
    s["onset_before"] = rng.exponential(4.0, size=(n, n_cond))
    later = (~s["present"]) & (rng.uniform(size=(n, n_cond)) < 0.5 * p)
    s["onset_after"] = np.where(later, rng.exponential(3.0, size=(n, n_cond)), np.inf)
    s["af"] = rng.uniform(size=n) < _sigmoid(-1.5 + 0.9 * u)
    s["af_before"] = rng.exponential(2.5, size=n)  # years before index
    af_recent = s["af"] & (s["af_before"] < 1.0)
    af_old = s["af"] & ~af_recent
    s["ip_last_year"] = np.minimum(rng.poisson(np.exp(-1.2 + 0.7 * u)), 6)
    ckd = s["present"][:, 3]
    s["creat_index"] = np.exp(np.log(0.9) + 0.1 * u + 0.35 * ckd + rng.normal(0, 0.08, n))
    s["creat_slope"] = 0.03 + 0.05 * u + 0.08 * ckd + rng.normal(0.0, 0.05, n)  # mg/dL/year
    s["ehr_raw"] = (
        s["present"] @ weight
        + 1.0 * af_recent
        + 0.3 * af_old
        + 0.35 * s["ip_last_year"]
        + 1.5 * np.log(s["creat_index"])
        + 4.0 * s["creat_slope"]
    )
    return s


@functools.lru_cache(maxsize=1)
def _population_moments() -> tuple[float, float, float, float]:
    """Mean and sd of the raw CT and EHR scores (fixed Monte Carlo, 200,000 draws)."""
    s = _draw_state(np.random.default_rng(20260615), 200_000)
    return (
        float(s["ct_raw"].mean()),
        float(s["ct_raw"].std()),
        float(s["ehr_raw"].mean()),
        float(s["ehr_raw"].std()),
    )


# --------------------------------------------------------------------------- CT
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


# -------------------------------------------------------------------------- EHR
class _Events:
    def __init__(self):
        self.t, self.code, self.value = [], [], []

    def add(self, days, code, value=None):
        days = np.atleast_1d(np.asarray(days, dtype=float))
        if days.size == 0:
            return
        self.t.append(days)
        self.code.append(np.full(days.size, code, dtype=object))
        v = np.full(days.size, np.nan) if value is None else np.broadcast_to(value, days.shape)
        self.value.append(np.asarray(v, dtype=float))


def _render_ehr(
    rng,
    site: _Site,
    s: dict,
    i: int,
    record_years: float,
    age_years: float,
    follow_days: float,
    event: bool,
) -> _Events:
    """Events of subject ``i`` in days relative to the index time (negative = before)."""
    ev = _Events()
    start, end = -record_years * _YEAR, follow_days
    present = s["present"][i]
    onset = np.where(present, -s["onset_before"][i] * _YEAR, s["onset_after"][i] * _YEAR)
    af_onset = -s["af_before"][i] * _YEAR if s["af"][i] else np.inf
    n_present = int(present.sum()) + int(s["af"][i])

    # Outpatient visits: a Poisson process whose rate grows with morbidity.
    rate = site.visit_rate * (2.0 + 0.8 * n_present) / _YEAR
    visits = np.sort(rng.uniform(start, end, size=rng.poisson(rate * (end - start))))
    # Inpatient admissions: the last year's count is part of the risk; earlier
    # ones are background.
    ip = np.concatenate(
        [
            rng.uniform(-_YEAR, -1.0, size=int(s["ip_last_year"][i])),
            rng.uniform(start, -_YEAR, size=rng.poisson(0.15 * record_years)),
            rng.uniform(
                0.0, end, size=rng.poisson(np.exp(-1.2 + 0.5 * min(n_present, 4)) * end / _YEAR)
            ),
        ]
    )
    ip = np.sort(ip[ip > start])
    ev.add(visits, "Visit/OP")
    ev.add(ip, "Visit/IP")
    contacts = np.sort(np.concatenate([visits, ip]))

    def coded(code, alt, first, p):
        """Code a condition at its first contact after onset and then with probability p."""
        after = contacts[contacts > first]
        if first > start:  # diagnosed inside the record: coded on the onset day
            after = np.concatenate([[first], after])
        if after.size == 0:
            return
        keep = rng.uniform(size=after.size) < p
        keep[0] = True
        times = after[keep]
        if alt is not None and site.alt_code_prob > 0:
            use_alt = rng.uniform(size=times.size) < site.alt_code_prob
            ev.add(times[use_alt], alt)
            times = times[~use_alt]
        ev.add(times, code)

    for k, (_, code, alt, _, _, _, meds) in enumerate(_CONDITIONS):
        if np.isfinite(onset[k]) and onset[k] <= end:
            first = max(onset[k], start)
            coded(code, alt, first, site.code_prob)
            on_med = contacts[(contacts >= first) & (rng.uniform(size=contacts.size) < 0.5)]
            for med in meds:
                ev.add(on_med[rng.uniform(size=on_med.size) < 0.7], med)
    if np.isfinite(af_onset):
        first = max(af_onset, start)
        coded(_AF_CODE, None, first, site.code_prob)
        for med in _AF_MEDS:
            ev.add(contacts[(contacts >= first) & (rng.uniform(size=contacts.size) < 0.6)], med)

    # Labs and vitals at contacts; creatinine follows a linear trajectory.
    diab, ckd, hf, htn = present[2], present[3], present[5], present[0]
    p_creat = 0.7 if (ckd or diab or hf) else 0.35
    creat_t = contacts[rng.uniform(size=contacts.size) < p_creat]
    pre_ct = -rng.uniform(1.0, 14.0)  # kidney function checked before contrast CT
    creat_t = np.sort(np.concatenate([creat_t, [pre_ct]] if pre_ct > start else [creat_t]))
    creat = s["creat_index"][i] + s["creat_slope"][i] * creat_t / _YEAR
    creat = np.maximum(creat, 0.4) * np.exp(rng.normal(0.0, 0.03, creat_t.size))
    si = rng.uniform(size=creat_t.size) < site.si_creatinine_prob
    ev.add(creat_t[~si], _CREAT, np.round(creat[~si], 2))
    ev.add(creat_t[si], _CREAT_SI, np.round(creat[si] * _CREAT_SI_FACTOR, 0))
    for code, p, mean, sd, decimals in (
        ("LOINC/4548-4", 0.5 if diab else 0.05, 7.6 if diab else 5.5, 0.6, 1),
        ("LOINC/13457-7", 0.2, 110.0, 25.0, 0),
        ("LOINC/718-7", 0.3, 13.6 - 1.0 * ckd, 1.2, 1),
        ("LOINC/2951-2", 0.3, 139.0, 2.5, 0),
        ("LOINC/8480-6", 0.8, 142.0 if htn else 124.0, 11.0, 0),
    ):
        t = contacts[rng.uniform(size=contacts.size) < p]
        ev.add(t, code, np.round(rng.normal(mean, sd, t.size), decimals))
    t = contacts[rng.uniform(size=contacts.size) < (0.5 if hf else 0.02)]
    ev.add(t, "LOINC/30934-4", np.round(np.exp(rng.normal(6.0 if hf else 3.9, 0.5, t.size)), 0))

    ev.add(0.0, "CPT4/71260")  # the index scan itself, at prediction_time
    ev.add(-age_years * _YEAR, "MEDS_BIRTH")
    if event:
        ev.add(follow_days, "MEDS_DEATH")
    return ev


def _events_table(ev: _Events, index_us: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = np.concatenate(ev.t)
    code = np.concatenate(ev.code)
    value = np.concatenate(ev.value)
    # Whole minutes, as most EHR exports; ties keep MEDS order (birth first).
    us = index_us + np.rint(t * 1440.0).astype(np.int64) * 60_000_000
    rank = np.where(code == "MEDS_BIRTH", 0, 1)
    order = np.lexsort((code, rank, us))
    return us[order], code[order], value[order]


def _write_meds(meds_root: Path, shards: dict, codes, splits: pd.DataFrame, params: dict) -> None:
    data = meds_root / "data"
    meta = meds_root / "metadata"
    data.mkdir(parents=True)
    meta.mkdir(parents=True)
    schema = pa.schema(
        [
            ("subject_id", pa.int64()),
            ("time", pa.timestamp("us")),
            ("code", pa.string()),
            ("numeric_value", pa.float32()),
        ]
    )
    for name, rows in shards.items():
        sid, us, code, value = (np.concatenate(c) for c in zip(*rows))
        static = np.isnan(us)
        table = pa.table(
            {
                "subject_id": pa.array(sid, pa.int64()),
                "time": pa.array(
                    np.where(static, 0, us).astype(np.int64), pa.timestamp("us"), mask=static
                ),
                "code": pa.array(code.tolist(), pa.string()),
                "numeric_value": pa.array(
                    value.astype(np.float32), pa.float32(), mask=np.isnan(value)
                ),
            },
            schema=schema,
        )
        pq.write_table(table, data / f"{name}.parquet")
    codes = sorted(codes)
    pq.write_table(
        pa.table(
            {
                "code": pa.array(codes, pa.string()),
                "description": pa.array([_DESCRIPTIONS.get(c) for c in codes], pa.string()),
                "parent_codes": pa.array(
                    [_PARENTS.get(c, []) for c in codes], pa.list_(pa.string())
                ),
            }
        ),
        meta / "codes.parquet",
    )
    pq.write_table(
        pa.Table.from_pandas(splits, preserve_index=False), meta / "subject_splits.parquet"
    )
    (meta / "dataset.json").write_text(
        json.dumps(
            {
                "dataset_name": "multimodal_surv synthetic CT + EHR cohort",
                "dataset_version": json.dumps(params, sort_keys=True),
                "etl_name": "multimodal_surv.datasets.make_synthetic_cohort",
                "etl_version": "1",
                "meds_version": "0.3.3",
            },
            indent=2,
        )
        + "\n"
    )


# --------------------------------------------------------------------- outcome
def _censor(rng, t_event, admin, target):
    """Censoring times so that about ``target`` of the subjects are censored.

    Administrative censoring (end of study) plus exponential random dropout with
    the rate that reaches the target; when the end of study alone already
    censors more than the target, the end of study is moved later instead.
    """
    n = t_event.size
    e = rng.exponential(1.0, size=n)
    if target <= 0.0:
        return np.full(n, np.inf)

    def frac(rate, extra):
        return np.mean(np.minimum(admin + extra, e / rate if rate > 0 else np.inf) < t_event)

    if frac(0.0, 0.0) > target:
        lo, hi = 0.0, 1.0
        while frac(0.0, hi) > target:
            hi *= 2.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if frac(0.0, mid) > target else (lo, mid)
        return admin + hi
    lo, hi = 0.0, 1.0 / np.median(t_event)
    while frac(hi, 0.0) < target:
        hi *= 2.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if frac(mid, 0.0) < target else (lo, mid)
    return np.minimum(admin, e / hi)


_OWNED = ("cohort.csv", "oracle.csv", "README.md", "ct", "meds")


@validate_params(
    {
        "root": [str, os.PathLike],
        "n_subjects": [Interval(Integral, 4, None, closed="left")],
        "balance": [Interval(Real, 0.0, 1.0, closed="both")],
        "shift": [Interval(Real, 0.0, None, closed="left")],
        "censoring": [Interval(Real, 0.0, 0.95, closed="both")],
        "external_fraction": [Interval(Real, 0.0, 1.0, closed="left")],
        "test_fraction": [Interval(Real, 0.0, 1.0, closed="neither")],
        "volume_shape": [tuple, list],
        "spacing": [tuple, list],
        "ct_missing": [Interval(Real, 0.0, 1.0, closed="left")],
        "ct_variation": [Interval(Real, 0.0, None, closed="left")],
        "risk_scale": [Interval(Real, 0.0, None, closed="left")],
        "seed": ["random_state"],
        "overwrite": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def make_synthetic_cohort(
    root: str | os.PathLike,
    *,
    n_subjects: int = 900,
    balance: float = 0.5,
    shift: float = 1.0,
    censoring: float = 0.3,
    external_fraction: float = 1 / 3,
    test_fraction: float = 0.3,
    volume_shape: tuple[int, int, int] = (48, 48, 32),
    spacing: tuple[float, float, float] = (1.0, 1.0, 2.0),
    ct_missing: float = 0.0,
    ct_variation: float = 0.0,
    risk_scale: float = _DEFAULT_SCALE,
    seed: int = 0,
    overwrite: bool = False,
) -> Bunch:
    """Write a synthetic CT + EHR survival cohort folder with a known oracle risk.

    The folder follows the cohort format of ``docs/cohort_format.md`` (read it
    back with :func:`load_cohort_folder`): ``cohort.csv``, CT volumes as NIfTI
    under ``ct/<site>/``, EHR events as a MEDS root under ``meds/``, and
    ``oracle.csv`` with the true log-hazard and its CT and EHR parts.

    * **CT** (int16 Hounsfield units, RAS affine with the voxel spacing): a
      miniature chest phantom (air -1000, fat -100, soft tissue 40, lungs about
      -850, contrast-enhanced heart and aorta 150-200, spine 300-700) plus the
      findings that carry the CT risk: solid lung nodules (count and size) and
      coronary calcifications (400-800 HU).
    * **EHR** (MEDS): birth, sex (static), outpatient visits and admissions,
      ICD-10-CM diagnoses, RxNorm medications, LOINC labs with trajectories
      (creatinine, HbA1c, LDL, hemoglobin, sodium, BNP, systolic blood
      pressure), the index scan (``CPT4/71260``) at ``prediction_time`` and,
      after it, follow-up events and ``MEDS_DEATH`` (bait: an encoder that
      leaks future events scores far above the oracle). The EHR risk lives in
      diagnosis counts, in recency (recent vs old atrial fibrillation,
      admissions in the last year, creatinine slope) and in the last
      creatinine value.
    * **External site** (``shift`` > 0): noisier scanner with an intensity
      offset, coarser voxel spacing and smoother kernel; coding habits differ
      (SNOMED CT codes for hypertension and diabetes, creatinine in umol/L
      under LOINC 14682-9, fewer diagnosis codes per visit, more visits).

    Parameters
    ----------
    root : str or path-like
        Folder to write; created if needed. It must be empty unless
        ``overwrite=True`` (then only the files this function writes are
        replaced).
    n_subjects : int, default=900
        Subjects in all, one prediction (CT scan) each.
    balance : float in [0, 1], default=0.5
        Share of the log-hazard variance carried by the CT (1 = CT only,
        0 = EHR only).
    shift : float >= 0, default=1.0
        Strength of the external site's distribution shift (0 = none).
    censoring : float in [0, 0.95], default=0.3
        Fraction of censored subjects (administrative end of study plus
        random dropout); reached to within one subject.
    external_fraction : float in [0, 1), default=1/3
        Share of the subjects from the external site (all ``split="test"``).
    test_fraction : float in (0, 1), default=0.3
        Share of the internal subjects in ``split="test"``.
    volume_shape : tuple of 3 ints, default=(48, 48, 32)
        Voxels of the internal site's volumes (x, y, z); the external site
        covers the same field of view with its own spacing.
    spacing : tuple of 3 floats, default=(1.0, 1.0, 2.0)
        Internal voxel spacing in mm. The phantom scales with the field of
        view (``volume_shape * spacing``), so the voxel-space image is the same
        for any spacing: the default is a realistic CT voxel size over a
        miniature 48 x 48 x 64 mm field of view; ``(7.0, 7.0, 10.0)`` gives a
        chest-sized one (336 x 336 x 320 mm), which suits encoders that
        resample to a coarse spacing (e.g. 5 mm) before encoding.
    ct_missing : float in [0, 1), default=0.0
        Share of subjects without a CT (empty ``ct`` cell; their CT risk part
        still acts on the hazard).
    ct_variation : float >= 0, default=0.0
        Patient-to-patient variation of the CT besides the findings, as
        between real scans: body size and position, lung density
        (inspiration), contrast enhancement (bolus timing), noise level (dose)
        and reconstruction kernel; 1 is a realistic level (standard deviations
        in docs/synthetic_cohort.md), 0 gives near-identical anatomy. It
        changes no risk: the findings keep their size and HU.
    risk_scale : float >= 0, default=1.45
        Standard deviation of the log-hazard; the default gives an oracle
        C-index of about 0.77 at 30 % censoring.
    seed : int, default=0
        Same seed and arguments give byte-identical files.
    overwrite : bool, default=False
        Replace an earlier cohort in ``root``.

    Returns
    -------
    cohort : sklearn.utils.Bunch
        What :func:`load_cohort_folder` returns for the folder (``cohort``,
        ``y``, ``oracle`` = true log-hazard, ``oracle_parts`` with the
        standardised ``ct_part`` and ``ehr_part``, ``root``, ``cohort_file``,
        ``meds_root``) plus ``params``, the arguments used.

    See Also
    --------
    load_cohort_folder : read a cohort folder (this one or a user's own).

    References
    ----------
    Zhang et al. (2026), "Fusion is not one-size-fits-all: Cross-Modal
    Representation Alignment for Time-to-Event Modeling", arXiv:2606.15038.

    Examples
    --------
    >>> import tempfile
    >>> from sksurv.metrics import concordance_index_censored
    >>> from multimodal_surv.datasets import make_synthetic_cohort
    >>> data = make_synthetic_cohort(tempfile.mkdtemp(), n_subjects=60,
    ...                              volume_shape=(16, 16, 8), seed=0)
    >>> data.cohort[["site", "split"]].value_counts().sort_index()
    site      split
    external  test     20
    internal  test     12
              train    28
    Name: count, dtype: int64
    >>> c = concordance_index_censored(data.y["event"], data.y["time"], data.oracle)[0]
    >>> round(float(c), 2)  # the oracle's C-index (about 0.77 on large cohorts)
    0.83
    """
    volume_shape = tuple(volume_shape)
    spacing = tuple(spacing)
    if len(volume_shape) != 3 or not all(isinstance(v, Integral) and v >= 4 for v in volume_shape):
        raise ValueError(
            f"volume_shape must be 3 integers >= 4 (x, y, z voxels); got {volume_shape!r}."
        )
    if len(spacing) != 3 or not all(isinstance(v, Real) and v > 0 for v in spacing):
        raise ValueError(f"spacing must be 3 positive numbers in mm; got {spacing!r}.")
    if not isinstance(seed, Integral):
        raise TypeError(
            f"seed must be an int (files must be reproducible); got {type(seed).__name__}."
        )
    n = int(n_subjects)
    n_ext = int(round(external_fraction * n))
    n_int = n - n_ext
    n_test = int(round(test_fraction * n_int))
    if n_int - n_test < 2 or n_test < 1:
        raise ValueError(
            f"n_subjects={n} leaves {n_int - n_test} internal training and {n_test} internal "
            "test subjects (at least 2 and 1 are needed) "
            f"(external_fraction={external_fraction}, test_fraction={test_fraction}); "
            "increase n_subjects."
        )
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ValueError(f"root {root} exists and is not a folder; pass a folder path.")
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise ValueError(
                f"root {root} is not empty; pass an empty or new folder, or overwrite=True "
                f"to replace an earlier synthetic cohort there ({', '.join(_OWNED)})."
            )
        for name in _OWNED:
            target = root / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    root.mkdir(parents=True, exist_ok=True)

    params = {
        "n_subjects": int(n_subjects),
        "balance": float(balance),
        "shift": float(shift),
        "censoring": float(censoring),
        "external_fraction": float(external_fraction),
        "test_fraction": float(test_fraction),
        "volume_shape": list(map(int, volume_shape)),
        "spacing": list(map(float, spacing)),
        "ct_missing": float(ct_missing),
        "ct_variation": float(ct_variation),
        "risk_scale": float(risk_scale),
        "seed": int(seed),
    }
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0]))
    site_of = np.array([0] * n_int + [1] * n_ext)
    split = np.full(n, "test", dtype=object)
    split[rng.permutation(n_int)[: n_int - n_test]] = "train"
    subject_id = np.arange(1, n + 1, dtype=np.int64)

    # Latent state, risk parts and oracle.
    s = _draw_state(rng, n)
    ct_mean, ct_sd, ehr_mean, ehr_sd = _population_moments()
    ct_part = (s["ct_raw"] - ct_mean) / ct_sd
    ehr_part = (s["ehr_raw"] - ehr_mean) / ehr_sd
    log_hazard = risk_scale * (np.sqrt(balance) * ct_part + np.sqrt(1.0 - balance) * ehr_part)

    # Calendar: index times 2014-2019 during working hours, records 3-10 years back.
    index_day = _INDEX_START + rng.integers(0, _INDEX_SPAN_DAYS, size=n).astype("timedelta64[D]")
    index_us = (index_day.astype("datetime64[us]") - _EPOCH).astype(np.int64) + (
        rng.integers(8 * 60, 18 * 60, size=n) * 60_000_000
    )
    record_years = rng.uniform(3.0, 10.0, size=n)
    age_years = np.clip(rng.normal(66.0, 9.0, size=n), 40.0, 90.0)
    female = rng.uniform(size=n) < 0.5

    # Outcome: Weibull times given the log-hazard; censoring to the target.
    t_event = _WEIBULL_SCALE_DAYS * (rng.exponential(1.0, n) / np.exp(log_hazard)) ** (
        1.0 / _WEIBULL_SHAPE
    )
    admin = ((_STUDY_END.astype("datetime64[us]") - _EPOCH).astype(np.int64) - index_us) / _DAY_US
    t_cens = _censor(rng, t_event, admin, float(censoring))
    event = t_event <= t_cens
    time = np.maximum(np.rint(np.minimum(t_event, t_cens) * 1440.0), 1.0) / 1440.0
    has_ct = rng.uniform(size=n) >= ct_missing

    # Files.
    sites = _sites(volume_shape, spacing, float(shift))
    fov = tuple(np.asarray(volume_shape) * np.asarray(spacing, dtype=float))
    grids = [_grid(site) for site in sites]
    radius_start = np.concatenate([[0], np.cumsum(s["n_nodules"])])
    ct_rel = np.full(n, "", dtype=object)
    shards: dict[str, list] = {}
    codes: set[str] = set()
    for i in range(n):
        site = sites[site_of[i]]
        sub_rng = np.random.default_rng(np.random.SeedSequence([int(seed), 1, i]))
        ev = _render_ehr(sub_rng, site, s, i, record_years[i], age_years[i], time[i], event[i])
        us, code, value = _events_table(ev, index_us[i])
        static_code = np.array(["GENDER/F" if female[i] else "GENDER/M"], dtype=object)
        row = (
            np.full(us.size + 1, subject_id[i], dtype=np.int64),
            np.concatenate([[np.nan], us.astype(float)]),
            np.concatenate([static_code, code]),
            np.concatenate([[np.nan], value]),
        )
        # float64 holds microsecond epochs exactly up to 2^53 us (year 2255).
        shards.setdefault(f"{site.name}_{(i if site_of[i] == 0 else i - n_int) // 500}", [])
        shards[f"{site.name}_{(i if site_of[i] == 0 else i - n_int) // 500}"].append(row)
        codes.update(row[2].tolist())
        if has_ct[i]:
            ct_rng = np.random.default_rng(np.random.SeedSequence([int(seed), 2, i]))
            radii = s["nodule_radius"][radius_start[i] : radius_start[i + 1]]
            var_rng = np.random.default_rng(np.random.SeedSequence([int(seed), 3, i]))
            var = _patient_variation(var_rng, float(ct_variation))
            volume = _render_ct(ct_rng, site, fov, grids[site_of[i]], radii, s["n_calcium"][i], var)
            rel = Path("ct") / site.name / f"sub-{subject_id[i]:06d}.nii.gz"
            (root / rel.parent).mkdir(parents=True, exist_ok=True)
            _write_nifti(volume, site.spacing, root / rel)
            ct_rel[i] = rel.as_posix()

    pred_time = pd.Series((_EPOCH + index_us.astype("timedelta64[us]")).astype("datetime64[s]"))
    iso = pred_time.dt.strftime("%Y-%m-%dT%H:%M:%S")
    site_name = np.array([sites[k].name for k in site_of], dtype=object)
    pd.DataFrame(
        {
            "subject_id": subject_id,
            "prediction_time": iso,
            "ct": ct_rel,
            "event": event.astype(int),
            "time": np.round(time, 6),
            "site": site_name,
            "split": split,
        }
    ).to_csv(root / "cohort.csv", index=False)
    pd.DataFrame(
        {
            "subject_id": subject_id,
            "prediction_time": iso,
            "log_hazard": np.round(log_hazard, 10),
            "ct_part": np.round(ct_part, 10),
            "ehr_part": np.round(ehr_part, 10),
        }
    ).to_csv(root / "oracle.csv", index=False)
    meds_split = np.where(site_of == 1, "external", np.where(split == "train", "train", "held_out"))
    _write_meds(
        root / "meds",
        shards,
        codes,
        pd.DataFrame({"subject_id": subject_id, "split": meds_split.astype(str)}),
        params,
    )
    (root / "README.md").write_text(
        "# Synthetic CT + EHR survival cohort\n\n"
        "Written by `multimodal_surv.datasets.make_synthetic_cohort`; format in "
        "docs/cohort_format.md, generator in docs/synthetic_cohort.md.\n\n"
        "```json\n" + json.dumps(params, indent=2, sort_keys=True) + "\n```\n"
    )
    out = load_cohort_folder(root)
    out.params = params
    return out
