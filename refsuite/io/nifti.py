"""Reconstructed images as NIfTI-1 (nibabel), written atomically with their world affine.

Axis order: the array axes ``(i, j, k)`` are the scanner's world axes ``(x, y, z)``, the image
layout of the projectors and of :func:`refsuite.recon.lm_osem` (shape ``(nx, ny, nz)``), which
is also nibabel's own voxel order, so no transpose happens on either side. The affine maps a
voxel index to the world position of its centre, mm:

    (x, y, z) = origin + (i, j, k) * voxel_size,

``origin`` being the centre of voxel ``(0, 0, 0)`` (parallelproj's convention). The scanner
frame is written as the NIfTI world frame (``qform_code = sform_code = 1``, scanner
anatomical); spatial units are mm.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .atomic import atomic_path

__all__ = ["grid_affine", "read_nifti", "write_nifti"]

_SUFFIXES = (".nii", ".nii.gz")


def grid_affine(voxel_size, origin) -> np.ndarray:
    """The 4 x 4 affine of an image grid: ``diag(voxel_size)`` and translation ``origin`` (mm)."""
    vs = np.broadcast_to(np.asarray(voxel_size, float), (3,))
    org = np.asarray(origin, float).reshape(3)
    if not np.all(np.isfinite(vs)) or np.any(vs <= 0):
        raise ValueError(f"voxel_size must be > 0 mm, got {vs.tolist()}")
    if not np.all(np.isfinite(org)):
        raise ValueError(f"origin must be finite mm, got {org.tolist()}")
    aff = np.diag([*vs, 1.0])
    aff[:3, 3] = org
    return aff


def write_nifti(path, image, *, voxel_size, origin) -> Path:
    """Write a 3-D image (nx, ny, nz) on the grid ``(voxel_size, origin)`` (mm) as NIfTI, atomically.

    Parameters
    ----------
    path : str or Path
        ``.nii`` or ``.nii.gz``.
    image : array_like or torch.Tensor, shape (nx, ny, nz)
        Stored as float32.
    voxel_size : float or (3,) mm
    origin : (3,) mm
        World position of the centre of voxel (0, 0, 0).

    Returns
    -------
    Path
    """
    import nibabel as nib

    path = Path(path)
    if not str(path).endswith(_SUFFIXES):
        raise ValueError(f"NIfTI path must end in .nii or .nii.gz, got {str(path)!r}")
    data = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image, dtype=np.float32)
    if data.ndim != 3:
        raise ValueError(f"image must be 3-D (nx, ny, nz), got shape {data.shape}")
    aff = grid_affine(voxel_size, origin)
    img = nib.Nifti1Image(data, aff)
    img.set_qform(aff, code=1)
    img.set_sform(aff, code=1)
    img.header.set_xyzt_units(xyz="mm")
    with atomic_path(path, suffix=".nii.gz" if str(path).endswith(".nii.gz") else ".nii") as tmp:
        nib.save(img, str(tmp))
    return path


def read_nifti(path) -> tuple[np.ndarray, np.ndarray]:
    """``(image float32 (nx, ny, nz), affine (4, 4))`` of a 3-D NIfTI file, in the file's axis order."""
    import nibabel as nib

    path = Path(path)
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises several types for missing / damaged files
        raise ValueError(f"{path}: not a readable NIfTI file ({type(exc).__name__}: {exc})") from exc
    data = np.asarray(img.dataobj, dtype=np.float32)
    if data.ndim != 3:
        raise ValueError(f"{path}: expected a 3-D image, got shape {data.shape}")
    return data, np.asarray(img.affine, float)
