"""Base class of every survival network: skorch training, scikit-survival contract."""

from __future__ import annotations

import numbers

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import (
    Interval,
    Options,
    StrOptions,
    validate_parameter_constraints,
)
from sklearn.utils.validation import check_is_fitted, validate_data
from skorch import NeuralNet
from skorch.callbacks import EarlyStopping
from sksurv.base import SurvivalAnalysisMixin
from sksurv.linear_model.coxph import BreslowEstimator

from .._device import fork_rng, resolve_device
from ..metrics import concordance_index
from ..nn import CoxPartialLikelihoodLoss
from ._callbacks import EpochProgressBar, ValidationConcordance
from ._compat import SkorchAdapter
from ._data import TensorBatchIterator, TensorDataset
from ._split import check_groups, validation_split
from ._target import check_survival_target
from ._training import check_converged, check_risk_spread, refit_all_rows, small_cohort_rule

__all__ = ["SurvivalNet"]


class SurvivalNet(SurvivalAnalysisMixin, SkorchAdapter, NeuralNet):
    """A torch risk model trained with a Cox objective, as a scikit-survival estimator.

    ``fit(X, y)`` takes the scikit-survival structured array (any field names:
    first the event indicator, then the time), trains ``module`` with the Cox
    partial likelihood, and fits a Breslow baseline hazard, so that
    ``predict`` (risk, higher means an earlier event), ``score`` (Harrell's C),
    ``predict_survival_function`` and ``predict_cumulative_hazard_function``
    behave as in :class:`sksurv.linear_model.CoxPHSurvivalAnalysis`.

    Training is skorch's: every skorch parameter (``module__*``,
    ``optimizer__*``, ``callbacks``...) works. Batches are slices of one
    tensor rather than collated samples (several times faster on small
    networks). By default 15 % of the training rows (stratified by event;
    whole subjects with ``fit(X, y, groups=...)``) are held out to stop early
    on their concordance index; the best epoch's weights are kept.

    The network is trained on the rank of each time, not on the time itself:
    the Cox loss and the C-index depend only on the order of the times, which
    ranks keep exact at any magnitude (float32 times would tie 16777216 and
    16777217). The Breslow baseline uses the original float64 times. A last
    training batch smaller than a quarter of ``batch_size`` is merged into
    the previous one (a Cox risk set of a few rows, or BatchNorm over one
    row, would not be valid). A model whose training risks come out (nearly)
    constant warns with a :class:`~sklearn.exceptions.ConvergenceWarning`.

    Parameters
    ----------
    module : torch.nn.Module class or instance
        Maps a float tensor ``(batch, n_features)`` to risks ``(batch,)``, or to
        a tuple whose first element is the risk.
    criterion : torch.nn.Module class, default=CoxPartialLikelihoodLoss
        Survival loss taking ``(risk, target)`` with ``target[:, 0]`` the time
        and ``target[:, 1]`` the event indicator.
    ties : {"efron", "breslow"}, default="efron"
        Handling of tied event times in the Cox loss.
    optimizer : torch optimizer class, default=torch.optim.AdamW
    lr : float, default=3e-3
        The training defaults (``lr``, ``weight_decay``, ``max_epochs``,
        ``batch_size``, ``patience``) are :class:`DeepSurvival`'s, chosen on
        the five real datasets of ``benchmarks/real_data.py``.
    weight_decay : float, default=1e-3
        Passed to the optimizer (decoupled decay for AdamW); 0 disables it.
    max_epochs : int, default=300
    batch_size : int, default=1024
        Rows per gradient step; ``-1`` for full batch. The Cox loss of a batch
        only compares samples inside that batch, so small batches make noisy,
        biased risk-set estimates. 1024 keeps the risk sets of typical cohorts
        (a few hundred to a few thousand patients) whole or nearly so.
    validation_fraction : float or None, default=0.15
        Share of the training rows held out (stratified by event) for early
        stopping. ``None`` trains on all rows for ``max_epochs`` epochs.
    patience : int or None, default=30
        Epochs without improvement of the validation C-index before stopping;
        ``None`` disables early stopping while still recording the score.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, dropout, shuffling and the validation
        split. Fits with the same integer are bit-identical (on one device and
        torch version); ``None`` draws a fresh seed from torch's global
        generator at each fit, so two fits differ. The caller's random state
        (CPU and the GPU in use) is left as it was, apart from that one draw.
    verbose : int, default=0
        0 is silent; 1 shows a progress bar over the epochs; 2 also prints
        skorch's per-epoch table.
    device : {"cpu", "cuda", "cuda:N", "auto"}, default="cpu"
        Where the network trains and predicts; ``"auto"`` is CUDA when
        available, else the CPU. The device used is ``device_``.
    **kwargs
        Any other :class:`skorch.NeuralNet` argument.

    Attributes
    ----------
    module_ : torch.nn.Module
        The trained network.
    baseline_model_ : sksurv.linear_model.coxph.BreslowEstimator
        Breslow estimate of the baseline hazard from the training risks
        (centred by ``risk_offset_``).
    risk_offset_ : float
        Mean training risk, subtracted before the baseline hazard is applied.
    unique_times_ : ndarray
        Unique times (events and censorings) of the training data (the grid of
        ``return_array=True``).
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Defined when ``X`` had string column names.
    history_ : skorch.History
        Per-epoch losses and ``valid_cindex``.
    device_ : str
        The device the network was trained on (``device`` with ``"auto"``
        resolved).
    small_cohort_ : bool
        Whether the small-cohort rule applied: with fewer than 20 events
        expected in the validation split, the net trained on all rows for
        ``min(max_epochs, 30)`` epochs without early stopping (and a fusion
        model combined its risks with equal weights), with a warning.

    See Also
    --------
    DeepSurvival : the MLP risk model.
    """

    _parameter_constraints: dict = {
        "ties": [StrOptions({"efron", "breslow"})],
        "lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
        "max_epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "batch_size": [
            Interval(numbers.Integral, 1, None, closed="left"),
            Options(numbers.Integral, {-1}),
        ],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither"), None],
        "patience": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
    }
    # Fusion estimators accept NaN (a missing modality); the base does not.
    _allow_nan = False

    def __init__(
        self,
        module,
        *,
        criterion=CoxPartialLikelihoodLoss,
        ties="efron",
        optimizer=torch.optim.AdamW,
        lr=3e-3,
        weight_decay=1e-3,
        max_epochs=300,
        batch_size=1024,
        validation_fraction=0.15,
        patience=30,
        random_state=None,
        iterator_train=TensorBatchIterator,
        iterator_valid=TensorBatchIterator,
        train_split=None,
        verbose=0,
        device="cpu",
        **kwargs,
    ):
        super().__init__(
            module,
            criterion,
            optimizer=optimizer,
            lr=lr,
            max_epochs=max_epochs,
            batch_size=batch_size,
            iterator_train=iterator_train,
            iterator_valid=iterator_valid,
            train_split=train_split,
            verbose=verbose,
            device=device,
            **kwargs,
        )
        self.ties = ties
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.random_state = random_state

    # ------------------------------------------------------------------ skorch hooks
    def get_default_callbacks(self):
        # verbose: 0 silent, 1 a progress bar over the epochs, 2 adds skorch's table.
        callbacks = [
            (name, cb)
            for name, cb in super().get_default_callbacks()
            if name != "print_log" or self.verbose >= 2
        ]
        if self.verbose >= 1:
            callbacks.append(("progress_bar", EpochProgressBar()))
        if self.validation_fraction is not None or self.train_split is not None:
            callbacks.append(("valid_cindex", ValidationConcordance()))
            if self.patience is not None:
                callbacks.append(
                    (
                        "early_stopping",
                        EarlyStopping(
                            monitor="valid_cindex",
                            lower_is_better=False,
                            patience=self.patience,
                            threshold=1e-4,
                            threshold_mode="abs",
                            load_best=True,
                        ),
                    )
                )
        return callbacks

    def initialize_criterion(self):
        kwargs = {"ties": self.ties, **self.get_params_for("criterion")}
        self.criterion_ = self.initialized_instance(self.criterion, kwargs)
        return self

    def get_params_for_optimizer(self, prefix, named_parameters):
        args, kwargs = super().get_params_for_optimizer(prefix, named_parameters)
        if prefix == "optimizer" and self.weight_decay and "weight_decay" not in kwargs:
            kwargs["weight_decay"] = self.weight_decay
        return args, kwargs

    def get_dataset(self, X, y=None):
        if isinstance(X, TensorDataset):
            return X
        X = torch.as_tensor(np.asarray(X, dtype=np.float32))
        y = None if y is None else torch.as_tensor(np.asarray(y, dtype=np.float32))
        return TensorDataset(X, y)

    def get_iterator(self, dataset, training=False):
        batch = len(dataset) if self.batch_size == -1 else self.batch_size
        if training:
            kwargs = self.get_params_for("iterator_train")
            kwargs.setdefault("shuffle", True)
            kwargs.setdefault("batch_size", batch)
            # A last batch of a few rows would hold a nearly empty Cox risk set
            # (and break BatchNorm with one row): merged into the previous one.
            kwargs.setdefault("merge_last_below", max(2, kwargs["batch_size"] // 4))
            return self.iterator_train(dataset, **kwargs)
        # Validation and prediction: big slices; the validation loss then
        # covers (nearly) the whole validation risk set.
        kwargs = self.get_params_for("iterator_valid")
        kwargs.setdefault("batch_size", max(batch, 8192))
        return self.iterator_valid(dataset, **kwargs)

    def get_split_datasets(self, X, y=None, **fit_params):
        if self.train_split is not None:
            return super().get_split_datasets(X, y, **fit_params)
        dataset = self.get_dataset(X, y)
        if self.validation_fraction is None:
            return dataset, None
        train_idx, valid_idx = self._validation_indices(dataset)
        return dataset.subset(train_idx), dataset.subset(valid_idx)

    def _validation_indices(self, dataset):
        """Training and validation row indices (see :func:`validation_split`), checked."""
        event = dataset.y[:, 1] > 0.5
        groups = getattr(self, "_fit_groups", None)
        train_idx, valid_idx = validation_split(event, self.validation_fraction, groups)
        n_valid_events = int(event[valid_idx].sum())
        if n_valid_events < 2 or int(event[train_idx].sum()) < 2:
            raise ValueError(
                f"validation_fraction={self.validation_fraction} leaves {n_valid_events} "
                f"events in the validation split and {int(event[train_idx].sum())} in the "
                "training split; at least 2 are needed in each. Pass more data, a larger "
                "validation_fraction, or validation_fraction=None to disable early stopping."
            )
        return train_idx, valid_idx

    def risk_from_output(self, output):
        """The risk tensor inside a module output (first element of a tuple)."""
        return output[0] if isinstance(output, tuple | list) else output

    def get_loss(self, y_pred, y_true, X=None, training=False):
        return self.criterion_(self.risk_from_output(y_pred), y_true)

    def _validate_X(self, X, *, reset):
        if hasattr(X, "dtypes") and hasattr(X, "columns"):
            import pandas as pd

            bad = [c for c, t in X.dtypes.items() if not pd.api.types.is_numeric_dtype(t)]
            if bad:
                raise ValueError(
                    f"{type(self).__name__} needs numeric features, but X has "
                    f"{len(bad)} non-numeric column(s) (first: {bad[0]!r} of dtype "
                    f"{X.dtypes[bad[0]]}); encode or drop them first (e.g. with a "
                    "ColumnTransformer), and use NaN, not text, for missing values."
                )
        return validate_data(
            self,
            X,
            reset=reset,
            dtype=np.float32,
            ensure_all_finite="allow-nan" if self._allow_nan else True,
            ensure_min_samples=1,
        )

    def _seed(self):
        """The seed of this fit: ``random_state``, or a fresh draw when it is None.

        The draw comes from torch's global generator, before the fit forks
        it, so successive fits with ``random_state=None`` differ (and follow
        ``torch.manual_seed`` set by the caller).
        """
        if self.random_state is None:
            return int(torch.randint(0, np.iinfo(np.int32).max, (1,)).item())
        if isinstance(self.random_state, numbers.Integral):
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def _prepare_fit(self, X, y):
        """Validate parameters, X and y; return X, event, time and the training target.

        The target holds the dense rank of each time (not the time itself) and
        the event indicator, in float32: the Cox loss and the C-index depend on
        the order of the times only, and ranks keep that order exact where
        float32 times would tie (e.g. 16777216 and 16777217 seconds).
        """
        validate_parameter_constraints(
            self._parameter_constraints,
            {k: getattr(self, k) for k in self._parameter_constraints},
            caller_name=type(self).__name__,
        )
        X = self._validate_X(X, reset=True)
        event, time = check_survival_target(y, n_samples=X.shape[0])
        rank = np.unique(time, return_inverse=True)[1].reshape(-1)
        target = np.column_stack([rank, event]).astype(np.float32)
        return X, event, time, target

    def fit(self, X, y, groups=None, **fit_params):
        """Train the network and fit the Breslow baseline hazard.

        Parameters
        ----------
        X : array-like or DataFrame, shape (n_samples, n_features)
        y : structured array, shape (n_samples,)
            Event indicator (bool) as first field, time as second, e.g. from
            :func:`sksurv.util.Surv.from_arrays`.
        groups : array-like of shape (n_samples,), optional
            Subject id of each row. The internal validation split then holds
            out whole subjects, so a subject with several rows (several
            scans) never has rows on both sides. In a ``GridSearchCV`` pass it
            through metadata routing (``set_fit_request(groups=True)``).
        **fit_params
            Passed to the module's ``forward``.

        Returns
        -------
        self
        """
        X, event, time, target = self._prepare_fit(X, y)
        self._fit_groups = check_groups(groups, len(X))
        seed = self._seed()  # drawn before the fork, so that None differs at each fit
        self.device_ = str(resolve_device(self.device))
        saved = self.validation_fraction, self.max_epochs
        self.small_cohort_ = small_cohort_rule(self, event)
        try:
            with self._on_device(), fork_rng(self.device_):
                torch.manual_seed(seed)
                self._train(X, target, **fit_params)
                check_converged(self)
                if getattr(self, "refit", False):
                    torch.manual_seed(seed)
                    refit_all_rows(self, X, target, **fit_params)
                self._after_training(X, event, time)
                risk = self._predict_risk(X)
        finally:
            self.validation_fraction, self.max_epochs = saved
            for name in ("_fit_groups", "_stacking_data", "_stacking_fallback", "_stacking_folds"):
                self.__dict__.pop(name, None)
        self._fit_baseline(risk, event, time)
        check_risk_spread(self, risk)
        return self

    def _fit_baseline(self, risk, event, time):
        # The baseline is fitted on centred risks so that exp() cannot overflow
        # for models whose risks sit far from 0; predictions are shifted alike.
        finite = np.isfinite(risk).all()
        self.risk_offset_ = float(np.mean(risk)) if finite else np.nan
        if not finite or np.abs(risk - self.risk_offset_).max() > 200:
            raise FloatingPointError(
                f"{type(self).__name__}: after training, the risks of the training samples "
                f"span [{risk.min():.3g}, {risk.max():.3g}], too wide for exp(); the fit "
                "diverged. Standardise the features (e.g. sklearn.preprocessing."
                f"StandardScaler in a Pipeline), lower lr (now {self.lr}) or raise "
                "weight_decay."
            )
        self.baseline_model_ = BreslowEstimator().fit(risk - self.risk_offset_, event, time)

    def _after_training(self, X, event, time):
        """Hook between network training and the baseline hazard fit (no-op here)."""

    def __sklearn_is_fitted__(self):
        return hasattr(self, "baseline_model_")

    def _predict_risk(self, X):
        with torch.no_grad(), self._on_device():
            out = self.forward(X, training=False)
        return self.risk_from_output(out).double().numpy().reshape(-1)

    def predict(self, X):
        """Risk score of each sample (log-hazard ratio); higher means an earlier event.

        Parameters
        ----------
        X : array-like or DataFrame, shape (n_samples, n_features)

        Returns
        -------
        risk : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        return self._predict_risk(X)

    def score(self, X, y):
        """Harrell's concordance index of ``predict(X)`` against ``y``."""
        event, time = check_survival_target(y, n_samples=len(X), require_events=False)
        return concordance_index(event, time, self.predict(X))

    @property
    def unique_times_(self):
        check_is_fitted(self)
        return self.baseline_model_.unique_times_

    def predict_cumulative_hazard_function(self, X, return_array=False):
        """Cumulative hazard ``H0(t) * exp(risk)`` of each sample.

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)
        return_array : bool, default=False
            If True, an array of shape ``(n_samples, n_unique_times)`` evaluated
            at ``unique_times_``; otherwise :class:`sksurv.functions.StepFunction`
            objects.
        """
        return self._predict_cumulative_hazard_function(
            self.baseline_model_, self.predict(X) - self.risk_offset_, return_array
        )

    def predict_survival_function(self, X, return_array=False):
        """Survival function ``exp(-H0(t) * exp(risk))`` of each sample.

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)
        return_array : bool, default=False
            If True, an array of shape ``(n_samples, n_unique_times)`` evaluated
            at ``unique_times_``; otherwise :class:`sksurv.functions.StepFunction`
            objects.
        """
        return self._predict_survival_function(
            self.baseline_model_, self.predict(X) - self.risk_offset_, return_array
        )
