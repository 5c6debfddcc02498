"""Acceptance of AdaptiveFusionSurvival on the library's synthetic cohort.

The slow tests run ``benchmarks/adaptive_acceptance.py`` as its results page
was made (``make_synthetic_cohort`` at balance 0, 0.5 and 1, 800 subjects,
``EHRCountEncoder`` and the simulated CT embedding of
``benchmarks/_adaptive_data.py``, the library's default folds and training;
about two CPU-hours) on seeds 101-103, which were used for nothing else; the
defaults and the simulated-CT noise were set on seeds 90 and 91. The quick
subset uses 400 subjects, seed 101 and the cheap candidates."""

import sys
from pathlib import Path

import pytest

from multimodal_surv import modality_report

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import adaptive_acceptance as acc  # noqa: E402
from _adaptive_data import TUNING_SEEDS, cohort_embeddings  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*reached max_epochs:UserWarning")

ACCEPTANCE_SEEDS = (101, 102, 103)
BALANCES = (0.0, 0.5, 1.0)
assert ACCEPTANCE_SEEDS == acc.ACCEPTANCE_SEEDS and BALANCES == acc.BALANCES
assert not set(ACCEPTANCE_SEEDS) & set(TUNING_SEEDS)


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory):
    cache = tmp_path_factory.mktemp("adaptive_cohorts")
    results = {}
    for seed in ACCEPTANCE_SEEDS:
        for balance in BALANCES:
            X, y, train = acc.encode(800, balance, seed, cache, ct="simulated")
            results[balance, seed] = acc.run_cohort(X, y, train, seed)
    table, verdicts = acc.checks(results)
    print(table.to_markdown(index=False))
    return verdicts


@pytest.mark.slow
def test_adaptive_is_never_much_worse_than_the_best_fixed_model(verdicts):
    assert verdicts["C within margins on every cohort"]


@pytest.mark.slow
def test_one_dominant_modality_gives_a_simple_model(verdicts):
    assert verdicts["simple choice at balance 0 and 1 in >= 2 of 3 seeds"]


@pytest.mark.slow
def test_balance_index_follows_the_ct_share(verdicts):
    assert verdicts["CT share orders 0 < 0.5 < 1 on every seed"]


def test_quick_subset_balance_index_and_simple_choice(tmp_path):
    """Default-suite subset: 400 subjects, the cheap candidates, one seed."""
    shares = []
    for balance in BALANCES:
        X, y, train = cohort_embeddings(400, balance, ACCEPTANCE_SEEDS[0], cache_dir=tmp_path)
        report = modality_report(
            X[train], y[train], cv=3, candidate_params={"max_epochs": 60}, random_state=0
        )
        shares.append(report.balance["ct"])
        if balance != 0.5:
            simple = {"ct_only", "ehr_only", "ct_only_linear", "ehr_only_linear", "linear", "late"}
            assert report.recommended in simple
    assert shares[0] < shares[1] < shares[2], shares
