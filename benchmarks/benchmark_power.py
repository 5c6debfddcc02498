"""Error rates of the benchmark headline: null calibration and power at +0.03 C.

Simulated test sets (``_headline_sim.py``; no model is trained) are scored by
the benchmark's own bootstrap, Holm and flag code. Reported: the share of
test sets whose headline says "gain detected" when every model is equally
good (null: it should be at most 5 %) and when the selected fusion model has
a true +0.03 C gain over the selected unimodal one (power), at n = 720 and at
larger test sets.

Settings: 8 fusion rows with 1000 resamples (the default
``multimodal-surv benchmark``: 8 fusion rows with ``--fusion-ehr both`` and
``--bootstrap 1000``) and 3 fusion rows with 200 resamples (the configuration
of the slow test). The models' errors have the correlation that matches the
demo's paired differences (``ERROR_CORRELATION``, see ``_headline_sim.py``);
the rows with correlation 0 are the worst case, independent errors, as for
two models that share no input. Seeds: null sets 5000-5199; power sets
9000-9199 (n = 720) and 9200 and up (larger n). None of them was used to
choose the simulation's noise levels or correlation (seed 123).

Usage: ``python benchmarks/benchmark_power.py [--quick] [--n-jobs N]``.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
from _common import write_table
from _headline_sim import ERROR_CORRELATION, detection_rate, mc_error

NULL_SEED, POWER_SEED, LARGER_SEED = 5000, 9000, 9200


def _settings(quick):
    """(label, gain, n_fusion, n, n_bootstrap, error correlation, first seed, n_sets)."""
    sets, larger = (20, 10) if quick else (200, 100)
    rho = ERROR_CORRELATION
    return [  # the table is rewritten after each row
        ("+0.03 C", True, 8, 720, 1000, rho, POWER_SEED, sets),
        ("null", False, 8, 720, 1000, rho, NULL_SEED, sets),
        ("+0.03 C", True, 3, 720, 200, rho, POWER_SEED, sets),
        ("null", False, 3, 720, 200, rho, NULL_SEED, sets),
        ("+0.03 C", True, 8, 720, 1000, 0.0, POWER_SEED, sets),
        ("null", False, 8, 720, 1000, 0.0, NULL_SEED, sets),
        ("+0.03 C", True, 8, 1440, 1000, 0.0, LARGER_SEED, larger),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20 sets per row (a smoke run)")
    parser.add_argument("--n-jobs", type=int, default=1, help="parallel processes")
    args = parser.parse_args(argv)
    rows = []
    for label, gain, n_fusion, n, n_boot, rho, seed, n_sets in _settings(args.quick):
        start = time.perf_counter()
        seeds = range(seed, seed + n_sets)
        rate = detection_rate(seeds, n, n_boot, gain, n_fusion, n_jobs=args.n_jobs, rho=rho)
        rows.append(
            {
                "true gain": label,
                "error correlation": f"{rho:.2f}",
                "fusion rows": n_fusion,
                "test n": n,
                "resamples": n_boot,
                "test sets": n_sets,
                "seeds": f"{seed}-{seed + n_sets - 1}",
                '"gain detected"': f"{rate:.3f}",
                "± 2 MC SE": f"{mc_error(rate, n_sets):.3f}",
                "wall s": f"{time.perf_counter() - start:.0f}",
            }
        )
        write_table("benchmark_power", pd.DataFrame(rows), _header(args.quick))


def _header(quick):
    return (
        'Share of simulated test sets whose headline says "gain detected" '
        "(null: every model equally good; +0.03 C: the selected fusion model's "
        "true gain over the selected unimodal one). Error correlation: how much the "
        "models' errors are shared; 0.45 matches the paired differences that "
        "make demo measures, 0 is the worst case (independent errors). One run"
        + (" (--quick)" if quick else "")
        + "."
    )


if __name__ == "__main__":
    main()
