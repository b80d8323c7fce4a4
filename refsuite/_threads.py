"""Thread counts for a block of work: torch's intra-op threads and numba's parallel loops."""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager

__all__ = ["limited_threads", "numba_threads", "use_numba_workqueue"]

#: Serialises numba kernel launches (numba's workqueue threading layer is not re-entrant; the
#: kernels release the GIL, so Python threads could otherwise launch two at once).
_NUMBA_LAUNCH = threading.Lock()


def use_numba_workqueue() -> None:
    """Make numba's own thread pool (not OpenMP) its threading layer, unless
    ``NUMBA_THREADING_LAYER`` says otherwise. Call before the first parallel launch.

    OpenMP worker threads left spinning by a numba launch slowed torch (same libgomp) 10-20x on a
    shared 2-core machine.
    """
    if "NUMBA_THREADING_LAYER" not in os.environ:
        import numba

        numba.config.THREADING_LAYER = "workqueue"


@contextmanager
def numba_threads():
    """Run numba parallel loops with torch's thread count (capped at numba's maximum), one launch
    at a time; yields the number of threads."""
    import numba
    import torch

    with _NUMBA_LAUNCH:
        old = numba.get_num_threads()
        numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
        try:
            yield numba.get_num_threads()
        finally:
            numba.set_num_threads(old)


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
