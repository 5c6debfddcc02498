"""Late fusion: one risk head per modality, combined by learned weights."""

from __future__ import annotations

import copy
import numbers

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from skorch.callbacks import Callback

from ..metrics import concordance_index
from ..nn import LateFusionNet
from ._fusion_base import FusionSurvivalNet

__all__ = ["LateFusionSurvival"]


class PerHeadEarlyStopping(Callback):
    """Early stopping and best-epoch restore for each modality head separately.

    Each head is scored by the validation C-index of its own risk (on the rows
    that have its modality); its weights are kept from its best epoch, and
    training stops once no head has improved for ``patience`` epochs. A head
    fed with an uninformative modality thus stops (and is restored) early,
    while the informative head trains on. The mean of the heads' scores is
    recorded as ``valid_cindex``.
    """

    def __init__(self, patience=None, threshold=1e-4):
        self.patience = patience
        self.threshold = threshold

    def on_train_begin(self, net, **kwargs):
        self.best_ = [-np.inf, -np.inf]
        self.waited_ = [0, 0]
        self.states_ = [None, None]

    def on_epoch_begin(self, net, **kwargs):
        self._risks, self._targets = [], []

    def on_batch_end(self, net, batch=None, training=False, **kwargs):
        if not training:
            self._risks.append(kwargs["y_pred"][1].detach().cpu())
            self._targets.append(batch[1].cpu())

    def on_epoch_end(self, net, **kwargs):
        if not self._risks:
            return
        risks = torch.cat(self._risks).double().numpy()
        target = torch.cat(self._targets).double().numpy()
        scores = []
        for m, head in enumerate(net.module_.heads):
            present = np.isfinite(risks[:, m])
            event = target[present, 1] > 0.5
            score = (
                concordance_index(event, target[present, 0], risks[present, m])
                if event.any() and present.sum() > 1
                else np.nan
            )
            scores.append(score)
            if np.isfinite(score) and score > self.best_[m] + self.threshold:
                self.best_[m], self.waited_[m] = score, 0
                self.states_[m] = copy.deepcopy(head.state_dict())
            else:
                self.waited_[m] += 1
        net.history.record("valid_cindex", float(np.nanmean(scores)))
        if self.patience is not None and min(self.waited_) >= self.patience:
            raise KeyboardInterrupt  # skorch's way to end training (caught in partial_fit)

    def on_train_end(self, net, **kwargs):
        for head, state in zip(net.module_.heads, self.states_):
            if state is not None:
                head.load_state_dict(state)


