"""Synthetic cross-tracer whole-body PET/CT pairs with a known deformation.

Each pair is one simulated patient scanned twice: a fixed scan (FDG PET + CT) and a moving
scan (PSMA PET + CT) of the same anatomy (:mod:`refsuite.registration.anatomy`) deformed by a
ground-truth transform that is **rigid per bone** and smooth and larger in soft tissue.

Ground truth
------------
The truth is a DDF ``u`` on the fixed grid (voxel units, MONAI convention): the fixed voxel
``x`` corresponds to the moving position ``x + u(x)``, i.e. a perfect registration warps the
moving scan with ``u``. It is an articulated skeleton with soft tissue moving on it::

    u(x) = sum_b w_b(x) [(A_b - I) x + a_b] + (1 - s(x)) u_soft(x)

- Bones form a kinematic tree (thoracic spine the root; cervical spine, skull, ribs, lumbar
  spine, pelvis, femora). The root turns about its centroid (SD ``bone_rotation_deg``) and
  shifts (common shift SD 4 mm + SD ``bone_translation_mm``); every other bone is its
  parent's motion composed with its own rotation (same SD) about the centre of its contact
  with the parent, scaled down so that no point within 15 mm of another bone moves more than
  1 mm relative to the parent (joint play). Touching bones therefore cannot slide through each
  other, the cause of the folding (det J -0.44 at the hip) in the earlier model of
  independent per-bone motions.
- ``w_b`` blends the bones' motions everywhere by inverse squared distance to each bone
  (Shepard): exactly one-hot inside bone ``b`` (so ``u`` is rigid in each bone) and
  continuous across every bone surface.
- ``u_soft`` = breathing (cranio-caudal diaphragm motion, anterior chest expansion) + a
  Gaussian-smoothed random field, moving soft tissue relative to the skeleton; it fades in
  with ``s`` = smoothstep over 40 mm of the distance to the nearest bone (C1).

Measured over 40 seeds at the full grid (7.5 mm), the truth's det J stays >= 0.39 (a test
checks > 0.25 on 8 seeds at the quick and full grids); at 3.75 mm it stays >= 0.49 (4 seeds). The
moving scan is sampled at ``phi^-1(y)`` for each moving voxel centre ``y``, the inverse found
by the damped fixed-point iteration ``x <- (x + y - u(x)) / 2``; its residual
is recorded. Landmarks are fixed voxel centres ``p`` with truth ``p + u(p)`` (exact).

PET: uptake (SUV) x 5 kBq/mL, averaged over ``oversample^3`` sub-voxel points (partial
volume), Gaussian PSF of ``psf_fwhm_mm``, then Poisson counts (``counts_per_kbq`` expected
counts per voxel per kBq/mL) scaled back to kBq/mL. CT: label HU, same partial volume, plus
Gaussian noise of ``ct_noise_hu``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from refsuite._checks import check_positive
from refsuite.constants import SIGMA_PER_FWHM

from .anatomy import BONE_LABELS, HU, LABELS, SOFT_ORGAN_LABELS, UPTAKE, Tracer, label_points

__all__ = ["SyntheticPair", "simulate_pet_ct_pair", "save_pair", "FIELD_OF_VIEW_MM"]

#: field of view (z, y, x) in mm: upper thighs to the top of the head
FIELD_OF_VIEW_MM = (990.0, 300.0, 420.0)
_KBQ_PER_SUV = 5.0
_BLEND_MM = 40.0
_CONTACT_MM = 15.0  # a bone's points this close to another bone are where it touches it
_JOINT_PLAY_MM = 1.0  # largest motion of a contact point relative to the parent bone
_L = LABELS
#: kinematic tree of the skeleton, child -> parent; the thoracic spine is the root
_PARENT = {
    _L["spine_cervical"]: _L["spine_thoracic"], _L["skull"]: _L["spine_cervical"], _L["ribs"]: _L["spine_thoracic"],
    _L["spine_lumbar"]: _L["spine_thoracic"], _L["pelvis"]: _L["spine_lumbar"],
    _L["femur_left"]: _L["pelvis"], _L["femur_right"]: _L["pelvis"],
}
_SKELETON_ORDER = (_L["spine_thoracic"], _L["spine_cervical"], _L["skull"], _L["ribs"], _L["spine_lumbar"],
                   _L["pelvis"], _L["femur_left"], _L["femur_right"])  # distance over which a bone's rigid motion fades into the soft-tissue field


@dataclass
class SyntheticPair:
    """A simulated fixed/moving PET/CT pair on one grid, with its ground truth.

    Arrays are ``(D, H, W)`` (z, y, x); PET in kBq/mL, CT in HU, labels per
    :data:`~refsuite.registration.anatomy.LABELS`; ``spacing`` (3,) mm. ``truth`` holds
    ``ddf`` (3, D, H, W) voxel units, ``landmarks_fixed``/``landmarks_moving`` (N, 3) voxel
    indices, ``landmark_labels`` (N,), ``bone_motions`` {label: (rotvec rad (3,), translation
    mm (3,), centre mm (3,))}, ``min_jacobian``, ``inverse_residual_vox`` and the parameters.
    """

    fixed_pet: np.ndarray
    fixed_ct: np.ndarray
    fixed_labels: np.ndarray
    moving_pet: np.ndarray
    moving_ct: np.ndarray
    moving_labels: np.ndarray
    spacing: np.ndarray
    truth: dict = field(default_factory=dict)


def simulate_pet_ct_pair(
    *,
    shape=(66, 32, 48),
    seed: int,
    fixed_tracer: Tracer = Tracer.FDG,
    moving_tracer: Tracer = Tracer.PSMA,
    breathing_mm: float = 10.0,
    random_motion_mm: float = 4.0,
    bone_rotation_deg: float = 1.5,
    bone_translation_mm: float = 2.0,
    psf_fwhm_mm: float = 7.0,
    counts_per_kbq: float = 20.0,
    ct_noise_hu: float = 15.0,
    n_lesions: int = 6,
    n_landmarks_per_label: int = 8,
    oversample: int = 2,
) -> SyntheticPair:
    """Simulate one fixed (FDG) / moving (PSMA) whole-body PET/CT pair with known deformation.

    Parameters
    ----------
    shape : (D, H, W)
        Grid over :data:`FIELD_OF_VIEW_MM`; spacing = FOV / shape (mm).
    seed : int
        Seeds anatomy scale, motion, lesions and noise (same seed, same pair).
    fixed_tracer, moving_tracer : Tracer
    breathing_mm : float, mm
        Peak cranio-caudal soft-tissue displacement at the diaphragm.
    random_motion_mm : float, mm
        RMS of the smooth random soft-tissue field (Gaussian sigma 40 mm).
    bone_rotation_deg, bone_translation_mm : float
        Standard deviations of each bone's rigid rotation (deg, about its centroid) and of its
        translation relative to the common shift (mm, per axis).
    psf_fwhm_mm, counts_per_kbq, ct_noise_hu, oversample :
        PET resolution (mm), count level, CT noise (HU), sub-samples per axis.
    n_lesions, n_landmarks_per_label : int

    Returns
    -------
    SyntheticPair
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 8:
        raise ValueError(f"shape must be 3 sizes >= 8, got {shape!r}")
    for name, v in (("psf_fwhm_mm", psf_fwhm_mm), ("counts_per_kbq", counts_per_kbq)):
        check_positive(name, v)
    if int(oversample) < 1:
        raise ValueError(f"oversample must be >= 1, got {oversample!r}")
    rng = np.random.default_rng(seed)
    spacing = np.asarray(FIELD_OF_VIEW_MM) / np.asarray(shape)
    body_scale = tuple(rng.normal(1.0, 0.04, 3).clip(0.9, 1.1))
    grid = _grid_mm(shape, spacing)
    fixed_labels = label_points(grid.reshape(-1, 3), body_scale=body_scale).reshape(shape)
    ddf, motions = _truth_ddf(fixed_labels, spacing, rng, breathing_mm, random_motion_mm,
                              bone_rotation_deg, bone_translation_mm)
    # pull-back positions phi^-1(y) (mm) of the moving voxel centres
    y_vox = np.indices(shape, dtype=np.float64).reshape(3, -1).T
    x_vox, residual = _invert(ddf, y_vox)
    lesions = _lesions(fixed_labels, spacing, grid, rng, n_lesions)
    common = dict(spacing=spacing, body_scale=body_scale, lesions=lesions, oversample=int(oversample))
    fixed_pet, fixed_ct, _ = _scan(y_vox * spacing + grid[0, 0, 0], fixed_tracer, shape, rng,
                                   psf_fwhm_mm, counts_per_kbq, ct_noise_hu, **common)
    moving_pet, moving_ct, moving_labels = _scan(x_vox * spacing + grid[0, 0, 0], moving_tracer, shape, rng,
                                                 psf_fwhm_mm, counts_per_kbq, ct_noise_hu, **common)
    lm_fixed, lm_labels = _landmarks(fixed_labels, rng, n_landmarks_per_label)
    lm_moving = lm_fixed + ddf[:, lm_fixed[:, 0], lm_fixed[:, 1], lm_fixed[:, 2]].T
    from refsuite.metrics.registration import jacobian_determinant

    truth = dict(
        ddf=ddf.astype(np.float32), landmarks_fixed=lm_fixed.astype(np.float64), landmarks_moving=lm_moving,
        landmark_labels=lm_labels, bone_motions=motions, lesions=lesions,
        min_jacobian=float(jacobian_determinant(ddf, spacing=spacing).min()),
        inverse_residual_vox=float(residual), body_scale=body_scale, seed=int(seed),
        fixed_tracer=fixed_tracer.value, moving_tracer=moving_tracer.value, psf_fwhm_mm=float(psf_fwhm_mm),
        counts_per_kbq=float(counts_per_kbq), breathing_mm=float(breathing_mm),
        random_motion_mm=float(random_motion_mm), bone_rotation_deg=float(bone_rotation_deg),
        bone_translation_mm=float(bone_translation_mm),
    )
    return SyntheticPair(fixed_pet, fixed_ct, fixed_labels.astype(np.int16), moving_pet, moving_ct,
                         moving_labels.astype(np.int16), spacing, truth)


