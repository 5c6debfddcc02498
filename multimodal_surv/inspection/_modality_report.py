"""What each modality brings: unimodal and joint CV concordance, balance, redundancy."""

from __future__ import annotations

import json

import numpy as np
from scipy import stats

__all__ = ["ModalityReport", "build_modality_report", "linear_cka", "modality_report"]

# The cheap default candidates that modality_report() compares on its own.
_SCREEN_KINDS = ("unimodal", "linear", "early", "late")


def linear_cka(A, B):
    """Linear centred kernel alignment between two representations of the same rows.

    0 means the two embeddings share no linear structure, 1 that one is a
    rotation and isotropic scaling of the other. Columns are centred (scale
    them first if their units differ).

    Parameters
    ----------
    A : array-like, shape (n_samples, p)
    B : array-like, shape (n_samples, q)

    Returns
    -------
    cka : float

    References
    ----------
    .. [1] Kornblith, S. et al. "Similarity of Neural Network Representations
       Revisited", ICML (2019), equation 5.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> A = rng.normal(size=(100, 5))
    >>> round(linear_cka(A, 3 * A), 6)
    1.0
    """
    A = np.asarray(A, dtype=float)
    B = np.asarray(B, dtype=float)
    A = A - A.mean(axis=0)
    B = B - B.mean(axis=0)
    cross = np.linalg.norm(A.T @ B, "fro") ** 2
    norm = np.linalg.norm(A.T @ A, "fro") * np.linalg.norm(B.T @ B, "fro")
    return float(cross / norm) if norm > 0 else float("nan")


def _interval(folds, n_train, n_test, level=0.95):
    """Mean of fold scores and its t interval with the Nadeau-Bengio variance correction."""
    folds = np.asarray(folds, dtype=float)
    k = len(folds)
    mean = float(folds.mean())
    if k < 2 or not np.isfinite(folds).all():
        return mean, (float("nan"), float("nan"))
    var = folds.var(ddof=1) * (1.0 / k + n_test / n_train)
    half = float(stats.t.ppf(0.5 + level / 2, k - 1) * np.sqrt(var))
    return mean, (mean - half, mean + half)


def _block(X, cols):
    return np.asarray(X[cols] if hasattr(X, "columns") else X[:, cols], dtype=float)


def _redundancy(X, columns, seed=0):
    """Linear CKA of the standardised blocks on complete rows, and with rows shuffled."""
    a, b = (_block(X, cols) for cols in columns.values())
    rows = ~np.isnan(a).all(axis=1) & ~np.isnan(b).all(axis=1)
    a, b = a[rows], b[rows]
    if len(a) < 3:
        return float("nan"), float("nan"), int(len(a))

    def scaled(m):
        sd = m.std(axis=0)
        keep = sd > 0
        return (m[:, keep] - m[:, keep].mean(axis=0)) / sd[keep]

    a, b = scaled(a), scaled(b)
    shuffled = b[np.random.default_rng(seed).permutation(len(b))]
    return linear_cka(a, b), linear_cka(a, shuffled), int(len(a))


