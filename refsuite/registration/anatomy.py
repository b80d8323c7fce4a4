"""Analytic whole-body anatomy for synthetic PET/CT registration data.

The body is a set of ellipsoids, elliptic cylinders and shells painted in a fixed order
(later shapes override earlier ones), evaluated at arbitrary points in mm, so that a deformed
scan is sampled *exactly* at the pulled-back positions (no interpolation of label maps).

Coordinates: points ``(N, 3)`` in mm in array-axis order ``(z, y, x)``; ``z`` runs from the
upper thighs (0 mm) to the top of the head (~980 mm), ``y`` is anterior-positive, ``x`` is
left-right, both centred on the body axis. Sizes are those of an adult (trunk 340 x 230 mm).

Tissue values
-------------
CT numbers (HU) follow DenOtter & Schubert (2019), "Hounsfield unit": air -1000, lung -850,
fat -100, soft tissue 40, liver 60, urine 10, cancellous bone 300-500, cortical bone 700-1000.
Tracer uptake is in SUV (g/mL): FDG (brain ~8, myocardium ~4, liver ~2.2, urinary bladder) and
PSMA (salivary glands ~15, kidneys ~25, liver ~5, spleen ~6, bladder, low brain), typical of
Chen et al. (2022) J Nucl Med 63(1) 69-75 and Iacovitti et al. (2025) Front Med 12 1607227.
"""

from __future__ import annotations

import enum

import numpy as np

__all__ = ["Tracer", "LABELS", "BONE_LABELS", "SOFT_ORGAN_LABELS", "HU", "UPTAKE", "label_points"]


class Tracer(enum.Enum):
    """PET tracer of a synthetic scan (uptake table :data:`UPTAKE`)."""

    FDG = "fdg"
    PSMA = "psma"


#: label values of the synthetic label maps
LABELS: dict[str, int] = {
    "air": 0, "fat": 1, "soft_tissue": 2, "lung_left": 3, "lung_right": 4, "heart": 5, "liver": 6,
    "spleen": 7, "kidney_left": 8, "kidney_right": 9, "bladder": 10, "brain": 11, "salivary": 12,
    "skull": 13, "spine_cervical": 14, "spine_thoracic": 15, "ribs": 16, "spine_lumbar": 17,
    "pelvis": 18, "femur_left": 19, "femur_right": 20,
}
#: bones; each moves rigidly in the ground-truth deformation
BONE_LABELS: tuple[int, ...] = tuple(range(13, 21))
#: deformable organs scored by Dice
SOFT_ORGAN_LABELS: tuple[int, ...] = (3, 4, 5, 6, 7, 8, 9, 10, 11, 12)

#: CT number per label (HU)
HU = np.array([-1000, -100, 40, -850, -850, 40, 60, 50, 35, 35, 10, 35, 30,
               1000, 450, 450, 650, 450, 550, 800, 800], dtype=np.float64)

#: uptake per label (SUV) for each tracer; the last entry of each row is the lesion uptake
UPTAKE: dict[Tracer, np.ndarray] = {
    #                      air fat soft lungL lungR heart liver spleen kidL kidR blad brain saliv
    Tracer.FDG: np.array([0.0, 0.4, 1.0, 0.35, 0.35, 4.0, 2.2, 1.8, 2.5, 2.5, 15.0, 8.0, 1.6]
                         + [0.9] * 8),
    Tracer.PSMA: np.array([0.0, 0.2, 0.5, 0.2, 0.2, 1.0, 5.0, 6.0, 25.0, 25.0, 30.0, 0.1, 15.0]
                          + [0.4] * 8),
}


def _ellipsoid(p, centre, radii):
    return (((p[:, 0] - centre[0]) / radii[0]) ** 2 + ((p[:, 1] - centre[1]) / radii[1]) ** 2
            + ((p[:, 2] - centre[2]) / radii[2]) ** 2)


def _cylinder(p, centre_yx, radii_yx, z_range):
    """Normalised radius of an elliptic cylinder along z (inf outside its z range)."""
    r2 = ((p[:, 1] - centre_yx[0]) / radii_yx[0]) ** 2 + ((p[:, 2] - centre_yx[1]) / radii_yx[1]) ** 2
    inside_z = (p[:, 0] >= z_range[0]) & (p[:, 0] <= z_range[1])
    return np.where(inside_z, r2, np.inf)


