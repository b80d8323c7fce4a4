"""The one place a torch device is resolved from a user's ``device=`` argument."""

from __future__ import annotations

__all__ = ["torch_device"]


def torch_device(device=None, *, purpose: str = ""):
    """``torch.device`` for a solver's ``device=`` argument.

    Parameters
    ----------
    device : str, torch.device or None
        ``None``: ``"cuda"`` when torch sees a GPU, else ``"cpu"``. ``"cpu"``, ``"cuda"`` or
        ``"cuda:N"`` (or a ``torch.device``): that device.
    purpose : str
        What the device is for, quoted in the error when CUDA is asked for but absent.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        ``device`` is not a device torch knows.
    RuntimeError
        A CUDA device is requested on a machine without one
        (:func:`refsuite.capabilities.require`).
    """
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or a torch.device, got {device!r}") from exc
    if dev.type == "cuda":
        from .capabilities import require

        require("cuda", purpose or f"device={device!r}")
    return dev
