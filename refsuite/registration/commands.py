"""``refsuite register``: CT-guided deformable registration of two PET NIfTI volumes.

Only argparse-level code here; the solver is imported inside the handler.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "register",
        help="deformable PET-to-PET registration with CT-guided (or uniform) regularisation",
        description="Register MOVING PET onto FIXED PET (NIfTI). The regulariser weight is the CT-derived map "
        "(--fixed-ct, the default) or a uniform weight (--uniform-weight). Writes the warped moving PET and the "
        "DDF (D, H, W, 3), voxel units of the fixed grid, both with the fixed affine.",
    )
    p.add_argument("--fixed", required=True, help="fixed PET (NIfTI)")
    p.add_argument("--moving", required=True, help="moving PET (NIfTI)")
    p.add_argument("--fixed-ct", help="CT (HU) paired with the fixed PET, on its grid unless --resample")
    p.add_argument("--uniform-weight", type=float, help="use this uniform regulariser weight instead of the CT map")
    p.add_argument("--soft-weight", type=float, default=30.0, help="CT map weight of soft tissue (default 30)")
    p.add_argument("--bone-weight", type=float, default=300.0, help="CT map weight of bone (default 300)")
    p.add_argument("--smoothing-mm", type=float, default=4.0, help="Gaussian sigma of the CT map, mm (default 4)")
    p.add_argument("--resample", action="store_true",
                   help="resample MOVING and the CT onto the fixed grid when the grids differ (else an error)")
    p.add_argument("--similarity", choices=["lncc", "mi"], default="lncc", help="image similarity (default lncc)")
    p.add_argument("--iterations", default="80,60,40", help="Adam steps per level, coarsest first (default 80,60,40)")
    p.add_argument("--diffeomorphic", action="store_true", help="optimise a velocity field (scaling and squaring)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--out-warped", required=True, help="output: warped moving PET (NIfTI)")
    p.add_argument("--out-ddf", required=True, help="output: DDF (NIfTI, D x H x W x 3, voxel units)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from refsuite.registration import Similarity, ct_regularization_map, register, warp
    from refsuite.registration.nifti import load_volume, resample_to_reference, same_grid, save_ddf, save_volume, spacing_of

    try:
        fixed, fa = load_volume(args.fixed)
        moving, ma = load_volume(args.moving)
        if not same_grid(fixed.shape, fa, moving.shape, ma):
            if not args.resample:
                raise ValueError(f"--moving grid {moving.shape} does not match --fixed grid {fixed.shape} "
                                 "(shape or affine); pass --resample to resample it onto the fixed grid")
            moving = resample_to_reference(moving, ma, fixed.shape, fa)
        spacing = spacing_of(fa)
        if args.uniform_weight is not None:
            weight = float(args.uniform_weight)
        elif args.fixed_ct:
            ct, ca = load_volume(args.fixed_ct)
            if not same_grid(ct.shape, ca, fixed.shape, fa):
                if not args.resample:
                    raise ValueError(f"--fixed-ct grid {ct.shape} does not match --fixed grid {fixed.shape}; "
                                     "pass --resample")
                ct = resample_to_reference(ct, ca, fixed.shape, fa, cval=-1000.0)
            weight = ct_regularization_map(ct, spacing=spacing, soft_weight=args.soft_weight,
                                           bone_weight=args.bone_weight, smoothing_mm=args.smoothing_mm)
        else:
            raise ValueError("give --fixed-ct (CT-guided map) or --uniform-weight")
        iters = tuple(int(x) for x in args.iterations.split(","))
        ddf = register(fixed, moving, weight_map=weight, spacing=spacing, similarity=Similarity(args.similarity),
                       levels=len(iters), iterations=iters, diffeomorphic=args.diffeomorphic, device=args.device)
    except (ValueError, OSError) as exc:
        print(f"refsuite register: {exc}", file=sys.stderr)
        return 2
    warped = warp(torch.as_tensor(moving)[None, None], ddf)[0, 0].numpy()
    save_volume(args.out_warped, warped, fa)
    save_ddf(args.out_ddf, ddf, fa)
    print(f"wrote {args.out_warped} and {args.out_ddf} (max |ddf| {float(np.abs(ddf.numpy()).max()):.2f} voxels)")
    return 0
