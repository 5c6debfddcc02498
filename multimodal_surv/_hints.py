"""The "did you mean" hint shared by every error message about a name."""

from __future__ import annotations

import difflib

__all__ = ["closest_match", "did_you_mean", "preview"]


def closest_match(name, candidates):
    """The candidate closest to ``name`` (case-insensitive), or ``None``.

    Examples
    --------
    >>> closest_match("evnt", ["event", "time"])
    'event'
    >>> closest_match("xyz", ["event", "time"]) is None
    True
    """
    by_lower = {str(c).lower(): str(c) for c in candidates}
    close = difflib.get_close_matches(str(name).lower(), list(by_lower), n=1)
    return by_lower[close[0]] if close else None


def did_you_mean(name, candidates) -> str:
    """``" Did you mean 'x'?"`` for the closest candidate, or ``""``.

    Examples
    --------
    >>> did_you_mean("evnt", ["event", "time"])
    " Did you mean 'event'?"
    >>> did_you_mean("xyz", ["event", "time"])
    ''
    """
    close = closest_match(name, candidates)
    return f" Did you mean {close!r}?" if close else ""


def preview(values, k=5):
    """The first ``k`` values as a short list, with the total count.

    Examples
    --------
    >>> preview(["a", "b", "c"], k=2)
    "['a', 'b', ...] (3 in all)"
    """
    values = list(values)
    head = ", ".join(repr(v) for v in values[:k])
    return f"[{head}{', ...' if len(values) > k else ''}] ({len(values)} in all)"
