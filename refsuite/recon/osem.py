"""List-mode OSEM on LOR end points, with sensitivity image, attenuation and efficiencies.

Model (list-mode EM, Parra & Barrett, IEEE TMI 17 (1998) eq. 5; Reader et al., PMB 47 (2002)):
the expected count density of event ``i`` (LOR ``a_i``, TOF bin ``k_i``) is
``ybar_i = m_i (A x)_i + r_i`` with ``m_i`` the product of its attenuation and detection-efficiency
factors and ``r_i`` an additive (scatter + randoms) density; the sensitivity image is
``s_j = sum_L m_L a_Lj`` over all detectable LORs ``L`` (non-TOF: the TOF kernel sums to one over
the bins). One OSEM sub-iteration over the events ``S_b`` of subset ``b`` is

    x_j <- x_j / (s_j / n_subsets) * sum_{i in S_b} m_i a_ij / ybar_i .

Everything here sees LORs only as end points ``(xstart, xend)`` (mm); :func:`refsuite.recon.lm_osem`
adapts a scanner description to it.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from refsuite.devices import torch_device
from refsuite.projectors import TOFParameters, joseph_back, joseph_forward

__all__ = ["angle_subsets", "attenuation_factors", "lm_osem_lors", "sensitivity_image"]


def angle_subsets(xstart: torch.Tensor, xend: torch.Tensor, n_subsets: int, *, bins_per_subset: int = 8) -> list[torch.Tensor]:
    """Event indices of each subset, by transaxial LOR angle.

    The angle ``phi = atan2(dy, dx) mod pi`` of each LOR is cut into ``n_subsets * bins_per_subset``
    equal bins and bin ``b`` goes to subset ``b mod n_subsets``: each subset then spans all
    directions (interleaved, as in sinogram OSEM), which keeps the sub-iterations balanced.

    Returns
    -------
    list of torch.Tensor (int64)
        ``n_subsets`` index tensors partitioning ``range(n_events)``.
    """
    if not isinstance(n_subsets, int) or n_subsets < 1:
        raise ValueError(f"n_subsets must be an integer >= 1, got {n_subsets!r}")
    d = (xend - xstart).detach()
    phi = torch.remainder(torch.atan2(d[:, 1], d[:, 0]), math.pi)
    n_bins = n_subsets * bins_per_subset
    b = torch.clamp((phi / math.pi * n_bins).long(), max=n_bins - 1)
    sub = b % n_subsets
    return [torch.nonzero(sub == s).flatten() for s in range(n_subsets)]


def attenuation_factors(mu_map: torch.Tensor, xstart: torch.Tensor, xend: torch.Tensor, *, voxel_size, origin) -> torch.Tensor:
    """``exp(-int mu dl)`` along each LOR (dimensionless); ``mu_map`` in 1/mm on the image grid."""
    return torch.exp(-joseph_forward(mu_map, xstart, xend, voxel_size=voxel_size, origin=origin))


def sensitivity_image(
    xstart: torch.Tensor,
    xend: torch.Tensor,
    *,
    image_shape: Sequence[int],
    voxel_size,
    origin,
    weights: torch.Tensor | None = None,
    chunk_lors: int = 1 << 18,
) -> torch.Tensor:
    """Sensitivity image ``s_j = sum_L w_L a_Lj`` (mm) over a set of detectable LORs.

    Parameters
    ----------
    xstart, xend : torch.Tensor, shape (n, 3)
        End points (mm) of every detectable LOR, or of several sampled LORs per detector pair
        (points drawn inside the two crystal volumes, as Thull et al. do); then give each the
        weight ``1 / n_per_pair`` so that the sum is the pair average.
    image_shape, voxel_size, origin
        Image grid (see :func:`refsuite.projectors.joseph_forward`).
    weights : torch.Tensor, shape (n,), optional
        Per-LOR factors ``m_L`` (attenuation x efficiency x sampling weight). Default 1.
    chunk_lors : int
        LORs back-projected at once.
    """
    if weights is None:
        weights = torch.ones(xstart.shape[0], dtype=xstart.dtype, device=xstart.device)
    if weights.shape != (xstart.shape[0],):
        raise ValueError(f"weights must have shape ({xstart.shape[0]},), got {tuple(weights.shape)}")
    out = torch.zeros(tuple(image_shape), dtype=xstart.dtype, device=xstart.device)
    for a in range(0, xstart.shape[0], chunk_lors):
        sl = slice(a, a + chunk_lors)
        out += joseph_back(weights[sl], xstart[sl], xend[sl], image_shape=image_shape, voxel_size=voxel_size, origin=origin)
    return out


def lm_osem_lors(
    xstart: torch.Tensor,
    xend: torch.Tensor,
    *,
    sensitivity: torch.Tensor,
    voxel_size,
    origin,
    n_iter: int,
    n_subsets: int,
    tof: TOFParameters | None = None,
    tof_bin: torch.Tensor | None = None,
    tof_offset: torch.Tensor | None = None,
    event_factors: torch.Tensor | None = None,
    contamination: torch.Tensor | None = None,
    init: torch.Tensor | None = None,
    subsets: list[torch.Tensor] | None = None,
    callback: Callable[[int, int, torch.Tensor], None] | None = None,
    device=None,
) -> torch.Tensor:
    """List-mode OSEM reconstruction from event LOR end points.

    Parameters
    ----------
    xstart, xend : torch.Tensor, shape (n_events, 3)
        End points (mm) of each detected event's LOR.
    sensitivity : torch.Tensor, shape (nx, ny, nz) or (n_subsets, nx, ny, nz)
        :func:`sensitivity_image` for the same factors as the events (mm); voxels with zero
        sensitivity stay zero. One image: each subset uses ``sensitivity / n_subsets``, which is
        exact only when the detectable LORs are spread evenly over the angular subsets (an ideal
        cylinder). A stack: subset ``b`` uses ``sensitivity[b]``, the sensitivity of the
        detectable LORs falling in that subset (same :func:`angle_subsets` rule) -- needed for
        block scanners, whose gaps make the LOR angles uneven: with ``thull_sim`` and 6 subsets
        the single-image form loses ~10 % of the activity (measured; full EM is unbiased).
    voxel_size, origin
        Image grid (mm), as the projectors.
    n_iter, n_subsets : int
        Full iterations, and subsets per iteration (by transaxial angle, :func:`angle_subsets`).
    tof, tof_bin, tof_offset
        TOF kernel and each event's signed bin (see :mod:`refsuite.projectors.tof`).
    event_factors : torch.Tensor, shape (n_events,), optional
        ``m_i``: attenuation x efficiency of each event's LOR (dimensionless). Default 1.
    contamination : torch.Tensor, shape (n_events,), optional
        ``r_i``: expected scatter + randoms for each event, in the units of ``m_i (A x)_i``.
    init : torch.Tensor, optional
        Start image (default: ones inside the sensitive region).
    subsets : list of index tensors, optional
        Override the angular subsets.
    callback : callable(iteration, subset, image), optional
        Called after each sub-iteration (e.g. to record a figure of merit).
    device : str or torch.device, optional
        Default: CUDA when available, else CPU.

    Returns
    -------
    torch.Tensor, shape of ``sensitivity``
        Activity image in counts per voxel-volume-normalised unit: ``sum_j s_j x_j`` estimates the
        number of events (minus the contamination).
    """
    if not isinstance(n_iter, int) or n_iter < 1:
        raise ValueError(f"n_iter must be an integer >= 1, got {n_iter!r}")
    if not isinstance(n_subsets, int) or n_subsets < 1:
        raise ValueError(f"n_subsets must be an integer >= 1, got {n_subsets!r}")
    if sensitivity.ndim not in (3, 4):
        raise ValueError(f"sensitivity must be a 3-d image or a stack of subset images, got shape {tuple(sensitivity.shape)}")
    if sensitivity.ndim == 4 and subsets is None and sensitivity.shape[0] != n_subsets:
        raise ValueError(f"a stack of subset sensitivities needs n_subsets={sensitivity.shape[0]} images, got n_subsets={n_subsets}")
    if torch.any(sensitivity < 0):
        raise ValueError("sensitivity must be >= 0 everywhere")
    n = xstart.shape[0]
    for name, t in (("event_factors", event_factors), ("contamination", contamination), ("tof_bin", tof_bin)):
        if t is not None and t.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},), got {tuple(t.shape)}")
    if contamination is not None and torch.any(contamination < 0):
        raise ValueError("contamination must be >= 0")
    dev = torch_device(device, purpose="lm_osem_lors")
    dtype = sensitivity.dtype
    to = lambda t: None if t is None else t.to(device=dev, dtype=dtype)  # noqa: E731
    xs, xe, sens = to(xstart), to(xend), to(sensitivity)
    m = to(event_factors) if event_factors is not None else torch.ones(n, dtype=dtype, device=dev)
    r = to(contamination)
    tb, toff = to(tof_bin), to(tof_offset)
    subs = subsets if subsets is not None else angle_subsets(xs, xe, n_subsets)
    if sens.ndim == 4 and sens.shape[0] != len(subs):
        raise ValueError(f"{sens.shape[0]} subset sensitivities for {len(subs)} subsets")
    sens_sub = sens if sens.ndim == 4 else (sens / len(subs)).expand(len(subs), *sens.shape)
    shape = tuple(sens_sub.shape[1:])
    mask = sens_sub.sum(0) > 0
    x = torch.where(mask, to(init) if init is not None else torch.ones(shape, dtype=dtype, device=dev), torch.zeros(shape, dtype=dtype, device=dev))
    grid = dict(voxel_size=voxel_size, origin=origin, tof=tof)
    ok = sens_sub > 0
    # a voxel a subset does not see keeps its value in that sub-iteration (its update is 0/0)
    inv_sens = torch.where(ok, 1.0 / torch.where(ok, sens_sub, torch.ones_like(sens_sub)), torch.zeros_like(sens_sub))
    with torch.no_grad():
        for it in range(n_iter):
            for b, idx in enumerate(subs):
                if idx.numel() == 0:
                    continue
                kw = dict(grid, tof_bin=None if tb is None else tb[idx], tof_offset=None if toff is None else toff[idx])
                ybar = m[idx] * joseph_forward(x, xs[idx], xe[idx], **kw)
                if r is not None:
                    ybar = ybar + r[idx]
                ratio = torch.where(ybar > 0, m[idx] / torch.where(ybar > 0, ybar, torch.ones_like(ybar)), torch.zeros_like(ybar))
                upd = inv_sens[b] * joseph_back(ratio, xs[idx], xe[idx], image_shape=shape, **kw)
                x = torch.where(ok[b], x * upd, x)
                if callback is not None:
                    callback(it, b, x)
    return x
