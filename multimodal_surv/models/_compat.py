"""How the survival networks sit on skorch: the parts of skorch they adapt.

Kept apart from the estimator logic in ``_base.py``: training and validation
steps (the target on the module's device, train mode set once), skorch's
private attributes, the "did you mean" hint for constructor typos, device
"auto", and the inherited methods that do not apply to a survival model.
"""

from __future__ import annotations

import contextlib

import torch
from skorch.dataset import unpack_data
from skorch.utils import to_tensor

from .._device import resolve_device
from .._hints import closest_match

__all__ = ["SkorchAdapter"]


def _stored_privately(name):
    """A property keeping skorch's attribute ``name`` under ``"_" + name``.

    skorch's ``__init__`` sets ``history_``, ``initialized_`` and
    ``virtual_params_``; kept under private names, an unfitted estimator holds
    only its parameters, as scikit-learn's estimator checks expect. Reads
    before the first assignment raise AttributeError, as skorch relies on.
    """
    key = "_" + name

    def get(self):
        try:
            return self.__dict__[key]
        except KeyError:
            raise AttributeError(name) from None

    def set_(self, value):
        self.__dict__[key] = value

    return property(get, set_)


class SkorchAdapter:
    """Mixin placed before :class:`skorch.NeuralNet` in a survival network's bases."""

    history_ = _stored_privately("history_")
    initialized_ = _stored_privately("initialized_")
    virtual_params_ = _stored_privately("virtual_params_")

    def train_step_single(self, batch, **fit_params):
        # As skorch's, but the train mode is set only when it changes: walking
        # the module tree at every batch is a measurable share of an epoch.
        if not self.module_.training:
            self._set_training(True)
        Xi, yi = unpack_data(batch)
        y_pred = self.infer(Xi, **fit_params)
        loss = self.get_loss(y_pred, to_tensor(yi, device=self.device), X=Xi, training=True)
        loss.backward()
        step = {"loss": loss, "y_pred": y_pred}
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"{type(self).__name__}: the training loss became {float(step['loss'])} at "
                f"epoch {len(self.history)}. Standardise the features (e.g. "
                "sklearn.preprocessing.StandardScaler in a Pipeline), lower lr "
                f"(now {self.lr}) or raise weight_decay."
            )
        return step

    def validation_step(self, batch, **fit_params):
        # As skorch's, but the target is moved to the module's device (get_loss
        # of these networks does not go through skorch's conversion).
        self._set_training(False)
        Xi, yi = unpack_data(batch)
        with torch.no_grad():
            y_pred = self.infer(Xi, **fit_params)
            loss = self.get_loss(y_pred, to_tensor(yi, device=self.device), X=Xi, training=False)
        return {"loss": loss, "y_pred": y_pred}

    def _get_param_names(self):
        # skorch lists every attribute not ending in "_", which takes in its
        # private bookkeeping (_params_to_validate); parameters never start with "_".
        return [k for k in super()._get_param_names() if not k.startswith("_")]

    def _validate_params(self):
        # skorch checks unexpected constructor arguments here; add a
        # "did you mean" hint for typos of the explicit parameters.
        try:
            super()._validate_params()
        except ValueError as exc:
            valid = sorted(set(self.get_params(deep=False)) - set(self._params_to_validate))
            hints = []
            for key in sorted(self._params_to_validate):
                if "__" in key and key.split("__")[0] in valid:
                    continue  # a routed sub-parameter (e.g. iterator_train__shuffle)
                close = closest_match(key, valid)
                if close and key not in valid:
                    hints.append(f"{key!r}: did you mean {close!r}?")
            if hints:
                raise ValueError(f"{exc}\n" + "\n".join(hints)) from None
            raise

    # ------------------------------------------------------------------ sklearn API
    @contextlib.contextmanager
    def _on_device(self):
        """Run with ``self.device`` resolved (``"auto"`` -> ``device_``), as skorch needs."""
        requested = self.device
        self.device = getattr(self, "device_", None) or str(resolve_device(requested))
        try:
            yield
        finally:
            self.device = requested

    def _train(self, X, target, **fit_params):
        """skorch's ``fit`` (initialise unless warm-starting, then train)."""
        if not self.warm_start or not self.initialized_:
            self.initialize()
        self.notify("on_train_begin", X=X, y=target)
        try:
            self.fit_loop(X, target, **fit_params)
        except KeyboardInterrupt:
            pass  # skorch's way for a callback to end training
        self.notify("on_train_end", X=X, y=target)

    @property
    def partial_fit(self):
        raise AttributeError(
            f"{type(self).__name__} has no partial_fit: the Cox loss and the baseline "
            "hazard need every training row at once. Call fit(X, y) on all the rows; to "
            "continue from the current weights, set warm_start=True before fit."
        )

    @property
    def predict_proba(self):
        raise AttributeError(
            f"{type(self).__name__} has no predict_proba: a survival model predicts risks "
            "and curves, not class probabilities. Use predict(X) for the risk score, "
            "predict_survival_function(X) for S(t) (its values at a time are the "
            "probabilities of surviving past it), or predict_cumulative_hazard_function(X)."
        )

    def __setstate__(self, state):
        # skorch maps the stored tensors to state["device"]; "auto" means the
        # device available now.
        if state.get("device") == "auto":
            state["device"] = str(resolve_device("auto"))
            super().__setstate__(state)
            self.device_, self.device = self.device, "auto"
        else:
            super().__setstate__(state)
