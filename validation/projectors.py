"""Study ``projectors``: Joseph (+TOF) projector and list-mode OSEM against exact references.

Checks: exact adjoint, autograd gradients against finite differences (image and LOR end points),
the chord-length oracle (exact ray-box clipping), the TOF sign convention, Joseph line integrals
against the analytic blob/sphere projector within the stated discretisation errors, and a hot-rod
list-mode OSEM reconstruction (line profiles, rod peak-to-valley ratios, recovered activity).
Throughput on the BENCHMARKS.md workload is tabulated next to parallelproj's figure.

The hot-rod data come from the ideal-cylinder simulator of :mod:`refsuite.recon.simulate` with
the ``thull_sim`` bore (inner radius 75 mm); the detector-block Monte Carlo (``refsuite.mc``) is
on another branch and will replace it through :func:`refsuite.recon.lm_osem`.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

import refsuite.projectors as P
import refsuite.recon as Rc
from refsuite.projectors.workloads import BENCHMARK_TOF, PARALLELPROJ_EVENTS_PER_S, benchmark_image_geometry, cylinder_lors
from refsuite.report import Comparison, RunContext, Section, Table, Tolerance, figure_from_matplotlib

NAME = "projectors"
TITLE = "Projectors (Joseph + TOF, analytic blobs) and list-mode OSEM"

F64 = torch.float64
_BORE_MM, _HALF_AXIAL_MM = 75.0, 75.0  # thull_sim: inner radius 75 mm, 3 rings of 48 mm + gaps


def _lors(rng, n, radius):
    phi = rng.uniform(0, 2 * np.pi, n)
    phi2 = phi + np.pi + rng.normal(0, 0.3, n)
    xs = np.stack([radius * np.cos(phi), radius * np.sin(phi), rng.uniform(-8, 8, n)], 1)
    xe = np.stack([radius * np.cos(phi2), radius * np.sin(phi2), rng.uniform(-8, 8, n)], 1)
    return torch.as_tensor(xs), torch.as_tensor(xe)


def _adjoint_and_gradients(section: Section, rng) -> None:
    section.declare("adjointness <Ax,y> - <x,A^T y> (non-TOF, float64)", Tolerance(
        1e-6, Comparison.AT_MOST, justification="the issue's requirement (1e-6 relative); an exact adjoint gives ~1e-15"))
    section.declare("adjointness (TOF, float64)", Tolerance(
        1e-6, Comparison.AT_MOST, justification="as non-TOF"))
    section.declare("end-point gradient vs central differences", Tolerance(
        1e-6, Comparison.AT_MOST, unit="relative",
        justification="float64 central differences with h = 1e-6 mm have ~1e-9 truncation/rounding error; "
                      "a wrong derivative is off by O(1)"))
    section.declare("image gradient vs back projection", Tolerance(
        1e-12, Comparison.AT_MOST, unit="relative", justification="d<y, A x>/dx = A^T y exactly (linear operator)"))
    xs, xe = _lors(rng, 300, 20.0)
    shape, vs, origin = (12, 10, 6), (1.5, 2.0, 2.5), (-8.25, -9.0, -6.25)
    op = P.JosephOperator(xs, xe, image_shape=shape, voxel_size=vs, origin=origin)
    section.check("adjointness <Ax,y> - <x,A^T y> (non-TOF, float64)", op.adjointness_error(seed=1))
    tof = P.TOFParameters(num_bins=9, bin_width_mm=3.0, sigma_mm=4.0)
    tb = torch.as_tensor(rng.integers(-4, 5, 300), dtype=F64)
    op_t = P.JosephOperator(xs, xe, image_shape=shape, voxel_size=vs, origin=origin, tof=tof, tof_bin=tb)
    section.check("adjointness (TOF, float64)", op_t.adjointness_error(seed=2))
    # gradients w.r.t. the end points: autograd vs central differences on a smooth image
    img = torch.as_tensor(rng.random(shape))
    a, b = xs[:20].clone().requires_grad_(True), xe[:20].clone().requires_grad_(True)
    w = torch.as_tensor(rng.normal(size=20))
    f = lambda s, e: (P.joseph_forward(img, s, e, voxel_size=vs, origin=origin, tof=tof, tof_bin=tb[:20]) * w).sum()  # noqa: E731
    ga, _ = torch.autograd.grad(f(a, b), (a, b))
    h = 1e-6
    num = torch.zeros_like(ga)
    with torch.no_grad():
        for i in range(20):
            for j in range(3):
                d = torch.zeros_like(a)
                d[i, j] = h
                num[i, j] = (f(a + d, b) - f(a - d, b)) / (2 * h)
    rel = float((ga - num).abs().max() / num.abs().max())
    section.check("end-point gradient vs central differences", rel, detail="20 TOF LORs, xstart, float64")
    x = img.clone().requires_grad_(True)
    gx, = torch.autograd.grad((P.joseph_forward(x, xs, xe, voxel_size=vs, origin=origin) * torch.ones(300, dtype=F64)).sum(), x)
    bp = P.joseph_back(torch.ones(300, dtype=F64), xs, xe, image_shape=shape, voxel_size=vs, origin=origin)
    section.check("image gradient vs back projection", float((gx - bp).abs().max() / bp.abs().max()))


def _chord_and_tof_sign(section: Section, rng) -> None:
    section.declare("chord-length oracle max |error| (float64)", Tolerance(
        1e-9, Comparison.AT_MOST, unit="mm",
        justification="exact ray-box clipping: a uniform image projects to the exact chord (rounding only), "
                      "including grazing LORs and end points inside the image"))
    section.declare("TOF peak bin of an off-centre point source", Tolerance(
        0.0, Comparison.ABS_DIFF, unit="bins",
        justification="source 30 mm towards xend, 10 mm bins: TOWARDS_XEND puts the peak in bin +3"))
    shape, vs, origin = (13, 11, 7), (1.3, 1.7, 2.1), (-7.8, -8.5, -6.3)
    lo = torch.tensor(origin, dtype=F64) - torch.tensor(vs, dtype=F64) / 2
    hi = torch.tensor(origin, dtype=F64) + (torch.tensor(shape, dtype=F64) - 0.5) * torch.tensor(vs, dtype=F64)
    n = 2000
    xs = torch.as_tensor(rng.uniform(-30, 30, (n, 3)))
    xe = torch.as_tensor(rng.uniform(-30, 30, (n, 3)))
    inside = torch.as_tensor(rng.uniform(lo.numpy(), hi.numpy(), (n, 3)))
    graze = inside.clone()
    graze[:, 0] = hi[0]  # LORs lying in the x = max face
    graze_end = graze + torch.as_tensor(rng.normal(size=(n, 3))) * 10
    graze_end[:, 0] = hi[0]
    xs = torch.cat([xs, inside, graze])
    xe = torch.cat([xe, xe, graze_end])
    proj = P.joseph_forward(torch.ones(shape, dtype=F64), xs, xe, voxel_size=vs, origin=origin)
    ref = P.chord_length(xs, xe, box_low=lo, box_high=hi)
    section.check("chord-length oracle max |error| (float64)", float((proj - ref).abs().max()),
                  detail=f"{3 * n} LORs: random, starting inside, lying in a face; anisotropic voxels")
    img = torch.zeros((81, 9, 9), dtype=F64)
    img[70, 4, 4] = 1.0
    tof = P.TOFParameters(num_bins=11, bin_width_mm=10.0, sigma_mm=6.0)
    prof = P.joseph_forward_all_bins(img, torch.tensor([[-100.0, 0, 0]], dtype=F64), torch.tensor([[100.0, 0, 0]], dtype=F64),
                                     voxel_size=1.0, origin=(-40.0, -4.0, -4.0), tof=tof)[0]
    section.check("TOF peak bin of an off-centre point source", tof.bin_indices[int(torch.argmax(prof))].item(), 3.0)


def _accuracy(section: Section, rng, quick: bool) -> None:
    steps = (2.0, 1.0) if quick else (2.0, 1.0, 0.5)
    sig, radius = 3.0, 8.0
    tof = P.TOFParameters(num_bins=11, bin_width_mm=10.0, sigma_mm=15.9)
    xs, xe = _lors(rng, 600, 80.0)
    tb = torch.as_tensor(rng.integers(-3, 4, 600), dtype=F64)
    centre = torch.tensor([[3.3, -2.1, 0.4]], dtype=F64)
    rows = []
    for h in steps:
        n = int(round(60 / h))
        shape = (n, n, int(round(20 / h)))
        origin = tuple(-(s - 1) / 2 * h for s in shape)
        bound_b = 0.35 * (h / sig) ** 2
        blobs = P.voxelise_blobs(centre, torch.tensor([sig]), torch.tensor([1000.0]), shape=shape, voxel_size=h, origin=origin)
        spheres = P.voxelise_spheres(centre, torch.tensor([radius]), torch.tensor([1.0]), shape=shape, voxel_size=h, origin=origin)
        for use_tof in (False, True):
            kw = dict(tof=tof, tof_bin=tb) if use_tof else {}
            tag = f"h={h:g} mm {'TOF' if use_tof else 'non-TOF'}"
            ours = P.joseph_forward(blobs, xs, xe, voxel_size=h, origin=origin, **kw)
            ref = P.blob_line_integrals(xs, xe, centres=centre, sigmas=torch.tensor([sig]), activities=torch.tensor([1000.0]), **kw)
            err_b = float((ours - ref).abs().max() / ref.max())
            name = f"blob max error / peak, {tag}"
            section.declare(name, Tolerance(bound_b, Comparison.AT_MOST, justification=(
                "stated discretisation error 0.35 (h/sigma)^2 (voxel averaging + bilinear interpolation, 2nd order)")))
            section.check(name, err_b)
            ours_s = P.joseph_forward(spheres, xs, xe, voxel_size=h, origin=origin, **kw)
            ref_s = P.sphere_line_integrals(xs, xe, centres=centre, radii=torch.tensor([radius]), densities=torch.tensor([1.0]), **kw)
            rms = float((ours_s - ref_s).pow(2).mean().sqrt())
            if not use_tof:
                name = f"sphere rms chord error, {tag}"
                section.declare(name, Tolerance(0.4 * h, Comparison.AT_MOST, unit="mm", justification=(
                    "stated: rms <= 0.4 h (partial-volume edge of a 1st-order discontinuity)")))
                section.check(name, rms)
            rows.append([h, "TOF" if use_tof else "non-TOF", f"{err_b:.3g}", f"{bound_b:.3g}", f"{rms:.3g}",
                         f"{float((ours_s - ref_s).abs().max()):.3g}"])
    section.tables.append(Table("Joseph vs analytic (blob sigma 3 mm, sphere R 8 mm, 600 LORs)",
                                ["voxel h (mm)", "mode", "blob max err / peak", "stated bound", "sphere rms err (mm)",
                                 "sphere max err (mm)"], rows,
                                caption="Errors fall as h^2 for the blob and h for the sphere edge, as stated."))


def _throughput(section: Section, rng, quick: bool) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see tests/test_projectors_bench.py: OpenMP threads stall on a shared machine
    try:
        rows = []
        shape, vs, origin = benchmark_image_geometry()
        n = 100_000 if quick else 1_000_000
        xs, xe, tb = cylinder_lors(n, rng=rng)
        img = torch.rand(shape, generator=torch.Generator().manual_seed(0))
        for key, kw in (("non-TOF", {}), ("TOF", dict(tof=BENCHMARK_TOF, tof_bin=tb))):
            c0, t0 = time.process_time(), time.perf_counter()
            y = P.joseph_forward(img, xs, xe, voxel_size=vs, origin=origin, **kw)
            P.joseph_back(y, xs, xe, image_shape=shape, voxel_size=vs, origin=origin, **kw)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            ref = PARALLELPROJ_EVENTS_PER_S[key]
            rows.append([key, f"{n:.0e}", f"{n / wall:.3g}", f"{n / cpu:.3g}", f"{ref:.3g}", f"{n / wall / ref:.3g}"])
        section.tables.append(Table(
            "List-mode fwd+back throughput, 200^3 float32, 1 thread (BENCHMARKS.md workload)",
            ["mode", "LORs", "events/s (wall)", "events/CPU-s", "parallelproj 2 cores", "ratio (wall)"], rows,
            caption="Measured on a shared 2-core machine (timings are lower bounds); parallelproj's figure is "
                    "cited from BENCHMARKS.md (not importable here). Quick mode times 1e5 LORs."))
    finally:
        torch.set_num_threads(threads)


def _derenzo(quick: bool):
    """Rod centres (mm) and diameters: 4 sectors (90 degrees apart), each an equilateral triangle of rods
    on a lattice of pitch 2 d whose apex sits 1.5 mm + d from the centre, inside a 22 mm radius."""
    diam = (2.0, 2.5, 3.0, 4.0) if quick else (1.0, 1.5, 2.0, 2.5)
    rods = []
    for s, d in enumerate(diam):
        ang = s * np.pi / 2 + np.pi / 4
        u = np.array([np.cos(ang), np.sin(ang)])
        v = np.array([-u[1], u[0]])
        pitch = 2 * d
        for row in range(12):
            for k in range(row + 1):
                pos = (1.5 + d + row * pitch * math.sqrt(3) / 2) * u + (k - row / 2) * pitch * v
                if np.linalg.norm(pos) + d / 2 < 22.0:
                    rods.append((pos[0], pos[1], d, s))
    return np.array(rods), diam


def _hot_rod(section: Section, rng, quick: bool) -> None:
    rods, diam = _derenzo(quick)
    h = 1.0 if quick else 0.2
    n_xy = int(round(48 / h))
    shape, half_z = (n_xy, n_xy, max(int(round(8 / h)), 1)), 4.0
    origin = tuple(-(s - 1) / 2 * h for s in shape)
    n_events_target = 150_000 if quick else 3_000_000
    # emissions: uniform in the rods (same concentration), |z| < half_z
    areas = np.pi * (rods[:, 2] / 2) ** 2
    pick = rng.choice(len(rods), size=int(n_events_target * 2.2), p=areas / areas.sum())
    r = rods[pick, 2] / 2 * np.sqrt(rng.random(pick.size))
    a = rng.uniform(0, 2 * np.pi, pick.size)
    pts = np.stack([rods[pick, 0] + r * np.cos(a), rods[pick, 1] + r * np.sin(a), rng.uniform(-half_z, half_z, pick.size)], 1)
    ev = Rc.ideal_cylinder_events(pts, radius_mm=_BORE_MM, half_length_mm=_HALF_AXIAL_MM, rng=rng)
    T = lambda x: torch.as_tensor(x, dtype=torch.float32)  # noqa: E731
    grid = dict(voxel_size=h, origin=origin)
    n_lines, batch = (2_500_000, 2_500_000) if quick else (40_000_000, 4_000_000)
    sens = torch.zeros(shape)
    for _ in range(n_lines // batch):  # batches bound the memory of the full-mode 4e7 lines
        ss, se, w = Rc.ideal_cylinder_lors(batch, radius_mm=_BORE_MM, half_length_mm=_HALF_AXIAL_MM,
                                           fov_radius_mm=34.0, voxel_volume_mm3=h**3, rng=rng)
        sens += Rc.sensitivity_image(T(ss), T(se), image_shape=shape, weights=T(w) * (batch / n_lines), **grid)
    x = Rc.lm_osem_lors(T(ev["xstart"]), T(ev["xend"]), sensitivity=sens, n_iter=3, n_subsets=8, device="cpu", **grid).numpy()
    img = x.mean(axis=2)
    # line profile through the outermost complete row of each sector, along the row
    from scipy.ndimage import map_coordinates

    rows, pvr = [], {}
    profiles = []
    for s, d in enumerate(diam):
        sec = rods[rods[:, 3] == s]
        # the row (constant distance from the centre along the sector axis) with most rods
        ang = s * np.pi / 2 + np.pi / 4
        u = np.array([np.cos(ang), np.sin(ang)])
        along = np.round(sec[:, :2] @ u, 6)
        best = max(np.unique(along), key=lambda v: (np.sum(along == v), v))
        line = sec[along == best][:, :2]
        if len(line) < 2:
            continue
        v = np.array([-u[1], u[0]])
        t = np.sort(line @ v)
        ts = np.linspace(t[0] - d, t[-1] + d, 400)
        pts_l = best * u[None, :] + ts[:, None] * v[None, :]
        idx = (pts_l - np.array(origin[:2])) / h
        prof = map_coordinates(img, idx.T, order=1)
        peaks = map_coordinates(img, ((best * u[None, :] + t[:, None] * v[None, :] - np.array(origin[:2])) / h).T, order=1)
        mids = (t[1:] + t[:-1]) / 2
        valleys = map_coordinates(img, ((best * u[None, :] + mids[:, None] * v[None, :] - np.array(origin[:2])) / h).T, order=1)
        pvr[d] = float(peaks.mean() / max(valleys.mean(), 1e-12))
        profiles.append((d, ts, prof))
        rows.append([d, len(line), f"{peaks.mean():.3g}", f"{valleys.mean():.3g}", f"{pvr[d]:.3g}"])
    section.tables.append(Table("Hot-rod line profiles: peak-to-valley ratios", ["rod diameter (mm)", "rods on line",
                                "mean peak", "mean valley", "PVR"], rows,
                                caption=f"voxel {h} mm, {len(ev['xstart'])} events, 3 iterations x 8 subsets"))
    largest = diam[-1]
    section.declare("hot-rod PVR of the largest rods", Tolerance(
        2.0, Comparison.AT_LEAST, justification=(f"{largest} mm rods at pitch {2 * largest} mm are resolved by "
                                                 f"{h} mm voxels with no detector blur: valleys well below peaks")))
    section.check("hot-rod PVR of the largest rods", pvr.get(largest, float("nan")))
    smallest = diam[0]
    section.declare("hot-rod PVR of the smallest rods", Tolerance(
        1.5, Comparison.AT_LEAST, justification=(f"{smallest} mm rods span {smallest / h:g} voxels; an ideal "
                                                 "detector (no blur) must still separate them")))
    section.check("hot-rod PVR of the smallest rods", pvr.get(smallest, float("nan")))
    # quantitation: emissions inside the rod region vs the image total (sensitivity-normalised)
    inside_fov = np.abs(pts[:, 2]) <= half_z
    section.declare("recovered total activity / emitted", Tolerance(
        0.05, Comparison.REL_DIFF, justification="the OSEM image counts emissions (sensitivity = detection probability); "
                                                 "5% covers Monte Carlo sensitivity noise and subset bias"))
    g = [origin[i] + h * np.arange(shape[i]) for i in range(2)]
    xx, yy = np.meshgrid(*g, indexing="ij")
    central = (xx**2 + yy**2) < 24.0**2
    section.check("recovered total activity / emitted", float(x[central].sum() / inside_fov.sum()), 1.0)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(1, 2, figsize=(10, 4.2))
        ax[0].imshow(img.T, origin="lower", extent=(g[0][0] - h / 2, g[0][-1] + h / 2, g[1][0] - h / 2, g[1][-1] + h / 2), cmap="gray_r")
        ax[0].set_xlabel("x (mm)")
        ax[0].set_ylabel("y (mm)")
        for d, ts, prof in profiles:
            ax[1].plot(ts, prof, label=f"{d} mm rods")
        ax[1].set_xlabel("position along the rod row (mm)")
        ax[1].set_ylabel("activity (emissions / voxel)")
        ax[1].legend()
        section.figures.append(figure_from_matplotlib(fig, "Hot-rod LM-OSEM reconstruction and line profiles",
                                                      caption="Axial mean of the reconstruction; profiles through one row per sector."))
    except ImportError as exc:  # matplotlib is a core dependency; record why a figure is missing
        section.notes.append(f"figure skipped: {exc}")


def run(ctx: RunContext) -> Section:
    section = Section(study=NAME, title=TITLE, summary=(
        "Exact adjoint and gradients of the differentiable Joseph projector, exact ray-box clipping (chord "
        "oracle), TOF sign convention, Joseph vs analytic line integrals within stated discretisation "
        "errors, list-mode OSEM of a hot-rod phantom, and projector throughput."))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _adjoint_and_gradients(section, ctx.rng(1))
        _chord_and_tof_sign(section, ctx.rng(2))
        _accuracy(section, ctx.rng(3), ctx.quick)
        _hot_rod(section, ctx.rng(4), ctx.quick)
        _throughput(section, ctx.rng(5), ctx.quick)
    finally:
        torch.set_num_threads(threads)
    return section
