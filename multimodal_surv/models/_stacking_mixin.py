"""The stacking step of late and contrastive fusion: which rows and risks fit the weights."""

from __future__ import annotations

import warnings

import torch

from ._callbacks import StackingRecorder
from ._split import halve_rows
from ._stacking import (
    MIN_STACKING_EVENTS,
    STACKING_FOLDS,
    crossfit_risks,
    equal_combination,
    fit_risk_combination,
    stacking_folds,
)

__all__ = ["StackingMixin"]


class StackingMixin:
    """Fit the weights that combine several risks on held-out rows, cross-fitted.

    A model that stacks (``_stacks()`` is true) keeps the best epoch of its
    risk heads on the validation split, then fits the combination weights and
    the risks used for a missing modality (:func:`fit_risk_combination`) on
    the validation rows. Fitted on the risks of the final model, those
    weights are optimistic: each head's epoch was picked on the same rows'
    noise. So the stacking is cross-fitted: the validation rows are split into
    ``STACKING_FOLDS`` event-stratified folds (whole subjects with
    ``groups``), the validation risks of every epoch are recorded
    (:class:`StackingRecorder`), and each fold contributes its risks at the
    epochs chosen on the other folds (:func:`crossfit_risks`). The weights
    are fitted on these out-of-fold risks of all validation rows and applied
    to the final model (whose epochs were chosen on all validation rows).
    Training is the same as without cross-fitting; only the weights differ.

    Without a validation split the weights are fitted on the training rows;
    with a custom ``train_split``, or when no epoch is chosen on the
    validation split, on the validation rows with the final model's risks.

    Subclasses define ``_stacks``, ``_stacking_inputs``, ``_selection_risks``,
    ``_selection_units`` and ``_set_combination``.
    """

    # Rows and risks the stacking weights are fitted on. "crossfit": every
    # validation row, with each fold's risks taken at the epochs chosen on
    # the other folds; "same": the validation rows with the final model's
    # risks (their epochs were chosen on those same rows); "separate": one
    # half of the validation split chooses the epochs, the other fits the
    # weights. Compared in benchmarks/stacking_rows.py (docs/fusion.md).
    _stacking_rows = "crossfit"
    # Which selection unit (column of _selection_risks) chooses the epoch of
    # each stacked risk.
    _selection_units: tuple[int, ...] = ()

    def get_default_callbacks(self):
        callbacks = super().get_default_callbacks()
        if self._stacks() and self._stacking_rows == "crossfit":
            callbacks.append(("stacking_recorder", StackingRecorder()))
        return callbacks

    def get_split_datasets(self, X, y=None, **fit_params):
        if not self._stacks() or self.train_split is not None or self.validation_fraction is None:
            train, valid = super().get_split_datasets(X, y, **fit_params)
            # Kept for the stacking step after training (the training rows
            # when there is no validation split).
            self._stacking_data = valid if valid is not None else train
            return train, valid
        dataset = self.get_dataset(X, y)
        train_idx, valid_idx = self._validation_indices(dataset)
        event = dataset.y[valid_idx, 1] > 0.5
        groups = getattr(self, "_fit_groups", None)
        groups = None if groups is None else groups[valid_idx]
        select_idx = stack_idx = valid_idx
        if self._stacking_rows == "crossfit" and self._selects_epochs():
            # Seeded by the fit's seed without drawing from the generator, so
            # that training is the same as with stacking on the same rows.
            self._stacking_folds = stacking_folds(
                event.numpy(), groups, STACKING_FOLDS, torch.initial_seed()
            )
        elif self._stacking_rows == "separate":
            if int(event.sum()) < 2 * MIN_STACKING_EVENTS:
                self._stacking_fallback = int(event.sum())
            else:
                first, second = halve_rows(event, groups)
                select_idx, stack_idx = valid_idx[first], valid_idx[second]
        self._stacking_data = dataset.subset(stack_idx)
        return dataset.subset(train_idx), dataset.subset(select_idx)

    def _stacks(self):
        """Whether this model fits stacking weights after training (no by default)."""
        return False

    def _selects_epochs(self):
        """Whether the validation split chooses the epoch(s) whose weights are kept."""
        return self.patience is not None

    def _after_training(self, X, event, time):
        # The stacking rows and folds never stay on the fitted model.
        data = self.__dict__.pop("_stacking_data", None)
        folds = self.__dict__.pop("_stacking_folds", None)
        if data is None or not self._stacks():
            return
        recorded = (None,)
        if "stacking_recorder" in dict(self.callbacks_):
            recorded = dict(self.callbacks_)["stacking_recorder"].pop()
        if folds is not None and recorded[0] is not None:
            risks, selection, missing = recorded
            target = data.y.double().numpy()
            risks, _ = crossfit_risks(
                risks, selection, self._selection_units, target[:, 1] > 0.5, target[:, 0], folds
            )
            risks, missing = torch.as_tensor(risks), torch.as_tensor(missing)
        else:
            module = self.module_
            module.eval()
            with torch.no_grad():
                risks, missing = self._stacking_inputs(module(data.X.to(self.device)))
        weights, fills = self._combine(risks.cpu(), missing.cpu(), data)
        with torch.no_grad():
            self._set_combination(weights, fills)

    def _combine(self, risks, missing, data):
        """Stacking weights and fills for the ``risks`` of the stacking rows ``data``.

        Fitted by :func:`fit_risk_combination`, unless the stacking rows hold
        fewer than ``MIN_STACKING_EVENTS`` events: then equal weights and
        each risk's mean as its fill, with a warning (the small-cohort rule
        has already warned).
        """
        n_events = self.__dict__.pop("_stacking_fallback", None)
        if n_events is None and int(data.y[:, 1].sum()) >= MIN_STACKING_EVENTS:
            return fit_risk_combination(risks, missing, data.y[:, 0], data.y[:, 1], ties=self.ties)
        if isinstance(n_events, str):  # the small-cohort rule, which has warned
            return equal_combination(risks, missing)
        needed = MIN_STACKING_EVENTS if n_events is None else 2 * MIN_STACKING_EVENTS
        n_events = int(data.y[:, 1].sum()) if n_events is None else n_events
        warnings.warn(
            f"{type(self).__name__}: the validation split holds {n_events} events, too few "
            f"to fit the combination weights (at least {needed} needed); every risk gets "
            "weight 1 instead. With more rows, or a larger validation_fraction (now "
            f"{self.validation_fraction}), the weights are fitted.",
            UserWarning,
            stacklevel=4,
        )
        return equal_combination(risks, missing)

    # Stacking models define these three, and _selection_units.
    def _stacking_inputs(self, output):
        """``(risks, missing)`` to stack, from a module output: shapes (n, k)."""
        raise NotImplementedError

    def _selection_risks(self, output):
        """Risks whose validation C-index chooses the epochs, shape (n, u)."""
        raise NotImplementedError

    def _set_combination(self, weights, fills):
        """Store the fitted stacking weights and fills in the module."""
        raise NotImplementedError
