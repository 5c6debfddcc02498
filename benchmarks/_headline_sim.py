"""Simulated test sets for the benchmark headline's error rates (no model is trained).

Used by ``benchmarks/benchmark_power.py`` and ``tests/test_benchmark_protocol.py``.

Each test set has ``n`` subjects (one row each) with a true log-hazard ``z``;
every model's risk is ``z`` plus normal noise. The selected unimodal model and
every fusion row but one have noise ``SIGMA_NULL``; the first fusion row (the
selected fusion model, chosen off the test set) has ``SIGMA_GAIN`` when the
set carries a gain, else ``SIGMA_NULL`` (the null: every model equally good).

The models' errors are correlated: each model's noise is
``sqrt(rho) * shared + sqrt(1 - rho) * own``, both standard normal. A fusion
model sees the unimodal model's inputs, so its errors are partly the same;
with ``rho = 0`` (independent errors, as for two models of different
modalities) the paired difference of C is the noisiest it can be.
``ERROR_CORRELATION = 0.45`` makes the standard deviation of the paired
difference at n = 720 (0.0104 over 600 simulated sets, seed 123) equal to the
one ``make demo`` measured between its fusion rows and the selected unimodal
model: the median over the 8 fusion rows and both test sites of the
bootstrap 95 % CI width / 3.92, external widths scaled to n = 720, is 0.0103
(internal 0.0096-0.0109, external 0.0097-0.0140). Those demo gains are about
+0.09 C; a model with a smaller gain shares more with the unimodal one, so
this correlation is, if anything, too low for a +0.03 gain.

Each set is scored by the benchmark's own code: ``score_c`` (paired subject
bootstrap, simultaneous CIs, Holm), ``site_flags`` and ``verdict_of``, with the
first fusion row as the selected one (half of the error rate); a
"detection" is the headline's "gain detected".

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
ERROR_CORRELATION = 0.45


def test_set(rng, n, gain, n_fusion, rho=ERROR_CORRELATION):
    """Outcome and the risk of every model on one simulated test set."""
    z = rng.normal(size=n)
    t = rng.exponential(np.exp(-z))
    c = rng.exponential(1.5, size=n)
    y = Surv.from_arrays(t <= c, np.minimum(t, c))
    shared = rng.normal(size=n)

    def risk(sigma):
        return z + sigma * (np.sqrt(rho) * shared + np.sqrt(1 - rho) * rng.normal(size=n))

    preds = {"uni": Predictions(risk(SIGMA_NULL))}
    for k in range(n_fusion):
        sigma = SIGMA_GAIN if (gain and k == 0) else SIGMA_NULL
        preds[f"fusion{k}"] = Predictions(risk(sigma))
    return y, preds


def detected(seed, n, n_bootstrap, gain, n_fusion, rho=ERROR_CORRELATION):
    """Whether the headline of the test set drawn with ``seed`` says "gain detected"."""
    rng = np.random.default_rng(seed)
    y, preds = test_set(rng, n, gain, n_fusion, rho)
    outcome = SiteOutcome("internal", y, y, np.array([1.0]), 0)
    resamples = subject_bootstrap(np.arange(n), n_bootstrap, rng)
    fusion = [f"fusion{k}" for k in range(n_fusion)]
    rows = score_c(preds, outcome, resamples, reference="uni", fusion=fusion, primary="fusion0")
    width = max(r["C hi"] - r["C lo"] for r in rows.values())
    flags = site_flags(int(y["event"].sum()), width)
    row = rows["fusion0"]
    words = verdict_of(row["dC simult lo"], row["dC simult hi"], row["p (Holm)"], flags)
    return words == "gain detected"


def detection_rate(seeds, n, n_bootstrap, gain, n_fusion, n_jobs=1, rho=ERROR_CORRELATION):
    """Share of the test sets (one per seed) whose headline says "gain detected"."""
    hits = Parallel(n_jobs=n_jobs)(
        delayed(detected)(int(s), n, n_bootstrap, gain, n_fusion, rho) for s in seeds
    )
    return float(np.mean(hits))


def mc_error(rate, n_sets):
    """Two Monte Carlo standard errors of a rate estimated from ``n_sets`` draws."""
    return 2 * float(np.sqrt(max(rate * (1 - rate), 1e-12) / n_sets))
