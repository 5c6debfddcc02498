"""The ``device`` parameter shared by every torch-backed estimator and encoder."""

from __future__ import annotations

__all__ = ["resolve_device"]


def resolve_device(device):
    """The ``torch.device`` for ``device`` ("cpu", "cuda", "cuda:N" or "auto").

    ``"auto"`` is CUDA when available, else the CPU. A CUDA device on a
    machine without CUDA, or a string torch does not know, raises a
    ``ValueError`` that says what to pass instead.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    import torch

    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device={device!r} is not a torch device; pass 'cpu', 'cuda', 'cuda:0' or 'auto'"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} but CUDA is not available here; pass device='cpu' or 'auto'"
        )
    return dev