def _grid_mm(shape, spacing) -> np.ndarray:
    """Voxel-centre positions (D, H, W, 3) in mm; z from spacing/2, y and x centred on 0."""
    axes = [(np.arange(n) + 0.5) * s for n, s in zip(shape, spacing)]
    axes[1] -= FIELD_OF_VIEW_MM[1] / 2
    axes[2] -= FIELD_OF_VIEW_MM[2] / 2
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)


def _truth_ddf(labels, spacing, rng, breathing_mm, random_mm, rot_deg, trans_mm):
    shape = labels.shape
    pos = np.indices(shape, dtype=np.float64) * spacing[:, None, None, None]  # mm, (3, D, H, W)
    zc = (np.arange(shape[0]) + 0.5) * spacing[0]
    body = ndimage.gaussian_filter((labels > 0).astype(float), 15.0 / spacing)
    common = rng.normal(0.0, 4.0, 3)
    # breathing: diaphragm region moves caudally, the anterior chest wall expands
    prof = np.exp(-(((zc - 480.0) / 90.0) ** 2))[:, None, None] * body
    yfrac = np.linspace(0.0, 1.0, shape[1])[None, :, None]
    soft = np.zeros((3,) + shape)
    soft[0] = -breathing_mm * prof
    soft[1] = 0.35 * breathing_mm * prof * yfrac
    noise = rng.normal(size=(3,) + shape)
    for i in range(3):
        noise[i] = ndimage.gaussian_filter(noise[i], 40.0 / spacing, mode="wrap")
    noise *= random_mm / max(np.sqrt(np.mean(noise**2)), 1e-12)
    soft += noise
    distances, motions, rigid, affine = [], {}, [], {}
    bone_any = np.isin(labels, BONE_LABELS)

    def dist_other_bone(mask):
        return ndimage.distance_transform_edt(~(bone_any & ~mask), sampling=spacing)

    for b in _SKELETON_ORDER:
        mask = labels == b
        if not mask.any():
            continue
        centre = pos[:, mask].mean(axis=1)
        parent = _PARENT.get(b)
        if parent in affine:
            # joint: the child turns relative to its parent about the centre of their contact,
            # so touching bones move together at the joint instead of sliding through each other
            a_p, off_p = affine[parent]
            pivot = _joint_centre(mask, labels == parent, pos, spacing)
            q = _joint_rotation(np.deg2rad(rng.normal(0.0, rot_deg, 3)), pivot,
                                pos[:, mask & (dist_other_bone(mask) <= _CONTACT_MM)])
            a = a_p @ q
            off = a_p @ (pivot - q @ pivot) + off_p
        else:  # the root, or a bone whose parent is outside the field of view
            a = Rotation.from_rotvec(np.deg2rad(rng.normal(0.0, rot_deg, 3))).as_matrix()
            off = centre - a @ centre + common + rng.normal(0.0, trans_mm, 3)
        affine[b] = (a, off)
        rigid.append(np.einsum("ij,j...->i...", a - np.eye(3), pos) + off[:, None, None, None])
        distances.append(ndimage.distance_transform_edt(~mask, sampling=spacing))
        motions[b] = (Rotation.from_matrix(a).as_rotvec(), a @ centre + off - centre, centre)
    dist = np.asarray(distances)
    # skeletal motion everywhere: inverse-square-distance (Shepard) blend of the bones' motions,
    # exactly bone b's motion inside bone b and continuous across every bone surface
    inside = dist == 0.0
    w = np.where(inside.any(axis=0), inside, 1.0 / np.maximum(dist, 1e-9) ** 2)
    w /= w.sum(axis=0)
    skeletal = np.einsum("b...,bi...->i...", w, np.asarray(rigid))
    # soft tissue moves relative to the skeleton, fading in (smoothstep, C1) over _BLEND_MM
    near = np.clip(1.0 - dist.min(axis=0) / _BLEND_MM, 0.0, 1.0)
    u_mm = skeletal + (1.0 - near * near * (3.0 - 2.0 * near)) * soft
    return u_mm / spacing[:, None, None, None], motions


