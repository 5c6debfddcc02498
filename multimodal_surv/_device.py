"""The ``device`` parameter shared by every torch-backed estimator and encoder."""

from __future__ import annotations

__all__ = ["fork_rng", "resolve_device"]


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


def fork_rng(device):
    """Fork torch's random state for the CPU and for the CUDA device ``device`` uses.

    On exit every forked generator is restored, so seeding inside the block
    leaves the caller's random state (CPU and that GPU) as it was. Only the
    device in use is forked: forking every GPU would initialise CUDA on each
    of them (torch warns when there are many), and a CPU run never touches
    the CUDA state.

    Parameters
    ----------
    device : str or torch.device
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(1); before = torch.rand(1)
    >>> _ = torch.manual_seed(1)
    >>> with fork_rng("cpu"):
    ...     _ = torch.manual_seed(123); _ = torch.rand(5)
    >>> bool(torch.rand(1) == before)
    True
    """
    import torch

    device = resolve_device(device)
    if device.type != "cuda":
        return torch.random.fork_rng(devices=[])
    index = device.index if device.index is not None else torch.cuda.current_device()
    return torch.random.fork_rng(devices=[index])
