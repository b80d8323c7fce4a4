"""The one error path of the ``refsuite`` command.

Every command validates its inputs and its output location before any work, and reports
a bad input as one line on stderr naming the file or flag, what was expected and what was
found, with exit status 2 (failed checks exit 1). :func:`refsuite.cli.main` turns
:class:`UsageError` (and the ``ValueError``/``TypeError``/``OSError`` that the library raises
for bad input) into that line; ``--debug`` shows the traceback instead.

This module imports only the standard library, so command modules can use it at import
time without slowing down ``--help``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import sys
from pathlib import Path
from typing import Iterator

__all__ = ["UsageError", "CliParser", "positive_int", "nonnegative_int", "positive_int_list", "count", "positive_float",
           "finite_float", "nonnegative_float", "input_file", "input_dir", "output_file", "output_dir",
           "reading", "available_memory_bytes", "check_memory", "one_line", "device", "require_device"]


class UsageError(ValueError):
    """A bad command-line input: the message is the one line shown to the user (exit status 2)."""


def one_line(text: object, limit: int = 300) -> str:
    """``text`` collapsed to one line of at most ``limit`` characters."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


class CliParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``prog: error: ...``), exit status 2."""

    def error(self, message):  # noqa: D102 (argparse API)
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


# ------------------------------------------------------------------------ argparse value types
def _number(text: str, kind: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None


def _int_at_least(text: str, low: int) -> int:
    try:
        v = int(text)
    except ValueError:
        v = low - 1
    if v < low:
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
    return v


def positive_int(text: str) -> int:
    """An integer >= 1 (``argparse`` type)."""
    return _int_at_least(text, 1)


def nonnegative_int(text: str) -> int:
    """An integer >= 0 (``argparse`` type)."""
    return _int_at_least(text, 0)


def positive_int_list(text: str) -> tuple[int, ...]:
    """Comma-separated integers >= 1, e.g. ``16,32,64`` (``argparse`` type)."""
    try:
        values = tuple(int(x) for x in text.split(","))
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1, got {text!r}")
    return values


def count(text: str) -> int:
    """A count >= 1, also written as ``1e6`` (``argparse`` type); must be a whole number."""
    v = _number(text, "a whole number >= 1")
    if not math.isfinite(v) or v < 1 or v != int(v):
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(v)


def finite_float(text: str) -> float:
    """A finite real number (``argparse`` type)."""
    v = _number(text, "a finite number")
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


def positive_float(text: str) -> float:
    """A finite number > 0 (``argparse`` type)."""
    v = _number(text, "a finite number > 0")
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return v


def nonnegative_float(text: str) -> float:
    """A finite number >= 0 (``argparse`` type)."""
    v = _number(text, "a finite number >= 0")
    if not (math.isfinite(v) and v >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return v


# ----------------------------------------------------------------------------- paths
def input_file(path, flag: str, what: str = "a file") -> Path:
    """``path`` must be an existing, non-empty regular file; ``what`` names the expected content."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{flag} {str(p)!r}: no such file (expected {what})")
    if p.is_dir():
        raise UsageError(f"{flag} {str(p)!r}: is a directory (expected {what})")
    if not os.access(p, os.R_OK):
        raise UsageError(f"{flag} {str(p)!r}: not readable (expected {what})")
    if p.stat().st_size == 0:
        raise UsageError(f"{flag} {str(p)!r}: empty file (expected {what})")
    return p


