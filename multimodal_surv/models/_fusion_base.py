"""Shared machinery of the two-modality fusion estimators.

Resolves which columns belong to which modality (``"<name>__"`` prefixes or an
explicit ``modalities=`` mapping), the token layout of each modality, and the
"missing modality" convention (a row whose columns of one modality are all
NaN), with clear errors for everything else.
"""

from __future__ import annotations

import numbers
import re
import warnings

import numpy as np
import torch
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted
from skorch.utils import to_tensor

from .._hints import did_you_mean, preview
from ..nn import cox_partial_likelihood
from ._base import SurvivalNet
from ._stacking_mixin import StackingMixin

__all__ = ["FusionSurvivalNet"]

_TOKEN_NAME = re.compile(r"^t(\d+)_(\d+)$")


class FusionSurvivalNet(StackingMixin, SurvivalNet):
    """Base of the fusion estimators: modality resolution, tokens, missing masks.

    Not used directly; subclasses define the parameters and the module. In
    ``fit`` (after ``X`` is validated, before the network is built) it sets

    * ``modality_names_``: the two modality names, in the order the network
      receives them (query / guide first);
    * ``modality_columns_``: dict name -> column indices into ``X`` (token
      layouts in row-major ``token, dim`` order);
    * ``token_shapes_``: dict name -> ``(n_tokens, dim)`` or None (plain vector);
    * ``n_missing_``: dict name -> number of training rows missing the modality.

    NaN is allowed in ``X`` only as "all columns of a modality are NaN";
    anything else is an error at ``fit`` and ``predict``.
    """

    _allow_nan = True
    # Whether modality_dropout trains what the network does for a missing modality.
    _dropout_trains_missing_path = True
    # Subclasses that feed tokens to attention set this (and expose token_counts).
    _uses_tokens = False
    # Name of the parameter that selects the first modality ("query"/"guide"), if any.
    _first_modality_param: str | None = None

    _fusion_constraints: dict = {
        "modalities": [dict, None],
        "modality_dropout": [Interval(numbers.Real, 0, 1, closed="left")],
    }
    _token_constraints: dict = {
        "token_counts": [dict, None],
        "n_tokens_projected": [Interval(numbers.Integral, 1, None, closed="left")],
    }

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # all of one modality's columns: a missing modality
        return tags

    # ------------------------------------------------------------------ resolution
    def _prepare_fit(self, X, y):
        X, event, time, target = super()._prepare_fit(X, y)
        self._resolve_modalities(X)
        self._check_missing_pattern(X, fitting=True)
        return X, event, time, target

    def _validate_X(self, X, *, reset):
        X = super()._validate_X(X, reset=reset)
        if not reset and hasattr(self, "modality_columns_"):
            self._check_missing_pattern(X, fitting=False)
        return X

    def _resolve_modalities(self, X):
        name = type(self).__name__
        n_features = X.shape[1]
        feature_names = getattr(self, "feature_names_in_", None)
        if self.modalities is None:
            if feature_names is None:
                raise ValueError(
                    f"{name} cannot tell the modalities apart: X has no column names. Pass a "
                    "DataFrame whose columns carry '<modality>__' prefixes (e.g. from "
                    "ColumnTransformer(...).set_output(transform='pandas')), or "
                    "modalities={'ct': [column indices], 'ehr': [column indices]}."
                )
            groups: dict[str, list[int]] = {}
            unprefixed = []
            for i, col in enumerate(feature_names):
                prefix, sep, rest = str(col).partition("__")
                if not sep or not prefix or not rest:
                    unprefixed.append(col)
                    continue
                groups.setdefault(prefix, []).append(i)
            if unprefixed:
                raise ValueError(
                    f"{name}: columns {preview(unprefixed)} have no '<modality>__' prefix. "
                    "Name every column '<modality>__<feature>' (ColumnTransformer does this) "
                    "or pass modalities={...} explicitly."
                )
        else:
            groups = self._explicit_groups(feature_names, n_features)
        if len(groups) != 2:
            raise ValueError(
                f"{name} fuses exactly 2 modalities; got {len(groups)}: {list(groups)}. "
                + (
                    "For a single modality use DeepSurvival."
                    if len(groups) < 2
                    else "Select two of them (e.g. with a ColumnTransformer) or combine some."
                )
            )
        names = list(groups)
        first = getattr(self, self._first_modality_param) if self._first_modality_param else None
        if first is not None:
            if first not in groups:
                raise ValueError(
                    f"{self._first_modality_param}={first!r} is not one of the modalities "
                    f"{names}.{did_you_mean(first, names)}"
                )
            names = [first] + [n for n in names if n != first]

        columns, shapes = {}, {}
        token_counts = (self.token_counts or {}) if self._uses_tokens else {}
        unknown = sorted(set(token_counts) - set(names))
        if unknown:
            raise ValueError(
                f"token_counts names unknown modalities {unknown}; the modalities are {names}."
                f"{did_you_mean(unknown[0], names)}"
            )
        for mod in names:
            idx = np.asarray(groups[mod], dtype=np.intp)
            shape = None
            if self._uses_tokens:
                idx, shape = self._token_layout(mod, idx, feature_names, token_counts.get(mod))
            columns[mod] = idx
            shapes[mod] = shape
        self.modality_names_ = names
        self.modality_columns_ = columns
        self.token_shapes_ = shapes

    def _explicit_groups(self, feature_names, n_features):
        name = type(self).__name__
        groups: dict[str, list[int]] = {}
        owner: dict[int, str] = {}
        lookup = None if feature_names is None else {str(c): i for i, c in enumerate(feature_names)}
        for mod, cols in self.modalities.items():
            if not isinstance(mod, str) or not mod:
                raise TypeError(f"modalities keys must be non-empty strings; got {mod!r}.")
            if isinstance(cols, str) or np.ndim(cols) != 1 or len(cols) == 0:
                raise ValueError(
                    f"modalities[{mod!r}] must be a non-empty list of column indices or names; "
                    f"got {cols!r}."
                )
            idx = []
            for c in cols:
                if isinstance(c, numbers.Integral) and not isinstance(c, bool):
                    if not -n_features <= int(c) < n_features:
                        raise ValueError(
                            f"modalities[{mod!r}] holds column index {int(c)}, but X has "
                            f"{n_features} columns."
                        )
                    i = int(c) % n_features
                elif isinstance(c, str):
                    if lookup is None:
                        raise ValueError(
                            f"modalities[{mod!r}] names column {c!r}, but X has no column names "
                            "(numpy input); use column indices or pass a DataFrame."
                        )
                    if c not in lookup:
                        raise ValueError(
                            f"modalities[{mod!r}] names unknown column {c!r}."
                            f"{did_you_mean(c, lookup)} X has columns {preview(lookup)}."
                        )
                    i = lookup[c]
                else:
                    raise TypeError(
                        f"modalities[{mod!r}] must hold int indices or str names; got {c!r}."
                    )
                if i in owner:
                    label = feature_names[i] if feature_names is not None else i
                    raise ValueError(
                        f"column {label!r} is listed in modality {owner[i]!r} and in "
                        f"{mod!r}; each column must belong to exactly one modality."
                    )
                owner[i] = mod
                idx.append(i)
            groups[mod] = idx
        left = [i for i in range(n_features) if i not in owner]
        if left:
            labels = [feature_names[i] for i in left] if feature_names is not None else left
            raise ValueError(
                f"{name}: columns {preview(labels)} belong to no modality. Drop them from X or "
                "add them to one of the modalities."
            )
        return groups

    def _token_layout(self, mod, idx, feature_names, declared):
        n_cols = len(idx)
        parsed = None
        if feature_names is not None:
            matches = []
            for i in idx:
                rest = str(feature_names[i])
                if rest.startswith(mod + "__"):
                    rest = rest[len(mod) + 2 :]
                matches.append(_TOKEN_NAME.match(rest))
            if all(matches):
                parsed = np.array([[int(m.group(1)), int(m.group(2))] for m in matches])
            elif any(matches) and declared is None:
                raise ValueError(
                    f"modality {mod!r} mixes token columns ('{mod}__t<token>_<j>') with other "
                    "columns; name all of its columns as tokens or none of them."
                )
        if parsed is not None:
            n_tok, dim = parsed[:, 0].max() + 1, parsed[:, 1].max() + 1
            if n_tok * dim != n_cols or len({tuple(p) for p in parsed}) != n_cols:
                raise ValueError(
                    f"token columns of modality {mod!r} do not form a full grid: {n_cols} "
                    f"columns for tokens 0..{n_tok - 1} x dims 0..{dim - 1} "
                    f"({n_tok * dim} expected). Every token needs the same dims "
                    f"'{mod}__t<token>_<j>'."
                )
            if declared is not None and int(declared) != n_tok:
                raise ValueError(
                    f"token_counts[{mod!r}]={declared} contradicts the column names, which hold "
                    f"{n_tok} tokens of {dim} values; drop the token_counts entry or rename the "
                    "columns."
                )
            order = np.lexsort((parsed[:, 1], parsed[:, 0]))
            return idx[order], (int(n_tok), int(dim))
        if declared is not None:
            if (
                not isinstance(declared, numbers.Integral)
                or isinstance(declared, bool)
                or declared < 1
                or n_cols % int(declared)
            ):
                raise ValueError(
                    f"token_counts[{mod!r}]={declared!r} does not divide the {n_cols} columns of "
                    f"modality {mod!r}; pass a divisor of {n_cols} (the columns hold n_tokens x "
                    "dim values, row-major)."
                )
            return idx, (int(declared), n_cols // int(declared))
        return idx, None

    def _check_missing_pattern(self, X, *, fitting):
        unseen = {}
        for mod in self.modality_names_:
            block = np.isnan(X[:, self.modality_columns_[mod]])
            all_nan = block.all(axis=1)
            partial = block.any(axis=1) & ~all_nan
            if partial.any():
                rows = np.flatnonzero(partial)
                raise ValueError(
                    f"modality {mod!r} is partly NaN in {len(rows)} rows (first row {rows[0]}: "
                    f"{int(block[rows[0]].sum())} of {block.shape[1]} columns NaN). A missing "
                    "modality must be NaN in all of its columns; impute partial values first "
                    "(e.g. sklearn.impute.SimpleImputer on those columns) or set the whole "
                    "modality to NaN for that row."
                )
            if fitting:
                if all_nan.all():
                    raise ValueError(
                        f"modality {mod!r} is missing (all NaN) in every one of the "
                        f"{len(all_nan)} training rows; there is nothing to learn from it. Fit "
                        "DeepSurvival on the other modality instead."
                    )
                if not hasattr(self, "n_missing_") or mod == self.modality_names_[0]:
                    self.n_missing_ = {}
                self.n_missing_[mod] = int(all_nan.sum())
            elif all_nan.any() and self.n_missing_.get(mod, 1) == 0:
                unseen[mod] = int(all_nan.sum())
        if unseen and not (self.modality_dropout and self._dropout_trains_missing_path):
            self._warn_unseen_missing(unseen, len(X))

    def _warn_unseen_missing(self, unseen, n_rows):
        mods = ", ".join(f"{mod!r} in {n} of {n_rows} rows" for mod, n in unseen.items())
        remedy = (
            "modality_dropout > 0 (e.g. 0.2), or with " if self._dropout_trains_missing_path else ""
        )
        warnings.warn(
            f"{type(self).__name__}: a modality is missing ({mods}) that no training row "
            "missed; what the model does without it was never fitted to such rows, and "
            f"these rows' risks are unreliable. Refit with {remedy}training rows that miss "
            "that modality.",
            UserWarning,
            stacklevel=5,
        )

    # ------------------------------------------------------------------ training
    def _modality_cox_loss(self, risks, missing, y_true):
        """Sum of one Cox loss per column of ``risks``, each on the rows where it is present.

        ``risks`` and ``missing`` have shape ``(n, n_modalities)``; ``y_true``
        holds ``(time, event)``.
        """
        loss = risks.new_zeros(())
        for m in range(risks.shape[1]):
            present = ~missing[:, m]
            loss = loss + cox_partial_likelihood(
                risks[present, m], y_true[present, 0], y_true[present, 1], ties=self.ties
            )
        return loss

    def _pattern_cox_loss(self, risk, missing, y_true):
        """Cox loss stratified by missing-modality pattern.

        Each row is compared only with the rows of the batch that miss the same
        modalities (one baseline hazard per pattern, as in a stratified Cox
        model); the result is the mean over all events, like
        :func:`~multimodal_surv.nn.cox_partial_likelihood`, which it equals
        when every row has the same pattern. ``missing`` has shape
        ``(n, n_modalities)``.

        A row without a modality has a hazard that still depends on it: its
        risk is a mixture over the unseen values, which is not proportional to
        the hazard of complete rows. Comparing complete rows with such rows
        blurs the signal the complete rows carry; within a pattern the
        comparisons are clean. The offsets between patterns are then not
        learned here and must be fitted elsewhere (the stacking step).
        """
        weights = 2 ** torch.arange(missing.shape[1], device=missing.device)
        pattern = (missing.long() * weights).sum(1)
        patterns = torch.unique(pattern)
        if len(patterns) == 1:
            return cox_partial_likelihood(risk, y_true[:, 0], y_true[:, 1], ties=self.ties)
        loss = risk.new_zeros(())
        for p in patterns:
            rows = pattern == p
            n_events = y_true[rows, 1].sum()
            if n_events > 0:
                loss = loss + n_events * cox_partial_likelihood(
                    risk[rows], y_true[rows, 0], y_true[rows, 1], ties=self.ties
                )
        return loss / y_true[:, 1].sum().clamp_min(1)

    def infer(self, x, **fit_params):
        x = to_tensor(x, device=self.device)
        if self.modality_dropout and self.module_.training and torch.is_grad_enabled():
            x = self._drop_modalities(x)
        return super().infer(x, **fit_params)

    def _drop_modalities(self, x):
        """Hide one whole modality (set it to NaN) in a random share of the batch rows.

        Each row that has both modalities loses one of them, chosen at random,
        with probability ``modality_dropout``. The network then sees exactly
        what it sees for a patient without that modality, so the missing path
        is trained on every dataset and neither modality can carry the risk
        alone (a noise modality cannot be relied upon; the informative one must
        stand on its own). Only training batches are affected.
        """
        first, second = (
            torch.as_tensor(self.modality_columns_[m], device=x.device)
            for m in self.modality_names_
        )
        present = ~torch.isnan(x[:, first[0]]) & ~torch.isnan(x[:, second[0]])
        drop = present & (torch.rand(x.shape[0], device=x.device) < self.modality_dropout)
        if not drop.any():
            return x
        which = torch.rand(x.shape[0], device=x.device) < 0.5
        x = x.clone()
        for rows, cols in ((drop & which, first), (drop & ~which, second)):
            idx = torch.nonzero(rows).squeeze(1)
            if len(idx):
                x[idx[:, None], cols[None, :]] = float("nan")
        return x

    # Estimator parameters handed to the module under the same name.
    _module_params: tuple[str, ...] = ()

    def _module_kwargs(self):
        """Keyword arguments of the module: columns, token shapes, ``_module_params``."""
        kwargs = {"columns": self._module_columns()}
        if self._uses_tokens:
            if self.d_model % self.n_heads:
                raise ValueError(
                    f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}."
                )
            kwargs["token_shapes"] = self._module_token_shapes()
        for name in self._module_params:
            value = getattr(self, name)
            kwargs[name] = tuple(value) if name == "hidden_units" else value
        return kwargs

    def initialize_module(self):
        kwargs = {**self._module_kwargs(), **self.get_params_for("module")}
        self.module_ = self.initialized_instance(self.module, kwargs)
        return self

    def _module_columns(self):
        return [self.modality_columns_[m].tolist() for m in self.modality_names_]

    def _module_token_shapes(self):
        return [self.token_shapes_[m] for m in self.modality_names_]

    def _forward_outputs(self, X):
        """Validated ``X`` -> the module's output tuple as numpy arrays."""
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        with torch.no_grad(), self._on_device():
            out = self.forward(X, training=False)
        return [o.double().numpy() for o in out]
