"""Exact clipping of line segments to the image box (Smits' slab method), in torch.

The image of shape ``(nx, ny, nz)`` with voxel size ``(dx, dy, dz)`` and ``origin`` = world
position (mm) of the centre of voxel ``(0, 0, 0)`` occupies the box
``origin - voxel_size / 2 <= x <= origin + (shape - 1/2) * voxel_size`` (parallelproj's layout).
Everything here is differentiable with respect to the end points (almost everywhere: the
clipping is piecewise linear in them).
"""

from __future__ import annotations

import torch

__all__ = ["clip_segment_to_box", "chord_length"]


def clip_segment_to_box(
    qs: torch.Tensor, qe: torch.Tensor, low: torch.Tensor, high: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Parameters ``t_in <= t_out`` in [0, 1] of the part of ``qs + t (qe - qs)`` inside the box.

    Parameters
    ----------
    qs, qe : torch.Tensor, shape (n, 3)
        Segment end points (any length unit, same as ``low``/``high``).
    low, high : torch.Tensor, shape (3,)
        Box corners, ``low < high``.

    Returns
    -------
    t_in, t_out : torch.Tensor, shape (n,)
        Where the segment misses the box, ``t_out <= t_in`` (callers test ``t_out > t_in``).
        A segment lying exactly in a face plane counts as inside (closed box).
    """
    d = qe - qs
    zero = d == 0
    # Safe denominator: torch.where would otherwise carry an inf into the backward pass (0 * inf).
    d_safe = torch.where(zero, torch.ones_like(d), d)
    t1 = (low - qs) / d_safe
    t2 = (high - qs) / d_safe
    tlo = torch.minimum(t1, t2)
    thi = torch.maximum(t1, t2)
    inside = (qs >= low) & (qs <= high)
    big = torch.full_like(tlo, 2.0)
    # Axis parallel to a slab: no constraint when inside it, empty interval when outside.
    tlo = torch.where(zero, torch.where(inside, -big, big), tlo)
    thi = torch.where(zero, torch.where(inside, big, -big), thi)
    t_in = torch.clamp(tlo.amax(dim=1), min=0.0)
    t_out = torch.clamp(thi.amin(dim=1), max=1.0)
    return t_in, t_out


def chord_length(
    xstart: torch.Tensor,
    xend: torch.Tensor,
    *,
    box_low: torch.Tensor,
    box_high: torch.Tensor,
) -> torch.Tensor:
    """Length (mm) of the intersection of the segments ``xstart -> xend`` with a box.

    The exact reference of the chord-length oracle test: a Joseph projection of a uniform
    image of value 1 must equal this.

    Parameters
    ----------
    xstart, xend : torch.Tensor, shape (n, 3)
        End points in mm.
    box_low, box_high : torch.Tensor, shape (3,)
        Corners of the box in mm.

    Returns
    -------
    torch.Tensor, shape (n,)
        Intersection length in mm (0 where the segment misses the box).
    """
    t_in, t_out = clip_segment_to_box(xstart, xend, box_low, box_high)
    length = torch.linalg.vector_norm(xend - xstart, dim=1)
    return torch.clamp(t_out - t_in, min=0.0) * length
