import numpy as np
import pytest
from sksurv.metrics import concordance_index_censored

from multimodal_surv import metrics
from multimodal_surv.metrics import concordance_index

PAIRWISE_MAX_N = metrics._PAIRWISE_MAX_N


@pytest.fixture(params=["pairwise", "dominance counting"], autouse=True)
def path(request, monkeypatch):
    """Every test runs on both code paths (small n compares all pairs)."""
    if request.param == "dominance counting":
        monkeypatch.setattr(metrics, "_PAIRWISE_MAX_N", 0)
    return request.param


@pytest.mark.parametrize("seed", range(20))
def test_equals_scikit_survival_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 400))
    time = rng.integers(1, max(2, n // 4), size=n).astype(float)
    event = rng.random(n) < rng.uniform(0.1, 0.9)
    event[0] = True
    risk = rng.integers(0, 6, size=n).astype(float) if seed % 2 else rng.normal(size=n)
    expected = concordance_index_censored(event, time, risk)[0]
    assert abs(concordance_index(event, time, risk) - expected) < 1e-12


def test_tolerance_of_risk_ties_follows_scikit_survival():
    rng = np.random.default_rng(0)
    time = rng.exponential(size=300)
    event = rng.random(300) < 0.5
    risk = np.round(rng.normal(size=300), 1) + rng.uniform(-1e-9, 1e-9, size=300)
    expected = concordance_index_censored(event, time, risk, tied_tol=1e-8)[0]
    assert abs(concordance_index(event, time, risk, tied_tol=1e-8) - expected) < 1e-12


def test_perfect_and_reversed():
    time = np.arange(1.0, 11.0)
    event = np.ones(10, dtype=bool)
    assert concordance_index(event, time, -time) == 1.0
    assert concordance_index(event, time, time) == 0.0
    assert concordance_index(event, time, np.zeros(10)) == 0.5


def test_errors():
    with pytest.raises(ValueError, match="same length"):
        concordance_index([True, False], [1.0, 2.0], [0.1])
    with pytest.raises(ValueError, match="All samples are censored"):
        concordance_index([False, False], [1.0, 2.0], [0.1, 0.2])
    with pytest.raises(ValueError, match="estimate contains NaN"):
        concordance_index([True, False], [1.0, 2.0], [np.nan, 0.2])
    with pytest.raises(ValueError, match="no comparable pairs"):
        concordance_index([False, True], [1.0, 2.0], [0.1, 0.2])


def test_both_paths_agree_across_the_size_threshold():
    rng = np.random.default_rng(7)
    n = PAIRWISE_MAX_N + 50
    time = rng.integers(1, 60, size=n).astype(float)
    event = rng.random(n) < 0.4
    risk = np.round(rng.normal(size=n), 1)
    expected = concordance_index_censored(event, time, risk)[0]
    for size in (PAIRWISE_MAX_N, n):  # below and above the threshold
        got = concordance_index(event[:size], time[:size], risk[:size])
        assert (
            abs(got - concordance_index_censored(event[:size], time[:size], risk[:size])[0]) < 1e-12
        )
    assert abs(concordance_index(event, time, risk) - expected) < 1e-12
