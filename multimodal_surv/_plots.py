"""Figures of the benchmark (matplotlib, written as PNG)."""

from __future__ import annotations

import numpy as np

__all__ = ["plot_calibration", "plot_forest", "plot_kaplan_meier"]

SITE_COLORS = {"internal": "tab:blue", "external": "tab:orange"}


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _sites(table):
    return [s for s in SITE_COLORS if f"{s} C" in table.columns]


def _errorbars(ax, table, site, ypos, offset, cols, label):
    point, lo, hi = (table[f"{site} {c}"].to_numpy(dtype=float) for c in cols)
    ok = np.isfinite(point)
    ax.errorbar(
        point[ok],
        ypos[ok] + offset,
        xerr=[
            point[ok] - np.where(np.isfinite(lo), lo, point)[ok],
            np.where(np.isfinite(hi), hi, point)[ok] - point[ok],
        ],  # fmt: skip
        fmt="o",
        ms=4,
        color=SITE_COLORS[site],
        capsize=2.5,
        label=label,
    )


def plot_forest(table, reference, path, selected=()):
    """Forest plot per test site: C with 95 % CIs, and ΔC against ``reference``.

    ΔC intervals of fusion rows are the simultaneous (weighted Bonferroni) intervals
    the headline uses; other rows show 95 % intervals. Rows named in
    ``selected`` (and ``reference``) are marked as selected.
    """
    plt = _figure()
    sites = _sites(table)
    fig, (ax_c, ax_d) = plt.subplots(
        1, 2, figsize=(12, 0.42 * len(table) + 2.0), sharey=True, width_ratios=[1, 1]
    )
    ypos = np.arange(len(table))[::-1].astype(float)
    offsets = np.linspace(-0.15, 0.15, len(sites)) if len(sites) > 1 else [0.0]
    fusion = (table["role"] == "fusion").to_numpy()
    for site, offset in zip(sites, offsets):
        label = f"{site} test"
        _errorbars(ax_c, table, site, ypos, offset, ("C", "C lo", "C hi"), label)
        d = table.copy()
        for end in ("lo", "hi"):
            d[f"{site} dC {end}"] = np.where(
                fusion, table[f"{site} dC simult {end}"], table[f"{site} dC {end}"]
            )
        _errorbars(ax_d, d, site, ypos, offset, ("dC", "dC lo", "dC hi"), label)
    labels = [
        f"{m}  [{r}]" + ("  (selected)" if m == reference or m in selected else "")
        for m, r in zip(table["model"], table["role"])
    ]
    ax_c.set_yticks(ypos, labels)
    ax_c.axvline(0.5, color="grey", lw=0.8, ls="--")
    ax_c.set_xlabel("Harrell's C (95 % subject-level bootstrap CI)")
    ax_d.axvline(0.0, color="black", lw=0.9)
    ax_d.set_xlabel(
        f"ΔC vs the selected unimodal model\n{reference}\n(fusion rows: simultaneous CI)"
    )
    for ax in (ax_c, ax_d):
        ax.grid(axis="x", alpha=0.3)
    ax_c.legend(loc="upper center", bbox_to_anchor=(1.0, -0.08), ncol=len(sites), frameon=False)
    fig.suptitle("Every model on each test set; selection by cross-validation on training rows")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_calibration(calibration, models, horizon, path):
    """Predicted vs Kaplan-Meier observed event probability per risk decile at ``horizon``.

    One panel per test site; one series per model in ``models`` (error bars:
    the Kaplan-Meier 95 % CI of each decile).
    """
    plt = _figure()
    sites = [s for s in SITE_COLORS if (calibration["site"] == s).any()]
    fig, axes = plt.subplots(1, len(sites), figsize=(5.2 * len(sites), 4.8), squeeze=False)
    markers = ["o", "s", "^", "D"]
    shown = calibration[
        np.isclose(calibration["horizon"], horizon) & calibration["model"].isin(models)
    ]
    # one scale for every panel, up to the next tenth above the largest point
    top = max(shown["predicted"].max(), shown["observed_hi"].max()) if len(shown) else 1.0
    top = min(1.0, np.ceil(10 * top + 0.2) / 10) if np.isfinite(top) else 1.0
    for ax, site in zip(axes[0], sites):
        at = shown[shown["site"] == site]
        for model, marker in zip(models, markers):
            d = at[at["model"] == model]
            if d.empty:
                continue
            err = [d["observed"] - d["observed_lo"], d["observed_hi"] - d["observed"]]
            ax.errorbar(d["predicted"], d["observed"], yerr=np.clip(err, 0, None), fmt=marker,
                        ms=5, capsize=2, label=model, alpha=0.85)  # fmt: skip
        ax.plot([0, top], [0, top], color="grey", ls="--", lw=0.9, label="perfect calibration")
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_xlabel(f"Predicted probability of an event by day {horizon:.0f}")
        ax.set_ylabel("Observed (1 - Kaplan-Meier), per risk decile")
        ax.set_title(f"{site.capitalize()} test set")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(f"Calibration at the middle horizon ({horizon:.0f} days)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_kaplan_meier(risk, y, masks, model_name, path, n_groups=3):
    """Kaplan-Meier curves of predicted-risk tertiles within each test site.

    Estimated with lifelines from (0, 1), with 95 % CIs, censoring ticks and a
    numbers-at-risk table. Groups are cut within each site, so the curves
    show discrimination even where a shifted external site has risks that
    are offset as a whole.
    """
    from lifelines import KaplanMeierFitter
    from lifelines.plotting import add_at_risk_counts

    plt = _figure()
    event_name, time_name = y.dtype.names
    sites = [s for s in ("internal", "external") if s in masks and masks[s].any()]
    labels = ["low risk", "medium risk", "high risk"] if n_groups == 3 else None
    fig, axes = plt.subplots(1, len(sites), figsize=(6.5 * len(sites), 5.6), squeeze=False)
    for ax, site in zip(axes[0], sites):
        mask = masks[site]
        cuts = np.quantile(risk[mask], np.linspace(0, 1, n_groups + 1)[1:-1])
        group = np.digitize(risk[mask], cuts)
        fitters = []
        for g in range(n_groups):
            sel = group == g
            if sel.sum() < 2:
                continue
            name = labels[g] if labels else f"group {g + 1}"
            km = KaplanMeierFitter(label=name).fit(
                y[time_name][mask][sel], y[event_name][mask][sel]
            )
            km.plot_survival_function(ax=ax, show_censors=True, ci_show=True,
                                      censor_styles={"ms": 4, "marker": "|"})  # fmt: skip
            fitters.append(km)
        ax.set_xlabel("Time since index scan (days)")
        ax.set_ylabel("Survival probability")
        ax.set_ylim(0, 1.02)
        ax.set_xlim(left=0)
        ax.set_title(f"{site.capitalize()} test set")
        ax.legend(loc="upper right")
        ax.grid(alpha=0.3)
        if fitters:
            add_at_risk_counts(*fitters, ax=ax, rows_to_show=["At risk"])
    fig.suptitle(f"Kaplan-Meier by predicted risk tertile: {model_name}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
