"""AdaptiveFusionSurvival: choose unimodal, linear, early or a fusion model by grouped CV."""

from __future__ import annotations

import numbers
import time
import warnings

import numpy as np
import pandas as pd
from sklearn.base import MetaEstimatorMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import StratifiedGroupKFold, check_cv
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.metaestimators import _BaseComposition, available_if
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import check_array, check_is_fitted, has_fit_parameter, validate_data
from sksurv.base import SurvivalAnalysisMixin
from sksurv.linear_model import CoxnetSurvivalAnalysis

from ..inspection._modality_report import build_modality_report
from ._co_attention import CoAttentionFusionSurvival
from ._contrastive import ContrastiveFusionSurvival
from ._cross_attention import CrossAttentionFusionSurvival
from ._deep import DeepSurvival
from ._late import LateFusionSurvival
from ._target import check_survival_target

__all__ = ["AdaptiveFusionSurvival"]

# Complexity of the default candidates: the one-standard-error rule moves toward
# the lowest level. User candidates are ranked by their position in the list.
_LEVELS = {"unimodal": 0, "linear": 1, "early": 2, "late": 3, "contrastive": 4, "attention": 5}


def resolve_modalities(X, modalities):
    """Modality names and their columns, as the fusion estimators resolve them.

    Returns ``names`` (list) and ``columns`` (dict name -> list of column
    names for a DataFrame, of indices otherwise). Errors are the fusion
    estimators' own (missing prefixes, overlapping columns, != 2 modalities).
    """
    probe = LateFusionSurvival(modalities=modalities)
    feature_names = np.asarray(X.columns, dtype=object) if hasattr(X, "columns") else None
    if feature_names is not None:
        probe.feature_names_in_ = feature_names
    probe._resolve_modalities(np.empty((0, X.shape[1])))
    names = sorted(probe.modality_names_)
    columns = {
        m: (
            feature_names[probe.modality_columns_[m]].tolist()
            if feature_names is not None
            else probe.modality_columns_[m].tolist()
        )
        for m in names
    }
    return names, columns


def _scaler(pandas):
    scaler = StandardScaler()
    return scaler.set_output(transform="pandas") if pandas else scaler


def default_candidates(columns, *, pandas):
    """The default candidate list: ``(name, estimator, kind)``, simplest first.

    ``columns``: dict modality -> its columns (names or indices), two modalities.
    """
    names = list(columns)
    explicit = {m: list(cols) for m, cols in columns.items()}
    out = []
    for m in names:
        select = ColumnTransformer([(m, "passthrough", list(columns[m]))], remainder="drop")
        unimodal = make_pipeline(
            select, SimpleImputer(keep_empty_features=True), StandardScaler(), DeepSurvival()
        )
        out.append((f"{m}_only", unimodal, "unimodal"))
    linear = CoxnetSurvivalAnalysis(l1_ratio=0.5, alpha_min_ratio=0.05, fit_baseline_model=True)
    out.append(("linear", make_pipeline(SimpleImputer(), StandardScaler(), linear), "linear"))
    early = make_pipeline(SimpleImputer(keep_empty_features=True), StandardScaler(), DeepSurvival())
    out.append(("early", early, "early"))
    out.append(
        ("late", make_pipeline(_scaler(pandas), LateFusionSurvival(modalities=explicit)), "late")
    )
    contrastive = ContrastiveFusionSurvival(modalities=explicit)
    out.append(("contrastive", make_pipeline(_scaler(pandas), contrastive), "contrastive"))
    for m in names:
        cross = CrossAttentionFusionSurvival(modalities=explicit, query=m)
        out.append((f"cross_attention_{m}", make_pipeline(_scaler(pandas), cross), "attention"))
    for m in names:
        co = CoAttentionFusionSurvival(modalities=explicit, guide=m)
        out.append((f"co_attention_{m}", make_pipeline(_scaler(pandas), co), "attention"))
    return out


def _set_everywhere(estimator, name, value):
    """Set parameter ``name`` on the estimator and every nested estimator having it."""
    keys = [k for k in estimator.get_params(deep=True) if k == name or k.endswith(f"__{name}")]
    if keys:
        estimator.set_params(**dict.fromkeys(keys, value))
    return estimator


def _final_step(estimator):
    return estimator[-1] if isinstance(estimator, Pipeline) else estimator


def _fit(estimator, X, y, groups):
    """Fit, handing ``groups`` to the final step when its ``fit`` takes it."""
    final = _final_step(estimator)
    if groups is None or not has_fit_parameter(final, "groups"):
        return estimator.fit(X, y)
    if isinstance(estimator, Pipeline):
        return estimator.fit(X, y, **{f"{estimator.steps[-1][0]}__groups": groups})
    return estimator.fit(X, y, groups=groups)


