"""``refsuite register``: CT-guided deformable registration of two PET NIfTI volumes.

Only argparse-level code here; the solver is imported inside the handler. Inputs, numbers and
the output paths are checked before any work (:mod:`refsuite._cli_errors`), and the warped
image and its DDF (and the ITK displacement field, if asked) are written together: all files or none.
NIfTI files are read and written by :mod:`refsuite.io.nifti` (arrays in the files' voxel order).
"""

from __future__ import annotations

import argparse

from refsuite._cli_errors import (
    UsageError, check_memory, device, input_file, nonnegative_float, output_file, positive_float,
    positive_int_list, reading, require_device,
)

_NIFTI = "a 3-D NIfTI volume (.nii or .nii.gz)"
_SUFFIXES = (".nii", ".nii.gz")
# Peak memory per voxel of the finest level: images, weight map, DDF, its Adam moments and
# gradient, LNCC local moments, warped image and autograd buffers (float32), rounded up from
# the peak RSS growth of a 64^3 registration (diffeomorphic off; scaling and squaring adds ~2x).
_BYTES_PER_VOXEL = 600


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "register",
        help="deformable PET-to-PET registration with CT-guided (or uniform) regularisation",
        description="Register MOVING PET onto FIXED PET (NIfTI). The regulariser weight is the CT-derived map "
        "(--fixed-ct, the default) or a uniform weight (--uniform-weight). Arrays keep the files' voxel order. Writes "
        "the warped moving PET and the DDF (D, H, W, 3), voxel units of the fixed grid, both with the fixed affine "
        "and mm units, and with --out-ddf-itk the same DDF in world mm for ITK tools; all files or none.",
    )
    p.add_argument("--fixed", required=True, help="fixed PET (NIfTI)")
    p.add_argument("--moving", required=True, help="moving PET (NIfTI)")
    p.add_argument("--fixed-ct", help="CT (HU) paired with the fixed PET, on its grid unless --resample")
    p.add_argument("--uniform-weight", type=nonnegative_float,
                   help="use this uniform regulariser weight (>= 0) instead of the CT map")
    p.add_argument("--soft-weight", type=positive_float, default=30.0, help="CT map weight of soft tissue (default 30)")
    p.add_argument("--bone-weight", type=positive_float, default=300.0, help="CT map weight of bone (default 300)")
    p.add_argument("--smoothing-mm", type=nonnegative_float, default=4.0,
                   help="Gaussian sigma of the CT map, mm (default 4)")
    p.add_argument("--resample", action="store_true",
                   help="resample MOVING and the CT onto the fixed grid when the grids differ (else an error)")
    p.add_argument("--similarity", choices=["lncc", "mi"], default="lncc", help="image similarity (default lncc)")
    p.add_argument("--iterations", type=positive_int_list, default=(80, 60, 40),
                   help="Adam steps per level (>= 1 each), coarsest first (default 80,60,40)")
    p.add_argument("--diffeomorphic", action="store_true", help="optimise a velocity field (scaling and squaring)")
    p.add_argument("--device", type=device, default="cpu", help="torch device (default cpu)")
    p.add_argument("--out-warped", required=True, help="output: warped moving PET (NIfTI)")
    p.add_argument("--out-ddf", required=True, help="output: DDF (NIfTI, D x H x W x 3, voxel units of the fixed grid)")
    p.add_argument("--out-ddf-itk", metavar="FILE",
                   help="also write the DDF as an ITK displacement field (NIfTI, D x H x W x 1 x 3, intent vector, "
                   "physical LPS mm: fixed point p -> moving point p + u(p)) for ANTs antsApplyTransforms, Slicer, "
                   "SimpleITK")
    p.set_defaults(func=_run)


def _load(path, flag: str):
    """``(data (D, H, W) float32 in the file's axis order, affine (4, 4) mm)`` (:func:`refsuite.io.nifti.read_nifti`:
    finite voxels, a finite invertible affine), at least 4 voxels along each axis."""
    from refsuite.io.nifti import read_nifti

    input_file(path, flag, _NIFTI)
    with reading(path, flag, _NIFTI):
        vol = read_nifti(path)
    if min(vol.data.shape) < 4:
        raise UsageError(f"{flag} {str(path)!r}: shape {vol.data.shape}; expected at least 4 voxels along each axis")
    return vol.data, vol.affine


