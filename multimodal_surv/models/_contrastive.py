"""Contrastive fusion: InfoNCE-aligned modality projections plus a Cox risk head."""

from __future__ import annotations

import numbers

import torch
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ..nn import ContrastiveFusionNet, info_nce
from ._fusion_base import FusionSurvivalNet

__all__ = ["ContrastiveFusionSurvival"]


class ContrastiveFusionSurvival(FusionSurvivalNet):
    """Cox model on CLIP-style aligned modality representations.

    Each modality passes an MLP encoder and a projection into a shared space;
    the risk head sees both projections. The training loss is

    ``loss = cox + alpha * InfoNCE(z_1, z_2)``

    where the symmetric InfoNCE (CLIP) loss pulls together the two projections
    of the same patient and pushes apart those of different patients, with a
    learnable temperature whose inverse is clamped to ``max_logit_scale``. It
    is computed on the rows of a batch where both modalities are present; a
    missing modality is replaced by a learned embedding for the risk head.
    ``alpha=0`` is exactly the survival-only objective.

    **Unimodal heads and stacking** (``unimodal_weight > 0``, the default).
    Each modality's encoder output also feeds a linear risk head trained with
    its own Cox loss on the rows that have the modality (weight
    ``unimodal_weight``: deep supervision, as in Gradient-Blending [3]_), and
    after training the fused risk and the two modality risks are combined by
    non-negative weights fitted on the validation split (stacking, as in
    :class:`LateFusionSurvival`):

    ``risk = c_0 * fused + c_1 * r_1 + c_2 * r_2``

    Trained end to end, the fused head overfits a modality that carries no
    signal and learns from fewer rows when a modality is often missing; the
    stacking lets held-out rows decide how far to trust it, and each encoder
    learns from every row that has its modality. The stacking is cross-fitted
    as in :class:`LateFusionSurvival`: each of 5 folds of the validation rows
    brings its three risks at the epoch early stopping would have chosen on
    the other folds, so the weights are not fitted on risks whose epoch their
    own rows chose. ``unimodal_weight=0``
    trains and predicts with the fused head alone (the plain contrastive
    model of [2]_).

    **Missing modalities.** With the modality heads, the fused head's Cox
    loss is stratified by missing-modality pattern: a row is compared only
    with the rows of its batch that miss the same modalities. A row without
    CT still has a hazard that depends on its CT; against complete rows its
    risk is a mixture over the unseen values, and those comparisons blur what
    the complete rows teach the head. The offsets between patterns are then
    set by the stacking step (the fitted constants that replace a missing
    modality's risk, and, for a row missing both modalities, the fused
    risk). Without the modality heads (``unimodal_weight=0``) nothing would
    set those offsets, so the loss is not stratified.

    Parameters
    ----------
    modalities : dict of str -> list of int or str, default=None
        See :class:`LateFusionSurvival`.
    modality_dropout : float in [0, 1), default=0.0
        Training-time share of the rows with both modalities that lose one of
        them (chosen at random, set to NaN, i.e. the missing-modality path).
        Trains that path and regularises against relying on one modality;
        validation and prediction are unaffected. 0 by default: the modality
        heads already learn each modality alone, and the stacking sets the
        offsets of rows missing one. With 0 and complete training data, a
        modality missing at predict time warns.
    alpha : float, default=0.5
        Weight of the contrastive term.
    unimodal_weight : float, default=0.5
        Weight of each modality head's Cox loss; 0 disables the modality heads
        and the stacking.
    temperature : float, default=0.07
        Initial InfoNCE temperature (learned during training).
    max_logit_scale : float, default=100.0
        Clamp of the inverse temperature (CLIP's value).
    projection_dim : int, default=64
    hidden_units : tuple of int, default=(64,)
        Hidden layers of each encoder and of the risk head.
    activation : {"relu", "gelu", "selu", "tanh"}, default="relu"
    dropout : float, default=0.2
        Dropout of the hidden layers, as in DeepSurvival. Against 0.1 on
        scikit-survival's breast cancer cohort (``benchmarks/dropout_defaults.py``, 2 x 5
        folds): +0.004 +- 0.006 C, no measurable difference.
    module : torch.nn.Module class, default=multimodal_surv.nn.ContrastiveFusionNet
    lr : float, default=3e-3
    batch_size : int, default=256
        Rows per optimiser step; the Cox risk sets and the InfoNCE negatives
        are the rows of a batch. Smaller than DeepSurvival's 1024 on purpose:
        with one whole-cohort batch the network takes a single step per
        epoch, the contrastive term dominates the first epochs, and early
        stopping could end training before the risk head recovered (on the
        synthetic check of the test suite, held-out C fell to about 0.55 on
        some seeds with 1024 rows per batch and did not with 256).
    ties, optimizer, weight_decay, max_epochs, validation_fraction, patience,
    random_state, verbose, device, **kwargs
        As in :class:`~multimodal_surv.DeepSurvival`. There is no ``refit``
        (the attention models have one): the stacking weights are fitted on
        held-out rows, which a refit on all rows would not leave.

    Attributes
    ----------
    modality_names_, modality_columns_, n_missing_
        See :class:`LateFusionSurvival`.
    logit_scale_ : float
        Learned inverse temperature.
    combination_weights_ : dict of str -> float
        Stacked weights of ``"fused"`` and of each modality's head (only with
        ``unimodal_weight > 0``).
    module_, baseline_model_, unique_times_, n_features_in_, feature_names_in_, history_
        As in :class:`~multimodal_surv.DeepSurvival`.

    Examples
    --------
    >>> import numpy as np
    >>> from sksurv.util import Surv
    >>> from multimodal_surv import ContrastiveFusionSurvival
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 6))
    >>> y = Surv.from_arrays(np.ones(300, bool), rng.exponential(np.exp(-X[:, 0] - X[:, 3])))
    >>> model = ContrastiveFusionSurvival(
    ...     {"ct": [0, 1, 2], "ehr": [3, 4, 5]}, max_epochs=30, lr=1e-2, random_state=0
    ... ).fit(X, y)
    >>> model.score(X, y) > 0.6
    True

    References
    ----------
    .. [1] Radford, A. et al. "Learning transferable visual models from natural
       language supervision" (CLIP), ICML 2021.
    .. [2] Zhang et al. "Fusion is not one-size-fits-all: cross-modal
       representation alignment for time-to-event modeling", arXiv 2606.15038 (2026).
    .. [3] Wang, W., Tran, D. and Feiszli, M. "What makes training multi-modal
       classification networks hard?", CVPR 2020.
    """

    _parameter_constraints: dict = {
        **FusionSurvivalNet._parameter_constraints,
        **FusionSurvivalNet._fusion_constraints,
        "alpha": [Interval(numbers.Real, 0, None, closed="left")],
        "unimodal_weight": [Interval(numbers.Real, 0, None, closed="left")],
        "temperature": [Interval(numbers.Real, 0, None, closed="neither")],
        "max_logit_scale": [Interval(numbers.Real, 1, None, closed="left")],
        "projection_dim": [Interval(numbers.Integral, 1, None, closed="left")],
        "hidden_units": [tuple, list],
        "activation": [StrOptions({"relu", "gelu", "selu", "tanh"})],
        "dropout": [Interval(numbers.Real, 0, 1, closed="left")],
    }
    _module_params = (
        "projection_dim",
        "hidden_units",
        "activation",
        "dropout",
        "temperature",
        "max_logit_scale",
    )

    def __init__(
        self,
        modalities=None,
        *,
        modality_dropout=0.0,
        alpha=0.5,
        unimodal_weight=0.5,
        temperature=0.07,
        max_logit_scale=100.0,
        projection_dim=64,
        hidden_units=(64,),
        activation="relu",
        dropout=0.2,
        module=ContrastiveFusionNet,
        ties="efron",
        optimizer=torch.optim.AdamW,
        lr=3e-3,
        weight_decay=1e-3,
        max_epochs=300,
        batch_size=256,
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
        self.alpha = alpha
        self.unimodal_weight = unimodal_weight
        self.temperature = temperature
        self.max_logit_scale = max_logit_scale
        self.projection_dim = projection_dim
        self.hidden_units = hidden_units
        self.activation = activation
        self.dropout = dropout

    def _module_kwargs(self):
        return {**super()._module_kwargs(), "unimodal_heads": self.unimodal_weight > 0}

    def get_loss(self, y_pred, y_true, X=None, training=False):
        # Validation (early stopping) is on the C-index of the combined risk,
        # so the n x n InfoNCE matrix of the large validation batch would be
        # computed for nothing.
        if not training:
            return super().get_loss(y_pred, y_true, X=X, training=training)
        if self.unimodal_weight > 0:
            if not torch.isfinite(y_pred[0]).all():
                return y_pred[0].sum()  # a non-finite risk is a non-finite loss: training stops
            parts, missing = y_pred[4], y_pred[5]
            loss = self._pattern_cox_loss(parts[:, 0], missing, y_true)
            loss = loss + self.unimodal_weight * self._modality_cox_loss(
                parts[:, 1:], missing, y_true
            )
        else:
            loss = super().get_loss(y_pred, y_true, X=X, training=training)
        if self.alpha > 0:
            _, z_a, z_b, both = y_pred[:4]
            logit_scale = self.module_.contrastive.logit_scale()
            loss = loss + self.alpha * info_nce(z_a[both], z_b[both], logit_scale)
        return loss

    def _stacks(self):
        return self.unimodal_weight > 0

    # One early stopping, on the combined risk, chooses the epoch of all three.
    _selection_units = (0, 0, 0)

    def _stacking_inputs(self, output):
        # The fused risk of a row without either modality is not trained (its
        # stratum's risks are all equal): a fitted constant replaces it.
        parts, missing = output[4], output[5]
        return parts, torch.cat([missing.all(dim=1, keepdim=True), missing], dim=1)

    def _selection_risks(self, output):
        return self.risk_from_output(output)[:, None]

    def _set_combination(self, weights, fills):
        module = self.module_
        module.combination.copy_(weights.to(module.combination))
        module.missing_risk.copy_(fills[1:].to(module.missing_risk))
        module.fused_missing_risk.copy_(fills[0].to(module.fused_missing_risk))

    @property
    def combination_weights_(self):
        check_is_fitted(self)
        if self.module_.unimodal is None:
            raise AttributeError(
                "combination_weights_ exists only with unimodal_weight > 0 (the fused "
                "head alone gives the risk)."
            )
        weights = self.module_.combination.double().tolist()
        return dict(zip(["fused", *self.modality_names_], weights))

    def predict_modality_risks(self, X):
        """Risk of each modality's own head; NaN where the modality is missing.

        Parameters
        ----------
        X : array-like or DataFrame, shape (n_samples, n_features)

        Returns
        -------
        risks : ndarray of shape (n_samples, 2)
            Columns in the order of ``modality_names_``.
        """
        out = self._forward_outputs(X)
        if len(out) < 6:
            raise AttributeError(
                "predict_modality_risks needs the modality heads (unimodal_weight > 0)."
            )
        return out[4][:, 1:]

    @property
    def logit_scale_(self):
        check_is_fitted(self)
        return float(self.module_.contrastive.logit_scale())

    def embed(self, X):
        """The two modality projections of each row (learned embedding where missing).

        Parameters
        ----------
        X : array-like or DataFrame, shape (n_samples, n_features)

        Returns
        -------
        z : dict of str -> ndarray of shape (n_samples, projection_dim)
        """
        out = self._forward_outputs(X)
        return dict(zip(self.modality_names_, out[1:3]))
