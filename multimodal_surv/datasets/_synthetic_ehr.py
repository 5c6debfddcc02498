"""EHR rendering of the synthetic cohort: MEDS events of each subject and their files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ._synthetic_latent import (
    _AF_CODE,
    _AF_MEDS,
    _CONDITIONS,
    _CREAT,
    _CREAT_SI,
    _CREAT_SI_FACTOR,
    _YEAR,
    _Site,
)

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

    _add_labs(ev, rng, site, s, i, contacts, start)
    ev.add(0.0, "CPT4/71260")  # the index scan itself, at prediction_time
    ev.add(-age_years * _YEAR, "MEDS_BIRTH")
    if event:
        ev.add(follow_days, "MEDS_DEATH")
    return ev


def _add_labs(ev: _Events, rng, site: _Site, s: dict, i: int, contacts, start: float) -> None:
    """Labs and vitals of subject ``i`` at its contacts; creatinine follows its trajectory."""
    present = s["present"][i]
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
