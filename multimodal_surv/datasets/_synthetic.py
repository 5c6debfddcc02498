"""Synthetic CT + EHR survival cohort with a known oracle risk (the public entry point).

The latent model (sites, clinical state, risk parts, outcome) is in
:mod:`._synthetic_latent`, the CT phantom in :mod:`._synthetic_ct`, the EHR
events in :mod:`._synthetic_ehr`; this module draws the cohort and writes its
folder.
"""

from __future__ import annotations

import json
import os
import shutil
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.utils import Bunch, check_random_state
from sklearn.utils._param_validation import Interval, validate_params

from ._cohort import load_cohort_folder
from ._synthetic_ct import _grid, _patient_variation, _render_ct, _write_nifti
from ._synthetic_ehr import _events_table, _render_ehr, _write_meds
from ._synthetic_latent import (
    _DAY_US,
    _DEFAULT_SCALE,
    _EPOCH,
    _INDEX_SPAN_DAYS,
    _INDEX_START,
    _STUDY_END,
    _WEIBULL_SCALE_DAYS,
    _WEIBULL_SHAPE,
    _censor,
    _draw_state,
    _population_moments,
    _sites,
)

__all__ = ["make_synthetic_cohort"]

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
        "random_state": ["random_state"],
        "overwrite": ["boolean"],
        "n_jobs": [Integral, None],
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
    volume_shape: tuple[int, int, int] = (80, 80, 48),
    spacing: tuple[float, float, float] = (5.0, 5.0, 6.0),
    ct_missing: float = 0.0,
    ct_variation: float = 0.0,
    risk_scale: float = _DEFAULT_SCALE,
    random_state: int | np.random.RandomState | None = 0,
    overwrite: bool = False,
    n_jobs: int | None = None,
) -> Bunch:
    """Write a synthetic CT + EHR survival cohort folder with a known oracle risk.

    The folder follows the cohort format of ``docs/cohort_format.md`` (read it
    back with :func:`load_cohort_folder`): ``cohort.csv``, CT volumes as NIfTI
    under ``ct/<site>/``, EHR events as a MEDS root under ``meds/``, and
    ``oracle.csv`` with the true log-hazard and its CT and EHR parts.

    * **CT** (int16 Hounsfield units, RAS affine with the voxel spacing): a
      life-size adult chest phantom (body outline 344 x 244 mm with
      subcutaneous fat -100 and soft tissue 40, two lungs about -850 with a
      mild texture and thin vessels, heart, contrast-enhanced blood pool and
      aorta 150-200, liver, thoracic spine 400-700, sternum, the scanner table
      20 mm below the back, air -1000) plus the findings that carry the CT
      risk: solid lung nodules of 10-25 mm anywhere in the lungs (count and
      size) and calcified plaques (700-1100 HU) at random places along the
      aorta and coronary arteries (count).
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
    volume_shape : tuple of 3 ints, default=(80, 80, 48)
        Voxels of the internal site's volumes (x, y, z); the external site
        covers the same field of view with its own spacing.
    spacing : tuple of 3 floats, default=(5.0, 5.0, 6.0)
        Internal voxel spacing in mm. The anatomy is life-size in mm and the
        field of view is ``volume_shape * spacing`` centred on the chest: the
        default (400 x 400 x 288 mm) holds the whole chest at a coarse
        spacing (about 370 kB per volume), so encoders run the preprocessing
        of real CT (body crop, resampling to a few mm). A smaller field of
        view crops the patient; for small, fast volumes keep the field of
        view and coarsen the spacing (e.g. ``volume_shape=(32, 32, 24),
        spacing=(12.5, 12.5, 12.0)``), knowing that findings smaller than a
        voxel fade into partial volume.
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
    random_state : int, RandomState instance or None, default=0
        Same integer and arguments give byte-identical files. ``None`` (or a
        ``RandomState``) draws an integer, recorded in ``params``, so that the
        folder can be written again. The default is 0 rather than scikit-learn's
        ``None`` because the generator writes files that tests, benchmarks and
        documentation quote: the same call gives the same folder.
    overwrite : bool, default=False
        Replace an earlier cohort in ``root``.
    n_jobs : int or None, default=None
        Threads that render and write the CT volumes (joblib; ``-1`` = all
        CPUs). Each subject draws from its own seed, so the files are
        byte-identical for any ``n_jobs``.

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
    ...                              volume_shape=(16, 16, 8), random_state=0)
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
    volume_shape, spacing = tuple(volume_shape), tuple(spacing)
    n_int, n_ext, n_test = _check_arguments(
        volume_shape, spacing, int(n_subjects), external_fraction, test_fraction
    )
    seed = _integer_seed(random_state)
    root = _prepare_root(Path(root), overwrite)
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
        "random_state": seed,
    }
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    draw = _draw_cohort(rng, params, n_int, n_test)
    sites = _sites(volume_shape, spacing, float(shift))
    shards, codes = _write_subjects(root, draw, sites, params)
    _write_volumes(root, draw, sites, params, n_jobs)
    _write_tables(root, draw, sites, shards, codes, params)
    out = load_cohort_folder(root)
    out.params = params
    return out


def _integer_seed(random_state) -> int:
    """The integer behind ``random_state``: itself, or one drawn from it (sklearn's meaning)."""
    if isinstance(random_state, Integral) and not isinstance(random_state, bool):
        return int(random_state)
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def _check_arguments(volume_shape, spacing, n, external_fraction, test_fraction):
    """Validate what ``validate_params`` cannot; return internal, external, test counts."""
    if len(volume_shape) != 3 or not all(isinstance(v, Integral) and v >= 4 for v in volume_shape):
        raise ValueError(
            f"volume_shape must be 3 integers >= 4 (x, y, z voxels); got {volume_shape!r}."
        )
    if len(spacing) != 3 or not all(isinstance(v, Real) and v > 0 for v in spacing):
        raise ValueError(f"spacing must be 3 positive numbers in mm; got {spacing!r}.")
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
    return n_int, n_ext, n_test


def _prepare_root(root: Path, overwrite: bool) -> Path:
    """Create ``root``, or empty the files an earlier cohort wrote there."""
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
    return root


def _draw_cohort(rng, params: dict, n_int: int, n_test: int) -> dict:
    """Sites, splits, latent state, calendar and outcome of every subject."""
    n = params["n_subjects"]
    d = {"n": n, "n_int": n_int}
    d["site_of"] = np.array([0] * n_int + [1] * (n - n_int))
    d["split"] = np.full(n, "test", dtype=object)
    d["split"][rng.permutation(n_int)[: n_int - n_test]] = "train"
    d["subject_id"] = np.arange(1, n + 1, dtype=np.int64)
    s = d["state"] = _draw_state(rng, n)
    ct_mean, ct_sd, ehr_mean, ehr_sd = _population_moments()
    d["ct_part"] = (s["ct_raw"] - ct_mean) / ct_sd
    d["ehr_part"] = (s["ehr_raw"] - ehr_mean) / ehr_sd
    balance = params["balance"]
    d["log_hazard"] = params["risk_scale"] * (
        np.sqrt(balance) * d["ct_part"] + np.sqrt(1.0 - balance) * d["ehr_part"]
    )
    # Calendar: index times 2014-2019 during working hours, records 3-10 years back.
    index_day = _INDEX_START + rng.integers(0, _INDEX_SPAN_DAYS, size=n).astype("timedelta64[D]")
    d["index_us"] = (index_day.astype("datetime64[us]") - _EPOCH).astype(np.int64) + (
        rng.integers(8 * 60, 18 * 60, size=n) * 60_000_000
    )
    d["record_years"] = rng.uniform(3.0, 10.0, size=n)
    d["age_years"] = np.clip(rng.normal(66.0, 9.0, size=n), 40.0, 90.0)
    d["female"] = rng.uniform(size=n) < 0.5
    # Outcome: Weibull times given the log-hazard; censoring to the target.
    t_event = _WEIBULL_SCALE_DAYS * (rng.exponential(1.0, n) / np.exp(d["log_hazard"])) ** (
        1.0 / _WEIBULL_SHAPE
    )
    end_us = (_STUDY_END.astype("datetime64[us]") - _EPOCH).astype(np.int64)
    t_cens = _censor(rng, t_event, (end_us - d["index_us"]) / _DAY_US, params["censoring"])
    d["event"] = t_event <= t_cens
    d["time"] = np.maximum(np.rint(np.minimum(t_event, t_cens) * 1440.0), 1.0) / 1440.0
    d["has_ct"] = rng.uniform(size=n) >= params["ct_missing"]
    return d


def _write_subjects(root: Path, d: dict, sites, params: dict):
    """Render each subject's EHR events; collect the MEDS rows per shard."""
    seed, s = params["random_state"], d["state"]
    shards: dict[str, list] = {}
    codes: set[str] = set()
    for i in range(d["n"]):
        site = sites[d["site_of"][i]]
        sub_rng = np.random.default_rng(np.random.SeedSequence([seed, 1, i]))
        ev = _render_ehr(
            sub_rng,
            site,
            s,
            i,
            d["record_years"][i],
            d["age_years"][i],
            d["time"][i],
            d["event"][i],
        )
        us, code, value = _events_table(ev, d["index_us"][i])
        static_code = np.array(["GENDER/F" if d["female"][i] else "GENDER/M"], dtype=object)
        row = (
            np.full(us.size + 1, d["subject_id"][i], dtype=np.int64),
            np.concatenate([[np.nan], us.astype(float)]),
            np.concatenate([static_code, code]),
            np.concatenate([[np.nan], value]),
        )
        # float64 holds microsecond epochs exactly up to 2^53 us (year 2255).
        local = i if d["site_of"][i] == 0 else i - d["n_int"]
        shards.setdefault(f"{site.name}_{local // 500}", []).append(row)
        codes.update(row[2].tolist())
    return shards, codes


def _write_volumes(root: Path, d: dict, sites, params: dict, n_jobs) -> None:
    """Render and write the CT of each subject who has one, in ``n_jobs`` threads."""
    s = d["state"]
    radius_start = np.concatenate([[0], np.cumsum(s["n_nodules"])])
    d["ct_rel"] = np.full(d["n"], "", dtype=object)
    jobs = []
    for i in np.flatnonzero(d["has_ct"]):
        site = sites[d["site_of"][i]]
        rel = Path("ct") / site.name / f"sub-{d['subject_id'][i]:06d}.nii.gz"
        radii = s["nodule_radius"][radius_start[i] : radius_start[i + 1]]
        jobs.append((int(i), d["site_of"][i], radii, s["n_calcium"][i], rel))
        d["ct_rel"][i] = rel.as_posix()
    for site_of in {job[1] for job in jobs}:
        (root / "ct" / sites[site_of].name).mkdir(parents=True, exist_ok=True)
    # Threads: the rendering is numpy and scipy.ndimage work that releases the
    # GIL. On 2 cores, 1200 subjects took 58.6 s in one thread, 33.8 s in two
    # threads and 44.8 s in two loky processes (their start-up and memory
    # mapping cost 23 s of system time). Chunks of subjects per task: one
    # volume takes about 50 ms.
    n_chunks = max(1, min(len(jobs), 8 * effective_n_jobs(n_jobs)))
    bounds = np.linspace(0, len(jobs), n_chunks + 1).astype(int)
    Parallel(n_jobs=n_jobs, prefer="threads")(
        delayed(_write_chunk)(root, jobs[a:b], sites, params)
        for a, b in zip(bounds[:-1], bounds[1:])
        if b > a
    )


def _write_chunk(root: Path, jobs, sites, params: dict) -> None:
    seed = params["random_state"]
    grids = {}
    for i, site_of, radii, n_calcium, rel in jobs:
        site = sites[site_of]
        grid = grids.setdefault(site_of, _grid(site))
        ct_rng = np.random.default_rng(np.random.SeedSequence([seed, 2, i]))
        var_rng = np.random.default_rng(np.random.SeedSequence([seed, 3, i]))
        var = _patient_variation(var_rng, params["ct_variation"])
        volume = _render_ct(ct_rng, site, grid, radii, n_calcium, var)
        _write_nifti(volume, site.spacing, root / rel)


def _write_tables(root: Path, d: dict, sites, shards, codes, params: dict) -> None:
    """cohort.csv, oracle.csv, the MEDS root and README.md."""
    pred_time = pd.Series(
        (_EPOCH + d["index_us"].astype("timedelta64[us]")).astype("datetime64[s]")
    )
    iso = pred_time.dt.strftime("%Y-%m-%dT%H:%M:%S")
    site_name = np.array([sites[k].name for k in d["site_of"]], dtype=object)
    pd.DataFrame(
        {
            "subject_id": d["subject_id"],
            "prediction_time": iso,
            "ct": d["ct_rel"],
            "event": d["event"].astype(int),
            "time": np.round(d["time"], 6),
            "site": site_name,
            "split": d["split"],
        }
    ).to_csv(root / "cohort.csv", index=False)
    pd.DataFrame(
        {
            "subject_id": d["subject_id"],
            "prediction_time": iso,
            "log_hazard": np.round(d["log_hazard"], 10),
            "ct_part": np.round(d["ct_part"], 10),
            "ehr_part": np.round(d["ehr_part"], 10),
        }
    ).to_csv(root / "oracle.csv", index=False)
    meds_split = np.where(
        d["site_of"] == 1, "external", np.where(d["split"] == "train", "train", "held_out")
    )
    _write_meds(
        root / "meds",
        shards,
        codes,
        pd.DataFrame({"subject_id": d["subject_id"], "split": meds_split.astype(str)}),
        params,
    )
    (root / "README.md").write_text(
        "# Synthetic CT + EHR survival cohort\n\n"
        "Written by `multimodal_surv.datasets.make_synthetic_cohort`; format in "
        "docs/cohort_format.md, generator in docs/synthetic_cohort.md.\n\n"
        "```json\n" + json.dumps(params, indent=2, sort_keys=True) + "\n```\n"
    )
