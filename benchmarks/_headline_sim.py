"""Simulated test sets for the benchmark headline's error rates (no model is trained).

Used by ``benchmarks/benchmark_power.py`` and ``tests/test_benchmark_protocol.py``.

Each test set has ``n`` subjects (one row each) with a true log-hazard ``z``;
every model's risk is ``z`` plus independent normal noise. The selected
unimodal model and every fusion row but one have noise ``SIGMA_NULL``; the
first fusion row (the selected fusion model, chosen off the test set) has
``SIGMA_GAIN`` when the set carries a gain, else ``SIGMA_NULL`` (the null:
every model equally good). Each set is scored by the benchmark's own code:
``score_c`` (paired subject bootstrap, simultaneous CIs, Holm),
``site_flags`` and ``verdict_of``; a "detection" is the headline's
"gain detected".

``SIGMA_GAIN = 0.67`` gives a population gain of +0.03 C over
``SIGMA_NULL = 1`` (chosen on seed 123, measured at n = 300,000; the
fast test checks it at n = 100,000 on seed 2024).
"""

from __future__ import annotations

import numpy as np
from joblib import Parallel, delayed
from sksurv.util import Surv

from multimodal_surv.benchmark._clinical import SiteOutcome
from multimodal_surv.benchmark._scores import Predictions, score_c
from multimodal_surv.benchmark._stats import site_flags, subject_bootstrap
from multimodal_surv.benchmark._table import verdict_of

SIGMA_NULL, SIGMA_GAIN = 1.0, 0.67


def test_set(rng, n, gain, n_fusion):
    """Outcome and the risk of every model on one simulated test set."""
    z = rng.normal(size=n)
    t = rng.exponential(np.exp(-z))
    c = rng.exponential(1.5, size=n)
    y = Surv.from_arrays(t <= c, np.minimum(t, c))
    preds = {"uni": Predictions(z + SIGMA_NULL * rng.normal(size=n))}
    for k in range(n_fusion):
        sigma = SIGMA_GAIN if (gain and k == 0) else SIGMA_NULL
        preds[f"fusion{k}"] = Predictions(z + sigma * rng.normal(size=n))
    return y, preds


def detected(seed, n, n_bootstrap, gain, n_fusion):
    """Whether the headline of the test set drawn with ``seed`` says "gain detected"."""
    rng = np.random.default_rng(seed)
    y, preds = test_set(rng, n, gain, n_fusion)
    outcome = SiteOutcome("internal", y, y, np.array([1.0]), 0)
    resamples = subject_bootstrap(np.arange(n), n_bootstrap, rng)
    fusion = [f"fusion{k}" for k in range(n_fusion)]
    rows = score_c(preds, outcome, resamples, reference="uni", fusion=fusion)
    width = max(r["C hi"] - r["C lo"] for r in rows.values())
    flags = site_flags(int(y["event"].sum()), width)
    row = rows["fusion0"]
    words = verdict_of(row["dC simult lo"], row["dC simult hi"], row["p (Holm)"], flags)
    return words == "gain detected"


def detection_rate(seeds, n, n_bootstrap, gain, n_fusion, n_jobs=1):
    """Share of the test sets (one per seed) whose headline says "gain detected"."""
    hits = Parallel(n_jobs=n_jobs)(
        delayed(detected)(int(s), n, n_bootstrap, gain, n_fusion) for s in seeds
    )
    return float(np.mean(hits))


def mc_error(rate, n_sets):
    """Two Monte Carlo standard errors of a rate estimated from ``n_sets`` draws."""
    return 2 * float(np.sqrt(max(rate * (1 - rate), 1e-12) / n_sets))