def _joint_centre(child, parent, pos, spacing) -> np.ndarray:
    """Centre (mm, (3,)) of the child bone's voxels nearest its parent: their contact surface."""
    dist = ndimage.distance_transform_edt(~parent, sampling=spacing)[child]
    near = dist <= dist.min() + 1.5 * float(np.max(spacing))
    return pos[:, child][:, near].mean(axis=1)


def _joint_rotation(rotvec, pivot, contact) -> np.ndarray:
    """Rotation matrix of ``rotvec`` (rad), scaled down so that no contact point (mm, (3, N))
    moves more than :data:`_JOINT_PLAY_MM` relative to the parent: long contacts (ribs on the
    spine) turn less than a ball joint (hip)."""
    rotvec = np.asarray(rotvec, float)
    if contact.size:
        lever = np.linalg.norm(np.cross(rotvec, (contact - pivot[:, None]).T), axis=1).max()
        if lever > _JOINT_PLAY_MM:  # |(R - I) r| <= |theta x r| for small angles
            rotvec = rotvec * (_JOINT_PLAY_MM / lever)
    return Rotation.from_rotvec(rotvec).as_matrix()


def _invert(ddf, y_vox, n_iter: int = 80):
    """Solve ``x + u(x) = y`` per moving voxel ``y`` (voxel units); returns x and the max residual inside the grid."""
    import torch
    import torch.nn.functional as F

    shape = np.asarray(ddf.shape[1:])
    field = torch.as_tensor(ddf, dtype=torch.float32)[None]
    y = torch.as_tensor(y_vox, dtype=torch.float32)
    scale = torch.as_tensor(2.0 / (shape - 1), dtype=torch.float32)

    def u_at(x):
        # grid_sample wants (x, y, z) = reversed array axes in [-1, 1]; align_corners=True puts
        # voxel centres at integer indices, border padding = nearest extrapolation
        g = (x * scale - 1.0).flip(-1).view(1, -1, 1, 1, 3)
        return F.grid_sample(field, g, mode="bilinear", padding_mode="border", align_corners=True).view(3, -1).T

    x = y.clone()
    for _ in range(n_iter):
        # damped (relaxation 0.5): converges for eigenvalues of grad u in (-1, 3), not only |.| < 1
        x = 0.5 * x + 0.5 * (y - u_at(x))
    err = (x + u_at(x) - y).abs().amax(dim=1).numpy()
    x = x.numpy()
    # pre-images outside the fixed grid see a clamped u; they are not scored
    inside = np.all((x >= 0) & (x <= shape - 1), axis=1)
    return x, float(err[inside].max()) if inside.any() else float("inf")


