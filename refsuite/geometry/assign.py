"""Crystal assignment: which block and crystal voxel of a scanner a global point lies in."""

from __future__ import annotations

import numpy as np

__all__ = ["assign_crystals"]


def assign_crystals(scanner, points, *, chunk: int = 65536):
    """Block and crystal voxel of global points (n, 3) mm.

    The block is the one whose box contains the point, else the nearest box (distance from
    the point to the box); the crystal is then binned by the block's LUT
    (:meth:`refsuite.geometry.CrystalLUT.locate`). Where blocks overlap (see
    :func:`refsuite.geometry.overlapping_blocks`) a point may lie in two boxes; the lower block
    index is returned.

    Parameters
    ----------
    scanner : refsuite.geometry.Scanner
    points : array_like (n, 3)
        Global positions, mm.
    chunk : int
        Points handled at once (memory ~ chunk x n_blocks).

    Returns
    -------
    block, crystal : int32 arrays (n,)
    """
    p = np.asarray(points, float).reshape(-1, 3)
    half = scanner.block_size / 2
    blocks = np.empty(len(p), np.int32)
    for s0 in range(0, len(p), chunk):
        q = p[s0:s0 + chunk]
        loc = np.einsum("bij,nbj->nbi", scanner.axes, q[:, None, :] - scanner.positions[None])
        out = np.maximum(np.abs(loc) - half, 0.0)
        blocks[s0:s0 + chunk] = np.argmin(np.einsum("nbi,nbi->nb", out, out), axis=1)
    crystals = scanner.locate(p, blocks).astype(np.int32)
    return blocks, crystals
