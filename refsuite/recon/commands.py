"""``refsuite recon``: list-mode OSEM of a coincidence file on a scanner, written as NIfTI.

Reads what ``refsuite simulate`` writes (``OUT.root`` or ``OUT.petsird``, and ``OUT.scanner.json``)
or any file :func:`refsuite.io.read_events` knows (GATE 9/10 ROOT, RNTuple, npz, PETSIRD), and reconstructs it with
:func:`refsuite.recon.lm_osem` and its default sensitivity (detected lines traced into the
scanner's blocks, one image per subset), so the image is in emissions per voxel.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["register"]

_PLACEMENTS = ("crystal_centres", "crystal_samples", "line")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "recon",
        help="list-mode OSEM of a coincidence file on a scanner; writes NIfTI",
        description="Reconstruct coincidences (GATE 9/10 ROOT TTree or RNTuple, refsuite .npz or PETSIRD; e.g. the OUT.root "
                    "of `refsuite simulate`) with list-mode OSEM on the scanner (.json, e.g. OUT.scanner.json) and "
                    "the block-traced sensitivity of refsuite.recon.lm_osem. Writes a NIfTI image (x, y, z) whose "
                    "affine places every voxel centre in the scanner frame (mm), atomically.",
    )
    p.add_argument("events", help="coincidence file (.root, .npz or PETSIRD)")
    p.add_argument("--scanner", required=True, help="scanner .json (refsuite.geometry.Scanner.save; "
                                                    "`refsuite simulate` writes OUT.scanner.json)")
    p.add_argument("--out", required=True, help="output image .nii or .nii.gz")
    p.add_argument("--npy", action="store_true", help="also write the image array (nx, ny, nz) as OUT stem + .npy")
    p.add_argument("--voxel", type=float, default=2.0, help="cubic voxel size, mm (default 2)")
    p.add_argument("--shape", type=int, nargs=3, default=None, metavar=("NX", "NY", "NZ"),
                   help="image shape (default: the square inscribed in the bore times the crystals' axial extent, "
                        "at --voxel); centred on the axis at the axial centre of the crystals")
    p.add_argument("--iterations", type=int, default=3, help="OSEM iterations (default 3)")
    p.add_argument("--subsets", type=int, default=6, help="angular subsets (default 6)")
    p.add_argument("--crystal-ids", choices=("keep", "assign"), default="keep",
                   help="keep the file's crystal ids (assigned on the scanner only where it has none; default) "
                        "or assign them from the interaction points on the scanner")
    p.add_argument("--lor-placement", choices=_PLACEMENTS, default="crystal_centres",
                   help="LOR ends: crystal centres (default), points drawn in the crystals, or the recorded "
                        "interaction points (an ideal detector)")
    p.add_argument("--sensitivity-lines", type=float, default=4e6,
                   help="Monte Carlo lines of the sensitivity image (default 4e6)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sensitivity Monte Carlo and crystal sampling")
    p.add_argument("--device", default=None, help="torch device (default cuda when available)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_cmd_recon)


def _grid(scanner, voxel, shape):
    """(shape, origin) of the image: given, or covering the scanner's field of view."""
    import numpy as np

    cc = scanner.crystal_centres().reshape(-1, 3)
    z_lo, z_hi = float(cc[:, 2].min()), float(cc[:, 2].max())
    if shape is None:
        r_fov = float(np.hypot(cc[:, 0], cc[:, 1]).min())
        n_xy = int(np.ceil(2 * r_fov / np.sqrt(2) / voxel))  # the square inscribed in the bore
        shape = (n_xy, n_xy, max(1, int(np.ceil((z_hi - z_lo) / voxel))))
    shape = tuple(int(s) for s in shape)
    centre = np.array([0.0, 0.0, (z_lo + z_hi) / 2])
    return shape, tuple(float(o) for o in centre - (np.asarray(shape) - 1) / 2 * voxel)


def _check(args) -> int:
    """All flags and paths, before any work (one-line UsageError each, exit 2)."""
    import numpy as np

    from refsuite._cli_errors import UsageError, input_file, output_file

    input_file(args.events, "EVENTS", "a coincidence file (.root, .npz or PETSIRD)")
    input_file(args.scanner, "--scanner", "a scanner .json")
    output_file(args.out, "--out", suffixes=(".nii", ".nii.gz"))
    for name, v in (("--iterations", args.iterations), ("--subsets", args.subsets)):
        if v < 1:
            raise UsageError(f"{name} must be an integer >= 1, got {v}")
    if not (np.isfinite(args.voxel) and args.voxel > 0):
        raise UsageError(f"--voxel must be a finite length > 0 mm, got {args.voxel}")
    if args.shape is not None and min(args.shape) < 1:
        raise UsageError(f"--shape must be three integers >= 1, got {args.shape}")
    lines = args.sensitivity_lines
    if not (np.isfinite(lines) and lines == int(lines) and 1 <= lines <= 1e10):
        raise UsageError(f"--sensitivity-lines must be an integer in [1, 1e10], got {lines}")
    return int(lines)


def _cmd_recon(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from refsuite.geometry import Scanner
    from refsuite.io import read_events
    from refsuite.io.atomic import atomic_path
    from refsuite.io.nifti import write_nifti

    from .scanner import lm_osem

    from refsuite._cli_errors import UsageError, reading

    lines = _check(args)
    with reading(args.scanner, "--scanner", "a refsuite scanner .json (Scanner.save)"):
        scanner = Scanner.load(args.scanner)
    try:
        shape, origin = _grid(scanner, float(args.voxel), args.shape)
    except ValueError as exc:
        raise UsageError(f"--voxel/--shape: {exc}") from None
    with reading(args.events, "EVENTS", "coincidences (GATE 9/10 ROOT, refsuite .npz or PETSIRD)"):
        events = read_events(args.events, scanner, crystal_ids=args.crystal_ids)
    if events.n_events == 0:
        raise UsageError(f"EVENTS {args.events!r}: holds no coincidences (nothing to reconstruct)")
    bar = None
    if not args.no_progress:
        from tqdm.auto import tqdm

        print(f"refsuite recon: {events.n_events} events; sensitivity from {lines:.3g} lines ...", file=sys.stderr)
        bar = tqdm(total=args.iterations * args.subsets, desc="refsuite recon", unit="subset")
    try:
        image = lm_osem(events, scanner, image_shape=shape, voxel_size=float(args.voxel), origin=origin,
                        n_iter=args.iterations, n_subsets=args.subsets, lor_placement=args.lor_placement,
                        n_sensitivity_lines=lines, seed=args.seed, device=args.device,
                        callback=None if bar is None else (lambda *_: bar.update(1)))
    finally:
        if bar is not None:
            bar.close()
    img = np.asarray(image.cpu(), np.float32)
    out = write_nifti(args.out, img, voxel_size=float(args.voxel), origin=origin)
    written = [str(out)]
    if args.npy:
        npy = Path(str(out).removesuffix(".gz").removesuffix(".nii") + ".npy")
        with atomic_path(npy, suffix=".npy") as tmp:
            np.save(tmp, img)
        written.append(str(npy))
    print(f"wrote {', '.join(written)}: image {shape}, voxel {args.voxel} mm, centre of voxel (0,0,0) at "
          f"{tuple(round(float(o), 3) for o in origin)} mm; {float(img.sum()):.6g} emissions in the image")
    return 0
