"""Files of a benchmark run: tables, calibration deciles, figures, metadata."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ._clinical import calibration_deciles
from ._table import to_markdown

__all__ = ["FIGURES", "calibration_frame", "write_outputs"]

FIGURES = ("forest.png", "calibration.png", "kaplan_meier.png")


def calibration_frame(result, y, masks):
    """Predicted vs Kaplan-Meier observed risk per decile, model, site and horizon."""
    grid = np.asarray(result.summary["grid"])
    rows = []
    for site in ("internal", "external"):
        if site not in masks or not masks[site].any():
            continue
        y_site = y[masks[site]]
        for name, p in result.predictions.items():
            if p.surv is None:
                continue
            for h in result.summary["horizons"]:
                col = int(np.argmin(np.abs(grid - h)))
                for rec in calibration_deciles(y_site, p.surv[masks[site], col], h):
                    rows.append({"model": name, "site": site, "horizon": h, **rec})
    return pd.DataFrame(rows)


def write_outputs(result, data, masks, out):
    """Write ``table.csv``, ``table.md``, ``calibration.csv``, figures and ``metadata.json``.

    With an adaptive row, also its ``modality_report.md``.
    """
    from .._plots import plot_calibration, plot_forest, plot_kaplan_meier

    out = Path(out)
    result.table.to_csv(out / "table.csv", index=False, float_format="%.4f")
    (out / "table.md").write_text(to_markdown(result.table, result.summary))
    if getattr(result, "modality_report", None) is not None:
        (out / "modality_report.md").write_text(result.modality_report.to_markdown())
    calibration = calibration_frame(result, data.y, masks)
    calibration.to_csv(out / "calibration.csv", index=False, float_format="%.4f")
    summary = result.summary
    reference = summary.get("selected_unimodal")
    plot_forest(result.table, reference, out / "forest.png", [summary.get("selected_fusion")])
    shown = [m for m in (summary.get("selected_unimodal"), summary.get("selected_fusion")) if m]
    horizons = summary["horizons"]
    plot_calibration(calibration, shown, horizons[len(horizons) // 2], out / "calibration.png")
    best = summary.get("selected_fusion") or result.table["model"].iloc[-1]
    plot_kaplan_meier(result.risks[best], data.y, masks, best, out / "kaplan_meier.png")
    meta = {**result.metadata, "summary": _jsonable(summary)}
    (out / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
