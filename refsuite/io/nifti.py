"""NIfTI-1 images (nibabel): the one reader and writer of refsuite, with one axis order.

Axis order
----------
An image array read or written here has the **file's voxel axes** ``(i, j, k)`` (nibabel's
order; no transpose on either side), with the 4 x 4 ``affine`` that maps a voxel index to the
world position of its centre, mm::

    (x, y, z, 1) = affine @ (i, j, k, 1),

and ``spacing[a]``, the voxel size (mm) along array axis ``a`` (the column norms of the
affine). Every module that reads or writes NIfTI goes through this module:

* ``refsuite recon`` / the projectors: image ``(nx, ny, nz)`` along the scanner axes x, y, z,
  written with :func:`grid_affine` (``origin`` = centre of voxel ``(0, 0, 0)``, as parallelproj);
* registration: volumes ``(D, H, W)`` = ``(i, j, k)``; a DDF's channel ``a`` runs along array
  axis ``a`` (MONAI), in voxels of the fixed grid (:func:`ddf_image`, :func:`displacement_mm`,
  :func:`itk_displacement_image`);
* pvc: :func:`refsuite.pvc.iterative_yang` and DL-PVC take ``(nz, ny, nx)`` (their public
  contract, the layout of the SPECT datasets and of trained models); ``refsuite pvc correct``
  converts at its file boundary, and only there, with :func:`as_zyx` / :func:`from_zyx`.

Units: lengths in the header's ``xyzt_units`` (metres and microns are converted to mm on
reading; "unknown" is taken as mm, as most tools do). Files are written with ``xyzt_units = mm``,
``qform_code = sform_code = 1`` (scanner frame) and float32 voxels, atomically (temporary file
beside the target, then rename; :func:`save_images` writes several files all-or-none).

World frame: nibabel's affines are RAS+ (+x towards the patient's Right, +y Anterior, +z
Superior); ITK, ANTs and Slicer's transforms work in LPS+ (+x Left, +y Posterior, +z Superior),
so a displacement vector written for them has its x and y components negated
(:func:`itk_displacement_image`).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Mapping, NamedTuple

import numpy as np

from .atomic import atomic_path

__all__ = ["NiftiVolume", "grid_affine", "zyx_affine", "spacing_of", "read_nifti", "volume_image", "ddf_image",
           "itk_displacement_image", "check_itk_grid", "save_images", "write_nifti", "as_zyx", "from_zyx", "same_grid",
           "resample_to_reference", "regrid", "displacement_mm", "NIFTI_SUFFIXES", "NIFTI_INTENT_VECTOR", "RAS_TO_LPS"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: Sign flip of a RAS+ vector to LPS+ (and back): ``diag(-1, -1, 1)``.
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])
_UNIT_TO_MM = {"mm": 1.0, "unknown": 1.0, "meter": 1000.0, "micron": 1e-3}
NIFTI_INTENT_VECTOR = 1007  #: intent code of an ITK displacement field (a vector per voxel)


class NiftiVolume(NamedTuple):
    """A 3-D image as read by :func:`read_nifti`.

    Attributes
    ----------
    data : ndarray, shape (ni, nj, nk)
        Voxel values in the file's axis order.
    spacing : ndarray, shape (3,)
        Voxel size along the array axes, mm.
    affine : ndarray, shape (4, 4)
        Voxel index -> world position of the voxel centre, mm (RAS+).
    """

    data: np.ndarray
    spacing: np.ndarray
    affine: np.ndarray


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


def zyx_affine(spacing_zyx, origin=(0.0, 0.0, 0.0)) -> np.ndarray:
    """The affine of an array kept in (nz, ny, nx) order: axis 0 runs along world z, axis 2 along x.

    ``spacing_zyx`` (3,) mm along the array axes; ``origin`` (3,) world (x, y, z) mm of the centre
    of voxel (0, 0, 0). Such a file keeps the array order and still places it right in the world.
    """
    aff = grid_affine(np.asarray(spacing_zyx, float)[::-1], origin)
    aff[:3, :3] = aff[:3, :3][:, ::-1]
    return aff


def spacing_of(affine) -> np.ndarray:
    """Voxel size (3,) mm along the array axes: the column norms of ``affine[:3, :3]``."""
    return np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0)


def _check_affine(affine, where: str) -> np.ndarray:
    aff = np.asarray(affine, dtype=np.float64)
    if aff.shape != (4, 4):
        raise ValueError(f"{where}: affine must be 4 x 4, got shape {aff.shape}")
    if not np.isfinite(aff).all() or abs(np.linalg.det(aff[:3, :3])) < 1e-12:
        raise ValueError(f"{where}: its affine is singular or not finite; expected voxel sizes > 0 mm "
                         f"(affine rows {np.round(aff[:3], 4).tolist()})")
    return aff


def read_nifti(path, *, dtype=np.float32, finite: bool = True) -> NiftiVolume:
    """Read a 3-D NIfTI image in the file's axis order, with its spacing and affine in mm.

    Parameters
    ----------
    path : str or Path
        ``.nii`` or ``.nii.gz``; a 4-D file with one volume ``(ni, nj, nk, 1)`` is read as 3-D.
    dtype : numpy dtype
        Of the returned voxels (float32 by default).
    finite : bool
        Refuse NaN or infinite voxels (default).

    Returns
    -------
    NiftiVolume
        ``(data (ni, nj, nk), spacing (3,) mm, affine (4, 4) mm)``.

    Raises
    ------
    ValueError
        Naming ``path``: not readable as NIfTI, not 3-D, a singular or non-finite affine, an
        unsupported length unit, or non-finite voxels.
    """
    import nibabel as nib

    path = Path(path)
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj, dtype=dtype)
        unit = img.header.get_xyzt_units()[0] if hasattr(img.header, "get_xyzt_units") else "unknown"
    except Exception as exc:  # nibabel, gzip and zlib raise several types for missing / damaged files
        raise ValueError(f"{path}: not a readable NIfTI file ({type(exc).__name__}: {exc})") from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"{path}: expected a 3-D image, got shape {data.shape}")
    if unit not in _UNIT_TO_MM:
        raise ValueError(f"{path}: spatial unit {unit!r}; expected mm, meter, micron or unknown (taken as mm)")
    affine = np.asarray(img.affine, np.float64).copy()
    affine[:3] *= _UNIT_TO_MM[unit]
    affine = _check_affine(affine, str(path))
    if finite:
        bad = ~np.isfinite(data)
        if bad.any():
            raise ValueError(f"{path}: {int(bad.sum())} voxels are NaN or infinite; expected finite values")
    return NiftiVolume(data, spacing_of(affine), affine)


def _numpy(array, dtype=np.float32) -> np.ndarray:
    return np.asarray(array.detach().cpu() if hasattr(array, "detach") else array, dtype=dtype)


def _header_image(data: np.ndarray, affine: np.ndarray):
    import nibabel as nib

    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units(xyz="mm")
    return img


def volume_image(data, affine, *, dtype=np.float32):
    """A ``nibabel.Nifti1Image`` of ``data`` (ni, nj, nk) or (ni, nj, nk, c) on ``affine`` (mm).

    Header: qform and sform = ``affine`` with code 1 (scanner), ``xyzt_units`` mm; voxels
    ``dtype`` (float32). Trailing axes beyond the third hold components (e.g. a vector field).
    """
    arr = _numpy(data, dtype)
    if arr.ndim not in (3, 4):
        raise ValueError(f"image must be 3-D (ni, nj, nk) or 4-D (ni, nj, nk, c), got shape {arr.shape}")
    return _header_image(arr, _check_affine(affine, "volume_image"))


def _ddf_channels_first(ddf) -> np.ndarray:
    d = _numpy(ddf, np.float64)
    if d.ndim == 5 and d.shape[0] == 1:
        d = d[0]
    if d.ndim != 4 or d.shape[0] != 3:
        raise ValueError(f"ddf must be (3, D, H, W) or (1, 3, D, H, W) (MONAI layout), got shape {d.shape}")
    return d


def displacement_mm(ddf, affine) -> np.ndarray:
    """Physical displacement (D, H, W, 3), mm, RAS+ world frame, of a DDF in voxel units.

    ``ddf`` is ``(3, D, H, W)`` or ``(1, 3, D, H, W)`` (MONAI: channel ``a`` along array axis
    ``a``, voxels of the grid of ``affine``); the world vector is ``affine[:3, :3] @ ddf``.
    """
    d = _ddf_channels_first(ddf)
    return np.einsum("ij,j...->...i", _check_affine(affine, "displacement_mm")[:3, :3], d)


def ddf_image(ddf, affine):
    """A DDF ``(3, D, H, W)`` / ``(1, 3, D, H, W)`` in voxel units as a NIfTI image ``(D, H, W, 3)``.

    The values stay in voxels of the grid of ``affine`` (refsuite's own layout, no intent
    code); :func:`itk_displacement_image` gives the same field in world mm for ITK tools.
    """
    return volume_image(np.moveaxis(_ddf_channels_first(ddf), 0, -1), affine)


def check_itk_grid(affine, where: str) -> np.ndarray:
    """``affine`` as float (4, 4) if ITK can represent its grid (rotation and voxel sizes), else ValueError."""
    aff = _check_affine(affine, where)
    cols = aff[:3, :3] / spacing_of(aff)
    if not np.allclose(cols.T @ cols, np.eye(3), atol=1e-6):
        raise ValueError(f"{where}: the affine shears the grid (non-orthogonal columns); ITK images hold a rotation "
                         "and voxel sizes only")
    return aff


def itk_displacement_image(ddf, affine):
    """The DDF as an ITK displacement field: 5-D ``(D, H, W, 1, 3)``, LPS+ mm, intent vector.

    ITK's ``DisplacementFieldTransform`` (ANTs ``antsApplyTransforms``, Slicer) maps a point
    ``p`` of the fixed image to ``p + u(p)`` in the moving image, in physical LPS+ mm; the
    NIfTI layout ITK reads for such a field is 5-D with the vector on the fifth axis and
    ``intent_code = 1007`` (``NIFTI_INTENT_VECTOR``), on the fixed grid. Here

        u_RAS = affine[:3, :3] @ ddf,        u_LPS = diag(-1, -1, 1) @ u_RAS,

    since nibabel's affines are RAS+ (ITK converts the grid's own affine to LPS when reading).
    ITK represents only rotation and scaling in a grid, so ``affine[:3, :3]`` must have
    orthogonal columns.
    """
    aff = check_itk_grid(affine, "itk_displacement_image")
    u = displacement_mm(ddf, aff) @ RAS_TO_LPS
    img = _header_image(u[:, :, :, None, :].astype(np.float32), aff)
    img.header.set_intent(NIFTI_INTENT_VECTOR, (), "")
    return img


def _suffix(path) -> str:
    return ".nii.gz" if str(path).endswith(".gz") else ".nii"


def save_images(images: Mapping) -> list[Path]:
    """Write ``{path: nibabel image}`` all-or-none: every temporary file is complete before any
    replaces its target, and a failure leaves no temporary file and no target changed."""
    import nibabel as nib

    for path in images:
        if not str(path).endswith(NIFTI_SUFFIXES):
            raise ValueError(f"NIfTI path must end in .nii or .nii.gz, got {str(path)!r}")
    with contextlib.ExitStack() as stack:
        tmps = [(stack.enter_context(atomic_path(path, suffix=_suffix(path))), img) for path, img in images.items()]
        for tmp, img in tmps:
            nib.save(img, str(tmp))
    return [Path(p) for p in images]


def write_nifti(path, image, *, affine=None, voxel_size=None, origin=None) -> Path:
    """Write a 3-D image (float32) on ``affine``, or on the grid ``(voxel_size, origin)``, atomically.

    Parameters
    ----------
    path : str or Path
        ``.nii`` or ``.nii.gz``.
    image : array_like or torch.Tensor, shape (ni, nj, nk)
        In the axis order of the grid (for ``refsuite recon``: (nx, ny, nz)).
    affine : (4, 4), mm
        Voxel index -> world (RAS+) position of the voxel centre; or give instead
    voxel_size : float or (3,) mm, and origin : (3,) mm
        The grid of :func:`grid_affine` (origin = centre of voxel (0, 0, 0)).

    Returns
    -------
    Path
    """
    if (affine is None) == (voxel_size is None and origin is None):
        raise ValueError("write_nifti: give either affine or voxel_size and origin")
    if affine is None:
        if voxel_size is None or origin is None:
            raise ValueError("write_nifti: voxel_size and origin go together")
        affine = grid_affine(voxel_size, origin)
    data = _numpy(image)
    if data.ndim != 3:
        raise ValueError(f"image must be 3-D (ni, nj, nk), got shape {data.shape}")
    return save_images({Path(path): volume_image(data, affine)})[0]


def as_zyx(data, spacing):
    """``(data.transpose(2, 1, 0), spacing[::-1])``: the file order (x, y, z) as (nz, ny, nx)."""
    return np.asarray(data).transpose(2, 1, 0), np.asarray(spacing, float)[::-1]


def from_zyx(data) -> np.ndarray:
    """The inverse of :func:`as_zyx` for an image: ``(nz, ny, nx)`` back to the file order."""
    return np.asarray(data).transpose(2, 1, 0)


def same_grid(shape_a, affine_a, shape_b, affine_b, *, atol_mm: float = 1e-3) -> bool:
    """True when two images share shape and affine (to ``atol_mm``)."""
    return tuple(shape_a) == tuple(shape_b) and np.allclose(affine_a, affine_b, atol=atol_mm)


def resample_to_reference(data, affine, ref_shape, ref_affine, *, order: int = 1, cval: float = 0.0,
                          mode: str = "constant") -> np.ndarray:
    """Resample ``data`` (on ``affine``) onto the grid ``(ref_shape, ref_affine)`` (trilinear for ``order=1``).

    Reference voxel -> world -> source voxel: ``inv(affine) @ ref_affine``; outside the
    source grid the value is ``cval`` (``mode="constant"``) or the nearest edge voxel's
    (``mode="nearest"``, :func:`scipy.ndimage.affine_transform`).
    """
    from scipy.ndimage import affine_transform

    m = np.linalg.inv(np.asarray(affine, float)) @ np.asarray(ref_affine, float)
    return affine_transform(np.asarray(data, np.float32), m[:3, :3], offset=m[:3, 3], output_shape=tuple(ref_shape),
                            order=order, mode=mode, cval=cval).astype(np.float32)


def regrid(shape, affine, voxel_size: float) -> tuple[tuple[int, int, int], np.ndarray]:
    """``(shape, affine)`` of a grid of ``voxel_size`` mm voxels along the same axes covering the
    same field of view (the same centre; extent ``n' voxel_size`` as close as whole voxels allow
    to ``n spacing``).

    Per axis, with ``s = voxel_size / spacing`` (old voxels per new voxel): ``n' = max(1,
    round(n / s))`` voxels whose centres lie at old voxel coordinates ``(n - 1) / 2 + (i' - (n' -
    1) / 2) s``. When ``n / s`` is whole the field-of-view edges coincide (e.g. 2x2x2 blocks of
    the old voxels are the new ones); old voxels beyond the new centres are extrapolated by the
    resampling (``mode="nearest"`` of :func:`resample_to_reference`).
    """
    n = np.asarray(shape, float)
    s = float(voxel_size) / spacing_of(affine)
    n_new = np.maximum(np.rint(n / s).astype(int), 1)
    m = np.eye(4)
    m[:3, :3] = np.diag(s)
    m[:3, 3] = (n - 1.0) / 2.0 - (n_new - 1.0) / 2.0 * s
    return tuple(int(v) for v in n_new), np.asarray(affine, float) @ m
