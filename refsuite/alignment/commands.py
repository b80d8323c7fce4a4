"""``refsuite align``: maximum-likelihood detector alignment from a coincidence file."""

from __future__ import annotations

import argparse
import sys

from refsuite._cli_errors import (
    UsageError, count, device, input_file, nonnegative_int, output_file, positive_float, positive_int, reading,
    require_device,
)

__all__ = ["register"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "align",
        help="estimate detector-block poses from list-mode data of a known phantom (Thull et al.)",
        description="Maximum-likelihood alignment: reads coincidences (ROOT, .npz or PETSIRD), the blueprint scanner "
                    "(.json) and the phantom (.json); writes the aligned scanner (.json) atomically, and with "
                    "--petsird-out also as a PETSIRD scanner header.",
    )
    p.add_argument("--events", required=True,
                   help="coincidence file: GATE 9/10 ROOT (TTree or RNTuple), refsuite .npz list-mode or PETSIRD "
                        "(binary or NDJSON; its prompts)")
    p.add_argument("--scanner", required=True, help="blueprint scanner .json (refsuite.geometry.Scanner.save)")
    p.add_argument("--phantom", required=True, help="phantom .json (refsuite.phantoms, PointSources or Tube)")
    p.add_argument("--out", required=True, help="aligned scanner .json")
    p.add_argument("--petsird-out", default=None, metavar="FILE",
                   help="also write the aligned scanner as a PETSIRD file (header only: module transforms, crystal "
                        "boxes; the fan-sum efficiencies as detection-bin efficiencies with --efficiency-events) "
                        "for a reconstruction program; .petsird or .bin binary, .ndjson text")
    p.add_argument("--efficiency-events", default=None,
                   help="shell acquisition (.root/.npz/PETSIRD) for fan-sum crystal efficiencies (default: all 1)")
    p.add_argument("--crystal-ids", choices=("keep", "assign"), default="keep",
                   help="keep: the crystal ids the file records (the readout's), assigned from the interaction "
                        "points on the blueprint only where the file has none (default); assign: always from "
                        "the interaction points on the blueprint")
    p.add_argument("--no-tof", action="store_true", help="non-TOF likelihood")
    p.add_argument("--ctr-ps", type=positive_float, default=None, help="CTR FWHM, ps (default: from the events file)")
    p.add_argument("--groups", action="store_true", help="share parameters within the scanner's groups")
    p.add_argument("--n-iter", type=positive_int, default=200, help="Adam iterations (default 200)")
    p.add_argument("--batch-size", type=count, default=1_000_000, help="bins per iteration (default 1e6)")
    p.add_argument("--checkpoint", default=None, help="checkpoint file (default OUT + .ckpt.pt)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint if it exists (same data and options); a fresh start otherwise")
    p.add_argument("--device", type=device, default=None, help="torch device (default cuda when available)")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_cmd_align)


def _check(args: argparse.Namespace) -> str | None:
    """Files, output locations and the PETSIRD format, before any work (one line each, exit 2)."""
    from refsuite.io import petsird_suffix_format

    for flag, path, what in (("--events", args.events, "a coincidence file"), ("--scanner", args.scanner, "a scanner .json"),
                             ("--phantom", args.phantom, "a phantom .json"),
                             ("--efficiency-events", args.efficiency_events, "a shell acquisition")):
        if path is not None:
            input_file(path, flag, what)
    output_file(args.out, "--out", suffixes=(".json",))
    if args.checkpoint is not None:
        output_file(args.checkpoint, "--checkpoint")
    if args.petsird_out is None:
        return None
    output_file(args.petsird_out, "--petsird-out")
    fmt = petsird_suffix_format(args.petsird_out)
    if fmt is None:
        raise UsageError(f"--petsird-out must end in .petsird, .bin or .ndjson, got {args.petsird_out!r}")
    return fmt


def _cmd_align(args: argparse.Namespace) -> int:
    from pathlib import Path

    from refsuite.geometry import Scanner
    from refsuite.io import atomic_write_text, read_events, write_petsird
    from refsuite.io.jsonsafe import dumps_strict
    from refsuite.phantoms import load_phantom

    from .efficiency import fan_sum_efficiencies
    from .solver import AlignmentDiverged, TOFMode, align

    from .solver import load_checkpoint

    petsird_fmt = _check(args)
    require_device(args.device)
    out = Path(args.out)
    ckpt = Path(args.checkpoint) if args.checkpoint else out.with_name(out.name + ".ckpt.pt")
    if args.resume and ckpt.exists():
        try:
            load_checkpoint(ckpt)
        except ValueError as exc:
            raise UsageError("--checkpoint " + str(exc).removeprefix("checkpoint ")) from None
    elif args.resume:
        print(f"refsuite align: no checkpoint at {ckpt}: starting from the blueprint", file=sys.stderr)
    with reading(args.scanner, "--scanner", "a blueprint scanner .json (Scanner.save)"):
        blueprint = Scanner.load(args.scanner)
    with reading(args.phantom, "--phantom", "a phantom .json (Phantom.save)"):
        phantom = load_phantom(args.phantom)
    with reading(args.events, "--events", "coincidences (GATE 9/10 ROOT, refsuite .npz or PETSIRD)"):
        events = read_events(args.events, blueprint, crystal_ids=args.crystal_ids)
    if events.n_events == 0:
        raise UsageError(f"--events {args.events}: no coincidences")
    if not args.no_tof and args.ctr_ps is None and "ctr_ps" not in getattr(events, "attrs", {}):
        raise UsageError(f"--events {args.events}: the file records no CTR (attribute ctr_ps) for the TOF "
                         "likelihood; pass --ctr-ps PS (CTR FWHM) or --no-tof")
    eff = None
    if args.efficiency_events:
        with reading(args.efficiency_events, "--efficiency-events", "a shell acquisition (ROOT, .npz or PETSIRD)"):
            shell = read_events(args.efficiency_events, blueprint, crystal_ids=args.crystal_ids)
        eff = fan_sum_efficiencies(shell, blueprint)
    try:  # the solver's own argument checks (e.g. a phantom outside the FOV) run before any iteration
        res = align(events, blueprint, phantom, efficiencies=eff, tof=TOFMode.NONE if args.no_tof else TOFMode.FROM_EVENTS,
                    ctr_ps=args.ctr_ps, groups=True if args.groups else None, n_iter=args.n_iter,
                    batch_size=args.batch_size, checkpoint=ckpt, resume=args.resume, device=args.device,
                    seed=args.seed, progress=not args.no_progress)
    except AlignmentDiverged as exc:
        print(f"refsuite align: {exc}", file=sys.stderr)
        return 1
    res.scanner.save(out)
    if petsird_fmt is not None:
        write_petsird(args.petsird_out, res.scanner, efficiencies=eff, format=petsird_fmt,
                      efficiency_method="" if eff is None else "fan sums of the shell acquisition "
                      f"{Path(args.efficiency_events).name} (refsuite.alignment.fan_sum_efficiencies)")
    summary = {"rotations_rad": res.rotations_rad.tolist(), "translations_mm": res.translations_mm.tolist(),
               "nll_history": res.nll_history.tolist(), "timing": res.timing, "info": res.info}
    atomic_write_text(out.with_name(out.stem + ".alignment.json"), dumps_strict(summary))
    print(f"aligned {blueprint.n_blocks} blocks in {res.timing['total_s']:.1f} s "
          f"({res.timing['per_iteration_s']:.2f} s/iteration) -> {out}"
          + (f" and {args.petsird_out} (PETSIRD)" if petsird_fmt is not None else ""))
    return 0
