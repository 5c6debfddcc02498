"""Whole-tensor datasets and batch iterators for fast training.

skorch's default ``Dataset`` + ``DataLoader`` fetch one sample at a time and
collate them, which dominates the epoch time of the small networks used on
embeddings. Here a batch is one fancy-indexing slice of a pre-built tensor.
"""

from __future__ import annotations

import torch

__all__ = ["TensorBatchIterator", "TensorDataset"]


class TensorDataset(torch.utils.data.Dataset):
    """Features and optional ``(time, event)`` target held as two tensors.

    Parameters
    ----------
    X : Tensor, shape (n_samples, n_features)
    y : Tensor of shape (n_samples, 2) or None
    """

    def __init__(self, X: torch.Tensor, y: torch.Tensor | None = None) -> None:
        if y is not None and len(y) != len(X):
            raise ValueError(f"X and y have different lengths: {len(X)} and {len(y)}.")
        self.X = X
        self.y = y

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, index):
        return self.X[index], (None if self.y is None else self.y[index])

    def subset(self, index: torch.Tensor) -> TensorDataset:
        """Rows ``index`` as a new dataset (a copy, so batches stay contiguous)."""
        return TensorDataset(self.X[index], None if self.y is None else self.y[index])


class TensorBatchIterator:
    """Iterate over a :class:`TensorDataset` in slices of ``batch_size`` rows.

    Parameters
    ----------
    dataset : TensorDataset
    batch_size : int
        Rows per batch; ``-1`` or ``None`` for the whole dataset at once.
    shuffle : bool, default=False
        Draw a new permutation (from torch's global generator, so it follows
        the estimator's ``random_state``) at every pass.
    drop_last : bool, default=False
    merge_last_below : int, default=0
        A last batch with fewer rows than this is merged into the previous
        one (which then has up to ``batch_size + merge_last_below - 1``
        rows), so that no batch holds a nearly empty Cox risk set or a
        single row for BatchNorm. 0 never merges.

    Examples
    --------
    >>> import torch
    >>> data = TensorDataset(torch.arange(10.0).reshape(5, 2))
    >>> [tuple(xb.shape) for xb, _ in TensorBatchIterator(data, batch_size=2)]
    [(2, 2), (2, 2), (1, 2)]
    >>> [tuple(xb.shape) for xb, _ in TensorBatchIterator(data, 2, merge_last_below=2)]
    [(2, 2), (3, 2)]
    """

    def __init__(
        self,
        dataset: TensorDataset,
        batch_size: int | None = None,
        shuffle: bool = False,
        drop_last: bool = False,
        merge_last_below: int = 0,
    ) -> None:
        if not isinstance(dataset, TensorDataset):
            raise TypeError(
                f"TensorBatchIterator needs a TensorDataset; got {type(dataset).__name__}."
            )
        self.dataset = dataset
        self.batch_size = len(dataset) if batch_size in (None, -1) else int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.merge_last_below = merge_last_below

    def _bounds(self):
        """``(start, stop)`` of each batch."""
        n = len(self.dataset)
        size = max(self.batch_size, 1)
        starts = list(range(0, n, size))
        if self.drop_last and starts and starts[-1] + size > n:
            starts.pop()
        bounds = [(start, min(start + size, n)) for start in starts]
        if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < self.merge_last_below:
            bounds[-2:] = [(bounds[-2][0], bounds[-1][1])]
        return bounds

    def __len__(self) -> int:
        return len(self._bounds())

    def __iter__(self):
        X, y = self.dataset.X, self.dataset.y
        # Shuffled batches are gathered one at a time: a whole shuffled copy of X
        # per pass would double the memory of large training sets.
        order = torch.randperm(len(self.dataset)) if self.shuffle else None
        for start, stop in self._bounds():
            if order is None:
                yield X[start:stop], (None if y is None else y[start:stop])
            else:
                idx = order[start:stop]
                yield X[idx], (None if y is None else y[idx])
