"""The results table, its Markdown view, the headline and the run metadata."""

from __future__ import annotations

import platform

import numpy as np
import pandas as pd

__all__ = ["build_table", "headline", "markdown_table", "to_markdown", "verdict_of"]

#: Column order of one site's metrics (each with `` lo`` / `` hi`` where it has a CI).
SITE_COLUMNS = (
    "C", "C lo", "C hi", "dC", "dC lo", "dC hi", "dC simult lo", "dC simult hi",
    "p raw", "p (Holm)", "Uno C", "Uno C lo", "Uno C hi",
)  # fmt: skip
TAIL_COLUMNS = (
    "mean AUC", "mean AUC lo", "mean AUC hi", "IBS", "IBS lo", "IBS hi",
    "cal slope", "cal slope lo", "cal slope hi", "D-cal p",
)  # fmt: skip


def build_table(specs, preds, cv, sites):
    """One row per model: role, selection CV C, then every metric of each site."""
    rows = []
    for name in preds:
        spec = specs.get(name)
        row = {"model": name, "role": spec.role if spec else "reference"}
        row["selection CV C"] = cv.loc[name, "cv_C"] if name in cv.index else np.nan
        row["selection CV C sd"] = cv.loc[name, "cv_C_sd"] if name in cv.index else np.nan
        for site, (scores, info) in sites.items():
            values = scores[name]
            auc = sorted((k for k in values if k.startswith("AUC@")), key=_auc_order)
            for col in (*SITE_COLUMNS, *auc, *TAIL_COLUMNS):
                row[f"{site} {col}"] = values.get(col, np.nan)
            row[f"{site} n"] = info["n"]
            row[f"{site} events"] = info["events"]
            row[f"{site} flag"] = "; ".join(info["flags"])
        rows.append(row)
    return pd.DataFrame(rows)


def _auc_order(key):
    # "AUC@365d" / "AUC@365d lo" / "AUC@365d hi": by horizon, point first
    head, *rest = key.split(" ")
    return float(head[4:-1]), {"lo": 1, "hi": 2}.get(rest[0], 0) if rest else 0


def _ci(point, lo, hi, signed=False):
    if not np.isfinite(point):
        return ""
    fmt = "{:+.3f}" if signed else "{:.3f}"
    text = fmt.format(point)
    if np.isfinite(lo) and np.isfinite(hi):
        text += f" [{fmt.format(lo)}, {fmt.format(hi)}]"
    return text


def _num(value, digits=3):
    return "" if not np.isfinite(value) else f"{value:.{digits}f}"


def site_view(table, site):
    """The readable columns of one site (what ``table.md`` shows)."""
    t = table
    view = pd.DataFrame({"model": t["model"], "role": t["role"]})
    view["selection CV C"] = [_num(v) for v in t["selection CV C"]]
    view["C [95% CI]"] = [
        _ci(*v) for v in zip(t[f"{site} C"], t[f"{site} C lo"], t[f"{site} C hi"])
    ]
    fusion = (t["role"] == "fusion").to_numpy()
    lo = np.where(fusion, t[f"{site} dC simult lo"], t[f"{site} dC lo"])
    hi = np.where(fusion, t[f"{site} dC simult hi"], t[f"{site} dC hi"])
    view["ΔC vs selected unimodal [CI]*"] = [
        _ci(p, a, b, signed=True) for p, a, b in zip(t[f"{site} dC"], lo, hi)
    ]
    view["p (Holm)"] = [_num(v) for v in t[f"{site} p (Holm)"]]
    for col, label in (("Uno C", "Uno C"), ("mean AUC", "mean AUC"), ("IBS", "IBS")):
        view[label] = [_num(v) for v in t[f"{site} {col}"]]
    view["cal. slope"] = [_num(v, 2) for v in t[f"{site} cal slope"]]
    view["D-cal p"] = [_num(v) for v in t[f"{site} D-cal p"]]
    return view


