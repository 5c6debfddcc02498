"""Invalid events of real EHR extracts: which they are, and how they are reported.

Every real extract holds a few events that cannot be true: dated before the
subject's ``MEDS_BIRTH``, after its ``MEDS_DEATH``, exact duplicates (same
subject, time, code and value), or without a code. :func:`find_invalid` marks
them (vectorised, one pass); the encoders drop them by default with one
counted warning, or refuse them with ``on_invalid="raise"``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["INVALID_KINDS", "InvalidEventsReport", "encode_codes", "find_invalid"]

#: The MEDS code of a subject's birth.
BIRTH_CODE = "MEDS_BIRTH"
#: The MEDS code of a subject's death.
DEATH_CODE = "MEDS_DEATH"

#: Kinds of invalid events, in reporting order, with their description.
INVALID_KINDS = {
    "null_code": "null or empty code",
    "before_birth": f"dated before the subject's {BIRTH_CODE}",
    "after_death": f"dated after the subject's {DEATH_CODE}",
    "duplicate": "exact duplicate (same subject, time, code and numeric_value)",
}


def encode_codes(code: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``(code_ids, codes)``: sorted unique codes and each event's index into them.

    Null codes and codes that are empty or only blanks get id -1. Hash-based
    (``pandas.factorize`` or the categorical codes), so the cost grows with
    the number of events, not with sorting them as strings; only the distinct
    codes are sorted.
    """
    if isinstance(code.dtype, pd.CategoricalDtype):
        ids = code.cat.codes.to_numpy()
        uniques = code.cat.categories
    else:
        ids, uniques = pd.factorize(code, use_na_sentinel=True)
    uniques = np.asarray(uniques.astype(str), dtype=object)
    blank = np.fromiter((not u.strip() for u in uniques), bool, uniques.size)
    order = np.argsort(uniques, kind="stable")
    order = order[~blank[order]]
    remap = np.full(uniques.size + 1, -1, np.int32)  # last slot: the -1 sentinel
    remap[order] = np.arange(order.size, dtype=np.int32)
    return remap[ids], uniques[order]


def _subject_bounds(sid: np.ndarray) -> np.ndarray:
    """Start of each subject's run in ``sid`` (sorted), plus ``sid.size``."""
    if sid.size == 0:
        return np.zeros(1, np.int64)
    brk = np.flatnonzero(sid[1:] != sid[:-1]) + 1
    return np.concatenate([[0], brk, [sid.size]]).astype(np.int64)


def _per_subject_time(codes, code_ids, t, static, starts, name, reduce):
    """Each subject's earliest / latest dated ``name`` event (or None when absent)."""
    j = int(np.searchsorted(codes, name))
    if j >= codes.size or codes[j] != name:
        return None
    ev = np.flatnonzero((code_ids == j) & ~static)
    if ev.size == 0:
        return None
    sub = np.searchsorted(starts, ev, side="right") - 1
    lo, hi = np.iinfo(np.int64).min, np.iinfo(np.int64).max
    out = np.full(starts.size - 1, hi if reduce is np.minimum else lo, np.int64)
    reduce.at(out, sub, t[ev])
    # Subjects without the event: a bound no event time crosses.
    absent = np.ones(out.size, bool)
    absent[sub] = False
    out[absent] = lo if reduce is np.minimum else hi
    return out


def find_invalid(sid, t, code_ids, val, codes, static_time) -> dict[str, np.ndarray]:
    """Masks of the invalid events of each kind (disjoint, in :data:`INVALID_KINDS` order).

    ``sid``/``t`` must be sorted by subject, then time (stable). Static
    (null-time) events are never before birth or after death. With several
    birth (death) events the earliest birth (latest death) counts, so the
    fewest events are dropped. Of exact duplicates the first is kept.
    """
    n = sid.size
    static = t == static_time
    out = {kind: np.zeros(n, bool) for kind in INVALID_KINDS}
    out["null_code"] = code_ids < 0
    bad = out["null_code"].copy()
    starts = _subject_bounds(sid)
    counts = np.diff(starts)
    birth = _per_subject_time(codes, code_ids, t, static, starts, BIRTH_CODE, np.minimum)
    if birth is not None:
        out["before_birth"] = ~bad & ~static & (t < np.repeat(birth, counts))
        bad |= out["before_birth"]
    death = _per_subject_time(codes, code_ids, t, static, starts, DEATH_CODE, np.maximum)
    if death is not None:
        out["after_death"] = ~bad & ~static & (t > np.repeat(death, counts))
        bad |= out["after_death"]
    out["duplicate"] = _duplicates(sid, t, code_ids, val, bad)
    return out


def _duplicates(sid, t, code_ids, val, bad) -> np.ndarray:
    """Events equal to an earlier one in (subject, time, code, value), not in ``bad``.

    Duplicates share a (subject, time) run of the sorted events and a code: a
    stable sort of ``run * n_codes + code`` (nearly sorted already, so cheap)
    finds the few events that share both; only those are compared with their
    values, exactly, by pandas. The first of each duplicate group is kept.
    """
    n = sid.size
    out = np.zeros(n, bool)
    if n < 2:
        return out
    new_run = np.concatenate([[True], (sid[1:] != sid[:-1]) | (t[1:] != t[:-1])])
    key = (np.cumsum(new_run) - 1) * (int(code_ids.max()) + 2) + (code_ids + 1)
    key[bad] = -1 - np.arange(int(bad.sum()))  # distinct: never a duplicate
    order = np.argsort(key, kind="stable")
    same = key[order][1:] == key[order][:-1]
    shared = np.zeros(n, bool)
    shared[1:] |= same
    shared[:-1] |= same
    cand = np.sort(order[shared])  # table order, so "first" is the earlier row
    if cand.size < 2:
        return out
    v = val[cand]
    bits = np.where(np.isnan(v), np.int64(-1), v.view(np.int64))
    dup = pd.DataFrame({"k": key[cand], "v": bits}).duplicated(keep="first").to_numpy()
    out[cand[dup]] = True
    return out


class InvalidEventsReport:
    """Counts of invalid events per kind, with the first example of each.

    Built from the dropped events recorded on
    :class:`~multimodal_surv.datasets._events.EventArrays` (``invalid``),
    restricted to the subjects an encoder reads; several chunks add up.
    """

    def __init__(self):
        self.counts = dict.fromkeys(INVALID_KINDS, 0)
        self.first: dict[str, str] = {}

    def add(self, invalid: dict, subjects=None) -> None:
        """Add the dropped events of ``invalid`` (kind -> DataFrame), optionally of ``subjects``."""
        for kind, rows in (invalid or {}).items():
            if subjects is not None:
                rows = rows[np.isin(rows["subject_id"].to_numpy(), subjects)]
            if len(rows) == 0:
                continue
            self.counts[kind] += len(rows)
            if kind not in self.first:
                r = rows.iloc[0]
                code = "null" if r["code"] is None else repr(r["code"])
                time = "static" if pd.isna(r["time"]) else str(r["time"])
                self.first[kind] = f"subject_id={int(r['subject_id'])}, code {code} at {time}"

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def describe(self) -> str:
        """``"3 dated before ... (first: ...); 1 exact duplicate ..."``."""
        return "; ".join(
            f"{n} {INVALID_KINDS[kind]} (first: {self.first[kind]})"
            for kind, n in self.counts.items()
            if n
        )
