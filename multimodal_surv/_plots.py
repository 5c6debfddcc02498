"""Figures of the benchmark (matplotlib, written as PNG)."""

from __future__ import annotations

import re

import numpy as np

__all__ = ["plot_cindex", "plot_kaplan_meier"]


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _parse_ci(cell):
    point, lo, hi = map(float, re.findall(r"[-+]?\d*\.\d+|\d+", cell)[:3])
    return point, lo, hi


def plot_cindex(table, path):
    """Horizontal dot plot of C-index with 95 % CIs per model and test site."""
    plt = _figure()
    sites = [c for c in table.columns if c.endswith("C [95% CI]")]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(table) + 1.5))
    ypos = np.arange(len(table))[::-1]
    offsets = np.linspace(-0.15, 0.15, len(sites)) if len(sites) > 1 else [0.0]
    for site, offset, color in zip(sites, offsets, ["tab:blue", "tab:orange"]):
        values = np.array([_parse_ci(c) for c in table[site]])
        ax.errorbar(
            values[:, 0],
            ypos + offset,
            xerr=[values[:, 0] - values[:, 1], values[:, 2] - values[:, 0]],
            fmt="o",
            color=color,
            capsize=3,
            label=site.split(" ")[0] + " test",
        )
    ax.axvline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_yticks(ypos, table["model"])
    ax.set_xlabel("Harrell's C-index (95 % bootstrap CI)")
    ax.set_title("Unimodal vs fusion models")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=len(sites), frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_kaplan_meier(risk, y, masks, model_name, path, n_groups=3):
    """Kaplan-Meier curves of predicted-risk tertiles within each test site.

    Groups are cut within each site, so the curves show discrimination (what
    the C-index measures) even where a shifted external site has risks that
    are offset as a whole.
    """
    from sksurv.nonparametric import kaplan_meier_estimator

    plt = _figure()
    event_name, time_name = y.dtype.names
    sites = [s for s in ("internal", "external") if masks[s].any()]
    labels = ["low risk", "medium risk", "high risk"] if n_groups == 3 else None
    fig, axes = plt.subplots(1, len(sites), figsize=(5.5 * len(sites), 4.2), squeeze=False)
    for ax, site in zip(axes[0], sites):
        mask = masks[site]
        cuts = np.quantile(risk[mask], np.linspace(0, 1, n_groups + 1)[1:-1])
        group = np.digitize(risk[mask], cuts)
        for g in range(n_groups):
            sel = group == g
            if sel.sum() < 2:
                continue
            t, s = kaplan_meier_estimator(y[event_name][mask][sel], y[time_name][mask][sel])
            name = labels[g] if labels else f"group {g + 1}"
            ax.step(t, s, where="post", label=f"{name} (n={sel.sum()})")
        ax.set_xlabel("Time since index scan (days)")
        ax.set_ylabel("Survival probability")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{site.capitalize()} test set")
        ax.legend(loc="lower left")
        ax.grid(alpha=0.3)
    fig.suptitle(f"Kaplan-Meier by predicted risk tertile: {model_name}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
