"""Simulated training/test data for DL-PVC, written in resumable chunks with a manifest.

Each case (Leube et al., Fig. 1): a random body attenuation map, a random activity
distribution (ground truth, kBq/mL), its SPECT projections (expected counts: ``nf``;
Poisson-sampled counts: ``n``) and OSEM reconstructions without (``noRR``) and with
(``RR``) resolution modelling. Case ``i`` is generated from ``numpy.random.default_rng([seed, i])``
so the data do not depend on the chunk size or on interruptions.

On disk: ``DIR/manifest.json`` (configuration, units, finished chunks, and ``"complete": true``
once every case is written: the completion marker) and
``DIR/chunk_00000.npz`` ... holding arrays stacked over the chunk's cases:
``truth``, ``mask``, ``mu``, ``radii_mm``, ``region``, ``total_activity_mbq``, and one
image per reconstruction and noise level, e.g. ``RR_n``, ``RR_nf``, ``noRR_n``, ``noRR_nf``
(kBq/mL). Every file is written atomically; a finished chunk is never rewritten.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..io.atomic import atomic_path, atomic_write_text
from .phantoms import BodyRegion, activity_distribution, attenuation_map
from .spect import MELP_208KEV, Reconstruction, SpectGeometry, contour_orbit, forward_project, osem

__all__ = ["DatasetConfig", "simulate_dataset", "load_dataset", "simulate_cases", "image_key",
           "acquire_and_reconstruct", "IncompleteDatasetError"]

_FORMAT = 1
_REGIONS = list(BodyRegion)


class IncompleteDatasetError(ValueError):
    """A dataset directory whose simulation was interrupted (not every case is written)."""


def image_key(recon: Reconstruction, noisy: bool) -> str:
    """Array name of a reconstruction in the dataset, e.g. ``"RR_n"`` (the paper's naming)."""
    return f"{recon.value}_{'n' if noisy else 'nf'}"


@dataclass(frozen=True)
class DatasetConfig:
    """What a dataset holds; stored in the manifest, a resume must match it exactly.

    shape (nz, ny, nx), voxel_mm: image grid (the paper: 128^3, 4.8 mm).
    n_views, time_per_view_s: acquisition (the paper: 120 views x 30 s).
    recons: reconstructions to compute, values of :class:`Reconstruction`.
    orbit_margin_mm: body-contour orbit, collimator this far from the skin.
    """

    shape: tuple[int, int, int] = (128, 128, 128)
    voxel_mm: float = 4.8
    n_views: int = 120
    time_per_view_s: float = 30.0
    recons: tuple[str, ...] = ("RR", "noRR")
    orbit_margin_mm: float = 20.0
    collimator: dict = field(default_factory=lambda: asdict(MELP_208KEV))

    def geometry(self) -> SpectGeometry:
        from .spect import Collimator

        return SpectGeometry(tuple(self.shape), self.voxel_mm, self.n_views, self.time_per_view_s,
                             Collimator(**self.collimator))

    def as_json(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        d["recons"] = list(self.recons)
        return d


def simulate_cases(indices, config: DatasetConfig, *, seed: int, device="cpu") -> dict[str, np.ndarray]:
    """Simulate the cases ``indices`` (batched through the projector); returns stacked arrays."""
    truth, mask, mu, region, total = [], [], [], [], []
    noise_rngs = []
    for i in indices:
        rng = np.random.default_rng([int(seed), int(i)])
        m, reg = attenuation_map(tuple(config.shape), config.voxel_mm, rng=rng)
        t = activity_distribution(m, config.voxel_mm, rng=rng)
        truth.append(t.concentration_kbq_ml)
        mask.append(t.mask)
        mu.append(m)
        region.append(_REGIONS.index(reg))
        total.append(t.total_activity_mbq)
        noise_rngs.append(rng)
    out = {
        "truth": np.array(truth, dtype=np.float32),
        "mask": np.array(mask),
        "mu": np.array(mu, dtype=np.float32),
        "region": np.array(region, dtype=np.int8),
        "total_activity_mbq": np.array(total),
    }
    out.update(acquire_and_reconstruct(np.array(truth), np.array(mu), config=config, rngs=noise_rngs, device=device))
    return out


def acquire_and_reconstruct(truth_kbq_ml, mu_per_mm, *, config: DatasetConfig, rngs, device="cpu") -> dict[str, np.ndarray]:
    """Project (PSF + attenuation), add Poisson noise, reconstruct; all cases in one batch.

    Parameters
    ----------
    truth_kbq_ml, mu_per_mm : (B, nz, ny, nx) arrays
    config : DatasetConfig
    rngs : sequence of B numpy Generators (one per case, for its Poisson noise)

    Returns
    -------
    dict with ``radii_mm`` (B, n_views), ``counts_n`` (B,) and one (B, nz, ny, nx) kBq/mL
    image per reconstruction and noise level (``RR_n``, ``RR_nf``, ...).
    """
    geometry = config.geometry()
    truth = np.asarray(truth_kbq_ml, dtype=np.float64)
    mu = np.asarray(mu_per_mm, dtype=np.float64)
    kbq_ml_per_mbq = 1000.0 / (geometry.voxel_mm / 10.0) ** 3
    radii = contour_orbit(mu, geometry, margin_mm=config.orbit_margin_mm, device=device)
    expected = forward_project(truth / kbq_ml_per_mbq, mu, radii, geometry, psf=True, device=device)
    noisy = np.array([r.poisson(e) for r, e in zip(rngs, expected)], dtype=np.float64)
    out = {"radii_mm": radii.astype(np.float32), "counts_n": noisy.sum(axis=(1, 2, 3))}
    both = np.concatenate([expected, noisy])  # noise-free and noisy in one batch
    mu2, radii2 = np.concatenate([mu, mu]), np.concatenate([radii, radii])
    b = len(truth)
    for recon in (Reconstruction(r) for r in config.recons):
        img = osem(both, mu2, radii2, geometry, recon=recon, device=device) * kbq_ml_per_mbq
        out[image_key(recon, False)] = img[:b].astype(np.float32)
        out[image_key(recon, True)] = img[b:].astype(np.float32)
    return out


def simulate_dataset(out_dir, n_cases: int, *, config: DatasetConfig = DatasetConfig(), seed: int,
                     chunk_size: int = 8, device="cpu", progress: bool = True, executor=None) -> Path:
    """Generate (or finish) a dataset of ``n_cases`` cases in ``out_dir``; returns the manifest path.

    Interrupting and calling again with the same arguments resumes with the missing chunks; a
    manifest with a different configuration or seed is an error, never overwritten. Each chunk
    is one task of ``executor`` (a :class:`refsuite.execution.Executor`; default in-process, or
    the cluster this code runs on): the chunks are written by the workers (``out_dir`` must be on
    a file system they share), the manifest by this process as each chunk arrives. A chunk's
    arrays depend only on its cases, ``seed`` and ``chunk_size``, never on the number of workers.
    Full mode (the paper) is ``n_cases=10000`` with the default 128^3 configuration.
    """
    n_cases = int(n_cases)
    if n_cases < 1 or int(chunk_size) < 1:
        raise ValueError(f"n_cases and chunk_size must be >= 1, got {n_cases}, {chunk_size}")
    for r in config.recons:
        Reconstruction(r)
    import torch

    try:
        torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda', got {device!r}") from exc
    out = Path(out_dir)
    manifest_path = out / "manifest.json"
    header = {"format": _FORMAT, "seed": int(seed), "n_cases": n_cases, "chunk_size": int(chunk_size),
              "config": config.as_json(),
              "units": {"truth": "kBq/mL", "images": "kBq/mL", "mu": "1/mm", "radii_mm": "mm",
                        "total_activity_mbq": "MBq", "counts_n": "counts"},
              "regions": [r.value for r in _REGIONS]}
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        old = {k: manifest.get(k) for k in header}
        if old != header:
            raise ValueError(f"out_dir {str(out)!r} holds a different dataset (manifest {manifest_path}); "
                             "use another directory or the same arguments to resume")
    else:  # written with the first finished chunk: an early failure leaves no manifest without data
        manifest = dict(header, chunks={}, complete=False)
    created = [p for p in (out, *out.parents) if not p.exists()]
    try:
        _simulate_chunks(out, manifest, n_cases=n_cases, config=config, seed=seed, chunk_size=int(chunk_size),
                         device=device, progress=progress, executor=executor)
    except BaseException:
        for d in created:  # folders this call made and left empty
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        raise
    return manifest_path


def _simulate_chunks(out: Path, manifest: dict, *, n_cases, config, seed, chunk_size, device, progress,
                     executor) -> None:
    """Simulate the chunks the manifest lacks (one task each); the manifest records each, then completion."""
    from ..execution import current_executor

    todo = [s for s in range(0, n_cases, chunk_size) if f"{s // chunk_size:05d}" not in manifest["chunks"]]
    if todo:
        manifest["complete"] = False
    jobs = [(str(out), list(range(s, min(s + chunk_size, n_cases))), s // chunk_size, config, int(seed), device)
            for s in todo]

    def record(_i, entry) -> None:  # in this process, as each chunk is written
        name, cases = entry
        manifest["chunks"][name] = cases
        manifest["chunks"] = dict(sorted(manifest["chunks"].items()))
        atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1))

    (executor or current_executor()).map(_chunk_task, jobs, key=lambda j: f"pvc-chunk{j[2]:05d}", progress=progress,
                                         desc="pvc dataset", unit="chunk", on_done=record)
    if not manifest.get("complete"):
        manifest["complete"] = True
        atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1))


