"""The :class:`Scanner`: detector-block poses and a crystal-voxel lookup table.

Geometry after Thull et al., sec. 2.1 and Fig. 1: ``N`` blocks with positions ``P`` (N, 3)
(block centres, mm) and local axes ``A`` (N, 3, 3) whose rows are the unit vectors X (planar
x), Y (depth of interaction, pointing away from the field of view) and Z (planar z; along the
scanner axis for ring scanners), right-handed (``X x Y = Z``). A crystal voxel
``lambda = (d, cr)`` with local centre ``L[cr]`` sits at the global position

    p(lambda) = P_d + L[cr, 0] X_d + L[cr, 1] Y_d + L[cr, 2] Z_d  =  P_d + L[cr] @ A_d

(the transformation of Thull et al., sec. 2.1). Block ``d`` occupies the local box
``|l_i| <= block_size[i] / 2``.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from refsuite._checks import check_finite, check_positive
from refsuite._atomic import atomic_write_text

from .lut import CrystalLUT
from .rotations import euler_to_matrix

__all__ = ["Scanner", "Misalignment", "TranslationFrame", "FORMAT_NAME"]

FORMAT_NAME = "refsuite.scanner"
_FORMAT_VERSION = 1


class TranslationFrame(enum.Enum):
    """Frame in which block translations ``T`` are expressed."""

    GLOBAL = "global"  #: scanner axes x, y, z: ``P_new = P + T`` (Thull et al., sec. 2.1)
    LOCAL = "local"  #: the block's blueprint axes: ``P_new = P + T @ A``


@dataclass(frozen=True, eq=False)
class Misalignment:
    """Ground truth of a perturbed scanner relative to its blueprint.

    ``blueprint.transform(rotations_rad, translations_mm)`` reproduces the perturbed
    scanner (to rounding), with rotations about each block's blueprint local axes (see
    :mod:`refsuite.geometry.rotations`) and translations in the global frame.

    Attributes
    ----------
    rotations_rad : ndarray, shape (N, 3)
    translations_mm : ndarray, shape (N, 3)
    sigma_t_mm, sigma_r_deg : float
        The standard deviations the perturbation was drawn with.
    groups : ndarray of int, shape (N,) or None
        Group label of each block when the noise was shared per group.
    group_motion : str or None
        ``"rigid"`` or ``"shared_local"`` (see :class:`refsuite.geometry.GroupMotion`).
    min_clearance_mm : float or None
        The clearance rule of the draw (:func:`refsuite.geometry.perturb`): every pair of
        blocks is at least this far apart, mm; ``None``: unconstrained (may overlap).
    """

    rotations_rad: np.ndarray
    translations_mm: np.ndarray
    sigma_t_mm: float = 0.0
    sigma_r_deg: float = 0.0
    groups: np.ndarray | None = None
    group_motion: str | None = None
    min_clearance_mm: float | None = None

    def to_dict(self) -> dict:
        return {
            "rotations_rad": np.asarray(self.rotations_rad).tolist(),
            "translations_mm": np.asarray(self.translations_mm).tolist(),
            "sigma_t_mm": float(self.sigma_t_mm),
            "sigma_r_deg": float(self.sigma_r_deg),
            "groups": None if self.groups is None else np.asarray(self.groups).tolist(),
            "group_motion": self.group_motion,
            "min_clearance_mm": None if self.min_clearance_mm is None else float(self.min_clearance_mm),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Misalignment":
        return cls(
            np.asarray(d["rotations_rad"], float).reshape(-1, 3),
            np.asarray(d["translations_mm"], float).reshape(-1, 3),
            d.get("sigma_t_mm", 0.0), d.get("sigma_r_deg", 0.0),
            None if d.get("groups") is None else np.asarray(d["groups"], np.int64),
            d.get("group_motion"), d.get("min_clearance_mm"),
        )


@dataclass(frozen=True, eq=False)
class Scanner:
    """A PET scanner as rigid detector blocks sharing one crystal-voxel lookup table.

    Parameters
    ----------
    positions : ndarray, shape (N, 3)
        Block centres in the global frame, mm.
    axes : ndarray, shape (N, 3, 3)
        ``axes[d]`` rows are the unit vectors X (planar), Y (DOI, outward), Z (planar) of
        block ``d``; orthonormal and right-handed (checked to 1e-9).
    block_size : (3,) float
        Full size of a block along its local x, y, z, mm.
    crystals : CrystalLUT
        Crystal voxels in the block frame (all inside the block box).
    material : str
        Block material (``"LYSO"``).
    mu_per_mm : float
        Linear attenuation coefficient of the block material at 511 keV, 1/mm
        (LYSO: 0.087 /mm).
    groups : ndarray of int, shape (N,)
        Mechanical group of each block (ring, half-ring), used by :func:`perturb`.
    name : str
    misalignment : Misalignment or None
        Truth recorded by :func:`perturb`.
    metadata : dict
        JSON-serialisable description (preset name and options).
    """

    positions: np.ndarray
    axes: np.ndarray
    block_size: np.ndarray
    crystals: CrystalLUT
    material: str = "LYSO"
    mu_per_mm: float = 0.087
    groups: np.ndarray | None = None
    name: str = "scanner"
    misalignment: Misalignment | None = None
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        p = check_finite("positions", self.positions).reshape(-1, 3)
        a = check_finite("axes", self.axes)
        if a.shape != (p.shape[0], 3, 3):
            raise ValueError(f"axes must have shape ({p.shape[0]}, 3, 3) to match positions, got {a.shape}")
        err = np.abs(a @ np.swapaxes(a, 1, 2) - np.eye(3)).max(initial=0.0)
        if err > 1e-9:
            raise ValueError(f"axes must be orthonormal (rows unit vectors), deviation {err:.3g} > 1e-9")
        det = np.linalg.det(a)
        if np.any(det < 0):
            raise ValueError(f"axes must be right-handed (X x Y = Z); block {int(np.argmin(det))} is not")
        size = check_positive("block_size", self.block_size, unit="mm").reshape(3)
        if not isinstance(self.crystals, CrystalLUT):
            raise TypeError(f"crystals must be a CrystalLUT, got {type(self.crystals).__name__}")
        tol = 1e-9 * size.max()
        if np.any(self.crystals.upper > size / 2 + tol) or np.any(self.crystals.lower < -size / 2 - tol):
            raise ValueError(f"crystal voxels must lie inside the block box of size {size.tolist()} mm")
        check_positive("mu_per_mm", self.mu_per_mm, unit="1/mm")
        g = np.zeros(p.shape[0], np.int64) if self.groups is None else np.asarray(self.groups, np.int64)
        if g.shape != (p.shape[0],):
            raise ValueError(f"groups must have shape ({p.shape[0]},), got {g.shape}")
        for name, arr in (("positions", p), ("axes", a.copy()), ("block_size", size), ("groups", g)):
            arr = np.array(arr)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "mu_per_mm", float(self.mu_per_mm))

    def __repr__(self) -> str:
        mis = "" if self.misalignment is None else ", misaligned"
        return (f"Scanner({self.name!r}, {self.n_blocks} blocks of {self.block_size.tolist()} mm {self.material}, "
                f"{self.n_crystals} crystal voxels per block{mis})")

    # ---------------------------------------------------------------- sizes
    @property
    def n_blocks(self) -> int:
        return self.positions.shape[0]

    @property
    def n_crystals(self) -> int:
        """Crystal voxels per block."""
        return self.crystals.n_crystals

    # ---------------------------------------------------------------- frames
    def to_global(self, local_points, block_ids) -> np.ndarray:
        """Local points (..., 3) of blocks ``block_ids`` (...) to global coordinates, mm."""
        b = np.asarray(block_ids)
        return self.positions[b] + np.einsum("...i,...ij->...j", np.asarray(local_points, float), self.axes[b])

    def to_local(self, points, block_ids) -> np.ndarray:
        """Global points (..., 3) to the local frames of blocks ``block_ids`` (...), mm."""
        b = np.asarray(block_ids)
        return np.einsum("...ij,...j->...i", self.axes[b], np.asarray(points, float) - self.positions[b])

    def crystal_centres(self) -> np.ndarray:
        """Global centres of every crystal voxel, shape (N, M, 3), mm (Thull et al., sec. 2.1)."""
        return self.positions[:, None, :] + np.einsum("mi,dij->dmj", self.crystals.centres, self.axes)

    def crystal_positions(self, block_ids, crystal_ids) -> np.ndarray:
        """Global centres of the voxels ``(block_ids, crystal_ids)`` (broadcast), shape (..., 3), mm."""
        b, c = np.broadcast_arrays(np.asarray(block_ids), np.asarray(crystal_ids))
        return self.to_global(self.crystals.centres[c], b)

    def sample_in_crystals(self, block_ids, crystal_ids, rng: np.random.Generator | None, *, n_samples=None,
                           fractions=None):
        """Uniform random global points inside crystal voxels (Thull et al., sec. 2.4).

        Parameters
        ----------
        block_ids, crystal_ids : int arrays, broadcastable, shape (...)
        rng : numpy.random.Generator
        n_samples : int, optional
            Points per voxel; adds a trailing sample axis.
        fractions : array (..., 3), optional
            Positions in the voxels as fractions of the half sizes, in [-1, 1], instead of draws
            from ``rng`` (:meth:`CrystalLUT.sample`).

        Returns
        -------
        ndarray, shape (..., 3) or (..., n_samples, 3)
            Global positions, mm.
        """
        b, c = np.broadcast_arrays(np.asarray(block_ids), np.asarray(crystal_ids))
        if n_samples is not None:
            b = np.repeat(b[..., None], int(n_samples), -1)
            c = np.repeat(c[..., None], int(n_samples), -1)
        return self.to_global(self.crystals.sample(c, rng, fractions=fractions), b)

    def locate(self, points, block_ids) -> np.ndarray:
        """Crystal voxel index of global points (..., 3) known to lie in blocks ``block_ids``."""
        return self.crystals.locate(self.to_local(points, block_ids))

    def block_corners(self) -> np.ndarray:
        """The 8 corners of every block box, shape (N, 8, 3), mm."""
        s = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1], indexing="ij")).reshape(3, 8).T
        return self.positions[:, None, :] + np.einsum("ki,dij->dkj", s * self.block_size / 2, self.axes)

    # ---------------------------------------------------------------- transform
    def transform(self, rotations, translations, *, translation_frame=TranslationFrame.GLOBAL) -> "Scanner":
        """Rotate every block about its own local axes and translate it.

        Implements the predicted alignment of Thull et al., sec. 2.1:
        ``P_new = P + T``, ``A_new = R_loc(R).T @ A`` with ``R_loc`` of
        :func:`refsuite.geometry.rotations.euler_to_matrix` (rotation about the block centre).

        Parameters
        ----------
        rotations : array_like, shape (N, 3) or (3,)
            Angles about each block's local X, Y, Z, radians.
        translations : array_like, shape (N, 3) or (3,)
            Translations, mm, in the frame given by ``translation_frame``.
        translation_frame : TranslationFrame
            ``GLOBAL`` (default) or ``LOCAL`` (the block's axes before rotation).

        Returns
        -------
        Scanner
            A new scanner; the LUT, material and groups are shared, ``misalignment`` is
            dropped (it referred to another blueprint).
        """
        frame = TranslationFrame(translation_frame)
        r, t = check_finite("rotations", rotations), check_finite("translations", translations)
        for name, arr in (("rotations", r), ("translations", t)):
            if arr.shape not in ((), (3,), (self.n_blocks, 3)):
                raise ValueError(f"{name} must have shape ({self.n_blocks}, 3) or (3,), got {arr.shape}")
        r, t = np.broadcast_to(r, (self.n_blocks, 3)), np.broadcast_to(t, (self.n_blocks, 3))
        if frame is TranslationFrame.LOCAL:
            t = np.einsum("di,dij->dj", t, self.axes)
        new_axes = np.swapaxes(euler_to_matrix(r), 1, 2) @ self.axes
        return replace(self, positions=self.positions + t, axes=new_axes, misalignment=None)

    # ---------------------------------------------------------------- comparison / files
    def equals(self, other: "Scanner") -> bool:
        """Exact equality of every array and field (the save/load round-trip contract)."""
        if not isinstance(other, Scanner):
            return False
        same = (np.array_equal(self.positions, other.positions) and np.array_equal(self.axes, other.axes)
                and np.array_equal(self.block_size, other.block_size) and self.crystals.equals(other.crystals)
                and self.material == other.material and self.mu_per_mm == other.mu_per_mm
                and np.array_equal(self.groups, other.groups) and self.name == other.name
                and self.metadata == other.metadata)
        if not same or (self.misalignment is None) != (other.misalignment is None):
            return False
        return self.misalignment is None or self.misalignment.to_dict() == other.misalignment.to_dict()

    def to_dict(self) -> dict:
        """JSON-serialisable description; floats are written with full (round-trip) precision."""
        return {
            "format": FORMAT_NAME, "version": _FORMAT_VERSION, "name": self.name,
            "material": self.material, "mu_per_mm": self.mu_per_mm,
            "block_size_mm": self.block_size.tolist(),
            "positions_mm": self.positions.tolist(), "axes": self.axes.tolist(),
            "groups": self.groups.tolist(),
            "crystals": {"centres_mm": self.crystals.centres.tolist(),
                         "half_sizes_mm": self.crystals.half_sizes.tolist()},
            "misalignment": None if self.misalignment is None else self.misalignment.to_dict(),
            "metadata": self.metadata,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Scanner":
        if d.get("format") != FORMAT_NAME:
            raise ValueError(f"not a scanner description: format is {d.get('format')!r}, expected {FORMAT_NAME!r}")
        if d.get("version") != _FORMAT_VERSION:
            raise ValueError(f"unsupported scanner format version {d.get('version')!r} (this is {_FORMAT_VERSION})")
        n = len(d["positions_mm"])
        return cls(
            positions=np.asarray(d["positions_mm"], float).reshape(n, 3),
            axes=np.asarray(d["axes"], float).reshape(n, 3, 3),
            block_size=np.asarray(d["block_size_mm"], float),
            crystals=CrystalLUT(np.asarray(d["crystals"]["centres_mm"], float).reshape(-1, 3),
                                np.asarray(d["crystals"]["half_sizes_mm"], float).reshape(-1, 3)),
            material=d["material"], mu_per_mm=d["mu_per_mm"], groups=np.asarray(d["groups"], np.int64),
            name=d["name"],
            misalignment=None if d.get("misalignment") is None else Misalignment.from_dict(d["misalignment"]),
            metadata=d.get("metadata", {}),
        )

    def save(self, path) -> Path:
        """Write the scanner as JSON (atomic). ``Scanner.load(path)`` returns an exact copy."""
        path = Path(path)
        atomic_write_text(path, json.dumps(self.to_dict(), allow_nan=False))
        return path

    @classmethod
    def load(cls, path) -> "Scanner":
        """Read a scanner written by :meth:`save`; errors name the file."""
        path = Path(path)
        try:
            d = json.loads(path.read_text())
            return cls.from_dict(d)
        except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            raise ValueError(f"cannot read scanner from {path}: {exc}") from exc
