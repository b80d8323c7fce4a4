"""Torch intra-op thread count for a block of work."""

from __future__ import annotations

from contextlib import contextmanager

__all__ = ["limited_threads"]


@contextmanager
def limited_threads(n: int = 1):
    """Run a block with ``n`` torch intra-op threads, then restore the previous count.

    On shared CPUs (CI: 2 cores, several jobs) idle intra-op threads spin-wait and small 3-D
    ops slow down by up to 50x; one thread per job is then fastest.
    """
    import torch

    if int(n) < 1:
        raise ValueError(f"n (torch threads) must be >= 1, got {n!r}")
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)
