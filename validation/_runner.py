"""Discover, run and report the validation studies."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Sequence

from refsuite.report import Comparison, RunContext, Section, Tolerance, render_report, write_results_markdown

from ._seed_records import apply_seed_records

_STUDY_FAILED = Tolerance(
    1.0,
    Comparison.AT_LEAST,
    justification="a study must run to completion and measure every check it declared",
    false_alarm="0: a correct study completes for every seed",
)


def discover_studies() -> dict[str, ModuleType]:
    """Map study name -> module for every public module in :mod:`validation`."""
    import validation

    studies: dict[str, ModuleType] = {}
    for info in sorted(pkgutil.iter_modules(validation.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"validation.{info.name}")
        if not (hasattr(module, "NAME") and hasattr(module, "run")):
            continue
        if module.NAME in studies:
            raise RuntimeError(f"two studies are named {module.NAME!r}")
        studies[module.NAME] = module
    return studies


def run_study(module: ModuleType, ctx: RunContext) -> Section:
    """Run one study; an exception or an undecided check becomes a red check, not a crash."""
    start = time.perf_counter()
    try:
        section = module.run(ctx)
    except Exception:  # the report must still be written and exit 1
        section = Section(study=module.NAME, title=getattr(module, "TITLE", module.NAME))
        section.declare("study completed", _STUDY_FAILED)
        section.check("study completed", 0.0, detail="the study raised; see the traceback below")
        section.notes.append(traceback.format_exc())
    else:
        missing = section.undecided()
        if missing:
            section.declare("study completed", _STUDY_FAILED)
            section.check("study completed", 0.0, detail=f"declared but never measured: {', '.join(missing)}")
    section.runtime_s = time.perf_counter() - start
    return apply_seed_records(section, ctx.mode.value)


def select_studies(values: Sequence[str] | None, known: Sequence[str], *, name: str = "only") -> list[str] | None:
    """The study names in ``values`` (each may be comma-separated), in order, without repeats.

    None or an empty list selects every study (returns None). A value that names no study
    (``","``, ``""``) or names an unknown study raises ValueError naming ``name``, the value and
    the known studies.
    """
    if not values:
        return None
    given = ",".join(values)
    names = [n.strip() for item in values for n in item.split(",") if n.strip()]
    known_text = ", ".join(sorted(known))
    if not names:
        raise ValueError(f"{name} {given!r} names no study; known studies: {known_text}")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"{name} {given!r}: unknown stud{'y' if len(unknown) == 1 else 'ies'} "
                         f"{', '.join(map(repr, unknown))}; known studies: {known_text}")
    return list(dict.fromkeys(names))


def check_seed(seed, *, name: str = "seed") -> int:
    """A seed numpy accepts: an integer >= 0 (``np.random.default_rng`` refuses negative seeds)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"{name} must be an integer >= 0, got {seed!r}")
    if seed < 0:
        raise ValueError(f"{name} {seed}: must be an integer >= 0 (numpy random seeds are non-negative)")
    return seed


def check_device(device: str, *, name: str = "device") -> str:
    """``"cpu"``, or ``"cuda"`` / ``"cuda:N"`` when torch sees that GPU."""
    import re

    m = re.fullmatch(r"cuda(?::(\d+))?", device) if isinstance(device, str) else None
    if device != "cpu" and not m:
        raise ValueError(f"{name} {device!r}: must be 'cpu', 'cuda' or 'cuda:N'")
    if m:
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(m.group(1) or 0)
        if index >= n:
            raise ValueError(f"{name} {device!r}: torch sees {n} CUDA device{'' if n == 1 else 's'} on this machine")
    return device


def check_output_dir(path: str | Path, *, name: str = "out") -> Path:
    """``path`` is a folder, or can be created as one, and is writable; ValueError otherwise.

    Writability is probed with a temporary file in the nearest existing folder (removed at once),
    which also catches read-only file systems where permission bits say nothing.
    """
    import tempfile

    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(f"{name} {str(path)!r}: exists and is not a folder")
    parent = p
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{name} {str(path)!r}: {str(parent)!r} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=parent, prefix=".refsuite-probe-"):
            pass
    except OSError as exc:
        raise ValueError(f"{name} {str(path)!r}: folder {str(parent)!r} is not writable ({exc.strerror})") from None
    return p


