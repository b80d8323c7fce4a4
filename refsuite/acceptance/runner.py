"""Run an acceptance plan: read the scans, run the checks, compare with a baseline, write the
HTML page (report style) and ``results.json`` (the next baseline)."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from refsuite.timing.listmode_skew import apply_channel_skews

from .checks import (CheckResult, check_efficiency, check_geometry, check_image_quality, check_sensitivity,
                     check_timing)
from .plan import AcceptancePlan, load_plan

__all__ = ["AcceptanceRun", "run_acceptance", "read_events", "load_baseline", "BaselineError"]

RESULTS_FORMAT = "refsuite-acceptance/1"


class BaselineError(ValueError):
    """A baseline file that is not the results.json of an acceptance run."""


@dataclass
class AcceptanceRun:
    """Outcome of :func:`run_acceptance`: per-check results in plan order, and written files."""

    plan: AcceptancePlan
    results: list[CheckResult]
    files: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)

    def result(self, name: str) -> CheckResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(f"no check {name!r} in this run; ran: {[r.name for r in self.results]}")

    @property
    def failed(self) -> list[str]:
        return [r.name for r in self.results if not r.passed]


def read_events(path, scanner):
    """Coincidences of a scan: :func:`refsuite.io.read_events` with ``crystal_ids="keep"``.

    Crystal ids recorded in the file (the detector's own readout ids) are kept; a file without
    them gets ids assigned from the interaction positions on ``scanner``. Any layout
    ``refsuite.io.read_events`` knows (GATE 9/10 ROOT, RNTuple, npz, PETSIRD).
    """
    from refsuite.io import read_events as _read

    return _read(path, scanner, crystal_ids="keep")


def load_baseline(path) -> dict:
    """Per-check states of a previous run's ``results.json``."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise BaselineError(f"baseline not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise BaselineError(f"cannot read baseline {path}: {exc}") from None
    acc = d.get("acceptance") if isinstance(d, dict) else None
    if not isinstance(acc, dict) or acc.get("format") != RESULTS_FORMAT:
        raise BaselineError(f"baseline {path} is not the results.json of `refsuite acceptance` "
                            f"(format {RESULTS_FORMAT!r})")
    return {name: c.get("state", {}) for name, c in acc.get("checks", {}).items()}


def _stamp(*paths, extra="") -> str:
    h = hashlib.sha256(extra.encode())
    for p in paths:
        st = Path(p).stat()
        h.update(f"{Path(p).resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _count(events) -> int:
    return int(len(next(iter(events.values())))) if len(events) else 0


def _failed_to_run(name, title, exc) -> CheckResult:
    from .checks import Criterion

    return CheckResult(name, title, [Criterion("check completed", float("nan"), 0.0, "", "runs to the end", False,
                                               f"{type(exc).__name__}: {exc}")])


def run_acceptance(plan, *, out_dir, baseline=None, device=None, progress: bool = True) -> AcceptanceRun:
    """Run every check of ``plan`` and write ``out_dir/index.html`` and ``results.json``.

    Parameters
    ----------
    plan : AcceptancePlan or path
        Validated before anything is read or written.
    out_dir : path
        Output folder (created); long steps keep their checkpoints in ``out_dir/.work`` and
        a re-run with the same scans and options resumes from them.
    baseline : path, optional
        ``results.json`` of the last accepted state: each check shows its change, and the
        timing check judges the per-channel skew changes.
    device : str, optional
        Torch device of the alignment.
    progress : bool
        Progress bars.

    Returns
    -------
    AcceptanceRun
    """
    t0 = time.perf_counter()
    if not isinstance(plan, AcceptancePlan):
        plan = load_plan(plan)
    base = load_baseline(baseline) if baseline is not None else {}
    scanner = plan.build_scanner()
    out = Path(out_dir)
    work = out / ".work"
    work.mkdir(parents=True, exist_ok=True)
    files = {}
    steps = plan.enabled_checks()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(steps), desc="refsuite acceptance", unit="check")
    efficiencies, offsets, accepted = None, None, scanner
    done = {}
    try:
        # efficiency and timing first: the fan sums are the alignment's crystal efficiencies (Thull et
        # al., sec. 2.2) and the channel offsets calibrate the point-source scan's TOF (100 ps of skew
        # is 15 mm along the LOR)
        for name in sorted(steps, key=("efficiency", "timing", "geometry", "sensitivity", "image_quality").index):
            if bar is not None:
                bar.set_postfix(check=name)
            spec = getattr(plan.checks, name)
            try:
                if name == "efficiency":
                    res, efficiencies = check_efficiency(read_events(plan.path("shell"), scanner), scanner, spec,
                                                         baseline=base.get(name))
                elif name == "geometry":
                    from refsuite.phantoms import load_phantom

                    events = read_events(plan.path("point_sources"), scanner)
                    if offsets is not None:
                        events = apply_channel_skews(events, scanner, -offsets, granularity=plan.checks.timing.granularity)
                    # the solver's inputs and settings (not the tolerances: a re-judged run reuses the fit)
                    solver = spec.model_dump_json(include={"n_iter", "batch_size", "tof", "seed"})
                    stamp = _stamp(plan.path("point_sources"), plan.path("point_phantom"),
                                   extra=solver + repr(offsets) + repr(None if efficiencies is None else
                                                                         efficiencies.sum()))
                    ckpt = work / f"geometry-{stamp}.pt"
                    res, aligned = check_geometry(events, scanner,
                                                  load_phantom(plan.path("point_phantom")), spec,
                                                  efficiencies=efficiencies, checkpoint=ckpt, progress=progress,
                                                  device=device, baseline=base.get(name))
                    files["accepted_geometry"] = aligned.save(out / "accepted_geometry.json")
                    accepted = aligned
                elif name == "timing":
                    from refsuite.phantoms import load_phantom

                    src = load_phantom(plan.path("timing_phantom"))
                    res = check_timing(read_events(plan.path("timing"), scanner), scanner,
                                       np.asarray(src.centres_mm), spec, baseline=base.get(name))
                    if "offsets_ps" in res.state:
                        offsets = np.asarray(res.state["offsets_ps"])
                elif name == "sensitivity":
                    sweep = plan.data.line_sweep
                    counts = [_count(read_events(plan.resolve(p.file), scanner)) for p in sweep.points]
                    res = check_sensitivity([p.offset_mm for p in sweep.points], counts,
                                            [p.exposure for p in sweep.points], scanner, spec,
                                            source_length_mm=sweep.source_length_mm,
                                            azimuth_rad=np.deg2rad(sweep.azimuth_deg), baseline=base.get(name))
                elif name == "image_quality":
                    from refsuite.phantoms import load_phantom

                    # reconstructed with the geometry this run accepts (the alignment's, when it ran)
                    res = check_image_quality(read_events(plan.path("hot_rod"), scanner), accepted,
                                              load_phantom(plan.path("hot_rod_phantom")), spec,
                                              baseline=base.get(name), device=device)
                else:  # pragma: no cover - the plan model admits only known checks
                    raise AssertionError(name)
            except (ValueError, RuntimeError, OSError) as exc:
                res = _failed_to_run(name, name, exc)
            done[name] = res
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    results = [done[name] for name in steps]
    run = AcceptanceRun(plan, results, files, time.perf_counter() - t0)
    files.update(write_outputs(run, out, baseline=baseline))
    return run


def write_outputs(run: AcceptanceRun, out: Path, *, baseline=None) -> dict:
    """``index.html`` / ``acceptance.html`` in the report style and ``results.json``."""
    from refsuite.io import atomic_write_text
    from refsuite.io.jsonsafe import strict
    from refsuite.report import Comparison, RunContext, Section, Table, Tolerance
    from refsuite.report.render import _json_default, render_report

    plan = run.plan
    section = Section(study="acceptance", title=f"Acceptance test: {plan.name}",
                      summary=plan.description or "Checks after a hardware change (refsuite acceptance).")
    for r in run.results:
        for c in r.criteria:
            # the limit is the plan's (or derived from it), fixed before this run measured anything
            section.declare(f"{r.name}: {c.name}", Tolerance(
                c.limit, Comparison.AT_LEAST if c.at_least else Comparison.AT_MOST, unit=c.unit,
                justification=f"plan {plan.name}: checks.{r.name} ({c.tolerance})",
                false_alarm="set by the plan's tolerance (see the plan's rationale for it)"))
            section.check(f"{r.name}: {c.name}", c.measured, detail=c.detail)
        if r.offenders:
            cols = sorted({k for o in r.offenders for k in o}, key=lambda k: (k not in ("block", "crystal", "channel"), k))
            section.tables.append(Table(f"{r.name}: offending items ({len(r.offenders)})", cols,
                                        [[_cell(o.get(k, "")) for k in cols] for o in r.offenders[:200]]))
        if r.change is not None:
            rows = [[k, _cell(v)] for k, v in r.change.items() if not isinstance(v, list) or len(v) <= 20]
            section.tables.append(Table(f"{r.name}: change since the baseline", ["quantity", "value"], rows))
        section.tables.append(Table(f"{r.name}: figures", ["quantity", "value"],
                                    [[k, _cell(v)] for k, v in {**r.figures, "seconds": r.seconds}.items()]))
    section.notes.append("Verdict: " + ("ACCEPTED: every check passed." if run.passed else
                                        "NOT ACCEPTED: " + "; ".join(r.summary() for r in run.results if not r.passed)))
    if baseline is not None:
        section.notes.append(f"Baseline: {baseline}")
    section.runtime_s = run.seconds
    results = render_report([section], out, RunContext(), run.seconds)
    results["acceptance"] = {
        "format": RESULTS_FORMAT, "plan": plan.name, "passed": run.passed, "failed": run.failed,
        "baseline": None if baseline is None else str(baseline),
        "checks": {r.name: r.as_dict() for r in run.results},
    }
    replaced: list[str] = []  # strict JSON (the next run's baseline): NaN/inf -> null, listed with the reason
    results = strict(results, replaced=replaced)
    if replaced:
        results["nonfinite"] = {p: "not a finite number (a check that did not measure it; see its detail)"
                                for p in replaced}
    atomic_write_text(out / "results.json", json.dumps(results, indent=2, default=_json_default, allow_nan=False))
    return {"html": out / "index.html", "results": out / "results.json"}


def _cell(v):
    if isinstance(v, float):
        return round(v, 4)
    if isinstance(v, (list, tuple)) and len(v) > 8:
        return f"[{len(v)} values]"
    return v
