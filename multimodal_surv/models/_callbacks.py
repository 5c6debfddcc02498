"""Training callbacks of the survival networks: validation C-index, progress bar."""

from __future__ import annotations

import numpy as np
import torch
from skorch.callbacks import Callback

from ..metrics import concordance_index

__all__ = ["EpochProgressBar", "StackingRecorder", "ValidationConcordance"]


class ValidationConcordance(Callback):
    """Record Harrell's C on the internal validation split after each epoch.

    It reuses the risks computed for the validation loss, so scoring costs no
    extra forward pass. The value is stored in the history as ``valid_cindex``.
    """

    def on_epoch_begin(self, net, **kwargs):
        self._risks, self._targets = [], []

    def on_batch_end(self, net, batch=None, training=False, **kwargs):
        if training:
            return
        self._risks.append(net.risk_from_output(kwargs["y_pred"]).detach().cpu())
        self._targets.append(batch[1].cpu())

    def on_epoch_end(self, net, dataset_valid=None, **kwargs):
        if not self._risks:
            return
        risk = torch.cat(self._risks).double().numpy()
        target = torch.cat(self._targets).double().numpy()
        event = target[:, 1] > 0.5
        if not np.isfinite(risk).all() or not event.any():
            score = np.nan
        else:
            score = concordance_index(event, target[:, 0], risk)
        net.history.record("valid_cindex", score)


class EpochProgressBar(Callback):
    """A tqdm bar over the epochs of one training run (``verbose >= 1``).

    One bar per ``fit`` (skorch's :class:`~skorch.callbacks.ProgressBar`
    draws one per epoch, hundreds for a survival network), showing the last
    training loss and validation C-index.
    """

    def on_train_begin(self, net, **kwargs):
        from tqdm.auto import tqdm

        self._bar = tqdm(total=net.max_epochs, desc=type(net).__name__, unit="epoch")

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        postfix = {"loss": f"{row.get('train_loss', np.nan):.4f}"}
        if "valid_cindex" in row:
            postfix["valid C"] = f"{row['valid_cindex']:.4f}"
        self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(1)

    def on_train_end(self, net, **kwargs):
        bar = self.__dict__.pop("_bar", None)
        if bar is not None:
            bar.close()


class StackingRecorder(Callback):
    """Keep, after each epoch, the validation risks that cross-fitted stacking needs.

    For every epoch it stores the risks to be stacked and the risks whose
    C-index chooses the epochs (from the estimator's ``_stacking_inputs`` and
    ``_selection_risks`` applied to the validation output), so that the
    stacking can later take each validation fold's risks at the epoch chosen
    on the other folds (:func:`crossfit_risks`). :meth:`pop` hands them over
    and forgets them; a fitted model keeps nothing.
    """

    def on_train_begin(self, net, **kwargs):
        self._epochs, self._missing = [], None

    def on_epoch_begin(self, net, **kwargs):
        self._batches = []

    def on_batch_end(self, net, batch=None, training=False, **kwargs):
        if training:
            return
        risks, missing = net._stacking_inputs(kwargs["y_pred"])
        selection = net._selection_risks(kwargs["y_pred"])
        self._batches.append((risks.detach().cpu(), missing.cpu(), selection.detach().cpu()))

    def on_epoch_end(self, net, **kwargs):
        if not self._batches:
            return
        risks, missing, selection = (torch.cat(parts) for parts in zip(*self._batches))
        self._epochs.append((risks.double().numpy(), selection.double().numpy()))
        self._missing = missing.numpy()
        self._batches = []

    def pop(self):
        """``(risks, selection, missing)`` over the epochs, then forget them.

        Returns
        -------
        risks : ndarray, shape (n_epochs, n, k) or None
            None when no epoch was recorded.
        selection : ndarray, shape (n_epochs, n, u)
        missing : ndarray of bool, shape (n, k)
        """
        epochs, missing = self.__dict__.pop("_epochs", []), self.__dict__.pop("_missing", None)
        self.__dict__.pop("_batches", None)
        if not epochs:
            return None, None, None
        risks, selection = (np.stack(parts) for parts in zip(*epochs))
        return risks, selection, missing
