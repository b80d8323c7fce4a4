"""The compiled CPU path of the Joseph projector: numba kernels behind torch autograd Functions.

:func:`kernel_forward` / :func:`kernel_back` take validated arguments (see ``joseph._check_args``)
and return torch tensors. They are differentiable with respect to the image (forward) and the
values (back): the backward of each is the other kernel, so ``<A x, y> = <x, A^T y>`` holds for
the gradients as for the operators, also at higher order. They are *not* differentiable with
respect to the LOR end points: ``joseph.py`` routes such calls to the torch path.

Threads: the kernels use ``torch.get_num_threads()`` threads (capped at numba's
``NUMBA_NUM_THREADS``), so ``torch.set_num_threads`` / :func:`refsuite._threads.limited_threads`
govern both paths alike. numba is imported on first use (not at ``import refsuite``); compiled
code is cached on disk next to the module (``cache=True``), so only the first run on a machine
pays the JIT compilation (seconds).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from refsuite._threads import numba_threads

__all__ = ["numba_available", "load_kernels", "kernel_forward", "kernel_back", "KERNEL_DTYPES"]

#: dtypes the compiled kernels handle (others take the torch path).
KERNEL_DTYPES = (torch.float32, torch.float64)

_MODULE = None
_IMPORT_ERROR: Exception | None = None


def load_kernels():
    """The numba kernel module, imported (and its cache loaded) on first use."""
    global _MODULE, _IMPORT_ERROR
    if _MODULE is None and _IMPORT_ERROR is None:
        try:
            from . import _joseph_numba
        except ImportError as exc:  # numba missing or broken: the torch path remains
            _IMPORT_ERROR = exc
        else:
            _MODULE = _joseph_numba
    if _MODULE is None:
        raise ImportError(f"the numba backend of the Joseph projector needs numba>=0.60 ({_IMPORT_ERROR})")
    return _MODULE


def numba_available() -> bool:
    """Whether the compiled CPU kernels can be used (numba importable)."""
    try:
        load_kernels()
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class _Geometry:
    """Numpy views of the validated LOR geometry (end points, TOF bin indices and offsets in the
    compute dtype, mm; length-1 dummies where absent)."""

    xs: np.ndarray
    xe: np.ndarray
    voxel_size: np.ndarray
    origin: np.ndarray
    tof_bin: np.ndarray
    tof_offset: np.ndarray
    tofp: np.ndarray
    erf_table: np.ndarray

    def args(self):
        """The geometry arguments of the kernels, in their order."""
        return self.xs, self.xe, self.voxel_size, self.origin, self.tof_bin, self.tof_offset, self.tofp, self.erf_table


def _geometry(xs, xe, voxel_size, origin, tof, tof_bin, tof_offset, dtype) -> _Geometry:
    as_np = lambda t: t.detach().to(dtype).contiguous().numpy()  # noqa: E731
    dummy = np.zeros(1, dtype=torch.empty(0, dtype=dtype).numpy().dtype)
    use = tof is not None
    kb = as_np(tof_bin) if use and tof_bin is not None else dummy
    ko = as_np(tof_offset) if use and tof_offset is not None else dummy
    tofp, table = load_kernels().tof_constants(tof, has_bin=use and tof_bin is not None,
                                               has_offset=use and tof_offset is not None)
    return _Geometry(as_np(xs), as_np(xe), np.asarray(voxel_size, np.float64), np.asarray(origin, np.float64),
                     kb, ko, tofp, table)


def _forward_np(image: torch.Tensor, g: _Geometry) -> torch.Tensor:
    k = load_kernels()
    img = image.detach().contiguous()
    out = np.empty(g.xs.shape[0], dtype=img.numpy().dtype)
    with numba_threads():
        k.forward(img.numpy().reshape(-1), np.asarray(img.shape, np.int64), *g.args(), out)
    return torch.from_numpy(out)


def _back_np(values: torch.Tensor, g: _Geometry, shape) -> torch.Tensor:
    k = load_kernels()
    v = values.detach().contiguous().numpy()
    out = np.zeros(int(np.prod(shape)), dtype=v.dtype)
    with numba_threads() as n_threads:  # one slab of x planes per thread
        k.back(v, np.asarray(shape, np.int64), *g.args(), out, n_threads)
    return torch.from_numpy(out.reshape(shape))


class _Forward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, image, geometry):
        ctx.geometry, ctx.shape = geometry, tuple(image.shape)
        return _forward_np(image, geometry)

    @staticmethod
    def backward(ctx, grad):
        return (_Back.apply(grad, ctx.geometry, ctx.shape) if ctx.needs_input_grad[0] else None), None


class _Back(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values, geometry, shape):
        ctx.geometry = geometry
        return _back_np(values, geometry, shape)

    @staticmethod
    def backward(ctx, grad):
        return (_Forward.apply(grad, ctx.geometry) if ctx.needs_input_grad[0] else None), None, None


def kernel_forward(image, xs, xe, *, voxel_size, origin, tof, tof_bin, tof_offset) -> torch.Tensor:
    """Compiled forward projection (arguments validated by the caller; ``tof_bin``/``tof_offset``
    as in :func:`~refsuite.projectors.joseph_forward`). Differentiable with respect to ``image`` only."""
    return _Forward.apply(image, _geometry(xs, xe, voxel_size, origin, tof, tof_bin, tof_offset, image.dtype))


def kernel_back(values, xs, xe, *, image_shape, voxel_size, origin, tof, tof_bin, tof_offset) -> torch.Tensor:
    """Compiled back projection, the exact adjoint of :func:`kernel_forward`. Differentiable with
    respect to ``values`` only."""
    return _Back.apply(values, _geometry(xs, xe, voxel_size, origin, tof, tof_bin, tof_offset, values.dtype),
                       tuple(image_shape))