def _lesions(labels, spacing, grid, rng, n):
    """Spherical lesions at random positions in liver, lungs, bone and soft tissue (anatomy frame)."""
    hosts = [LABELS["liver"], LABELS["lung_left"], LABELS["spine_lumbar"], LABELS["pelvis"],
             LABELS["soft_tissue"], LABELS["spine_thoracic"]]
    out = []
    for k in range(int(n)):
        idx = np.argwhere(labels == hosts[k % len(hosts)])
        if len(idx) == 0:
            continue
        c = grid[tuple(idx[rng.integers(len(idx))])]
        out.append(dict(centre_mm=c, radius_mm=float(rng.uniform(8.0, 14.0)),
                        suv_fdg=float(rng.uniform(5.0, 12.0)),
                        suv_psma=float(rng.choice([0.5, rng.uniform(8.0, 20.0)]))))
    return out


def _scan(points_mm, tracer, shape, rng, psf_fwhm_mm, counts_per_kbq, ct_noise_hu, *, spacing,
          body_scale, lesions, oversample):
    """PET (kBq/mL), CT (HU) and centre labels of one scan sampled at anatomy points (N, 3) mm."""
    o = oversample
    offsets = ((np.indices((o, o, o)).reshape(3, -1).T + 0.5) / o - 0.5) * spacing
    uptake = UPTAKE[Tracer(tracer)]
    suv = np.zeros(len(points_mm))
    hu = np.zeros(len(points_mm))
    for off in offsets:
        p = points_mm + off
        lab = label_points(p, body_scale=body_scale)
        s = uptake[lab]
        for les in lesions:
            inside = np.sum((p - les["centre_mm"]) ** 2, axis=1) <= les["radius_mm"] ** 2
            s = np.where(inside, les["suv_fdg" if tracer is Tracer.FDG else "suv_psma"], s)
        suv += s / len(offsets)
        hu += HU[lab] / len(offsets)
    centre_labels = label_points(points_mm, body_scale=body_scale).reshape(shape)
    activity = ndimage.gaussian_filter(suv.reshape(shape) * _KBQ_PER_SUV,
                                       psf_fwhm_mm * SIGMA_PER_FWHM / spacing)
    counts = rng.poisson(np.clip(activity, 0, None) * counts_per_kbq)
    pet = (counts / counts_per_kbq).astype(np.float32)
    ct = (hu.reshape(shape) + rng.normal(0.0, ct_noise_hu, shape)).astype(np.float32)
    return pet, ct, centre_labels