def label_points(points_mm, *, body_scale=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Tissue label (:data:`LABELS`) at points ``(N, 3)`` mm, order ``(z, y, x)``.

    ``body_scale`` stretches the anatomy about the origin (inter-patient variability).
    """
    p = np.asarray(points_mm, dtype=np.float64) / np.asarray(body_scale, float)
    lab = np.zeros(p.shape[0], dtype=np.int16)
    L = LABELS

    def paint(mask, name):
        lab[mask] = L[name]

    for fat_mm, name in ((0.0, "fat"), (15.0, "soft_tissue")):
        body = np.zeros(p.shape[0], bool)
        for sx in (-1, 1):  # thighs
            body |= _cylinder(p, (0, sx * 85), (70 - fat_mm, 70 - fat_mm), (0, 240)) <= 1
        body |= _cylinder(p, (0, 0), (115 - fat_mm, 170 - fat_mm), (150, 700)) <= 1  # trunk
        body |= _ellipsoid(p, (700, 0, 0), (40, 115 - fat_mm, 170 - fat_mm)) <= 1  # shoulders
        body |= _cylinder(p, (-10, 0), (55 - fat_mm / 2, 55 - fat_mm / 2), (690, 800)) <= 1  # neck
        body |= _ellipsoid(p, (875, 0, 0), (105, 100, 80)) <= 1  # head
        paint(body, name)
    for sx, name in ((1, "lung_left"), (-1, "lung_right")):
        paint(_ellipsoid(p, (575, -5, sx * 80), (115, 80, 62)) <= 1, name)
    paint(_ellipsoid(p, (520, 35, 20), (50, 50, 48)) <= 1, "heart")
    paint(_ellipsoid(p, (430, 10, -65), (75, 85, 95)) <= 1, "liver")
    paint(_ellipsoid(p, (440, -45, 105), (50, 35, 30)) <= 1, "spleen")
    for sx, name in ((1, "kidney_left"), (-1, "kidney_right")):
        paint(_ellipsoid(p, (360, -55, sx * 80), (55, 28, 28)) <= 1, name)
    paint(_ellipsoid(p, (200, 35, 0), (35, 40, 45)) <= 1, "bladder")
    for sx in (-1, 1):
        paint(_ellipsoid(p, (800, 5, sx * 58), (25, 18, 12)) <= 1, "salivary")
    paint(_ellipsoid(p, (875, 0, 0), (97, 93, 74)) <= 1, "skull")
    paint(_ellipsoid(p, (880, 5, 0), (85, 85, 66)) <= 1, "brain")
    for z_range, name in (((250, 450), "spine_lumbar"), ((450, 700), "spine_thoracic"), ((700, 790), "spine_cervical")):
        paint(_cylinder(p, (-80, 0), (20, 20), z_range) <= 1, name)
    # ribs: elliptic hoops sloping down anteriorly, open at the sternum
    rho = np.sqrt(((p[:, 1] + 5) / 100) ** 2 + (p[:, 2] / 155) ** 2)
    on_hoop = (rho >= 1 - 10 / 130) & (rho <= 1) & ~((np.abs(p[:, 2]) < 30) & (p[:, 1] > 0))
    z_slope = p[:, 0] + 0.25 * (p[:, 1] + 5)
    for zc in range(480, 700, 35):
        paint(on_hoop & (np.abs(z_slope - zc) <= 6), "ribs")
    pelvis = _cylinder(p, (-80, 0), (25, 25), (170, 250)) <= 1  # sacrum
    for sx in (-1, 1):
        e = _ellipsoid(p, (270, -30, sx * 95), (60, 25, 55))
        pelvis |= (e <= 1) & (e >= 0.55)  # iliac wing shell
        e = _ellipsoid(p, (195, 10, sx * 80), (30, 30, 30))
        pelvis |= (e <= 1) & (e >= 0.5)  # acetabulum / pubis
    paint(pelvis, "pelvis")
    for sx, name in ((1, "femur_left"), (-1, "femur_right")):
        femur = _ellipsoid(p, (195, 5, sx * 85), (22, 22, 22)) <= 1
        femur |= _cylinder(p, (0, sx * 90), (15, 15), (0, 195)) <= 1
        paint(femur, name)
    return lab
