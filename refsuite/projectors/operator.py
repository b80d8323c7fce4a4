"""The Joseph projector for a fixed set of LORs as a linear operator, with its adjointness test."""

from __future__ import annotations

from typing import Sequence

import torch

from .joseph import DEFAULT_CHUNK_SAMPLES, Backend, joseph_back, joseph_forward
from .tof import TOFParameters

__all__ = ["JosephOperator", "joseph_forward_all_bins"]


class JosephOperator:
    """``A``: image (nx, ny, nz) -> line integrals (n_lor,) for fixed LOR end points.

    Parameters
    ----------
    xstart, xend : torch.Tensor, shape (n_lor, 3)
        LOR end points (mm).
    image_shape : (3,) ints
    voxel_size, origin : float or (3,) floats, mm
    tof, tof_bin, tof_offset
        As in :func:`~refsuite.projectors.joseph_forward`.
    chunk_samples : int
    backend : {"auto", "numba", "torch"}
        As in :func:`~refsuite.projectors.joseph_forward`.

    Examples
    --------
    >>> op = JosephOperator(xs, xe, image_shape=(32, 32, 8), voxel_size=2.0, origin=-31.0)  # doctest: +SKIP
    >>> y = op(x); z = op.adjoint(y); op.adjointness_error()                                 # doctest: +SKIP
    """

    def __init__(self, xstart: torch.Tensor, xend: torch.Tensor, *, image_shape: Sequence[int],
                 voxel_size, origin, tof: TOFParameters | None = None, tof_bin: torch.Tensor | None = None,
                 tof_offset: torch.Tensor | None = None, chunk_samples: int = DEFAULT_CHUNK_SAMPLES,
                 backend: Backend = "auto"):
        self.xstart, self.xend = xstart, xend
        self.in_shape = tuple(int(s) for s in image_shape)
        self.out_shape = (int(xstart.shape[0]),)
        self._kw = dict(voxel_size=voxel_size, origin=origin, tof=tof, tof_bin=tof_bin, tof_offset=tof_offset,
                        chunk_samples=chunk_samples, backend=backend)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return self.forward(image)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``A x``: line integrals (u mm) of ``image`` (u)."""
        if tuple(image.shape) != self.in_shape:
            raise ValueError(f"image must have shape {self.in_shape}, got {tuple(image.shape)}")
        return joseph_forward(image, self.xstart, self.xend, **self._kw)

    def adjoint(self, values: torch.Tensor) -> torch.Tensor:
        """``A^T y``: back projection of one value per LOR into an image of ``in_shape``."""
        return joseph_back(values, self.xstart, self.xend, image_shape=self.in_shape, **self._kw)

    def adjointness_error(self, *, seed: int = 0, dtype: torch.dtype = torch.float64) -> float:
        """Relative error ``|<A x, y> - <x, A^T y>| / (|A x| |y|)`` for random ``x >= 0``, ``y``.

        Exact adjoints give rounding-level values (~1e-15 in float64, ~1e-6 in float32).
        """
        g = torch.Generator().manual_seed(seed)
        x = torch.rand(self.in_shape, generator=g, dtype=torch.float64).to(dtype=dtype, device=self.xstart.device)
        y = torch.randn(self.out_shape, generator=g, dtype=torch.float64).to(dtype=dtype, device=self.xstart.device)
        ax = self.forward(x)
        aty = self.adjoint(y)
        lhs = torch.dot(ax.double(), y.double())
        rhs = torch.sum(x.double() * aty.double())
        scale = torch.linalg.vector_norm(ax.double()) * torch.linalg.vector_norm(y.double())
        return float(abs(lhs - rhs) / scale) if scale > 0 else float(abs(lhs - rhs))

    def norm(self, *, n_iter: int = 30, seed: int = 0) -> float:
        """Largest singular value of ``A`` by power iteration on ``A^T A``."""
        g = torch.Generator().manual_seed(seed)
        x = torch.rand(self.in_shape, generator=g, dtype=torch.float64).to(self.xstart)
        sigma = 0.0
        for _ in range(n_iter):
            x = self.adjoint(self.forward(x))
            sigma = float(torch.linalg.vector_norm(x))
            if sigma == 0.0:
                return 0.0
            x = x / sigma
        return sigma ** 0.5


def joseph_forward_all_bins(image: torch.Tensor, xstart: torch.Tensor, xend: torch.Tensor, *, voxel_size, origin,
                            tof: TOFParameters, tof_offset: torch.Tensor | None = None,
                            chunk_samples: int = DEFAULT_CHUNK_SAMPLES, backend: Backend = "auto") -> torch.Tensor:
    """TOF projection of every LOR into every bin: shape (n_lor, num_bins), bins in the order of
    ``tof.bin_indices`` (most negative first). Summed over the bins it equals the non-TOF projection
    wherever the bins cover the part of the LOR inside the image."""
    if not isinstance(tof, TOFParameters):
        raise TypeError(f"tof must be a TOFParameters, got {type(tof).__name__}")
    n = xstart.shape[0]
    cols = []
    for k in tof.bin_indices.tolist():
        kb = torch.full((n,), k, dtype=image.dtype, device=image.device)
        cols.append(joseph_forward(image, xstart, xend, voxel_size=voxel_size, origin=origin, tof=tof, tof_bin=kb,
                                   tof_offset=tof_offset, chunk_samples=chunk_samples, backend=backend))
    return torch.stack(cols, dim=1)
