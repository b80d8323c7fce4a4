"""Crystal-voxel lookup tables: the map L from crystal index to a box in the block frame.

Thull et al. (sec. 2.1, Fig. 1 left) represent the gamma-positioning of a block as a lookup
table ``L: N_cr -> R^3`` of crystal-voxel centres in the block's local frame (x planar,
y depth of interaction, z planar), with regular or irregular layouts and sampling inside
each voxel's bounds. A :class:`CrystalLUT` holds the centres and half-sizes (mm) of
axis-aligned, non-overlapping boxes; the same LUT is shared by every block of a scanner.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from refsuite._checks import check_finite, check_positive

__all__ = ["CrystalLUT"]


@dataclass(frozen=True, eq=False)
class CrystalLUT:
    """Crystal voxels of one detector block, in the block's local frame.

    Parameters
    ----------
    centres : ndarray, shape (M, 3)
        Voxel centres (local x, y, z), mm.
    half_sizes : ndarray, shape (M, 3)
        Voxel half-sizes along local x, y, z, mm (> 0).

    Notes
    -----
    :meth:`locate` bins a local point to the voxel that contains it, exactly. A point in a
    gap between voxels (reflector, sub-block gaps) or outside them all goes to the voxel
    with the nearest centre, which is what an Anger-logic or trained positioning model
    would report.
    """

    centres: np.ndarray
    half_sizes: np.ndarray
    _cells: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        c = check_finite("centres", self.centres).reshape(-1, 3) if np.size(self.centres) else None
        if c is None or c.shape[0] == 0:
            raise ValueError("centres must hold at least one crystal voxel, shape (M, 3)")
        h = check_positive("half_sizes", self.half_sizes, unit="mm")
        h = np.broadcast_to(h, c.shape).copy()
        object.__setattr__(self, "centres", c.copy())
        object.__setattr__(self, "half_sizes", h)
        self.centres.setflags(write=False)
        self.half_sizes.setflags(write=False)

    # ---------------------------------------------------------------- construction
    @classmethod
    def regular(cls, size_mm, counts, *, offset_mm=(0.0, 0.0, 0.0)) -> "CrystalLUT":
        """A regular grid filling a box.

        Parameters
        ----------
        size_mm : (3,) float
            Full size of the box along local x, y, z, mm.
        counts : (3,) int
            Number of voxels along x, y, z (``counts[1] == 1``: planar positioning, no DOI).
        offset_mm : (3,) float
            Local position of the box centre, mm.

        Returns
        -------
        CrystalLUT
            Voxels ordered with z fastest, then y, then x (C order of ``(nx, ny, nz)``).
        """
        size = check_positive("size_mm", size_mm, unit="mm").reshape(3)
        n = np.asarray(counts).reshape(3)
        if not np.issubdtype(n.dtype, np.integer) or np.any(n < 1):
            raise ValueError(f"counts must be three integers >= 1, got {counts!r}")
        pitch = size / n
        axes = [(np.arange(n[i]) + 0.5) * pitch[i] - size[i] / 2 + offset_mm[i] for i in range(3)]
        grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
        return cls(grid, np.broadcast_to(pitch / 2, grid.shape))

    @classmethod
    def from_axes(cls, x_centres, y_centres, z_centres, half_sizes) -> "CrystalLUT":
        """Tensor-product layout from per-axis centres (irregular spacing allowed), mm."""
        grid = np.stack(np.meshgrid(x_centres, y_centres, z_centres, indexing="ij"), -1).reshape(-1, 3)
        return cls(grid, np.broadcast_to(np.asarray(half_sizes, float), grid.shape))

    @classmethod
    def concatenate(cls, luts) -> "CrystalLUT":
        """Union of several layouts (e.g. staggered DOI layers), indices in the given order."""
        return cls(np.concatenate([l.centres for l in luts]), np.concatenate([l.half_sizes for l in luts]))

    # ---------------------------------------------------------------- queries
    @property
    def n_crystals(self) -> int:
        return self.centres.shape[0]

    @property
    def lower(self) -> np.ndarray:
        """Lower corners (M, 3), mm."""
        return self.centres - self.half_sizes

    @property
    def upper(self) -> np.ndarray:
        """Upper corners (M, 3), mm."""
        return self.centres + self.half_sizes

    def sample(self, crystal_ids, rng: np.random.Generator | None, *, fractions=None) -> np.ndarray:
        """Uniform points inside the given voxels (local frame, mm), shape ``ids.shape + (3,)``.

        ``fractions`` (``ids.shape + (3,)``, in [-1, 1]: fractions of the half sizes) replace the
        draws from ``rng``: common random numbers when the same points are placed with several
        geometries.
        """
        ids = np.asarray(crystal_ids)
        if fractions is None:
            u = rng.uniform(-1.0, 1.0, size=ids.shape + (3,))
        else:
            u = np.asarray(fractions, float).reshape(ids.shape + (3,))
        return self.centres[ids] + u * self.half_sizes[ids]

    def locate(self, local_points) -> np.ndarray:
        """Crystal voxel index of local points (..., 3) mm; gaps go to the nearest centre.

        Exact for points inside a voxel: the table is a rectilinear arrangement of every
        voxel boundary, so a point is binned with three ``searchsorted`` calls.
        """
        p = np.asarray(local_points, dtype=np.float64)
        edges, table = self._arrangement()
        idx = [np.clip(np.searchsorted(edges[i], p[..., i], side="right") - 1, 0, len(edges[i]) - 2)
               for i in range(3)]
        out = table[idx[0], idx[1], idx[2]]
        # points in gap cells (or outside all voxels): the exact nearest centre, point by point
        in_box = [(p[..., i] >= edges[i][0]) & (p[..., i] <= edges[i][-1]) for i in range(3)]
        gap = (out < 0) | ~(in_box[0] & in_box[1] & in_box[2])
        if gap.any():
            out[gap] = self._tree().query(p[gap])[1]
        return out

    def _tree(self):
        if "tree" not in self._cells:
            from scipy.spatial import cKDTree

            self._cells["tree"] = cKDTree(self.centres)
        return self._cells["tree"]

    def _arrangement(self):
        if "edges" not in self._cells:
            lo, hi = self.lower, self.upper
            edges = [np.unique(np.concatenate([lo[:, i], hi[:, i]])) for i in range(3)]
            table = np.full([len(e) - 1 for e in edges], -1, dtype=np.int64)
            start = [np.searchsorted(edges[i], lo[:, i]) for i in range(3)]
            stop = [np.searchsorted(edges[i], hi[:, i]) for i in range(3)]
            for m in range(self.n_crystals):
                table[start[0][m]:stop[0][m], start[1][m]:stop[1][m], start[2][m]:stop[2][m]] = m
            # cells left at -1 are gaps: resolved per point in locate()
            self._cells["edges"], self._cells["table"] = edges, table
        return self._cells["edges"], self._cells["table"]

    def coarsened_ids(self, coarse: "CrystalLUT") -> np.ndarray:
        """Index in ``coarse`` of each of this table's voxels, shape (n_crystals,).

        The coarse voxel is the one holding this voxel's centre: for nested binnings (e.g.
        ``thull_sim`` "2mm" into "planar_2mm", DOI layers merged) it re-bins crystal ids of
        list-mode data exactly as a coarser readout of the same detector would.
        """
        return coarse.locate(self.centres)

    def equals(self, other: "CrystalLUT") -> bool:
        """Exact equality of centres and half-sizes."""
        return (isinstance(other, CrystalLUT) and np.array_equal(self.centres, other.centres)
                and np.array_equal(self.half_sizes, other.half_sizes))