class ModalityReport:
    """What each of two modalities brings to a survival model.

    Built by :func:`modality_report` and by
    :class:`~multimodal_surv.AdaptiveFusionSurvival` (``modality_report_``).
    ``print(report)`` shows it as Markdown; :meth:`to_dict` and
    :meth:`to_json` export it. All C-indices are Harrell's C, means over
    cross-validation folds, with 95 % t intervals whose variance carries the
    Nadeau-Bengio correction for overlapping training folds.

    Attributes
    ----------
    modalities : list of str
    n_samples, n_folds : int
    unimodal : dict
        Modality -> ``{"c": mean, "ci": [low, high]}`` of its unimodal model.
    joint : dict
        ``{"model": name, "c", "ci"}`` of the model on both modalities.
    gain : dict
        Modality -> ``{"added_to": other, "gain", "ci"}``: joint C minus the
        other modality's unimodal C, paired over folds.
    balance : dict
        Modality -> share of the joint model's margin over 0.5 that the
        modality reaches alone, ``(C_m - 0.5) / (C_joint - 0.5)``. Near 1 for
        both: redundant modalities; near 1 and 0: one dominates; both well
        below 1: they complement each other.
    redundancy : dict
        ``{"linear_cka", "linear_cka_shuffled", "n_rows"}``: linear CKA
        between the standardised embeddings on rows having both, and with the
        rows of one shuffled (the value for unrelated embeddings of this size).
    missing : dict
        Modality -> share of rows without it.
    recommended, reason : str
        The recommended model and one line saying why.
    candidates : pandas.DataFrame or None
        The cross-validation table behind the recommendation.
    """

    def __init__(self, **fields):
        self.__dict__.update(fields)

    def to_dict(self):
        """Plain Python types (JSON-ready); the candidate table as a list of records."""
        out = {k: v for k, v in self.__dict__.items() if k != "candidates"}
        if self.candidates is not None:
            cols = ["candidate", "kind", "mean_c", "sd_c", "total_fit_time", "chosen"]
            cols = [c for c in cols if c in self.candidates.columns]
            out["candidates"] = json.loads(self.candidates[cols].to_json(orient="records"))
        return json.loads(json.dumps(out, default=float))

    def to_json(self, **kwargs):
        """The :meth:`to_dict` content as a JSON string (``kwargs`` go to ``json.dumps``)."""
        kwargs.setdefault("indent", 2)
        return json.dumps(self.to_dict(), **kwargs)

    def to_markdown(self):
        """The report as a Markdown section."""
        ci = "{:.3f} ({:.3f} to {:.3f})".format
        gain = "{:+.3f} ({:+.3f} to {:+.3f})".format
        lines = [
            "## Modality report",
            "",
            f"{self.n_samples} rows, {self.n_folds}-fold cross-validation (Harrell's C, "
            "95 % interval).",
            "",
            "| modality | C alone | share of the joint margin | gain when added | missing |",
            "|---|---|---:|---|---:|",
        ]
        for m in self.modalities:
            u, g = self.unimodal[m], self.gain[m]
            lines.append(
                f"| {m} | {ci(u['c'], *u['ci'])} | {self.balance[m]:.2f} | "
                f"{gain(g['gain'], *g['ci'])} to {g['added_to']} | {100 * self.missing[m]:.1f} % |"
            )
        j, r = self.joint, self.redundancy
        lines += [
            "",
            f"Joint model ({j['model']}): C {ci(j['c'], *j['ci'])}.",
            f"Redundancy (linear CKA of the embeddings, {r['n_rows']} rows): "
            f"{r['linear_cka']:.3f} (unrelated embeddings of this size: "
            f"{r['linear_cka_shuffled']:.3f}).",
            "",
            f"**Recommended: {self.recommended}.** {self.reason}",
        ]
        if self.candidates is not None:
            lines += ["", "| candidate | CV C | sd | fit time (s) |", "|---|---:|---:|---:|"]
            for row in self.candidates.itertuples():
                mark = " (chosen)" if getattr(row, "chosen", False) else ""
                lines.append(
                    f"| {row.candidate}{mark} | {row.mean_c:.3f} | {row.sd_c:.3f} | "
                    f"{row.total_fit_time:.1f} |"
                )
        return "\n".join(lines) + "\n"

    def __str__(self):
        return self.to_markdown()

    def _repr_markdown_(self):
        return self.to_markdown()

    def __repr__(self):
        return f"<ModalityReport {self.modalities}: recommended {self.recommended!r}>"


