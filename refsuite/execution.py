"""Where the studies and their embarrassingly parallel work run: in-process, or as Dask tasks.

One small interface, :class:`Executor`, with one method, :meth:`Executor.map`: apply a
function to a list of items and return the results in item order (and :meth:`Executor.imap`,
its streaming form for long runs: results in order, a bounded number of tasks in flight). Where the tasks run is
chosen when the executor is made:

* in-process (the default): a plain loop in the calling process. Nothing else is imported,
  no service is started and the results are those of a direct call;
* ``workers=N``: a ``distributed.LocalCluster`` of ``N`` worker processes with one thread each,
  started by the executor and closed with it;
* ``scheduler=ADDRESS``: a running Dask cluster (``tcp://host:8786``; e.g. one started with
  ``dask-jobqueue`` on SLURM/PBS, or ``dask scheduler`` / ``dask worker`` by hand). The workers
  must see the same Python environment and, for tasks that write files, the same file system;
* code already running inside a Dask task (a study of a report run on a cluster) gets the
  cluster it runs on from :func:`current_executor`: its sub-tasks go to the same workers.

Reproducibility: every task derives its random numbers from its item (a case index, a study,
a scan's own seed), never from the worker it lands on, so the results do not depend on the
number of workers nor on the order the tasks finish. A worker that dies mid-task (killed, out
of memory) makes the scheduler run the task again on another worker (up to
``distributed.scheduler.allowed-failures`` times, 3 by default); a task that raises is retried
``retries`` times before its exception is raised here.

Dask (``pip install 'refsuite[cluster]'``) is imported only when a cluster is asked for.
"""

from __future__ import annotations

import os
import re
import sys
import time
import uuid
from typing import Any, Callable, Iterable

__all__ = ["Executor", "check_execution", "current_executor", "executor_for", "add_execution_flags",
           "executor_from_args", "MAX_LOCAL_WORKERS_PER_CORE"]

#: a local cluster may have at most this many worker processes per CPU core (more only thrash)
MAX_LOCAL_WORKERS_PER_CORE = 4

# tcp://host:port, tls://..., ucx://..., inproc://..., or host:port
_ADDRESS = re.compile(r"^(?:[a-z][a-z0-9+]*://)?[^\s/:]+(?::\d{1,5})?/?$", re.IGNORECASE)


def check_execution(workers: int | None = None, scheduler: str | None = None, *,
                    names: tuple[str, str] = ("workers", "scheduler")) -> None:
    """Validate an execution choice before any work: ValueError/TypeError naming the flag.

    Parameters
    ----------
    workers : int or None
        Worker processes of a local cluster: 1 ... ``MAX_LOCAL_WORKERS_PER_CORE`` x CPU cores.
    scheduler : str or None
        Address of a running Dask scheduler, e.g. ``tcp://10.0.0.5:8786``.
    names : (str, str)
        How the two parameters are named in messages (``("--workers", "--scheduler")`` for the CLI).
    """
    wname, sname = names
    if workers is not None and scheduler is not None:
        raise ValueError(f"{wname} {workers} and {sname} {scheduler!r}: give one of them (a local cluster, or "
                         "a running one)")
    if workers is not None:
        if isinstance(workers, bool) or not isinstance(workers, int):
            raise TypeError(f"{wname} must be an integer >= 1, got {workers!r}")
        cores = os.cpu_count() or 1
        limit = MAX_LOCAL_WORKERS_PER_CORE * cores
        if not 1 <= workers <= limit:
            raise ValueError(f"{wname} {workers}: must be 1 ... {limit} ({MAX_LOCAL_WORKERS_PER_CORE} worker processes "
                             f"per CPU core, this machine has {cores}); for more, start a cluster and pass {sname}")
    if scheduler is not None:
        if not isinstance(scheduler, str) or not _ADDRESS.match(scheduler.strip()):
            raise ValueError(f"{sname} {scheduler!r}: expected a Dask scheduler address such as "
                             "tcp://host:8786 or host:8786")


