"""Latent model of the synthetic cohort: sites, clinical state, risk parts and outcome.

Every subject has two independent latent risk parts:

* a CT part, carried by what the volume shows: the burden of lung nodules
  (count and size) and the number of calcified plaques in the aorta and
  coronary arteries;
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
from dataclasses import dataclass

import numpy as np

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
    # CT: lung nodules (count and latent radius; drawn 5 * radius mm across) and
    # arterial calcifications.
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
