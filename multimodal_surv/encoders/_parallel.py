"""Encoding shards of rows in parallel with joblib, for every encoder.

An encoder's ``transform`` with ``n_jobs`` cuts its rows into contiguous
shards, one per joblib task (any backend: loky, Dask, Ray), and runs a method
of a serial copy of itself on each shard. Shards hold whole units (batches of
volumes, subjects), so each task computes exactly what the serial loop would.
"""

from __future__ import annotations

import copy

__all__ = ["map_shards", "shard_slices"]


def shard_slices(n_items: int, n_jobs, unit: int = 1) -> list[slice]:
    """Contiguous slices of ``range(n_items)``, one per parallel task.

    Parameters
    ----------
    n_items : int
        Number of items to share out.
    n_jobs : int or None
        As in scikit-learn; ``None`` or 1 gives one slice (serial).
    unit : int, default=1
        Every slice but the last holds a multiple of ``unit`` items (a batch).

    Returns
    -------
    slices : list of slice
        At most ``effective_n_jobs(n_jobs)`` slices covering ``range(n_items)``
        in order; empty when ``n_items`` is 0.

    Examples
    --------
    >>> shard_slices(10, 2, unit=4)
    [slice(0, 8, None), slice(8, 16, None)]
    """
    if n_items == 0:
        return []
    if n_jobs in (None, 1):
        return [slice(0, n_items)]
    from joblib import effective_n_jobs

    n_units = -(-n_items // unit)
    per_task = -(-n_units // max(1, min(effective_n_jobs(n_jobs), n_units)))
    step = per_task * unit
    return [slice(k, k + step) for k in range(0, n_items, step)]


def map_shards(encoder, method: str, args_per_shard, n_jobs) -> list:
    """``getattr(worker, method)(*args)`` for each shard's ``args``, in joblib tasks.

    Each task runs on a shallow copy of ``encoder`` with ``n_jobs=None``, so a
    worker never starts workers of its own.
    """
    from joblib import Parallel, delayed

    return Parallel(n_jobs=n_jobs)(
        delayed(_run_shard)(encoder, method, args) for args in args_per_shard
    )


def _run_shard(encoder, method, args):
    """One task of :func:`map_shards` (a module-level function pickles)."""
    worker = copy.copy(encoder)
    worker.n_jobs = None
    return getattr(worker, method)(*args)