def check_output_file(path: str | Path, *, name: str) -> Path:
    """``path`` can be written as a file: not a folder, and its folder can be created and written."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{name} {str(path)!r}: is a folder, expected a file name")
    check_output_dir(p.parent if str(p.parent) else Path("."), name=name)
    return p


def _previous_results(out: Path, *, merging: bool) -> dict | None:
    """The results.json already in ``out`` (None if none); a broken one is refused only when merging."""
    from refsuite.report.results import load_results

    path = out / "results.json"
    if not path.exists():
        return None
    try:
        return load_results(path)
    except ValueError as exc:
        if merging:
            raise ValueError(f"out {str(out)!r}: cannot merge into it: {exc}; remove the file or choose "
                             f"another folder") from None
        return None


def run_report(
    ctx: RunContext,
    out_dir: str | Path,
    *,
    only: Sequence[str] | None = None,
    progress: bool = True,
    results_md: str | Path | None = None,
    executor=None,
) -> dict:
    """Run the studies (all, or those named in ``only``) and write the report into ``out_dir``.

    Every argument is checked before any study runs (ValueError). With ``only``, the studies
    run are merged into a report already in ``out_dir``: the other studies' entries and pages
    are kept (each with its own mode and seed). Pages of studies that no longer exist are
    removed. Writes ``index.html``, one page per study, ``results.json`` and ``results.md``
    (and a copy of the latter at ``results_md``, e.g. ``docs/results.md``, linking the
    per-study documents in ``docs/studies/`` when present).

    ``executor`` (a :class:`refsuite.execution.Executor`; default in-process) runs each study as
    a task; the sections come back to this process, which writes every file.

    Returns the results dictionary (also written to ``out_dir/results.json``); its
    ``"passed"`` entry is False when any judged check failed.
    """
    studies = discover_studies()
    selected = select_studies(only, list(studies))
    check_seed(ctx.seed)
    check_device(ctx.device)
    out = check_output_dir(out_dir)
    md_path = None if results_md is None else check_output_file(results_md, name="results_md")
    previous = _previous_results(out, merging=selected is not None)
    if selected is not None:
        studies = {name: studies[name] for name in selected}
    start = time.perf_counter()
    sections = run_studies(list(studies.values()), [ctx], executor=executor, progress=progress)
    results = render_report(sections, out, ctx, time.perf_counter() - start, previous=previous,
                            keep=set(discover_studies()))
    _write_markdown(results, out, md_path)
    return results


def _write_markdown(results: dict, out: Path, md_path: Path | None) -> None:
    docs = Path("docs/studies")
    write_results_markdown(results, out / "results.md", html_dir=out, docs_dir=docs if docs.is_dir() else None)
    if md_path is not None:
        write_results_markdown(results, md_path, html_dir=out, docs_dir=md_path.parent / "studies")


def _study_task(job: tuple[str, RunContext]) -> Section:
    """Run study ``job[0]`` with context ``job[1]`` (a task: runs where the executor puts it)."""
    return run_study(discover_studies()[job[0]], job[1])


def run_studies(modules: Sequence[ModuleType], contexts: Sequence[RunContext], *, executor=None,
                progress: bool = True) -> list[Section]:
    """Run every study of ``modules`` with every context; one task each, sections in (context, study) order.

    ``executor``: a :class:`refsuite.execution.Executor` (default: in-process, or the cluster this
    code runs on). Each task's randomness comes from its context's seed and the study's own
    streams, so the sections do not depend on where, or in which order, the tasks ran.
    """
    from refsuite.execution import current_executor

    jobs = [(m.NAME, c) for c in contexts for m in modules]
    seeds = len({c.seed for c in contexts}) > 1
    return (executor or current_executor()).map(
        _study_task, jobs, key=lambda j: j[0] + (f"-seed{j[1].seed}" if seeds else ""),
        progress=progress, desc="studies", unit="study")


def parse_seeds(text: str, *, name: str = "seeds") -> list[int]:
    """Seeds of a sweep from ``"1-10"``, ``"1,4,7"`` or ``"0-4,10"``: integers >= 0, in order, no repeats."""
    seeds: list[int] = []
    for part in str(text).split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            raise ValueError(f"{name} {text!r}: expected seeds >= 0 as a range and/or list, e.g. 1-10 or 1,4,7 or 0-4,10")
        seeds += range(int(m.group(1)), int(m.group(2) or m.group(1)) + 1)
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{name} {text!r}: names a seed twice")
    return seeds


def run_seed_sweep(ctx: RunContext, out_dir: str | Path, seeds: Sequence[int], *, only: Sequence[str] | None = None,
                   progress: bool = True, executor=None) -> dict:
    """Run the studies once per seed: each seed's report into ``out_dir/seed-N/``, plus a summary per check.

    Every (seed, study) pair is one task of ``executor`` (a bounded number in flight, see
    :meth:`refsuite.execution.Executor.imap`). ``out_dir/seed-N`` is written as :func:`run_report`
    writes a report (with ``only``, merged into the one already there) as soon as that seed's
    studies are done, and ``out_dir/sweep.json`` records the finished seeds: the same command
    after an interruption (Ctrl-C, a batch system's time limit) resumes with the seeds still to
    run; a finished sweep is run again from the start. The summary (``out_dir/seeds.json`` and
    ``out_dir/seeds.md``) gives, for every check, in how many seeds its criterion was met (``met``
    of ``n``) and the range of the measured values: the statistical rule of the quick checks (a
    check with a stated false-alarm rate ``alpha`` should fail in about ``alpha n`` seeds) is
    judged from it. Returns the summary dictionary.
    """
    from dataclasses import replace

    from refsuite.execution import current_executor
    from refsuite.io import atomic_write_text
    from refsuite.report.markdown import seed_summary_markdown
    from refsuite.report.results import load_results, seed_summary

    studies = discover_studies()
    selected = select_studies(only, list(studies))
    if not seeds:
        raise ValueError("seeds: empty; give at least one seed")
    for sd in seeds:
        check_seed(sd, name="seeds")
    check_device(ctx.device)
    out = check_output_dir(out_dir)
    modules = list(studies.values()) if selected is None else [studies[n] for n in selected]
    folders = {sd: out / f"seed-{sd}" for sd in seeds}
    state = {"studies": [m.NAME for m in modules], "mode": ctx.mode.value, "device": ctx.device, "done": []}
    done = _interrupted_sweep(out / "sweep.json", state, folders)
    previous = {sd: _previous_results(f, merging=selected is not None) for sd, f in folders.items() if sd not in done}
    per_seed = {sd: load_results(folders[sd] / "results.json") for sd in done}
    state["done"] = sorted(done)
    todo = [replace(ctx, seed=int(sd)) for sd in seeds if sd not in done]
    stream = (executor or current_executor()).imap(
        _study_task, [(m.NAME, c) for c in todo for m in modules], key="sweep", progress=progress,
        desc="studies", unit="study")
    for c in todo:
        own = [next(stream) for _ in modules]
        results = render_report(own, folders[c.seed], c, sum(x.runtime_s for x in own), previous=previous[c.seed],
                                keep=set(studies))
        _write_markdown(results, folders[c.seed], None)
        per_seed[c.seed] = results
        state["done"].append(c.seed)
        atomic_write_text(out / "sweep.json", json.dumps(state, indent=1))
    summary = seed_summary({sd: per_seed[sd] for sd in seeds}, studies=[m.NAME for m in modules])
    atomic_write_text(out / "seeds.json", json.dumps(summary, indent=1, default=str))
    atomic_write_text(out / "seeds.md", seed_summary_markdown(summary))
    state["finished"] = True
    atomic_write_text(out / "sweep.json", json.dumps(state, indent=1))
    return summary


def _interrupted_sweep(path: Path, state: dict, folders: dict) -> set:
    """Seeds an interrupted sweep of the same studies, mode and device finished (their reports kept)."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return set()
    if not isinstance(old, dict) or old.get("finished") or any(old.get(k) != state[k] for k in ("studies", "mode", "device")):
        return set()
    return {sd for sd in old.get("done", []) if sd in folders and (folders[sd] / "results.json").is_file()}


def plan_main(prog: str, sizes: type, run, argv: Sequence[str] | None = None) -> int:
    """``python -m PROG --size S --seed N --out DIR [--work DIR] [--threads N]``: one plan of a study as a report.

    ``sizes`` is the study's plan enum (values ``quick``, ``medium``, ``full``; QUICK runs in
    quick mode, the others in full mode) and ``run(ctx, size=...)`` the study. Writes DIR/index.html,
    the study's page, results.json and results.md; prints each check and returns 0 when all
    judged checks pass, 1 otherwise.
    """
    import argparse

    from refsuite.report import Mode
    from refsuite.report.render import value_text
    from refsuite.report.results import verdict_text

    parser = argparse.ArgumentParser(prog=f"python -m {prog}", description=f"Run one plan of the {prog} study and write its HTML report to DIR.")
    parser.add_argument("--size", choices=[s.value for s in sizes], default="medium")
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", required=True, metavar="DIR")
    parser.add_argument("--work", metavar="DIR", default=None,
                        help="keep finished stages and checkpoints here; rerunning with the same DIR, plan and seed "
                             "resumes an interrupted run (studies that support it: registration)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads the study may use (default 1)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    try:
        check_seed(args.seed, name="--seed")
        check_device(args.device, name="--device")
        check_output_dir(args.out, name="--out")
    except ValueError as exc:
        parser.error(str(exc))
    size = sizes(args.size)
    ctx = RunContext(mode=Mode.QUICK if size.value == "quick" else Mode.FULL, seed=args.seed, device=args.device,
                     work_dir=args.work, threads=args.threads)
    t0 = time.perf_counter()
    section = apply_seed_records(run(ctx, size=size), ctx.mode.value)
    results = render_report([section], args.out, ctx, time.perf_counter() - t0)
    write_results_markdown(results, Path(args.out) / "results.md", html_dir=args.out)
    for c in results["checks"]:
        print(f"{verdict_text(c)} {c['name']}: {value_text(c['measured'], c['unit'], c.get('measured_reason'))} {c['detail']}")
    print(f"{time.perf_counter() - t0:.0f} s; report in {args.out}")
    return 0 if results["passed"] else 1
