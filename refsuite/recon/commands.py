"""``refsuite recon``: list-mode OSEM of a coincidence file on a scanner, written as NIfTI.

Reads what ``refsuite simulate`` writes (``OUT.root`` or ``OUT.petsird``, and ``OUT.scanner.json``)
or any file :func:`refsuite.io.read_events` knows (GATE 9/10 ROOT, RNTuple, npz, PETSIRD), and reconstructs it with
:func:`refsuite.recon.lm_osem` and its default sensitivity (detected lines traced into the
scanner's blocks, one image per subset), so the image is in emissions per voxel.
"""

from __future__ import annotations

import argparse
import sys

from refsuite._cli_errors import count, device, nonnegative_int, positive_float, positive_int

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
    p.add_argument("--voxel", type=positive_float, default=2.0, help="cubic voxel size, mm (default 2; at least 0.01)")
    p.add_argument("--shape", type=positive_int, nargs=3, default=None, metavar=("NX", "NY", "NZ"),
                   help="image shape (default: the square inscribed in the bore times the crystals' axial extent, "
                        "at --voxel); centred on the axis at the axial centre of the crystals")
    p.add_argument("--iterations", type=positive_int, default=3, help="OSEM iterations (default 3, at most 1000)")
    p.add_argument("--subsets", type=positive_int, default=6, help="angular subsets (default 6)")
    p.add_argument("--crystal-ids", choices=("keep", "assign"), default="keep",
                   help="keep the file's crystal ids (assigned on the scanner only where it has none; default) "
                        "or assign them from the interaction points on the scanner")
    p.add_argument("--lor-placement", choices=_PLACEMENTS, default="crystal_centres",
                   help="LOR ends: crystal centres (default), points drawn in the crystals, or the recorded "
                        "interaction points (an ideal detector)")
    p.add_argument("--sensitivity-lines", type=count, default=4_000_000,
                   help="Monte Carlo lines of the sensitivity image (default 4e6)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the sensitivity Monte Carlo and crystal sampling")
    p.add_argument("--device", type=device, default=None, help="torch device (default cuda when available)")
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


def _npy_path(out):
    from pathlib import Path

    return Path(str(out).removesuffix(".gz").removesuffix(".nii") + ".npy")


def _check(args) -> int:
    """All flags and paths, before any work (one-line UsageError each, exit 2)."""
    from refsuite._cli_errors import UsageError, input_file, output_file, require_device

    input_file(args.events, "EVENTS", "a coincidence file (.root, .npz or PETSIRD)")
    input_file(args.scanner, "--scanner", "a scanner .json")
    output_file(args.out, "--out", suffixes=(".nii", ".nii.gz"))
    if args.npy:
        output_file(_npy_path(args.out), "--npy")
    if args.sensitivity_lines > 1e10:
        raise UsageError(f"--sensitivity-lines must be an integer in [1, 1e10], got {args.sensitivity_lines}")
    if args.voxel < 0.01:
        raise UsageError(f"--voxel {args.voxel:g}: expected at least 0.01 mm (a PET image resolves millimetres; "
                         "is the value in mm?)")
    if args.iterations > 1000:
        raise UsageError(f"--iterations {args.iterations}: expected at most 1000 (OSEM converges in tens; "
                         "more only amplifies noise)")
    require_device(args.device)
    return int(args.sensitivity_lines)


# Peak memory per voxel and image copy (float32): the image, its update, the sensitivity image of
# each subset and the projector's buffers; 2 * n_subsets + 14 copies bounds the peak RSS growth
# measured for 64^3 and 96^3 images with 2 and 6 subsets (about 100 bytes per voxel with 6).
def _check_memory(shape, n_subsets, n_events_bytes) -> None:
    import numpy as np

    from refsuite._cli_errors import check_memory

    need = float(np.prod(np.asarray(shape, float))) * 4.0 * (2 * n_subsets + 14) + 4.0 * n_events_bytes
    check_memory(need, "--shape/--voxel/--subsets", f"{' x '.join(map(str, shape))} voxels, {n_subsets} subsets",
                 "use a coarser --voxel, a smaller --shape or fewer --subsets")


def _check_events(events, scanner, args) -> None:
    """Events usable on ``scanner``: crystal ids in range, interaction points finite where used."""
    import numpy as np

    from refsuite.events import CRYSTAL_ID_COLUMNS, crystal_ids, positions

    if all(c in events for c in CRYSTAL_ID_COLUMNS):
        crystal_ids(events, scanner)  # raises naming the ids outside the scanner's range
    if args.lor_placement == "line" or args.crystal_ids == "assign":
        bad = ~(np.isfinite(positions(events, 1)).all(1) & np.isfinite(positions(events, 2)).all(1))
        if bad.any():
            raise ValueError(f"{int(bad.sum())} of {len(bad)} coincidences have NaN or infinite interaction "
                             "points (PostPosition_*, mm)")


def _check_coverage(events, scanner, shape, origin, voxel, placement) -> None:
    """Refuse an image box that none of the lines crosses (e.g. points in another frame with
    ``--lor-placement line``: a silent zero image)."""
    import numpy as np
    import torch

    from refsuite._cli_errors import UsageError
    from refsuite.events import LORPlacement, lor_endpoints
    from refsuite.projectors import clip_segment_to_box

    a, b = lor_endpoints(events, scanner, placement=LORPlacement.LINE if placement == "line" else
                         LORPlacement.CRYSTAL_CENTRES)
    lo = np.asarray(origin) - voxel / 2
    hi = lo + np.asarray(shape) * voxel
    t_in, t_out = clip_segment_to_box(*(torch.as_tensor(x, dtype=torch.float64) for x in (a, b, lo, hi)))
    if not bool((t_out > t_in).any()):
        raise UsageError(f"--voxel/--shape: the image box {np.round(hi - lo, 4).tolist()} mm at "
                         f"{np.round(lo, 2).tolist()} mm is crossed by none of the {len(a)} coincidences' lines")


def _cmd_recon(args: argparse.Namespace) -> int:
    import os

    from refsuite._cli_errors import UsageError, reading

    lines = _check(args)  # before the heavy imports: a bad flag is refused at once

    import numpy as np

    from refsuite.geometry import Scanner
    from refsuite.io import read_events
    from refsuite.io.atomic import atomic_path
    from refsuite.io.nifti import write_nifti

    from .scanner import lm_osem
    with reading(args.scanner, "--scanner", "a refsuite scanner .json (Scanner.save)"):
        scanner = Scanner.load(args.scanner)
    try:
        shape, origin = _grid(scanner, float(args.voxel), args.shape)
    except ValueError as exc:
        raise UsageError(f"--voxel/--shape: {exc}") from None
    _check_memory(shape, args.subsets, os.path.getsize(args.events))
    with reading(args.events, "EVENTS", "coincidences (GATE 9/10 ROOT, refsuite .npz or PETSIRD)"):
        events = read_events(args.events, scanner, crystal_ids=args.crystal_ids)
        _check_events(events, scanner, args)
    if events.n_events == 0:
        raise UsageError(f"EVENTS {args.events!r}: holds no coincidences (nothing to reconstruct)")
    _check_coverage(events, scanner, shape, origin, float(args.voxel), args.lor_placement)
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
        npy = _npy_path(out)
        with atomic_path(npy, suffix=".npy") as tmp:
            np.save(tmp, img)
        written.append(str(npy))
    print(f"wrote {', '.join(written)}: image {shape}, voxel {args.voxel} mm, centre of voxel (0,0,0) at "
          f"{tuple(round(float(o), 3) for o in origin)} mm; {float(img.sum()):.6g} emissions in the image")
    return 0
