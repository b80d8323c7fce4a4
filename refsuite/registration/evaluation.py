"""Score an estimated DDF against the ground truth of a synthetic pair."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from refsuite.metrics.registration import (
    dice_per_label,
    folding_fraction,
    rigidity_error,
    target_registration_error,
)

from .anatomy import BONE_LABELS, LABELS, SOFT_ORGAN_LABELS
from .synthetic import SyntheticPair
from .transforms import map_points, warp_labels

__all__ = ["evaluate_registration"]

_NAMES = {v: k for k, v in LABELS.items()}


def evaluate_registration(pair: SyntheticPair, ddf) -> dict:
    """Registration metrics of ``ddf`` (voxel units, (3, D, H, W) or (1, 3, D, H, W)) on ``pair``.

    Returns
    -------
    dict
        ``dice`` {organ name: Dice of the warped moving labels vs the fixed labels},
        ``dice_soft`` / ``dice_bone`` (means over soft organs / bones), ``tre_soft_mm`` /
        ``tre_bone_mm`` (mean landmark error, mm), ``tre_mm`` (all landmarks),
        ``folding`` (fraction of body voxels with det J <= 0), ``rigidity_bone`` (mean
        ``||J - R||_F`` over interior bone voxels of the fixed scan, dimensionless; NaN when a
        grid is too coarse to have any),
        ``rigidity_per_bone`` {bone name: the same per bone}.
    """
    d = np.asarray(ddf.detach().cpu() if hasattr(ddf, "detach") else ddf, dtype=np.float32)
    if d.ndim == 4:
        d = d[None]
    import torch

    warped = warp_labels(pair.moving_labels, torch.as_tensor(d))
    present = [lab for lab in SOFT_ORGAN_LABELS + BONE_LABELS if (pair.fixed_labels == lab).any()]
    dice = dice_per_label(warped, pair.fixed_labels, {_NAMES[lab]: lab for lab in present})
    t = pair.truth
    mapped = map_points(t["landmarks_fixed"], d)
    tre = target_registration_error(mapped * pair.spacing, t["landmarks_moving"] * pair.spacing)
    is_bone = np.isin(t["landmark_labels"], BONE_LABELS)
    # the central-difference Jacobian of a voxel reads its 6 neighbours: score only voxels whose
    # whole stencil is in one bone (the truth, rigid per bone, then scores 0) and that stay 2
    # voxels off the grid border, where the interior-stencil regularisers do not act
    bone_mask = np.zeros(pair.fixed_labels.shape, bool)
    away = np.zeros(pair.fixed_labels.shape, bool)
    away[2:-2, 2:-2, 2:-2] = True
    per_bone = {}
    for lab in BONE_LABELS:
        inner = ndimage.binary_erosion(pair.fixed_labels == lab) & away
        if inner.any():
            per_bone[_NAMES[lab]] = rigidity_error(d, spacing=pair.spacing, mask=inner)
            bone_mask |= inner
    return dict(
        dice=dice,
        dice_soft=float(np.mean([dice[_NAMES[lab]] for lab in present if lab in SOFT_ORGAN_LABELS])),
        dice_bone=float(np.mean([dice[_NAMES[lab]] for lab in present if lab in BONE_LABELS])),
        tre_mm=float(tre.mean()),
        tre_soft_mm=float(tre[~is_bone].mean()),
        tre_bone_mm=float(tre[is_bone].mean()),
        folding=folding_fraction(d, spacing=pair.spacing, mask=pair.fixed_labels > 0),
        rigidity_bone=rigidity_error(d, spacing=pair.spacing, mask=bone_mask) if bone_mask.any() else float("nan"),
        rigidity_per_bone=per_bone,
    )