def _fit_and_score(estimator, X, y, groups, train, test, error_score):
    """Fit on ``train``, Harrell's C on ``test``; returns ``(score, fit seconds, error)``."""

    def part(a, idx):
        return None if a is None else _safe_indexing(a, idx)

    start = time.perf_counter()
    try:
        _fit(estimator, part(X, train), y[train], part(groups, train))
        elapsed = time.perf_counter() - start
        score = float(estimator.score(part(X, test), y[test]))
    except Exception as exc:  # noqa: BLE001 - reported as error_score, like GridSearchCV
        if isinstance(error_score, str):
            raise
        return float(error_score), time.perf_counter() - start, f"{type(exc).__name__}: {exc}"
    return score, elapsed, None


def _as_2d(X):
    """A DataFrame as it is (the candidates read its column names), else a 2-D float array."""
    if hasattr(X, "columns"):
        return X
    return check_array(X, ensure_all_finite="allow-nan", dtype=np.float64)


def _chosen_has(name):
    """For ``available_if``: the method exists when the chosen model has it."""

    def check(self):
        return not hasattr(self, "best_estimator_") or hasattr(self.best_estimator_, name)

    return check


class AdaptiveFusionSurvival(SurvivalAnalysisMixin, MetaEstimatorMixin, _BaseComposition):
    """Choose the model family (unimodal, linear, early or a fusion) from the data.

    A meta-estimator like :class:`~sklearn.model_selection.GridSearchCV`, over
    model families instead of parameter values. Every candidate is scored by
    Harrell's C in subject-grouped, event-stratified K-fold cross-validation
    on the training rows. The one-standard-error rule then picks the simplest
    candidate whose mean C is within one standard error (of the best mean) of
    the best, and that candidate is refitted on all rows. ``predict``,
    ``score``, ``predict_survival_function`` and
    ``predict_cumulative_hazard_function`` use the refitted model.

    The default candidates, simplest first: a unimodal
    :class:`DeepSurvival` per modality; a penalised linear Cox model on all
    features (:class:`sksurv.linear_model.CoxnetSurvivalAnalysis`, elastic
    net); early fusion (:class:`DeepSurvival` on the concatenation);
    :class:`LateFusionSurvival`; :class:`ContrastiveFusionSurvival`;
    :class:`CrossAttentionFusionSurvival` with each modality as the query and
    :class:`CoAttentionFusionSurvival` with each modality as the guide. Each
    runs with its library defaults behind a
    :class:`~sklearn.preprocessing.StandardScaler` (and a mean
    :class:`~sklearn.impute.SimpleImputer` where the model cannot take a
    missing modality).

    The fit also builds :attr:`modality_report_`, what each modality brings
    (see :func:`multimodal_surv.inspection.modality_report`).

    Parameters
    ----------
    candidates : list of (str, estimator) tuples or None, default=None
        The models to choose from, simplest first (the order breaks ties of
        the one-standard-error rule). ``None``: the default list above. Each
        name is also a parameter prefix (``set_params(late__lr=1e-3)``), as in
        a :class:`~sklearn.pipeline.Pipeline`. Candidates named
        ``"<modality>_only"`` and ``"early"`` feed the modality report; when a
        list lacks them, the default ones are cross-validated on the same
        folds for the report only (``eligible`` is False in ``cv_results_``).
    modalities : dict or None, default=None
        Modality name -> column names or indices; ``None`` reads the
        ``"<modality>__"`` column prefixes. Exactly two modalities.
    cv : int or cross-validation splitter, default=5
        Folds. An int gives :class:`~sklearn.model_selection.StratifiedGroupKFold`
        (shuffled, stratified by the event indicator, grouped by ``groups``).
        A splitter is called as ``cv.split(X, event, groups)``.
    candidate_params : dict or None, default=None
        Parameters set on every candidate (and every step of a candidate
        pipeline) that has them, for the cross-validation and the refit, e.g.
        ``{"max_epochs": 50, "device": "cuda"}``. Candidates without such a
        parameter are left as they are.
    n_jobs : int or None, default=None
        Parallel fits (candidates x folds) through joblib; a Dask or Ray joblib
        backend distributes them over a cluster.
    random_state : int, RandomState instance or None, default=None
        Seeds the folds and every candidate (each gets its own seed, the same
        in every fold and in the refit). ``None``: fresh randomness each fit,
        and candidates keep their own ``random_state``.
    error_score : "raise" or float, default=np.nan
        Score of a fold whose fit fails (a warning reports it). A candidate
        with a failed fold is not chosen.
    verbose : int, default=0
        1 prints one line per candidate when its folds are done.

    Attributes
    ----------
    cv_results_ : pandas.DataFrame
        One row per candidate: ``candidate``, ``kind``, ``level``
        (complexity), ``eligible``, ``mean_c``, ``sd_c`` (over folds),
        ``se_c``, ``split<k>_c``, ``mean_fit_time`` and ``total_fit_time``
        (seconds), ``within_1se`` and ``chosen``.
    best_strategy_ : str
        Name of the chosen candidate.
    best_index_ : int
        Its row in ``cv_results_``.
    candidates_ : list of (str, estimator) tuples
        Every model as cross-validated (seeds and overrides applied), unfitted,
        in the order of ``cv_results_``.
    best_estimator_ : estimator
        The chosen candidate refitted on all rows.
    selection_reason_ : str
        One line: why it was chosen.
    modality_report_ : multimodal_surv.inspection.ModalityReport
    modality_names_ : list of str
    refit_time_ : float
        Seconds of the refit.
    n_splits_ : int
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Defined when ``X`` had string column names.

    See Also
    --------
    multimodal_surv.inspection.modality_report : the report alone.
    sklearn.model_selection.GridSearchCV : the same idea over parameter values.

    References
    ----------
    .. [1] Hastie, T., Tibshirani, R. and Friedman, J. "The Elements of
       Statistical Learning", 2nd ed., Springer (2009), section 7.10 (the
       one-standard-error rule).
    .. [2] Zhang et al. "Fusion is not one-size-fits-all: Cross-Modal
       Representation Alignment for Time-to-Event Modeling", arXiv:2606.15038
       (2026).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from sksurv.util import Surv
    >>> from multimodal_surv import AdaptiveFusionSurvival, DeepSurvival
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame(rng.normal(size=(200, 4)),
    ...                  columns=["ct__a", "ct__b", "ehr__a", "ehr__b"])
    >>> t = rng.exponential(np.exp(-X["ehr__a"].to_numpy()))
    >>> y = Surv.from_arrays(np.ones(200, bool), t)
    >>> model = AdaptiveFusionSurvival(cv=3, candidate_params={"max_epochs": 20},
    ...                                random_state=0).fit(X, y)
    >>> model.best_strategy_ in model.cv_results_["candidate"].tolist()
    True
    """

    _parameter_constraints: dict = {
        "candidates": [list, None],
        "modalities": [dict, None],
        "cv": [Interval(numbers.Integral, 2, None, closed="left"), "cv_object"],
        "candidate_params": [dict, None],
        "n_jobs": [numbers.Integral, None],
        "random_state": ["random_state"],
        "error_score": [StrOptions({"raise"}), numbers.Real],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        candidates=None,
        *,
        modalities=None,
        cv=5,
        candidate_params=None,
        n_jobs=None,
        random_state=None,
        error_score=np.nan,
        verbose=0,
    ):
        self.candidates = candidates
        self.modalities = modalities
        self.cv = cv
        self.candidate_params = candidate_params
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.error_score = error_score
        self.verbose = verbose

    # ------------------------------------------------------------------ parameters
    def get_params(self, deep=True):
        return self._get_params("candidates", deep=deep)

    def set_params(self, **params):
        self._set_params("candidates", **params)
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    # ------------------------------------------------------------------ fit
    def fit(self, X, y, groups=None):
        """Cross-validate every candidate, choose one, refit it on all rows.

        Parameters
        ----------
        X : DataFrame or array-like, shape (n_samples, n_features)
            Embeddings of two modalities; a modality missing for a row is NaN
            in all of its columns.
        y : structured array, shape (n_samples,)
            Event indicator and time (scikit-survival format).
        groups : array-like of shape (n_samples,) or None, default=None
            Subject of each row: the folds keep a subject's rows together.
            ``None``: every row is its own subject.

        Returns
        -------
        self : AdaptiveFusionSurvival
        """
        X, groups, best = self._select(X, y, groups)
        start = time.perf_counter()
        self.best_estimator_ = _fit(best, X, y, groups)
        self.refit_time_ = time.perf_counter() - start
        self.modality_report_ = self._report(X)
        return self

    def _select(self, X, y, groups, kinds=None):
        """Validate, cross-validate and choose; returns X, groups and the unfitted choice.

        ``kinds`` restricts the default candidates to those kinds.
        """
        self._validate_params()
        X, event, groups = self._check_fit_data(X, y, groups)
        prepared, seed = self._prepare(hasattr(X, "columns"), kinds)
        splits = self._splits(X, event, groups, seed)
        self.n_splits_ = len(splits)
        self.cv_results_ = self._cross_validate(prepared, splits, X, y, groups)
        self.candidates_ = [(p[0], clone(p[1])) for p in prepared]
        self._choose()
        return X, groups, clone(prepared[self.best_index_][1])

    def _check_fit_data(self, X, y, groups):
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None; "
                "pass the outcome as sksurv.util.Surv.from_arrays(event, time)."
            )
        X = _as_2d(X)
        validate_data(self, X, skip_check_array=True, reset=True)
        event, _ = check_survival_target(y, n_samples=X.shape[0])
        if groups is not None:
            groups = np.asarray(groups)
            if groups.shape != (X.shape[0],):
                raise ValueError(
                    f"groups must hold one subject id per row of X ({X.shape[0]} rows); got "
                    f"shape {groups.shape}."
                )
        self.modality_names_, self._modality_columns = resolve_modalities(X, self.modalities)
        return X, event, groups

    def _candidate_list(self, pandas, kinds=None):
        """``(name, estimator, kind, level, eligible)`` for every model to cross-validate."""
        defaults = default_candidates(self._modality_columns, pandas=pandas)
        if self.candidates is None:
            out = [(n, e, k, _LEVELS[k], True) for n, e, k in defaults if not kinds or k in kinds]
        else:
            out = []
            for i, item in enumerate(self.candidates):
                if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
                    raise TypeError(
                        f"candidates[{i}] must be a (name, estimator) tuple; got {item!r}."
                    )
                name, est = item
                if not (hasattr(est, "fit") and hasattr(est, "predict")):
                    raise TypeError(
                        f"candidate {name!r} must be an estimator with fit and predict; got "
                        f"{type(est).__name__}."
                    )
                out.append((name, est, "user", i, True))
            names = [o[0] for o in out]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if not out or dupes or any("__" in n for n in names):
                raise ValueError(
                    "candidates must be a non-empty list with unique names without '__'; got "
                    f"names {names}."
                )
            for name, est, kind in defaults:  # report references the list lacks
                if kind in ("unimodal", "early") and name not in names:
                    out.append((name, est, kind, _LEVELS[kind], False))
        return out

    def _prepare(self, pandas, kinds=None):
        rng = check_random_state(self.random_state)
        prepared = []
        for name, est, kind, level, eligible in self._candidate_list(pandas, kinds):
            est = clone(est)
            if self.random_state is not None:
                _set_everywhere(est, "random_state", int(rng.randint(np.iinfo(np.int32).max)))
            for param, value in (self.candidate_params or {}).items():
                _set_everywhere(est, param, value)
            prepared.append((name, est, kind, level, eligible))
        split_seed = None if self.random_state is None else int(rng.randint(np.iinfo(np.int32).max))
        return prepared, split_seed

    def _splits(self, X, event, groups, seed):
        if isinstance(self.cv, numbers.Integral):
            splitter = StratifiedGroupKFold(self.cv, shuffle=True, random_state=seed)
            ids = np.arange(len(event)) if groups is None else groups
            splits = list(splitter.split(np.zeros(len(event)), event, ids))
        else:
            splits = list(check_cv(self.cv).split(X, event, groups))
        for k, (_, test) in enumerate(splits):
            n_test_events = int(event[test].sum())
            if n_test_events < 2:
                raise ValueError(
                    f"fold {k} has {n_test_events} events among its {len(test)} test rows; "
                    f"Harrell's C needs at least 2. Use fewer folds (cv={self.cv!r}) or more "
                    "data."
                )
        return splits

    def _cross_validate(self, prepared, splits, X, y, groups):
        tasks = [(c, k) for c in range(len(prepared)) for k in range(len(splits))]
        parallel = Parallel(n_jobs=self.n_jobs, return_as="generator")
        outputs = parallel(
            delayed(_fit_and_score)(
                clone(prepared[c][1]), X, y, groups, *splits[k], self.error_score
            )
            for c, k in tasks
        )
        scores = np.full((len(prepared), len(splits)), np.nan)
        times = np.zeros_like(scores)
        errors: dict[int, list[str]] = {}
        done = np.zeros(len(prepared), dtype=int)
        for (c, k), (score, seconds, error) in zip(tasks, outputs, strict=True):
            scores[c, k], times[c, k] = score, seconds
            if error is not None:
                errors.setdefault(c, []).append(error)
            done[c] += 1
            if self.verbose and done[c] == len(splits):
                print(
                    f"[AdaptiveFusionSurvival] {prepared[c][0]}: C {np.nanmean(scores[c]):.4f} "
                    f"+/- {np.nanstd(scores[c], ddof=1):.4f} ({times[c].sum():.1f} s)",
                    flush=True,
                )
        for c, errs in errors.items():
            warnings.warn(
                f"candidate {prepared[c][0]!r} failed on {len(errs)} of {len(splits)} folds "
                f"(first error: {errs[0]}); its folds score {self.error_score} and it is not "
                "chosen. Pass error_score='raise' to see the traceback.",
                UserWarning,
                stacklevel=3,
            )
        return self._results_table(prepared, scores, times)

    @staticmethod
    def _results_table(prepared, scores, times):
        n_folds = scores.shape[1]
        table = pd.DataFrame(
            {
                "candidate": [p[0] for p in prepared],
                "kind": [p[2] for p in prepared],
                "level": [p[3] for p in prepared],
                "eligible": [p[4] for p in prepared],
                "mean_c": scores.mean(axis=1),
                "sd_c": scores.std(axis=1, ddof=1),
            }
        )
        table["se_c"] = table["sd_c"] / np.sqrt(n_folds)
        for k in range(n_folds):
            table[f"split{k}_c"] = scores[:, k]
        table["mean_fit_time"] = times.mean(axis=1)
        table["total_fit_time"] = times.sum(axis=1)
        return table

    def _choose(self):
        """One-standard-error rule toward the lowest complexity level."""
        table = self.cv_results_
        ok = table["eligible"] & np.isfinite(table["mean_c"])
        if not ok.any():
            raise ValueError(
                "every candidate failed in at least one fold; nothing to choose. Pass "
                "error_score='raise' to see why."
            )
        best = table.loc[ok, "mean_c"].idxmax()
        bar = table.at[best, "mean_c"] - table.at[best, "se_c"]
        within = ok & (table["mean_c"] >= bar)
        level = table.loc[within, "level"].min()
        chosen = table.loc[within & (table["level"] == level), "mean_c"].idxmax()
        table["within_1se"] = within
        table["chosen"] = table.index == chosen
        self.best_index_ = int(chosen)
        self.best_strategy_ = str(table.at[chosen, "candidate"])
        c, best_c, se = table.at[chosen, "mean_c"], table.at[best, "mean_c"], table.at[best, "se_c"]
        if chosen == best:
            self.selection_reason_ = (
                f"Highest CV C ({c:.3f}); no simpler candidate within one standard error "
                f"({se:.3f})."
            )
        else:
            self.selection_reason_ = (
                f"Simplest candidate within one standard error of the best "
                f"({table.at[best, 'candidate']}, C {best_c:.3f} +/- {se:.3f}); its CV C is "
                f"{c:.3f}."
            )

    def _report(self, X):
        table = self.cv_results_.set_index("candidate")
        folds = [c for c in table.columns if c.startswith("split")]
        unimodal = {m: table.loc[f"{m}_only", folds].to_numpy(float) for m in self.modality_names_}
        return build_modality_report(
            X,
            self._modality_columns,
            unimodal=unimodal,
            joint=("early", table.loc["early", folds].to_numpy(float)),
            n_train=len(X) * (1 - 1 / self.n_splits_),
            n_test=len(X) / self.n_splits_,
            recommended=self.best_strategy_,
            reason=self.selection_reason_,
            candidates=self.cv_results_,
        )

    # ------------------------------------------------------------------ prediction
    def _check_X(self, X):
        check_is_fitted(self)
        X = _as_2d(X)
        validate_data(self, X, skip_check_array=True, reset=False)
        return X

    def predict(self, X):
        """Risk scores of the chosen model (higher means an earlier event)."""
        X = self._check_X(X)
        return self.best_estimator_.predict(X)

    @available_if(_chosen_has("predict_survival_function"))
    def predict_survival_function(self, X, return_array=False):
        """Survival functions of the chosen model (as in scikit-survival)."""
        X = self._check_X(X)
        return self.best_estimator_.predict_survival_function(X, return_array=return_array)

    @available_if(_chosen_has("predict_cumulative_hazard_function"))
    def predict_cumulative_hazard_function(self, X, return_array=False):
        """Cumulative hazard functions of the chosen model (as in scikit-survival)."""
        X = self._check_X(X)
        return self.best_estimator_.predict_cumulative_hazard_function(X, return_array=return_array)

    @property
    def unique_times_(self):
        """Time grid of ``return_array=True`` predictions (the chosen model's)."""
        check_is_fitted(self)
        return _final_step(self.best_estimator_).unique_times_
