"""NIfTI input/output for registration, keeping the affines (nibabel).

Volumes keep the array-axis order of the file; ``spacing`` is the voxel size along those
axes (mm, from the affine). A DDF is written as a 4-D image ``(D, H, W, 3)`` in **voxel units
of the fixed grid** along the array axes (MONAI convention, see
:mod:`refsuite.registration.transforms`), with the fixed image's affine; ``ddf_to_mm`` gives the
physical displacement in the scanner frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from refsuite.io.atomic import atomic_path

__all__ = ["load_volume", "save_volume", "save_ddf", "same_grid", "resample_to_reference", "ddf_to_mm", "save_pair"]


def load_volume(path) -> tuple[np.ndarray, np.ndarray]:
    """``(data float32 (D, H, W), affine (4, 4))`` of a 3-D NIfTI file."""
    import nibabel as nib

    img = nib.load(str(path))
    data = np.asarray(img.dataobj, dtype=np.float32)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"{path}: expected a 3-D volume, got shape {data.shape}")
    return data, np.asarray(img.affine, dtype=np.float64)


def spacing_of(affine) -> np.ndarray:
    """Voxel size (3,) mm along the array axes: the column norms of the affine."""
    return np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)


def same_grid(shape_a, affine_a, shape_b, affine_b, *, atol_mm: float = 1e-3) -> bool:
    """True when two images share shape and affine (to ``atol_mm``)."""
    return tuple(shape_a) == tuple(shape_b) and np.allclose(affine_a, affine_b, atol=atol_mm)


def resample_to_reference(data, affine, ref_shape, ref_affine, *, order: int = 1, cval: float = 0.0) -> np.ndarray:
    """Resample ``data`` (with ``affine``) onto the reference grid (trilinear for ``order=1``)."""
    from scipy.ndimage import affine_transform

    # reference voxel -> world -> source voxel
    m = np.linalg.inv(np.asarray(affine)) @ np.asarray(ref_affine)
    return affine_transform(np.asarray(data, np.float32), m[:3, :3], offset=m[:3, 3], output_shape=tuple(ref_shape),
                            order=order, mode="constant", cval=cval).astype(np.float32)


def save_volume(path, data, affine) -> None:
    """Write a volume with ``affine`` atomically (temp file + rename)."""
    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), np.asarray(affine, dtype=np.float64))
    with atomic_path(path, suffix="".join(Path(path).suffixes)) as tmp:
        nib.save(img, str(tmp))


def save_ddf(path, ddf, affine) -> None:
    """Write a DDF ((1, 3, D, H, W) or (3, D, H, W), voxel units) as ``(D, H, W, 3)``."""
    d = np.asarray(ddf.detach().cpu() if hasattr(ddf, "detach") else ddf, dtype=np.float32)
    if d.ndim == 5:
        d = d[0]
    save_volume(path, np.moveaxis(d, 0, -1), affine)


def ddf_to_mm(ddf, affine) -> np.ndarray:
    """Physical displacement (D, H, W, 3) in mm in the scanner frame: ``A[:3, :3] @ ddf``."""
    d = np.asarray(ddf.detach().cpu() if hasattr(ddf, "detach") else ddf, dtype=np.float64)
    if d.ndim == 5:
        d = d[0]
    return np.einsum("ij,j...->...i", np.asarray(affine)[:3, :3], d)


def save_pair(directory, pair) -> dict:
    """Write a :class:`~refsuite.registration.SyntheticPair` as NIfTI files plus its truth.

    Files (affine: diagonal spacing, origin 0): ``fixed_pet``, ``fixed_ct``, ``fixed_labels``,
    ``moving_pet``, ``moving_ct``, ``moving_labels`` (``.nii.gz``), ``truth_ddf.nii.gz`` (voxel
    units) and ``truth.npz`` (landmarks in voxel indices, labels, per-bone motions ``motion_*``, simulation
    parameters), each written atomically. Returns ``{name: path}``.
    """
    out = Path(directory)
    affine = np.diag(list(np.asarray(pair.spacing, float)) + [1.0])
    paths = {}
    for name in ("fixed_pet", "fixed_ct", "fixed_labels", "moving_pet", "moving_ct", "moving_labels"):
        paths[name] = out / f"{name}.nii.gz"
        save_volume(paths[name], getattr(pair, name), affine)
    t = pair.truth
    paths["truth_ddf"] = out / "truth_ddf.nii.gz"
    save_ddf(paths["truth_ddf"], t["ddf"], affine)
    motions = t["bone_motions"]
    scalars = {k: np.asarray(v) for k, v in t.items() if np.isscalar(v) or isinstance(v, tuple)}
    paths["truth"] = out / "truth.npz"
    with atomic_path(paths["truth"]) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, spacing=np.asarray(pair.spacing), landmarks_fixed=t["landmarks_fixed"],
                     landmarks_moving=t["landmarks_moving"], landmark_labels=t["landmark_labels"],
                     motion_labels=np.array(sorted(motions)),
                     motion_rotvec_rad=np.array([motions[b][0] for b in sorted(motions)]),
                     motion_translation_mm=np.array([motions[b][1] for b in sorted(motions)]),
                     motion_centre_mm=np.array([motions[b][2] for b in sorted(motions)]), **scalars)
    return paths
