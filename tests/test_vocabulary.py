"""One vocabulary: every public class and function against the table in docs/vocabulary.md.

The tables are parsed from the user-guide page, so the page and the code
cannot drift apart: a renamed parameter, a new synonym or a default of
another type fails here.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _public_api import init_defaults, public_estimators, public_objects, tiny

from multimodal_surv.models import SurvivalNet

DOC = Path(__file__).resolve().parents[1] / "docs" / "vocabulary.md"


def _table(section):
    """Rows (lists of cell strings) of the first Markdown table under ``## section``."""
    text = DOC.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"docs/vocabulary.md has no '## {section}' section"
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in match.group(1).splitlines()
        if line.startswith("|")
    ]
    return rows[2:]  # header and separator


def _names(cell):
    return re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", cell)


SHARED = {_names(row[0])[0]: row for row in _table("Shared names")}
# (class or function name, parameter) -> its own documented default
DIFFERENT = {
    (where, _names(row[1])[0]): row[2]
    for row in _table("Defaults that differ on purpose")
    for where in _names(row[0])
}
FORBIDDEN = {
    name: ", ".join(_names(row[1])) for row in _table("Names not used") for name in _names(row[0])
}


def _is_int(v):
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def _is_float(v):
    return isinstance(v, float | np.floating)


# the "Type" column of the table -> a predicate on a default value
TYPES = {
    "int": _is_int,
    "float": _is_float,
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "int or None": lambda v: v is None or _is_int(v),
    'int or "auto"': lambda v: v == "auto" or _is_int(v),
    "float or None": lambda v: v is None or _is_float(v),
    "dict or None": lambda v: v is None or isinstance(v, dict),
    "tuple of int": lambda v: isinstance(v, tuple) and all(_is_int(u) for u in v),
    "int, RandomState or None": lambda v: (
        v is None or _is_int(v) or isinstance(v, np.random.RandomState)
    ),
    "str, path or None": lambda v: v is None or isinstance(v, str | Path),
    "DataFrame, path or None": lambda v: v is None or isinstance(v, str | Path | pd.DataFrame),
}

ESTIMATORS = public_estimators()
SURVIVAL = {n for n, c in ESTIMATORS.items() if issubclass(c, SurvivalNet)}
PUBLIC = {
    name: obj
    for name, obj in public_objects().items()
    if inspect.isclass(obj) or inspect.isfunction(obj)
}


def _parameters(obj):
    try:
        return init_defaults(obj)
    except (TypeError, ValueError):  # no inspectable signature (e.g. an exception class)
        return {}


def test_the_tables_parse():
    assert {"max_epochs", "lr", "batch_size", "verbose", "device", "on_error"} <= set(SHARED)
    assert {"n_epochs", "learning_rate", "epochs", "on_empty"} <= set(FORBIDDEN)
    for name, row in SHARED.items():
        assert len(row) == 5, f"row of {name!r} has {len(row)} cells, expected 5"
        assert row[1] in TYPES, f"type {row[1]!r} of {name!r} is not one the test knows"
    assert not set(SHARED) & set(FORBIDDEN)
    assert {name for _, name in DIFFERENT} <= set(SHARED)
    objects = {obj.__name__ for obj in PUBLIC.values()}
    assert {where for where, _ in DIFFERENT} <= objects, "a listed difference names no object"


def test_the_page_is_listed_in_the_user_guide():
    pages = ("index.md", "user_guide.md")
    listed = [p for p in pages if "(vocabulary.md)" in (DOC.parent / p).read_text(encoding="utf-8")]
    assert listed, f"docs/vocabulary.md is listed in none of {pages}"


def test_every_estimator_and_encoder_is_covered():
    # the walk of __all__ finds the estimators of both layers
    assert {"DeepSurvival", "CTEncoder"} <= set(ESTIMATORS)
    assert any(name.startswith("EHR") for name in ESTIMATORS)


@pytest.mark.parametrize("qualname", sorted(PUBLIC))
def test_no_synonyms(qualname):
    obj = PUBLIC[qualname]
    used = sorted(set(_parameters(obj)) & set(FORBIDDEN))
    assert not used, [f"{name!r}: use {FORBIDDEN[name]}" for name in used]


@pytest.mark.parametrize("qualname", sorted(PUBLIC))
def test_shared_names_have_the_documented_type_and_default(qualname):
    problems = []
    obj = PUBLIC[qualname]
    for name, default in _parameters(obj).items():
        if name not in SHARED or default is inspect.Parameter.empty:
            continue
        _, type_, values, documented, _ = SHARED[name]
        if not TYPES[type_](default):
            problems.append(f"{name}={default!r} is not of the documented type {type_}")
        documented = DIFFERENT.get((obj.__name__, name), documented)
        if documented != "varies" and default != ast.literal_eval(documented):
            problems.append(f"{name}={default!r}, but the documented default is {documented}")
        options = re.findall(r'"([^"]*)"', values)  # "cuda:N" stands for any device index
        if isinstance(default, str) and options:
            if not any(re.fullmatch(o.replace(":N", r":\d+"), default) for o in options):
                problems.append(f"{name}={default!r} is not one of {options}")
    assert not problems, problems


def _with(parameter):
    """Names of the estimators having ``parameter``."""
    return [name for name, cls in sorted(ESTIMATORS.items()) if parameter in _parameters(cls)]


@pytest.mark.parametrize("name", _with("verbose"))
def test_verbose_zero_is_silent(name, capsys):
    est, X, y = tiny(ESTIMATORS[name])
    est.set_params(verbose=0).fit(X, y)
    out, err = capsys.readouterr()
    assert out == "" and err == "", (out, err)


@pytest.mark.parametrize("name", [n for n in _with("verbose") if n in SURVIVAL])
def test_verbose_levels_of_the_survival_estimators(name, capsys):
    est, X, y = tiny(ESTIMATORS[name])
    est.set_params(max_epochs=2, verbose=1).fit(X, y)
    out, err = capsys.readouterr()
    assert out == "" and "2/2" in err, (out, err)  # a progress bar over the epochs
    est.set_params(verbose=2).fit(X, y)
    out, err = capsys.readouterr()
    assert "epoch" in out and "train_loss" in out, out  # skorch's per-epoch table


@pytest.mark.parametrize("name", _with("device"))
def test_device_auto(name):
    est, X, y = tiny(ESTIMATORS[name])
    est.set_params(device="auto").fit(X, y)
    assert est.get_params()["device"] == "auto"  # the parameter itself is left as given
    assert str(est.device_).split(":")[0] in {"cpu", "cuda"}
    out = est.predict(X) if hasattr(est, "predict") else est.transform(X)
    assert np.isfinite(np.asarray(out, dtype=float)).all()
