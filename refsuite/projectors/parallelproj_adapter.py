"""Optional adapter to parallelproj (conda-forge only; never required, never vendored).

``HAVE_PARALLELPROJ`` records whether ``import parallelproj`` works; the functions raise a clear
error when it does not. They take and return torch tensors in refsuite's conventions (image
``(nx, ny, nz)``, ``origin`` = centre of voxel (0, 0, 0), mm; :class:`TOFParameters`), which are
parallelproj's own (Schramm & Thielemans, Front. Nucl. Med. 2023), except that parallelproj does
not renormalise the truncated TOF kernel and samples the end slabs of the image box at the plane
centres: on LORs crossing the whole image away from its faces the two agree to ~``1 - erf(n/sqrt2)``
(TOF) and to float32 rounding (non-TOF).
"""

from __future__ import annotations

import numpy as np
import torch

from .tof import TOFParameters, TOFSign

try:
    import parallelproj as _pp
except ImportError as _exc:  # optional dependency: record the capability and the reason
    _pp = None
    _IMPORT_ERROR: ImportError | None = _exc
else:
    _IMPORT_ERROR = None

HAVE_PARALLELPROJ = _pp is not None

__all__ = ["HAVE_PARALLELPROJ", "parallelproj_forward", "parallelproj_back"]


def _require():
    if _pp is None:
        raise ImportError("parallelproj is not importable (it is distributed through conda-forge only: "
                          f"`conda install -c conda-forge parallelproj`); import error: {_IMPORT_ERROR}")


def _np(t):
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)


def _tof_args(tof: TOFParameters, tof_bin, tof_offset, n):
    sign = 1.0 if tof.sign is TOFSign.TOWARDS_XEND else -1.0  # parallelproj counts bins towards xend
    bins = np.zeros(n, np.int16) if tof_bin is None else np.rint(sign * tof_bin.detach().cpu().numpy()).astype(np.int16)
    off = np.zeros(1, np.float32) if tof_offset is None else _np(sign * tof_offset)
    return bins, off, np.asarray([tof.sigma_mm], np.float32)


def parallelproj_forward(image: torch.Tensor, xstart: torch.Tensor, xend: torch.Tensor, *, voxel_size, origin,
                         tof: TOFParameters | None = None, tof_bin=None, tof_offset=None) -> torch.Tensor:
    """parallelproj's Joseph forward projection (float32), as :func:`~refsuite.projectors.joseph_forward`."""
    _require()
    vs = np.broadcast_to(np.asarray(voxel_size, np.float32), (3,)).copy()
    org = np.broadcast_to(np.asarray(origin, np.float32), (3,)).copy()
    if tof is None:
        out = _pp.joseph3d_fwd(_np(xstart), _np(xend), _np(image), org, vs)
    else:
        bins, off, sig = _tof_args(tof, tof_bin, tof_offset, xstart.shape[0])
        out = _pp.joseph3d_fwd_tof_lm(_np(xstart), _np(xend), _np(image), org, vs, float(tof.bin_width_mm), sig, off,
                                      float(tof.n_sigmas), bins)
    return torch.as_tensor(np.asarray(out), dtype=image.dtype, device=image.device)


def parallelproj_back(values: torch.Tensor, xstart: torch.Tensor, xend: torch.Tensor, *, image_shape, voxel_size, origin,
                      tof: TOFParameters | None = None, tof_bin=None, tof_offset=None) -> torch.Tensor:
    """parallelproj's Joseph back projection (float32), as :func:`~refsuite.projectors.joseph_back`."""
    _require()
    vs = np.broadcast_to(np.asarray(voxel_size, np.float32), (3,)).copy()
    org = np.broadcast_to(np.asarray(origin, np.float32), (3,)).copy()
    shape = tuple(int(s) for s in image_shape)
    if tof is None:
        out = _pp.joseph3d_back(_np(xstart), _np(xend), shape, org, vs, _np(values))
    else:
        bins, off, sig = _tof_args(tof, tof_bin, tof_offset, xstart.shape[0])
        out = _pp.joseph3d_back_tof_lm(_np(xstart), _np(xend), shape, org, vs, _np(values), float(tof.bin_width_mm), sig,
                                       off, float(tof.n_sigmas), bins)
    return torch.as_tensor(np.asarray(out), dtype=values.dtype, device=values.device)
