"""What a survival network's fit checks and does after its main training run."""

from __future__ import annotations

import copy
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

__all__ = [
    "MIN_VALIDATION_EVENTS",
    "RISK_SPREAD_MIN",
    "SMALL_COHORT_EPOCHS",
    "check_converged",
    "check_risk_spread",
    "refit_all_rows",
    "small_cohort_rule",
]

# Fewer events than this in the validation split: the epoch it would choose is
# too noisy. Measured on the two-modality generator of the test suite (8 + 8
# features, seeds 100-104, mean held-out C): early stopping vs 30 epochs on
# all rows gave 0.54 vs 0.62 (DeepSurvival) and 0.58 vs 0.62 (late fusion)
# at 40 training rows (about 4 validation events), 0.60 vs 0.63 (DeepSurvival)
# at 80 rows (9 events), and 0.66 vs 0.67 and 0.64 vs 0.68 at 160 rows (18).
MIN_VALIDATION_EVENTS = 20
# Epochs of the small-cohort fallback (all rows, no early stopping).
SMALL_COHORT_EPOCHS = 30

# Standard deviation of the training risks (log-hazard ratios) below which a
# model is called constant: hazard ratios within about 1 % of each other
# between typical patients. Fits that learned anything sit orders of magnitude
# above (training-risk std 0.3 to 3 in the test suite's small-cohort runs);
# collapsed fits sit at 0 or within float32 noise of it.
RISK_SPREAD_MIN = 1e-2


def check_converged(net):
    """Warn when early stopping was on but training ran out of epochs while improving."""
    early_stopping = net.patience is not None and (
        net.validation_fraction is not None or net.train_split is not None
    )
    if not early_stopping or len(net.history_) < net.max_epochs:
        return
    scores = np.asarray(net.history_[:, "valid_cindex"], dtype=float)
    if np.isfinite(scores).any() and np.nanargmax(scores) >= len(scores) - 3:
        warnings.warn(
            f"{type(net).__name__} reached max_epochs={net.max_epochs} while the "
            "validation C-index was still improving; raise max_epochs or lr.",
            UserWarning,
            stacklevel=3,
        )


def check_risk_spread(net, risk):
    """ConvergenceWarning when the training risks are (nearly) all equal.

    Such a model ranks no one above anyone: its C-index is 0.5 whatever the
    data. It happens when the network stopped before it learned (tiny
    validation splits), or when every weight went to 0.
    """
    spread = float(np.std(risk))
    if spread >= RISK_SPREAD_MIN:
        return
    n_epochs = len(net.history_)
    warnings.warn(
        f"{type(net).__name__} learned (nearly) constant risks: their standard deviation "
        f"over the {len(risk)} training rows is {spread:.2g} (below {RISK_SPREAD_MIN}), "
        f"after {n_epochs} epochs; its predictions rank no patient above another. "
        "Give it more rows or events, raise lr or max_epochs, lower weight_decay or "
        "dropout, or set validation_fraction=None with a fixed max_epochs on a small "
        "cohort.",
        ConvergenceWarning,
        stacklevel=3,
    )


def refit_all_rows(net, X, target, **fit_params):
    """Train again, from scratch, on every row for the epochs early stopping chose.

    Used by estimators with a ``refit`` parameter. The first fit held out
    ``validation_fraction`` of the rows to choose the number of epochs (the
    best validation C-index); this one trains a fresh network on all rows
    for that many epochs, without a validation split. The first fit's
    history is kept as ``selection_history_``. Without early stopping
    (``validation_fraction=None``, ``patience=None`` or a custom
    ``train_split``), or without a finite validation score, nothing is
    refitted.
    """
    if net.validation_fraction is None or net.patience is None or net.train_split is not None:
        return
    scores = np.asarray(net.history_[:, "valid_cindex"], dtype=float)
    if not np.isfinite(scores).any():
        return
    n_epochs = int(np.nanargmax(scores)) + 1
    # a copy: skorch clears the history object in place when it re-initialises
    net.selection_history_ = copy.deepcopy(net.history_)
    saved = net.validation_fraction, net.max_epochs, net.warm_start
    net.validation_fraction, net.max_epochs, net.warm_start = None, n_epochs, False
    try:
        net._train(X, target, **fit_params)
    finally:
        net.validation_fraction, net.max_epochs, net.warm_start = saved


def small_cohort_rule(net, event):
    """Switch off early stopping when the validation split would be too small.

    With early stopping on (``validation_fraction`` and ``patience`` set, no
    custom ``train_split``) and fewer than ``MIN_VALIDATION_EVENTS`` events
    expected in the validation split, the net trains on all rows for
    ``min(max_epochs, SMALL_COHORT_EPOCHS)`` epochs instead, warns once, and
    a fusion model combines its risks with equal weights. Sets the
    parameters for the duration of the fit (``fit`` restores them) and
    returns whether the rule applied.
    """
    if net.validation_fraction is None or net.patience is None or net.train_split is not None:
        return False
    n_valid_events = int(round(net.validation_fraction * int(np.sum(event))))
    if n_valid_events >= MIN_VALIDATION_EVENTS:
        return False
    epochs = min(net.max_epochs, SMALL_COHORT_EPOCHS)
    warnings.warn(
        f"{type(net).__name__}: the validation split would hold {n_valid_events} events "
        f"(validation_fraction={net.validation_fraction} of {int(np.sum(event))}), fewer than "
        f"{MIN_VALIDATION_EVENTS}: too few to choose the number of epochs. Training on all "
        f"{len(event)} rows for {epochs} epochs instead, without early stopping"
        + (", with equal combination weights" if getattr(net, "_stacks", lambda: False)() else "")
        + ". Set validation_fraction=None and max_epochs yourself to silence this.",
        UserWarning,
        stacklevel=3,
    )
    net.validation_fraction, net.max_epochs = None, epochs
    net._stacking_fallback = "small cohort"
    return True
