"""``refsuite align``: maximum-likelihood detector alignment from a coincidence file."""

from __future__ import annotations

import argparse
import sys

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
    p.add_argument("--ctr-ps", type=float, default=None, help="CTR FWHM, ps (default: from the events file)")
    p.add_argument("--groups", action="store_true", help="share parameters within the scanner's groups")
    p.add_argument("--n-iter", type=int, default=200, help="Adam iterations (default 200)")
    p.add_argument("--batch-size", type=int, default=1_000_000, help="bins per iteration (default 1e6)")
    p.add_argument("--checkpoint", default=None, help="checkpoint file (default OUT + .ckpt.pt)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    p.add_argument("--device", default=None, help="torch device (default cuda when available)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_cmd_align)


def _cmd_align(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from refsuite.geometry import Scanner
    from refsuite.io import atomic_write_text, petsird_suffix_format, read_events, write_petsird
    from refsuite.phantoms import load_phantom

    from .efficiency import fan_sum_efficiencies
    from .solver import AlignmentDiverged, TOFMode, align

    try:
        petsird_fmt = None
        if args.petsird_out is not None:
            petsird_fmt = petsird_suffix_format(args.petsird_out)
            if petsird_fmt is None:
                raise ValueError(f"--petsird-out must end in .petsird, .bin or .ndjson, got {args.petsird_out!r}")
        blueprint = Scanner.load(args.scanner)
        phantom = load_phantom(args.phantom)
        events = read_events(args.events, blueprint, crystal_ids=args.crystal_ids)
        eff = None
        if args.efficiency_events:
            eff = fan_sum_efficiencies(read_events(args.efficiency_events, blueprint, crystal_ids=args.crystal_ids),
                                       blueprint)
        out = Path(args.out)
        ckpt = Path(args.checkpoint) if args.checkpoint else out.with_name(out.name + ".ckpt.pt")
        res = align(events, blueprint, phantom, efficiencies=eff, tof=TOFMode.NONE if args.no_tof else TOFMode.FROM_EVENTS,
                    ctr_ps=args.ctr_ps, groups=True if args.groups else None, n_iter=args.n_iter,
                    batch_size=args.batch_size, checkpoint=ckpt, resume=args.resume, device=args.device,
                    seed=args.seed, progress=not args.no_progress)
    except AlignmentDiverged as exc:
        print(f"refsuite align: {exc}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, OSError) as exc:
        print(f"refsuite align: {exc}", file=sys.stderr)
        return 2
    res.scanner.save(out)
    if petsird_fmt is not None:
        try:
            write_petsird(args.petsird_out, res.scanner, efficiencies=eff, format=petsird_fmt,
                          efficiency_method="" if eff is None else "fan sums of the shell acquisition "
                          f"{Path(args.efficiency_events).name} (refsuite.alignment.fan_sum_efficiencies)")
        except (ValueError, OSError) as exc:
            print(f"refsuite align: {exc}", file=sys.stderr)
            return 2
    summary = {"rotations_rad": res.rotations_rad.tolist(), "translations_mm": res.translations_mm.tolist(),
               "nll_history": res.nll_history.tolist(), "timing": res.timing, "info": res.info}
    atomic_write_text(out.with_name(out.stem + ".alignment.json"), json.dumps(summary, default=float))
    print(f"aligned {blueprint.n_blocks} blocks in {res.timing['total_s']:.1f} s "
          f"({res.timing['per_iteration_s']:.2f} s/iteration) -> {out}"
          + (f" and {args.petsird_out} (PETSIRD)" if petsird_fmt is not None else ""))
    return 0
