"""Atomic file output: write to a temporary file next to the target, then rename.

A run that fails or is interrupted half-way never leaves a truncated output file behind,
and an existing file is replaced only once the new one is complete (``os.replace`` is
atomic on POSIX and Windows when source and target are on the same file system).

Temporary files are named ``.{name}.refsuite.tmp-{pid}-{n}{suffix}`` next to the target
(``pid`` the writing process, ``n`` a per-process counter), so that

* SIGTERM and SIGINT (what ``timeout``, batch schedulers and Ctrl-C send) remove the
  temporary files of the running process before the signal takes its usual effect
  (a handler is installed on first use from the main thread; an existing handler is
  called afterwards);
* a temporary file left by a process that was killed outright (SIGKILL, power loss) is
  recognised by the next run writing the same output: its ``pid`` is no longer alive,
  and the file is removed.

Files are created with mode ``0o666`` minus the process umask, like ``open()`` does
(``tempfile.mkstemp`` would create them ``0o600``).

This module imports only the standard library and sits at the bottom of the package, so every
layer (geometry and phantoms included) can write its files through it; :mod:`refsuite.io.atomic`
hands the same functions on.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import threading
from pathlib import Path
from typing import IO, Iterator

__all__ = ["atomic_path", "atomic_open", "atomic_write_bytes", "atomic_write_text", "temp_name",
           "remove_stale_temps", "temp_files_of"]

_TAG = ".refsuite.tmp-"
_counter = itertools.count()
_lock = threading.Lock()
_live: dict[Path, int] = {}  # temporary path -> pid that registered it (a forked child must not remove it)
_previous: dict[int, object] = {}  # signal number -> handler that was installed before ours


def temp_name(target: str | os.PathLike, *, suffix: str | None = None, pid: int | None = None) -> Path:
    """The temporary path used for ``target``: ``.{name}.refsuite.tmp-{pid}-{n}{suffix}`` beside it."""
    target = Path(target)
    sfx = target.suffix if suffix is None else suffix
    return target.parent / f".{target.name}{_TAG}{os.getpid() if pid is None else pid}-{next(_counter)}{sfx}"


def temp_files_of(target: str | os.PathLike) -> list[Path]:
    """Temporary files of ``target`` present in its directory (of any process)."""
    target = Path(target)
    prefix = f".{target.name}{_TAG}"
    try:
        names = os.listdir(target.parent)
    except OSError:
        return []
    return [target.parent / n for n in names if n.startswith(prefix)]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temps(target: str | os.PathLike) -> list[Path]:
    """Remove temporary files of ``target`` whose writing process is no longer alive; returns them."""
    removed = []
    pattern = re.compile(re.escape(f".{Path(target).name}{_TAG}") + r"(\d+)-\d+")
    for path in temp_files_of(target):
        m = pattern.match(path.name)
        if m is None or _pid_alive(int(m.group(1))):
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


def _cleanup_and_forward(signum, frame) -> None:
    pid = os.getpid()
    with _lock:
        mine = [p for p, owner in _live.items() if owner == pid]
    for p in mine:
        with contextlib.suppress(OSError):
            p.unlink()
    prev = _previous.get(signum, signal.SIG_DFL)
    if callable(prev):
        prev(signum, frame)
    elif prev == signal.SIG_DFL:  # die of the same signal, with the exit status the caller expects
        signal.signal(signum, signal.SIG_DFL)
        os.kill(pid, signum)


def _install_handlers() -> None:
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be installed from the main thread
    for signum in (signal.SIGTERM, signal.SIGINT):
        current = signal.getsignal(signum)
        if current is _cleanup_and_forward or current == signal.SIG_IGN or current is None:
            continue
        _previous[signum] = current
        signal.signal(signum, _cleanup_and_forward)


def _create(tmp: Path) -> None:
    """Create ``tmp`` empty with mode 0o666 & ~umask (os.open honours the umask)."""
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; rename it onto ``path`` on success.

    For libraries that want a file name rather than a file object (uproot, nibabel, numpy).
    On an exception, SIGTERM or SIGINT the temporary file is removed and ``path`` is left
    untouched; stale temporary files of ``path`` from killed runs are removed first.
    ``suffix`` (default: the target's) ends the temporary name, for libraries that pick the
    format from it (``".nii.gz"``, ``".npz"``).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    _install_handlers()
    tmp = temp_name(target, suffix=suffix)
    with _lock:
        _live[tmp] = os.getpid()
    try:
        _create(tmp)
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    finally:
        with _lock:
            _live.pop(tmp, None)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file for writing (``"w"`` or ``"wb"``); it replaces ``path`` on success."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=None if "b" in mode else encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w") as fh:
        fh.write(text)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)
