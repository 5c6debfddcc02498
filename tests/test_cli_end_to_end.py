"""`multimodal-surv benchmark --quick` end to end, through the CLI's public behaviour.

A small synthetic cohort (written by the CLI itself), the whole pipeline:
encoders, unimodal and fusion estimators, bootstrap table. The check is what a
user sees: the exit code and the files written.
"""

import pandas as pd
import pytest

from multimodal_surv.cli import main


# Over 8 CPU-minutes on the shared 2-core machine (CT and EHR pretraining
# included): too long for the default suite, so it runs in `make test-all`.
@pytest.mark.slow
def test_benchmark_quick_runs_end_to_end_on_a_small_synthetic_cohort(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["benchmark", "--quick", "--n-subjects", "120", "--bootstrap", "20"]
    assert main([*args, "--no-progress", "--out", str(out)]) == 0
    table = pd.read_csv(out / "table.csv")
    assert len(table) >= 6  # unimodal baselines and the four fusion strategies
    c_columns = [c for c in table if c.strip().startswith(("internal C", "external C"))]
    assert c_columns and table[c_columns[0]].between(0, 1).all()
    assert "| model |" in capsys.readouterr().out