def _check_outputs(args) -> None:
    from pathlib import Path

    output_file(args.out_warped, "--out-warped", suffixes=_SUFFIXES)
    output_file(args.out_ddf, "--out-ddf", suffixes=_SUFFIXES)
    outputs = {"--out-warped": args.out_warped, "--out-ddf": args.out_ddf}
    if args.out_ddf_itk is not None:
        outputs["--out-ddf-itk"] = output_file(args.out_ddf_itk, "--out-ddf-itk", suffixes=_SUFFIXES)
    seen = {}
    for flag, path in outputs.items():
        other = seen.setdefault(Path(path).resolve(), flag)
        if other != flag:
            raise UsageError(f"{other} and {flag} are the same file {str(path)!r}; expected different files")
    if args.uniform_weight is None and not args.fixed_ct:
        raise UsageError("give --fixed-ct (CT-guided map) or --uniform-weight")
    require_device(args.device)


def _check_levels(iterations, shape) -> None:
    """One step count per pyramid level; refuse a level whose grid repeats the one before it (the
    pyramid stops halving at 4 voxels per axis, so such a level adds nothing)."""
    from refsuite.registration.optimize import _pyramid_shape

    grids = [_pyramid_shape(shape, level) for level in range(len(iterations))]
    n_new = 1 + sum(grids[k] != grids[k - 1] for k in range(1, len(grids)))
    if n_new < len(grids):
        raise UsageError(f"--iterations {','.join(map(str, iterations))}: {len(iterations)} levels; a "
                         f"{' x '.join(map(str, shape))} grid has {n_new} distinct pyramid levels (each halves it, "
                         "down to 4 voxels per axis), so give at most that many step counts")


def _run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from refsuite.io.nifti import (
        check_itk_grid, ddf_image, itk_displacement_image, resample_to_reference, same_grid, save_images, spacing_of, volume_image,
    )
    from refsuite.registration import Similarity, ct_regularization_map, register, warp

    _check_outputs(args)
    fixed, fa = _load(args.fixed, "--fixed")
    moving, ma = _load(args.moving, "--moving")
    for flag, path, vol in (("--fixed", args.fixed, fixed), ("--moving", args.moving, moving)):
        if float(vol.max()) == float(vol.min()):
            raise UsageError(f"{flag} {str(path)!r}: every voxel is {float(vol.min()):g}; a constant image has "
                             "nothing to register")
    _check_levels(args.iterations, fixed.shape)
    if args.out_ddf_itk is not None:
        try:
            check_itk_grid(fa, f"--fixed {str(args.fixed)!r}")
        except ValueError as exc:
            raise UsageError(f"{exc}; --out-ddf-itk needs such a grid") from exc
    if not same_grid(fixed.shape, fa, moving.shape, ma):
        if not args.resample:
            raise UsageError(f"--moving grid {moving.shape} does not match --fixed grid {fixed.shape} "
                             "(shape or affine); pass --resample to resample it onto the fixed grid")
        moving = resample_to_reference(moving, ma, fixed.shape, fa)
    check_memory(fixed.size * _BYTES_PER_VOXEL * (2 if args.diffeomorphic else 1), "--fixed", repr(args.fixed),
                 f"a {' x '.join(map(str, fixed.shape))} volume; register on a coarser grid (resample both images)")
    spacing = spacing_of(fa)
    if args.uniform_weight is not None:
        weight = float(args.uniform_weight)
    else:
        ct, ca = _load(args.fixed_ct, "--fixed-ct")
        if not same_grid(ct.shape, ca, fixed.shape, fa):
            if not args.resample:
                raise UsageError(f"--fixed-ct grid {ct.shape} does not match --fixed grid {fixed.shape}; "
                                 "pass --resample")
            ct = resample_to_reference(ct, ca, fixed.shape, fa, cval=-1000.0)
        try:
            weight = ct_regularization_map(ct, spacing=spacing, soft_weight=args.soft_weight,
                                           bone_weight=args.bone_weight, smoothing_mm=args.smoothing_mm)
        except ValueError as exc:
            raise UsageError(f"--fixed-ct {str(args.fixed_ct)!r}: {exc}") from exc
    iters = args.iterations
    ddf = register(fixed, moving, weight_map=weight, spacing=spacing, similarity=Similarity(args.similarity),
                   levels=len(iters), iterations=iters, diffeomorphic=args.diffeomorphic, device=args.device)
    warped = warp(torch.as_tensor(moving)[None, None], ddf)[0, 0].numpy()
    outputs = {args.out_warped: volume_image(warped, fa), args.out_ddf: ddf_image(ddf, fa)}
    if args.out_ddf_itk is not None:
        outputs[args.out_ddf_itk] = itk_displacement_image(ddf, fa)
    save_images(outputs)  # every temporary file is complete before any replaces its target: all outputs or none
    print(f"wrote {', '.join(map(str, outputs))} (max |ddf| {float(np.abs(ddf.numpy()).max()):.2f} voxels)")
    return 0