def markdown_table(frame):
    """A GitHub-flavoured Markdown table (NaN shown as empty cells)."""
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in frame.iterrows():
        cells = ["" if (isinstance(v, float) and np.isnan(v)) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_markdown(table, summary=None):
    """``table.md``: the headline, then one readable table per test site."""
    parts = []
    if summary and summary.get("headline"):
        parts.append(summary["headline"] + "\n")
    sites = [c[: -len(" C")] for c in table.columns if c.endswith(" C") and " " not in c[:-2]]
    for site in sites:
        flag = next((f for f in table[f"{site} flag"] if f), "")
        title = f"### {site.capitalize()} test set"
        title += f" (n = {table[f'{site} n'].iloc[0]}, {table[f'{site} events'].iloc[0]} events)"
        parts.append(title + (f"\n\n**Flagged: {flag}.**" if flag else ""))
        parts.append(markdown_table(site_view(table, site)))
    parts.append(
        "\\* ΔC: paired subject-level bootstrap; fusion rows show simultaneous "
        "(weighted Bonferroni) intervals over the fusion rows, the other rows 95 % "
        "intervals. p (Holm): weighted-Holm-corrected across the fusion rows. The "
        "selected fusion model carries half of the 5 % error rate, the other fusion "
        "rows share the other half. Uno C at the last horizon; "
        "mean AUC over the horizons; IBS between the first and last horizon; "
        "cal. slope 1 = calibrated; D-cal p: D-calibration test."
    )
    return "\n\n".join(parts) + "\n"


def headline(chosen, cv, sites, k, preds):
    """The selection, the headline difference and the sentence that states them."""
    uni, fus = chosen["unimodal"], chosen["fusion"]
    summary = {
        "selection": f"{k}-fold subject-grouped CV on the training rows, mean Harrell's C",
        "selected_unimodal": uni,
        "selected_unimodal_cv_C": float(cv.loc[uni, "cv_C"]) if uni else np.nan,
        "selected_fusion": fus,
        "selected_fusion_cv_C": float(cv.loc[fus, "cv_C"]) if fus else np.nan,
    }
    lines = []
    if uni and fus:
        lines.append(
            f"Selected by {k}-fold subject-grouped cross-validation on the training rows "
            f"(mean Harrell's C): unimodal '{uni}' ({summary['selected_unimodal_cv_C']:.3f}), "
            f"fusion '{fus}' ({summary['selected_fusion_cv_C']:.3f})."
        )
    detected = None
    for site, (scores, info) in sites.items():
        summary[f"{site}_flags"] = info["flags"]
        if not (uni and fus):
            continue
        row = scores[fus]
        lo, hi = row["dC simult lo"], row["dC simult hi"]
        summary.update(
            {
                f"{site}_dC": row["dC"],
                f"{site}_dC_simult_ci": [lo, hi],
                f"{site}_p_holm": row["p (Holm)"],
            }
        )
        verdict = verdict_of(lo, hi, row["p (Holm)"], info["flags"])
        if site == "internal":
            detected = verdict == "gain detected"
        lines.append(
            f"{site.capitalize()} test: ΔC = {row['dC']:+.3f} [{lo:+.3f}, {hi:+.3f}] "
            f"(95 % CI corrected over the fusion rows), Holm-corrected p = "
            f"{row['p (Holm)']:.3f}: {verdict}."
        )
    summary["gain_detected"] = detected
    if "Oracle (true log-hazard)" in preds and "internal" in sites:
        scores = sites["internal"][0]
        oracle = scores["Oracle (true log-hazard)"]["C"]
        best = max(scores[n]["C"] for n in (uni, fus) if n)
        summary["oracle_C"] = oracle
        summary["share_of_oracle_margin"] = (best - 0.5) / (oracle - 0.5)
    summary["headline"] = "\n".join(lines)
    return summary


def verdict_of(lo, hi, p_holm, flags, alpha=0.05):
    """The headline's words for a difference with simultaneous CI ``[lo, hi]``.

    A gain (or a loss) is claimed only on a test set that is not flagged,
    when the corrected CI excludes 0 and the Holm-corrected p-value is below
    ``alpha``.
    """
    if flags:
        return "flagged (" + "; ".join(flags) + "): too uncertain, no gain claimed"
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo <= 0 <= hi:
        return "no gain detected (the corrected CI contains 0)"
    if not (np.isfinite(p_holm) and p_holm < alpha):
        return f"no gain detected (Holm-corrected p = {p_holm:.3f} >= {alpha})"
    return "gain detected" if lo > 0 else "fusion worse than the selected unimodal model"


def metadata(options, seconds):
    """Options, versions and wall time of a run (``metadata.json``)."""
    import monai
    import sklearn
    import skorch
    import sksurv
    import torch
    import transformers

    from .. import __version__

    return {
        **options,
        "wall_time_s": round(seconds, 1),
        "multimodal_surv": __version__,
        "python": platform.python_version(),
        "versions": {
            m.__name__: m.__version__
            for m in (np, pd, torch, sklearn, sksurv, skorch, monai, transformers)
        },
    }
