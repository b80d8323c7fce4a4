"""Common interface of the analytic phantoms.

Every phantom is plain data (a frozen dataclass of numbers and arrays) with

* ``sample(n, rng) -> (n, 3)`` emission points, mm, distributed as the activity;
* ``contains(points) -> (n,)`` activity concentration at points, Bq/mm^3;
* ``voxelise(shape, voxel_size, origin)`` activity per voxel, Bq (supersampled);
* ``line_integral(start, end, tof_sigma_mm=None, tof_centre_mm=0)`` where a closed form exists;
* ``attenuation_length(origins, directions)`` forward path length in the phantom's
  attenuating material (linear coefficient ``mu_per_mm`` at 511 keV), mm;
* ``to_dict`` / :func:`phantom_from_dict`, ``save`` / :func:`load_phantom` (JSON, exact).

Grid convention (as :mod:`refsuite.projectors`): array shape (nx, ny, nz) along x, y, z;
``origin`` is the world position of the centre of voxel (0, 0, 0), mm.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from refsuite._checks import check_positive
from refsuite._atomic import atomic_write_text

__all__ = ["Phantom", "phantom_from_dict", "load_phantom", "MU_WATER_511", "MU_PMMA_511"]

#: linear attenuation coefficients at 511 keV, 1/mm (NIST XCOM: water 0.0960 /cm;
#: PMMA 0.093 cm^2/g x 1.19 g/cm^3)
MU_WATER_511 = 0.0096
MU_PMMA_511 = 0.0111

_REGISTRY: dict[str, type] = {}
_FORMAT = "refsuite.phantom"


def _register(cls):
    _REGISTRY[cls.__name__] = cls
    return cls


class Phantom:
    """Base class: subclasses are frozen dataclasses implementing ``_sample``, ``contains``."""

    #: False where no closed-form line integral exists
    has_line_integral = True

    # -------------------------------------------------------------- interface
    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` emission points distributed as the activity, shape (n, 3), mm."""
        n = int(n)
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        return self._sample(n, rng)

    def _sample(self, n, rng):  # pragma: no cover - abstract
        raise NotImplementedError

    def contains(self, points) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def total_activity(self) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def line_integral(self, start, end, *, tof_sigma_mm=None, tof_centre_mm=0.0) -> np.ndarray:
        """Activity line integral along segments, optionally TOF-weighted.

        Parameters
        ----------
        start, end : array_like, shape (n, 3)
            Segment end points (crystal positions), mm.
        tof_sigma_mm : float, optional
            Standard deviation of the Gaussian TOF kernel along the LOR, mm
            (CTR FWHM in ps x 0.15 mm/ps / 2.3548).
        tof_centre_mm : float or (n,) array
            Kernel centre, signed distance from the segment midpoint towards ``end``, mm.

        Returns
        -------
        ndarray, shape (n,)
            ``int f(gamma(l)) K(l) dl`` with ``K = 1`` (Bq/mm^2) or the unit-area Gaussian
            (Bq/mm^3); the same model as Thull et al., sec. 2.3, for this phantom.
        """
        if not self.has_line_integral:
            raise NotImplementedError(f"{type(self).__name__} has no closed-form line integral; voxelise it "
                                      "and use refsuite.projectors")
        s = np.atleast_2d(np.asarray(start, float))
        e = np.atleast_2d(np.asarray(end, float))
        if s.shape != e.shape or s.shape[-1] != 3:
            raise ValueError(f"start and end must both have shape (n, 3), got {s.shape} and {e.shape}")
        if tof_sigma_mm is not None:
            check_positive("tof_sigma_mm", tof_sigma_mm, unit="mm")
        return self._line_integral(s, e, tof_sigma_mm, tof_centre_mm)

    def _line_integral(self, s, e, sigma, centre):  # pragma: no cover - abstract
        raise NotImplementedError

    def attenuation_length(self, origins, directions) -> np.ndarray:
        """Path length from ``origins`` along ``directions`` in the attenuating material, mm."""
        return np.zeros(np.asarray(origins).shape[0])

    mu_per_mm = 0.0

    def voxelise(self, shape, voxel_size, origin, *, supersample: int = 4) -> np.ndarray:
        """Activity per voxel (Bq) on a grid, by ``supersample**3`` midpoints per voxel.

        Parameters
        ----------
        shape : (3,) int
            Grid shape (nx, ny, nz).
        voxel_size : float or (3,) float
            Voxel size, mm.
        origin : (3,) float
            World position of the centre of voxel (0, 0, 0), mm.
        supersample : int
            Sub-samples per voxel and axis (raise it for structures smaller than a voxel).

        Returns
        -------
        ndarray, shape ``shape``, float64
        """
        shape = tuple(int(v) for v in shape)
        vs = np.broadcast_to(check_positive("voxel_size", voxel_size, unit="mm"), (3,))
        org = np.asarray(origin, float).reshape(3)
        k = int(supersample)
        if k < 1:
            raise ValueError(f"supersample must be >= 1, got {supersample}")
        sub = (np.arange(k) + 0.5) / k - 0.5
        axes = [org[i] + np.add.outer(np.arange(shape[i]), sub).ravel() * vs[i] for i in range(3)]
        out = np.empty(shape)
        gx, gy = np.meshgrid(axes[0], axes[1], indexing="ij")
        for iz in range(shape[2]):
            zs = axes[2][iz * k:(iz + 1) * k]
            pts = np.stack(np.broadcast_arrays(gx[..., None], gy[..., None], zs[None, None, :]), -1)
            dens = self.contains(pts.reshape(-1, 3)).reshape(shape[0], k, shape[1], k, k)
            out[:, :, iz] = dens.mean(axis=(1, 3, 4))
        return out * np.prod(vs)

    # -------------------------------------------------------------- data
    def to_dict(self) -> dict:
        d = {"format": _FORMAT, "kind": type(self).__name__}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            d[f.name] = v.tolist() if isinstance(v, np.ndarray) else v
        return d

    def save(self, path) -> Path:
        """Write the phantom as JSON (atomic)."""
        path = Path(path)
        atomic_write_text(path, json.dumps(self.to_dict(), allow_nan=False))
        return path

    def equals(self, other) -> bool:
        return type(self) is type(other) and json.dumps(self.to_dict()) == json.dumps(other.to_dict())


def phantom_from_dict(d: dict) -> Phantom:
    """Rebuild a phantom from :meth:`Phantom.to_dict`."""
    if d.get("format") != _FORMAT or d.get("kind") not in _REGISTRY:
        raise ValueError(f"not a phantom description (format {d.get('format')!r}, kind {d.get('kind')!r}); "
                         f"kinds: {sorted(_REGISTRY)}")
    cls = _REGISTRY[d["kind"]]
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})


def load_phantom(path) -> Phantom:
    """Read a phantom written by :meth:`Phantom.save`; errors name the file."""
    path = Path(path)
    try:
        return phantom_from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise ValueError(f"cannot read phantom from {path}: {exc}") from exc