def _import_distributed(what: str):
    try:
        import distributed
    except ImportError:
        raise ValueError(f"{what}: needs dask.distributed, which is not installed (pip install "
                         "'refsuite[cluster]')") from None
    return distributed


class Executor:
    """Run independent tasks in-process (default), on a local Dask cluster or on a running one.

    Parameters
    ----------
    workers : int, optional
        Start a ``distributed.LocalCluster`` of this many worker processes (one thread each).
    scheduler : str, optional
        Connect to the Dask scheduler at this address instead.
    retries : int
        How many times a task that raises is run again before its error is raised (a task whose
        worker dies is rescheduled by Dask regardless).
    connect_timeout_s : float
        How long to wait for the scheduler (``scheduler=``) before refusing it, s.
    names : (str, str)
        Names of ``workers`` and ``scheduler`` in error messages.

    Use as a context manager (or call :meth:`close`) so that a local cluster is shut down.
    """

    def __init__(self, *, workers: int | None = None, scheduler: str | None = None, retries: int = 1,
                 connect_timeout_s: float = 10.0, names: tuple[str, str] = ("workers", "scheduler"),
                 _client=None) -> None:
        check_execution(workers, scheduler, names=names)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an integer >= 0, got {retries!r}")
        if not connect_timeout_s > 0:
            raise ValueError(f"connect_timeout_s must be > 0, got {connect_timeout_s!r}")
        self.retries = retries
        self._cluster = None
        self._client = _client
        self._owns_client = False
        self._nested = _client is not None
        if workers is not None:
            self._start_local(workers, names[0])
        elif scheduler is not None:
            self._connect(scheduler.strip(), connect_timeout_s, names[1])

    def _start_local(self, workers: int, name: str) -> None:
        import logging

        distributed = _import_distributed(f"{name} {workers}")
        import dask
        # memory_limit=0: no per-worker kill threshold; the commands check the memory of all
        # concurrent tasks before they start. No dashboard: several runs may share a machine.
        # Dask's default MALLOC_TRIM_THRESHOLD_=65536 makes glibc return every freed block to the
        # OS: the numpy/torch temporaries of a PVC case then cost page faults, 2-3x the run time.
        with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
            self._cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                     memory_limit=0, dashboard_address=None,
                                                     silence_logs=logging.ERROR)
        self._client = distributed.Client(self._cluster, set_as_default=False)
        self._owns_client = True

    def _connect(self, address: str, timeout_s: float, name: str) -> None:
        distributed = _import_distributed(f"{name} {address!r}")
        try:
            self._client = distributed.Client(address, timeout=f"{timeout_s}s", set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ValueError(f"{name} {address!r}: no Dask scheduler answered within {timeout_s:g} s "
                             f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None
        self._owns_client = True

    # ------------------------------------------------------------------ what it is
    @property
    def kind(self) -> str:
        """``"in-process"``, ``"local cluster"``, ``"scheduler"`` or ``"worker"`` (inside a Dask task)."""
        if self._client is None:
            return "in-process"
        if self._nested:
            return "worker"
        return "local cluster" if self._cluster is not None else "scheduler"

    @property
    def n_workers(self) -> int:
        """Workers tasks can run on now (1 in-process)."""
        if self._client is None:
            return 1
        return max(1, len(self._client.scheduler_info(n_workers=-1).get("workers", {})))

    @property
    def client(self):
        """The ``distributed.Client`` of a local cluster or a running one, else None (in-process or
        inside a task). For libraries with their own Dask training, e.g. ``xgboost.dask``."""
        return None if self._nested else self._client

    def describe(self) -> str:
        """One line for logs and reports, e.g. ``"local cluster of 4 workers"``."""
        if self._client is None:
            return "in-process"
        where = {"local cluster": "local cluster", "scheduler": f"cluster at {self._client.scheduler.address}",
                 "worker": "the cluster this task runs on"}[self.kind]
        n = self.n_workers
        return f"{where} of {n} worker{'' if n == 1 else 's'}"

    def cpu_seconds(self) -> float:
        """CPU time used so far by the processes the tasks run in (the workers', or this one's), s.

        The difference over a run divided by its wall time is the parallelism the run obtained
        (on a shared machine, less than the number of workers).
        """
        if self._client is None:
            return time.process_time()
        return float(sum(self._client.run(time.process_time).values()))

    # ------------------------------------------------------------------ the work
    def map(self, fn: Callable[[Any], Any], items: Iterable[Any], *, key: str | Callable[[Any], str] | None = None,
            progress: bool = False, desc: str | None = None, unit: str = "task",
            on_done: Callable[[int, Any], None] | None = None) -> list:
        """``[fn(item) for item in items]``, each call a task; results in item order.

        Parameters
        ----------
        fn : callable
            A module-level function (it is pickled by reference for the workers) of one item.
            Its randomness must come from the item (e.g. a seed derived from the item's index).
        items : iterable
            The tasks' arguments (picklable).
        key : str or callable, optional
            Task name prefix, or a function of the item giving its name (shown by Dask's
            dashboard and in errors); default ``fn.__name__``. Each call gets fresh task keys.
        progress : bool
            Show a tqdm bar that advances as tasks finish (on the cluster: as futures complete).
        desc, unit : str
            The bar's label and unit.
        on_done : callable, optional
            ``on_done(index, result)``, called in this process as each task finishes (in the order
            they finish), e.g. to record a finished chunk in a manifest.

        Returns
        -------
        list
            ``fn(item)`` for each item, in the order of ``items``. The first task that fails
            (after its retries) cancels the others and its exception is raised here.
        """
        items = list(items)
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {fn!r}")
        from tqdm.auto import tqdm

        bar = tqdm(total=len(items), desc=desc or getattr(fn, "__name__", "tasks"), unit=unit, disable=not progress)
        try:
            if self._client is None:
                return self._map_here(fn, items, bar, on_done)
            return self._map_dask(fn, items, key, bar, on_done)
        finally:
            bar.close()

    def imap(self, fn: Callable[[Any], Any], items: Iterable[Any], *, window: int | None = None,
             key: str | None = None, progress: bool = False, desc: str | None = None, unit: str = "task"):
        """Generator of ``fn(item)`` for each item, in item order, with a bounded number of tasks in flight.

        For streams too long to hold at once (the chunks of a large simulation written to one
        file): ``items`` is consumed lazily and at most ``window`` tasks (default twice the
        workers) are submitted or finished but not yet yielded, so memory stays bounded. The
        tasks run in parallel; the results come back in order. In-process: a plain lazy loop.
        ``fn``, ``key``, ``progress``, ``desc`` and ``unit`` are those of :meth:`map`; a failing
        task's error is raised here and the tasks still in flight are cancelled.
        """
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {fn!r}")
        if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
            raise ValueError(f"window must be an integer >= 1, got {window!r}")
        from tqdm.auto import tqdm

        with tqdm(desc=desc or getattr(fn, "__name__", "tasks"), unit=unit, disable=not progress) as bar:
            if self._client is None:
                for item in items:
                    result = fn(item)
                    bar.update(1)
                    yield result
            elif self._nested:
                from distributed import worker_client

                with worker_client() as client:
                    yield from self._stream(client, fn, items, window, key, bar)
            else:
                yield from self._stream(self._client, fn, items, window, key, bar)

    def _stream(self, client, fn, items, window, key, bar):
        from collections import deque

        window = window or 2 * self.n_workers
        label, token = _safe(key or getattr(fn, "__name__", "task")), uuid.uuid4().hex[:10]
        items, pending, submitted = iter(items), deque(), 0

        def submit() -> bool:
            nonlocal submitted
            for item in items:
                pending.append(client.submit(fn, item, key=f"{label}-{token}-{submitted}", retries=self.retries,
                                             pure=False))
                submitted += 1
                return True
            return False

        try:
            while len(pending) < window and submit():
                pass
            while pending:
                result = pending.popleft().result()  # the oldest task: results in item order
                submit()
                bar.update(1)
                yield result
        finally:
            client.cancel([f for f in pending if not f.done()])

    @staticmethod
    def _map_here(fn, items, bar, on_done) -> list:
        results = []
        for i, item in enumerate(items):
            results.append(fn(item))
            if on_done is not None:
                on_done(i, results[-1])
            bar.update(1)
        return results

    def _map_dask(self, fn, items, key, bar, on_done) -> list:
        if self._nested:  # inside a task: hand this worker's thread to the sub-tasks while waiting
            from distributed import worker_client

            with worker_client() as client:
                return self._submit(client, fn, items, key, bar, on_done)
        return self._submit(self._client, fn, items, key, bar, on_done)

    def _submit(self, client, fn, items, key, bar, on_done) -> list:
        from distributed import as_completed

        token = uuid.uuid4().hex[:10]
        label = key if callable(key) else (lambda _item, _k=key or getattr(fn, "__name__", "task"): _k)
        keys = [f"{_safe(label(item))}-{token}-{i}" for i, item in enumerate(items)]
        futures = [client.submit(fn, item, key=k, retries=self.retries, pure=False) for item, k in zip(items, keys)]
        index = {f.key: i for i, f in enumerate(futures)}
        results: list = [None] * len(items)
        try:
            for future, result in as_completed(futures, with_results=True, loop=client.loop):
                i = index[future.key]
                results[i] = result
                if on_done is not None:
                    on_done(i, result)
                bar.update(1)
        finally:
            client.cancel([f for f in futures if not f.done()])
        return results

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Disconnect, and shut down a local cluster this executor started."""
        if self._client is not None and self._owns_client:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        self._client = self._cluster = None

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Executor({self.kind})"


def _safe(name: object) -> str:
    """A task-key fragment: no characters Dask uses as separators."""
    return re.sub(r"[^A-Za-z0-9_.=+]", "_", str(name))[:80] or "task"


def current_executor() -> Executor:
    """The executor of the code that calls it: the cluster when running inside a Dask task, else in-process.

    Lets a study (or a library function) spread its own independent pieces over the cluster the
    report runs on, without being told, and run them in a loop otherwise. Dask is not imported
    unless it already is.
    """
    if "distributed" in sys.modules:
        from distributed import get_client, get_worker

        try:
            get_worker()
        except ValueError:
            return Executor()
        return Executor(_client=get_client())
    return Executor()


def executor_for(workers: int | None = None, scheduler: str | None = None, *,
                 names: tuple[str, str] = ("workers", "scheduler")) -> Executor:
    """:class:`Executor` of ``workers``/``scheduler`` when either is given, else :func:`current_executor`."""
    if workers is None and scheduler is None:
        return current_executor()
    return Executor(workers=workers, scheduler=scheduler, names=names)



def add_execution_flags(parser, *, what: str = "the tasks") -> None:
    """Add ``--workers N`` and ``--scheduler ADDRESS`` (mutually exclusive) to an argparse parser."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--workers", type=int, metavar="N", default=None,
                       help=f"run {what} on a local Dask cluster of N worker processes (needs the 'cluster' "
                            "extra); default: in this process")
    group.add_argument("--scheduler", metavar="ADDRESS", default=None,
                       help=f"run {what} on the running Dask cluster at ADDRESS (e.g. tcp://host:8786); its "
                            "workers need this Python environment and the output folder on a shared file system")


def executor_from_args(args) -> Executor:
    """The :class:`Executor` of parsed ``--workers``/``--scheduler`` flags (ValueError naming the flag)."""
    return executor_for(args.workers, args.scheduler, names=("--workers", "--scheduler"))
