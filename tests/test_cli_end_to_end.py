"""`multimodal-surv benchmark --quick` end to end, through the CLI's public behaviour.

A small synthetic cohort (written by the CLI itself), the whole pipeline:
encoders, unimodal and fusion estimators, selection by cross-validation, the
bootstrap table and the figures. The check is what a user sees: the exit code,
the headline, the warnings and the files written.
"""

import warnings

import pandas as pd
import pytest

from multimodal_surv.cli import main

OUTPUTS = ("table.md", "table.csv", "calibration.csv", "metadata.json")
FIGURES = ("forest.png", "calibration.png", "kaplan_meier.png")


def test_benchmark_quick_end_to_end_on_three_rows(tmp_path, capsys):
    # The default suite's size: 80 subjects, three rows (CT, EHR counts, late
    # fusion), 2 selection folds; about a CPU-minute, most of it CT pretraining.
    out = tmp_path / "run"
    args = ["benchmark", "--quick", "--n-subjects", "80", "--fusion-ehr", "counts"]
    args += ["--models", "ct-only,ehr-counts-only,late-fusion", "--selection-folds", "2"]
    args += ["--bootstrap", "20", "--no-progress", "--out", str(out)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(args) == 0
    printed = capsys.readouterr().out
    assert "Selected by 2-fold subject-grouped cross-validation" in printed
    assert "no gain claimed" in printed  # 80 subjects: every test set is flagged
    table = pd.read_csv(out / "table.csv")
    assert {"CT only", "EHR counts only", "Late fusion"} <= set(table["model"])
    for name in OUTPUTS + FIGURES:
        assert (out / name).stat().st_size > 0, name
    # The selection folds' warnings come once per model, with the fold count.
    fold_warnings = [str(w.message) for w in caught if "selection folds" in str(w.message)]
    assert len([m for m in fold_warnings if m.startswith("CT only,")]) == 1, fold_warnings


# The full row set (14 models, 5 selection folds, both EHR embeddings): several
# CPU-minutes on a 2-core machine, so it runs in `make test-all`.
@pytest.mark.slow
def test_benchmark_quick_runs_end_to_end_on_a_small_synthetic_cohort(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["benchmark", "--quick", "--n-subjects", "120", "--bootstrap", "20"]
    assert main([*args, "--no-progress", "--out", str(out)]) == 0
    table = pd.read_csv(out / "table.csv")
    assert len(table) >= 6  # unimodal baselines and the four fusion strategies
    c_columns = [c for c in table if c.strip().startswith(("internal C", "external C"))]
    assert c_columns and table[c_columns[0]].between(0, 1).all()
    assert table["model"].str.startswith("Adaptive (chosen: ").sum() == 1
    assert "## Modality report" in (out / "modality_report.md").read_text()
    assert "| model |" in capsys.readouterr().out
