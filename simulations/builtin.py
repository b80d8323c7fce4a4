"""The built-in Monte Carlo (:mod:`refsuite.mc`) run from the same scenario runs as GATE.

Both engines write the same ROOT schema (GATE 10 coincidence branches, mm, MeV, ns) so one
analysis reads either. What the built-in MC leaves out is stated in :mod:`refsuite.mc`
(no scatter, every interaction a full 511 keV deposit, so the readout policy has nothing
to merge); ion sources (18F, 22Na) are simulated as back-to-back pairs without positron
range, and the 22Na 1275 keV gamma is not emitted (it falls outside 450-650 keV anyway).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from refsuite.mc.montecarlo import DEFAULT_CHUNK_SIZE

from .scenario import Particle, Run

__all__ = ["run_builtin", "builtin_options", "truth_paths", "blueprint_path", "save_truth"]


def builtin_options(run: Run, *, n_decays: int | None = None) -> dict:
    """Keyword arguments of :func:`refsuite.mc.iter_simulate` for a run.

    ``n_decays`` overrides the scenario's acquisition (the decay rate, and so the time
    stamps, stay those of the phantom's activity). ``allow_overlap`` follows the scenario's
    ``misalignment.allow_overlaps``.
    """
    sc, dig = run.scenario, run.scenario.digitizer
    n = run.n_decays if n_decays is None else int(n_decays)
    if n < 1:
        raise ValueError(f"n_decays must be >= 1, got {n}")
    return dict(n_decays=n, seed=int(sc.acquisition.seed), acollinearity_fwhm_deg=float(sc.source.acollinearity_fwhm_deg),
                attenuation=bool(sc.attenuation), energy_resolution=float(dig.energy_resolution),
                energy_window_kev=tuple(map(float, dig.energy_window_kev)), ctr_ps=float(dig.ctr_ps),
                coincidence_window_ps=float(dig.coincidence_window_ns) * 1000.0,
                activity_bq=float(run.phantom.total_activity),
                allow_overlap=bool(sc.misalignment is not None and sc.misalignment.allow_overlaps))


def truth_paths(out) -> tuple[Path, Path]:
    """Files holding the truth next to ``out``: ``<stem>.scanner.json``, ``<stem>.phantom.json``."""
    stem = Path(out).with_suffix("")
    return Path(f"{stem}.scanner.json"), Path(f"{stem}.phantom.json")


def blueprint_path(out) -> Path:
    """``<stem>.blueprint.json`` next to ``out``: the nominal scanner, without the drawn misalignment."""
    return Path(f"{Path(out).with_suffix('')}.blueprint.json")


def save_truth(run: Run, out) -> dict:
    """Write the truth and the blueprint of ``run`` next to ``out``; returns their paths.

    ``<stem>.scanner.json`` is the simulated scanner (with its recorded misalignment),
    ``<stem>.phantom.json`` the phantom and ``<stem>.blueprint.json`` the nominal scanner a
    user starts from (the input of ``refsuite align --scanner``).
    """
    scanner_file, phantom_file = truth_paths(out)
    paths = {"scanner": scanner_file, "phantom": phantom_file, "blueprint": blueprint_path(out)}
    run.scanner.save(paths["scanner"])
    run.phantom.save(paths["phantom"])
    run.nominal.save(paths["blueprint"])
    return paths


def _writer(run: Run, out: Path, kw: dict):
    """ROOT writer for ``out``, or a PETSIRD one for ``.petsird``/``.bin``/``.ndjson``.

    PETSIRD's header holds the nominal scanner (as a real scanner's export does); its TOF
    bins cover the coincidence window.
    """
    from refsuite.io import CoincidenceWriter, PetsirdWriter, petsird_suffix_format

    fmt = petsird_suffix_format(out)
    if fmt is None:
        return CoincidenceWriter(out)
    return PetsirdWriter(out, run.nominal, format=fmt, ctr_ps=kw["ctr_ps"], energy_resolution=kw["energy_resolution"],
                         energy_window_kev=kw["energy_window_kev"], coincidence_window_ps=kw["coincidence_window_ps"])


def run_builtin(run: Run, out, *, n_decays: int | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE,
                progress: bool = False, executor=None) -> dict:
    """Simulate one scenario run with the built-in MC; write ``out`` and the truth next to it.

    Parameters
    ----------
    run : simulations.scenario.Run
    out : str or Path
        Output file, streamed in chunks: ``.root`` (written atomically), or PETSIRD for
        ``.petsird``/``.bin`` (binary) and ``.ndjson`` (text), whose header holds the blueprint
        and which has no place for the run's attributes. The truth files
        (:func:`save_truth`) are written next to it.
    n_decays : int, optional
        Override the scenario's number of decays (e.g. a quick run).
    chunk_size : int
        Decays per vectorised pass.
    progress : bool
        tqdm progress bar.
    executor : refsuite.execution.Executor, optional
        A Dask cluster to simulate the chunks on (a few chunks per task; the same events);
        default this process. The file is written here, in order.

    Returns
    -------
    dict
        Counts (``decays``, ``coincidences``, ...) summed over the run.
    """
    from refsuite.io import petsird_suffix_format
    from refsuite.mc import iter_simulate

    if run.scenario.source.particle is not Particle.BACK_TO_BACK:
        warnings.warn(f"the built-in MC simulates {run.scenario.source.particle.value} as back-to-back 511 keV "
                      "pairs (no positron range, no prompt gamma)", stacklevel=2)
    kw = builtin_options(run, n_decays=n_decays)
    out = Path(out)
    scanner_file, phantom_file = truth_paths(out)
    totals: dict = {}
    with _writer(run, out, kw) as w:
        for cols, counts in iter_simulate(run.scanner, run.phantom, chunk_size=chunk_size, progress=progress,
                                          executor=executor, **kw):
            w.write(cols)
            for k, v in counts.items():
                totals[k] = totals.get(k, 0) + v
        if petsird_suffix_format(out) is None:
            w.attrs.update({"engine": "builtin", "scenario": run.scenario.model_dump(mode="json"),
                            "run_label": run.label, "parameters": run.parameters, **kw, "counts": totals,
                            "scanner_file": scanner_file.name, "phantom_file": phantom_file.name,
                            "blueprint_file": blueprint_path(out).name})
    save_truth(run, out)
    return totals