def _chunk_task(job) -> tuple[str, dict]:
    """Simulate one chunk and write it atomically (a task: may run on another machine sharing ``out``)."""
    out, idx, number, config, seed, device = job
    arrays = simulate_cases(idx, config, seed=seed, device=device)
    name = f"chunk_{number:05d}.npz"
    with atomic_path(Path(out) / name) as tmp:
        np.savez_compressed(tmp, case_index=np.array(idx), **arrays)
    return f"{number:05d}", {"file": name, "cases": [idx[0], idx[-1] + 1]}


def _finished_cases(manifest: dict) -> int:
    return sum(int(c["cases"][1]) - int(c["cases"][0]) for c in manifest["chunks"].values())


def load_dataset(path, *, keys=None, allow_incomplete: bool = False) -> dict[str, np.ndarray]:
    """Load a dataset directory (or its manifest) into arrays stacked over its cases.

    An interrupted simulation (not every case written, or no completion marker) raises
    :class:`IncompleteDatasetError` saying how to resume it, unless ``allow_incomplete``
    (then the finished cases are loaded). The result also holds ``voxel_mm`` (mm) and
    ``image_unit`` (the unit of the images, ``"kBq/mL"``).
    """
    path = Path(path)
    manifest_path = path / "manifest.json" if path.is_dir() else path
    if not manifest_path.is_file():
        raise ValueError(f"{str(path)!r} is not a DL-PVC dataset (no manifest.json; make one with "
                         "`refsuite pvc simulate`)")
    try:
        manifest = json.loads(manifest_path.read_text())
        n_cases, chunks = int(manifest["n_cases"]), manifest["chunks"]
        voxel_mm = float(manifest["config"]["voxel_mm"])
        finished = _finished_cases(manifest)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise ValueError(f"{str(manifest_path)!r} is not a DL-PVC dataset manifest "
                         f"({type(exc).__name__}: {exc})") from None
    if not allow_incomplete and (finished < n_cases or manifest.get("complete") is False):
        raise IncompleteDatasetError(
            f"dataset {str(manifest_path.parent)!r} is incomplete: {finished} of {n_cases} cases were written "
            f"(an interrupted simulation); resume it with the same arguments (--out {manifest_path.parent} "
            f"--cases {n_cases} --seed {manifest.get('seed')} --chunk-size {manifest.get('chunk_size')}, same "
            "configuration) to finish it")
    parts: dict[str, list] = {}
    for key in sorted(chunks):
        chunk = manifest_path.parent / chunks[key]["file"]
        try:
            with np.load(chunk, allow_pickle=False) as data:
                for k in data.files if keys is None else ["case_index", *keys]:
                    parts.setdefault(k, []).append(data[k])
        except Exception as exc:  # noqa: BLE001 (BadZipFile, EOFError, KeyError, OSError: a damaged chunk)
            raise ValueError(f"dataset chunk {str(chunk)!r} cannot be read ({type(exc).__name__}: {exc}); "
                             "delete it and its manifest entry, then resume the simulation") from None
    if not parts:
        raise ValueError(f"dataset {str(path)!r} has no finished chunk")
    out = {k: np.concatenate(v) for k, v in parts.items()}
    out["voxel_mm"] = np.float64(voxel_mm)
    out["image_unit"] = np.str_(manifest.get("units", {}).get("images", "kBq/mL"))
    return out