def input_dir(path, flag: str, what: str = "a directory") -> Path:
    """``path`` must be an existing directory."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{flag} {str(p)!r}: no such directory (expected {what})")
    if not p.is_dir():
        raise UsageError(f"{flag} {str(p)!r}: not a directory (expected {what})")
    return p


def _writable_dir(d: Path, flag: str, target: Path) -> None:
    """The nearest existing ancestor of ``d`` must be a directory we can create files in."""
    probe = d
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"{flag} {str(target)!r}: {str(probe)!r} is a file, not a directory")
    tmp = probe / f".refsuite-write-probe-{os.getpid()}"
    try:  # os.access is always true for root; a real probe also catches read-only mounts
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise UsageError(f"{flag} {str(target)!r}: cannot write in {str(probe)!r} ({exc.strerror})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def output_file(path, flag: str, *, suffixes: tuple[str, ...] | None = None) -> Path:
    """``path`` must be writable as a file: not a directory, in a writable directory.

    Missing parent directories are allowed (they are created when the file is written) when
    the nearest existing one is writable. ``suffixes`` (e.g. ``(".nii", ".nii.gz")``) restricts
    the file name's ending.
    """
    p = Path(path)
    if str(path) == "" or p.name in ("", ".", ".."):
        raise UsageError(f"{flag} {str(path)!r}: expected a file name")
    if p.is_dir():
        raise UsageError(f"{flag} {str(p)!r}: is a directory (expected a file to write)")
    if suffixes is not None and not any(p.name.endswith(s) for s in suffixes):
        raise UsageError(f"{flag} {str(p)!r}: expected a file name ending in {' or '.join(suffixes)}")
    _writable_dir(p.parent, flag, p)
    return p


def output_dir(path, flag: str) -> Path:
    """``path`` must be an existing directory we can write in, or creatable."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"{flag} {str(p)!r}: is a file (expected a directory)")
    _writable_dir(p, flag, p)
    return p


@contextlib.contextmanager
def reading(path, flag: str, what: str) -> Iterator[None]:
    """Turn any failure while loading ``path`` into one :class:`UsageError` line.

    Zip/npz (``BadZipFile``, ``EOFError``, ``KeyError`` on a missing array), pickles, XGBoost,
    nibabel and torch checkpoints each raise their own exception types on a truncated or
    wrong-kind file; the user sees the file, what was expected and what the reader found.
    """
    try:
        yield
    except UsageError:
        raise
    except MemoryError:
        raise UsageError(f"{flag} {str(path)!r}: too large to load into memory (expected {what})") from None
    except Exception as exc:  # noqa: BLE001 (every reader failure is a bad input file here)
        if type(exc) in (ValueError, TypeError) and str(path) in str(exc):  # our reader named the file already
            raise UsageError(one_line(exc, 1000)) from exc
        raise UsageError(f"{flag} {str(path)!r}: cannot be read as {what} ({_reader_message(exc)})") from exc


def _reader_message(exc: BaseException) -> str:
    """What a third-party reader said, without native stack traces and log prefixes (XGBoost)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc).split("Stack trace:")[0])
    text = re.sub(r"\[\d\d:\d\d:\d\d\] \S+:\d+: ", "", text)
    return one_line(f"{type(exc).__name__}: {text}", 200)


# ---------------------------------------------------------------------------- resources
def available_memory_bytes() -> int:
    """Memory available to a new allocation (``MemAvailable`` of /proc/meminfo, else free pages)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    with contextlib.suppress(ValueError, OSError, AttributeError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return sys.maxsize


def _gb(n: float) -> str:
    return f"{n / 1e9:.3g} GB"


def check_memory(need_bytes: float, flag: str, value: object, hint: str) -> None:
    """Refuse (``UsageError``) a run whose estimated peak memory exceeds 80 % of what is available."""
    avail = available_memory_bytes()
    if need_bytes > 0.8 * avail:
        raise UsageError(f"{flag} {value}: needs about {_gb(need_bytes)} of memory, {_gb(avail)} available; {hint}")


def device(text: str) -> str:
    """A torch/XGBoost device name: ``cpu``, ``cuda`` or ``cuda:N`` (``argparse`` type)."""
    t = text.strip().lower()
    if t == "cpu" or t == "cuda" or (t.startswith("cuda:") and t[5:].isdigit()):
        return t
    raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {text!r}")


def require_device(dev: str | None, flag: str = "--device") -> None:
    """Refuse a CUDA device when torch sees no GPU (before any work)."""
    if dev is None or not str(dev).startswith("cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        raise UsageError(f"{flag} {dev}: CUDA is not available on this machine (use --device cpu)")
    idx = int(dev.split(":")[1]) if ":" in dev else 0
    if idx >= torch.cuda.device_count():
        raise UsageError(f"{flag} {dev}: this machine has {torch.cuda.device_count()} CUDA device(s)")