def build_modality_report(
    X, columns, *, unimodal, joint, n_train, n_test, recommended, reason, candidates=None
):
    """Assemble a :class:`ModalityReport` from per-fold scores.

    ``columns``: modality -> its columns in ``X``; ``unimodal``: modality ->
    fold C of its unimodal model; ``joint``: ``(name, fold C)`` of the model
    on both, on the same folds. ``n_train`` / ``n_test``: rows per fold.
    """
    names = list(columns)
    uni = {m: _interval(unimodal[m], n_train, n_test) for m in names}
    joint_name, joint_folds = joint
    joint_c, joint_ci = _interval(joint_folds, n_train, n_test)
    margin = joint_c - 0.5
    gain, balance, missing = {}, {}, {}
    for m in names:
        (other,) = [o for o in names if o != m]
        diff = np.asarray(joint_folds, float) - np.asarray(unimodal[other], float)
        g, g_ci = _interval(diff, n_train, n_test)
        gain[m] = {"added_to": other, "gain": g, "ci": list(g_ci)}
        balance[m] = float((uni[m][0] - 0.5) / margin) if margin > 0 else float("nan")
        missing[m] = float(np.isnan(_block(X, columns[m])).all(axis=1).mean())
    cka, cka_null, n_rows = _redundancy(X, columns)
    return ModalityReport(
        modalities=names,
        n_samples=int(len(X)),
        n_folds=int(len(joint_folds)),
        unimodal={m: {"c": uni[m][0], "ci": list(uni[m][1])} for m in names},
        joint={"model": joint_name, "c": joint_c, "ci": list(joint_ci)},
        gain=gain,
        balance=balance,
        redundancy={"linear_cka": cka, "linear_cka_shuffled": cka_null, "n_rows": n_rows},
        missing=missing,
        recommended=recommended,
        reason=reason,
        candidates=candidates,
    )


def modality_report(
    X,
    y,
    *,
    groups=None,
    modalities=None,
    cv=5,
    candidate_params=None,
    n_jobs=None,
    random_state=None,
    verbose=0,
):
    """Report what each of two modalities brings, and which model family to use.

    Cross-validates (subject-grouped, event-stratified folds) a unimodal
    :class:`~multimodal_surv.DeepSurvival` per modality, a penalised linear
    Cox model, early fusion and :class:`~multimodal_surv.LateFusionSurvival`,
    and recommends one of them by the one-standard-error rule (the simplest
    within one standard error of the best).
    :class:`~multimodal_surv.AdaptiveFusionSurvival` does the same over every
    fusion strategy and keeps the report as ``modality_report_``.

    Parameters
    ----------
    X : DataFrame or array-like, shape (n_samples, n_features)
        Embeddings of two modalities (``"<modality>__"`` column prefixes, or
        ``modalities=``); a missing modality is NaN in all of its columns.
    y : structured array, shape (n_samples,)
    groups : array-like of shape (n_samples,) or None, default=None
        Subject of each row (``None``: one subject per row).
    modalities : dict or None, default=None
    cv : int or cross-validation splitter, default=5
    candidate_params : dict or None, default=None
        Parameters set on every candidate that has them, e.g.
        ``{"max_epochs": 50, "device": "cuda"}``.
    n_jobs : int or None, default=None
    random_state : int, RandomState instance or None, default=None
    verbose : int, default=0

    Returns
    -------
    report : ModalityReport

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from sksurv.util import Surv
    >>> from multimodal_surv.inspection import modality_report
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame(rng.normal(size=(200, 4)),
    ...                  columns=["ct__a", "ct__b", "ehr__a", "ehr__b"])
    >>> y = Surv.from_arrays(np.ones(200, bool), rng.exponential(np.exp(-X["ct__a"])))
    >>> report = modality_report(X, y, cv=3, candidate_params={"max_epochs": 20},
    ...                          random_state=0)
    >>> report.balance["ct"] > report.balance["ehr"]
    True
    """
    from ..models._adaptive import AdaptiveFusionSurvival  # the models import this module

    search = AdaptiveFusionSurvival(
        modalities=modalities,
        cv=cv,
        kinds=list(_SCREEN_KINDS),
        candidate_params=candidate_params,
        n_jobs=n_jobs,
        random_state=random_state,
        verbose=verbose,
    )
    X, _, _ = search._select(X, y, groups)
    search.selection_reason_ += (
        " Compared: unimodal, linear, early and late; AdaptiveFusionSurvival also tries "
        "contrastive and attention fusion."
    )
    return search._report(X)