class LateFusionSurvival(FusionSurvivalNet):
    """Late fusion Cox model: a risk MLP per modality, combined by learned weights.

    ``risk = w_1 r_1(x_1) + w_2 r_2(x_2)``. Each head is trained with its own
    Cox partial likelihood on the rows that have its modality, with its own
    early stopping on the validation split (best epoch restored per head).
    The weights ``w`` and the risk used for a missing modality are then fitted
    by a Cox model on the held-out validation rows (stacking), so a head that
    only learned noise gets a weight near 0 instead of the weight it earned by
    overfitting the training rows. For a patient without a modality (all its
    columns NaN) that head's risk is replaced by the fitted constant; rows are
    never dropped. With ``validation_fraction=None`` the weights are fitted on
    the training rows.

    The stacking is cross-fitted, so that the weights are not fitted on risks
    whose epoch their own rows chose: the validation rows are split into 5
    event-stratified folds (whole subjects with ``fit(..., groups=...)``);
    each fold brings its risks at the epochs each head reached its best C on
    the other four folds (the validation risks of every epoch are kept during
    training, and dropped after it); the weights are fitted on these
    out-of-fold risks of all validation rows. The heads of the fitted model
    keep their best epoch on all validation rows; training itself is the same
    as without cross-fitting.

    Modalities come from the ``"<name>__"`` column prefixes of a DataFrame
    (e.g. ``ColumnTransformer(...).set_output(transform="pandas")``) or from
    ``modalities``. Exactly two are needed.

    Parameters
    ----------
    modalities : dict of str -> list of int or str, default=None
        Columns of each modality (indices, or names for DataFrame input).
        ``None`` infers them from the column prefixes.
    modality_dropout : float in [0, 1), default=0.0
        Training-time share of the rows with both modalities that lose one of
        them (chosen at random, set to NaN). 0 by default, unlike the
        attention models: each head sees one modality only, so hiding a
        modality only removes rows from that head's loss; it trains nothing
        about a missing modality (whose risk is the stacking fill). A
        modality missing at predict time that no training row missed warns.
    hidden_units : tuple of int, default=(64,)
        Hidden layers of each modality's risk head.
    activation : {"relu", "gelu", "selu", "tanh"}, default="relu"
    dropout : float, default=0.2
        Dropout of the heads' hidden layers, as in DeepSurvival. Against 0.1 on
        scikit-survival's breast cancer cohort (``benchmarks/dropout_defaults.py``, 2 x 5
        folds): +0.002 +- 0.002 C, no measurable difference.
    module : torch.nn.Module class, default=multimodal_surv.nn.LateFusionNet
    lr : float, default=3e-3
        The same as every other estimator of the library.
    ties, optimizer, weight_decay, max_epochs, batch_size, validation_fraction, patience,
    random_state, verbose, device, **kwargs
        As in :class:`~multimodal_surv.DeepSurvival` (``batch_size=1024``:
        each head is an MLP on one modality, as DeepSurvival is). There is no
        ``refit`` (the attention models have one): the stacking weights are
        fitted on held-out rows, which a refit on all rows would not leave.

    Attributes
    ----------
    modality_names_ : list of str
    modality_columns_ : dict of str -> ndarray of int
    modality_weights_ : dict of str -> float
        The learned combination weights.
    n_missing_ : dict of str -> int
        Training rows without each modality.
    module_, baseline_model_, unique_times_, n_features_in_, feature_names_in_, history_
        As in :class:`~multimodal_surv.DeepSurvival`.

    See Also
    --------
    ContrastiveFusionSurvival, CrossAttentionFusionSurvival, CoAttentionFusionSurvival

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from sksurv.util import Surv
    >>> from multimodal_surv import LateFusionSurvival
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame(rng.normal(size=(300, 6)),
    ...                  columns=[f"ct__x{j}" for j in range(3)] + [f"ehr__x{j}" for j in range(3)])
    >>> risk = X["ct__x0"] + X["ehr__x0"]
    >>> y = Surv.from_arrays(np.ones(300, bool), rng.exponential(np.exp(-risk)))
    >>> model = LateFusionSurvival(max_epochs=30, lr=1e-2, random_state=0).fit(X, y)
    >>> model.modality_names_
    ['ct', 'ehr']
    >>> model.predict_modality_risks(X.iloc[:2]).shape
    (2, 2)
    """

    _parameter_constraints: dict = {
        **FusionSurvivalNet._parameter_constraints,
        **FusionSurvivalNet._fusion_constraints,
        "hidden_units": [tuple, list],
        "activation": [StrOptions({"relu", "gelu", "selu", "tanh"})],
        "dropout": [Interval(numbers.Real, 0, 1, closed="left")],
    }
    _module_params = ("hidden_units", "activation", "dropout")
    # Each head sees only its own modality: hiding one trains nothing about a
    # missing modality (its risk is the stacking fill).
    _dropout_trains_missing_path = False

    def __init__(
        self,
        modalities=None,
        *,
        modality_dropout=0.0,
        hidden_units=(64,),
        activation="relu",
        dropout=0.2,
        module=LateFusionNet,
        ties="efron",
        optimizer=torch.optim.AdamW,
        lr=3e-3,
        weight_decay=1e-3,
        max_epochs=300,
        batch_size=1024,
        validation_fraction=0.15,
        patience=30,
        random_state=None,
        verbose=0,
        device="cpu",
        **kwargs,
    ):
        super().__init__(
            module,
            ties=ties,
            optimizer=optimizer,
            lr=lr,
            weight_decay=weight_decay,
            max_epochs=max_epochs,
            batch_size=batch_size,
            validation_fraction=validation_fraction,
            patience=patience,
            random_state=random_state,
            verbose=verbose,
            device=device,
            **kwargs,
        )
        self.modalities = modalities
        self.modality_dropout = modality_dropout
        self.hidden_units = hidden_units
        self.activation = activation
        self.dropout = dropout

    def get_default_callbacks(self):
        callbacks = [
            (name, cb)
            for name, cb in super().get_default_callbacks()
            if name not in ("valid_cindex", "early_stopping")
        ]
        if self.validation_fraction is not None or self.train_split is not None:
            callbacks.append(("per_head_early_stopping", PerHeadEarlyStopping(self.patience)))
        return callbacks

    def get_loss(self, y_pred, y_true, X=None, training=False):
        risk, per_modality, _, missing = y_pred
        if not torch.isfinite(risk).all():
            return risk.sum()  # a non-finite risk is a non-finite loss: training stops
        # One Cox loss per head, each on the rows with its modality.
        return self._modality_cox_loss(per_modality, missing, y_true)

    def _stacks(self):
        return True

    def _selects_epochs(self):
        # Each head's best epoch is restored even without patience.
        return True

    # Each head's epoch is chosen by its own validation C-index.
    _selection_units = (0, 1)

    def _stacking_inputs(self, output):
        return output[1], output[3]

    def _selection_risks(self, output):
        return output[1]

    def _set_combination(self, weights, fills):
        self.module_.weights.copy_(weights.to(self.module_.weights))
        self.module_.missing_risk.copy_(fills.to(self.module_.missing_risk))

    def predict_modality_risks(self, X):
        """Risk of each modality's head (before weighting); NaN where it is missing.

        Parameters
        ----------
        X : array-like or DataFrame, shape (n_samples, n_features)

        Returns
        -------
        risks : ndarray of shape (n_samples, 2)
            Columns in the order of ``modality_names_``.
        """
        return self._forward_outputs(X)[1]

    @property
    def modality_weights_(self):
        check_is_fitted(self)
        weights = self.module_.weights.detach().double().numpy()
        return dict(zip(self.modality_names_, weights.tolist()))