def _landmarks(labels, rng, n_per_label):
    """Random voxel centres inside each bone and soft organ (eroded by one voxel)."""
    pts, labs = [], []
    for lab in BONE_LABELS + SOFT_ORGAN_LABELS:
        mask = labels == lab
        inner = ndimage.binary_erosion(mask)
        idx = np.argwhere(inner if inner.any() else mask)
        if len(idx) == 0:
            continue
        pick = idx[rng.choice(len(idx), size=min(n_per_label, len(idx)), replace=False)]
        pts.append(pick)
        labs.append(np.full(len(pick), lab))
    return np.concatenate(pts), np.concatenate(labs)


def save_pair(directory, pair: SyntheticPair) -> dict:
    """Write a :class:`SyntheticPair` as NIfTI files plus its truth; returns ``{name: path}``.

    Files: ``fixed_pet``, ``fixed_ct``, ``fixed_labels``, ``moving_pet``, ``moving_ct``,
    ``moving_labels`` and ``truth_ddf`` (``.nii.gz``, voxel units, (D, H, W, 3)), all written
    together (all or none), and ``truth.npz`` (landmarks in voxel indices, labels, per-bone motions
    ``motion_*``, simulation parameters). The arrays keep their (z, y, x) order; the affine
    (:func:`refsuite.io.nifti.zyx_affine`, origin 0) places axis 0 along world z, so viewers show
    the anatomy upright and voxel indices in ``truth.npz`` are the files' voxel indices.
    """
    from pathlib import Path

    from refsuite._atomic import atomic_path
    from refsuite.io.nifti import ddf_image, save_images, volume_image, zyx_affine

    out = Path(directory)
    affine = zyx_affine(pair.spacing)
    names = ("fixed_pet", "fixed_ct", "fixed_labels", "moving_pet", "moving_ct", "moving_labels")
    paths = {name: out / f"{name}.nii.gz" for name in (*names, "truth_ddf")}
    t = pair.truth
    save_images({**{paths[n]: volume_image(getattr(pair, n), affine) for n in names},
                 paths["truth_ddf"]: ddf_image(t["ddf"], affine)})
    motions = t["bone_motions"]
    order = sorted(motions)
    scalars = {k: np.asarray(v) for k, v in t.items() if np.isscalar(v) or isinstance(v, tuple)}
    paths["truth"] = out / "truth.npz"
    with atomic_path(paths["truth"]) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, spacing=np.asarray(pair.spacing), landmarks_fixed=t["landmarks_fixed"],
                     landmarks_moving=t["landmarks_moving"], landmark_labels=t["landmark_labels"],
                     motion_labels=np.array(order), motion_rotvec_rad=np.array([motions[b][0] for b in order]),
                     motion_translation_mm=np.array([motions[b][1] for b in order]),
                     motion_centre_mm=np.array([motions[b][2] for b in order]), **scalars)
    return paths
