"""What a survival network's fit checks and does after its main training run."""

from __future__ import annotations

import copy
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

__all__ = ["RISK_SPREAD_MIN", "check_converged", "check_risk_spread", "refit_all_rows"]

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
