"""``refsuite recon``: list-mode OSEM of an npz event file (LOR end points in mm)."""

from __future__ import annotations

import argparse


def _cmd_recon(args: argparse.Namespace) -> int:
    import sys

    import numpy as np
    import torch

    from refsuite.io.atomic import atomic_path
    from refsuite.projectors import TOFParameters

    from .osem import lm_osem_lors, sensitivity_image
    from .simulate import ideal_cylinder_lors

    data = np.load(args.events)
    missing = [k for k in ("xstart", "xend") if k not in data]
    if missing:
        print(f"refsuite recon: {args.events} lacks {missing} (arrays (n, 3) of LOR end points in mm)", file=sys.stderr)
        return 2
    shape = tuple(args.shape)
    vs = float(args.voxel)
    origin = tuple(-(s - 1) / 2.0 * vs for s in shape)
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    rng = np.random.default_rng(args.seed)
    ss, se, w = ideal_cylinder_lors(args.sensitivity_lors, radius_mm=args.radius, half_length_mm=args.half_length,
                                    fov_radius_mm=float(np.hypot(shape[0], shape[1]) * vs / 2), voxel_volume_mm3=vs**3,
                                    rng=rng)
    sens = sensitivity_image(t(ss), t(se), image_shape=shape, voxel_size=vs, origin=origin, weights=t(w))
    tof = tof_bin = None
    if args.tof_sigma is not None:
        if "tof_bin" not in data:
            print("refsuite recon: --tof-sigma needs a 'tof_bin' array in the event file", file=sys.stderr)
            return 2
        tof = TOFParameters(num_bins=args.tof_bins, bin_width_mm=args.tof_bin_width, sigma_mm=args.tof_sigma)
        tof_bin = t(data["tof_bin"])
    x = lm_osem_lors(t(data["xstart"]), t(data["xend"]), sensitivity=sens, voxel_size=vs, origin=origin,
                     n_iter=args.iterations, n_subsets=args.subsets, tof=tof, tof_bin=tof_bin, device=args.device)
    with atomic_path(args.out, suffix=".npy") as tmp:
        np.save(tmp, x.cpu().numpy())
    print(f"wrote {args.out}: image {shape}, voxel {vs} mm, origin {origin} mm (centre of voxel 0,0,0)")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "recon",
        help="list-mode OSEM of LOR end points (ideal cylindrical detector sensitivity)",
        description="Reconstruct an npz event file holding xstart, xend (n, 3) mm and optionally tof_bin (n,) "
        "with list-mode OSEM; the sensitivity image is the Monte Carlo one of an ideal cylinder "
        "(radius, half length). Writes a .npy image (nx, ny, nz) centred on the scanner origin.",
    )
    p.add_argument("events", help="npz file with xstart, xend [, tof_bin]")
    p.add_argument("--out", required=True, help="output .npy image")
    p.add_argument("--shape", type=int, nargs=3, required=True, metavar=("NX", "NY", "NZ"))
    p.add_argument("--voxel", type=float, required=True, help="voxel size (mm)")
    p.add_argument("--radius", type=float, required=True, help="detector radius (mm)")
    p.add_argument("--half-length", type=float, required=True, help="detector half axial length (mm)")
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--subsets", type=int, default=8)
    p.add_argument("--sensitivity-lors", type=int, default=2_000_000, help="Monte Carlo lines for the sensitivity")
    p.add_argument("--tof-sigma", type=float, default=None, help="TOF sigma along the LOR (mm); enables TOF")
    p.add_argument("--tof-bin-width", type=float, default=10.0, help="TOF bin width (mm)")
    p.add_argument("--tof-bins", type=int, default=21, help="number of TOF bins")
    p.add_argument("--seed", type=int, default=0, help="seed of the sensitivity Monte Carlo")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_cmd_recon)
