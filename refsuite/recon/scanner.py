"""Thin adapter from a scanner and list-mode events to the LOR-end-point reconstruction.

The scanner is a :class:`refsuite.geometry.Scanner` (DESIGN.md; Thull et al., sec. 2.1): its
``crystal_positions`` and ``sample_in_crystals`` place the events' crystal ids
(:func:`refsuite.events.lor_endpoints`), its blocks are traced for the sensitivity image.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from refsuite._checks import check_positive
from refsuite.devices import torch_device
from refsuite.events import (CRYSTAL_ID_COLUMNS, LORPlacement, canonical_pairs, canonical_row_order, crystal_ids,
                             lor_endpoints)
from refsuite.projectors import TOFParameters

from .osem import attenuation_factors, lm_osem_lors, sensitivity_image

__all__ = ["LORPlacement", "detected_line_sensitivity", "events_to_lors", "lm_osem"]


def _check_efficiency(efficiency, scanner) -> np.ndarray | None:
    """``efficiency`` as an array of shape (n_blocks, n_crystals), >= 0, or None."""
    if efficiency is None:
        return None
    eff = np.asarray(efficiency, float)
    want = (scanner.n_blocks, scanner.n_crystals)
    if eff.shape != want or not np.all(eff >= 0):
        raise ValueError(f"efficiency must be >= 0 with shape (n_blocks, n_crystals) = {want}, "
                         f"got shape {eff.shape}, minimum {eff.min() if eff.size else 'n/a'}")
    return eff


def events_to_lors(events: Mapping[str, np.ndarray], scanner=None, *, lor_placement=None, rng=None):
    """LOR end points (mm) of list-mode events and their crystal ids (or None).

    ``events`` holds either ``xstart`` and ``xend`` (n, 3) in mm (used as they are), or the
    crystal ids ``BlockID1, CrystalID1, BlockID2, CrystalID2`` (as refsuite.io reads them),
    placed on ``scanner`` by :func:`refsuite.events.lor_endpoints` with ``lor_placement``
    (default :attr:`LORPlacement.CRYSTAL_CENTRES`; ``rng`` for ``CRYSTAL_SAMPLES``).

    Returns
    -------
    xstart, xend : ndarray (n, 3) mm
    ids : int64 ndarray (n, 4) or None
    """
    has_ids = all(k in events for k in CRYSTAL_ID_COLUMNS)
    if "xstart" in events and "xend" in events:
        ids = crystal_ids(events) if has_ids else None
        return np.asarray(events["xstart"], float), np.asarray(events["xend"], float), ids
    if has_ids:
        if scanner is None:
            raise ValueError("events given as crystal ids need a scanner")
        placement = LORPlacement.CRYSTAL_CENTRES if lor_placement is None else LORPlacement(lor_placement)
        xs, xe = lor_endpoints(events, scanner, placement=placement, rng=rng)
        return xs, xe, crystal_ids(events, scanner)
    raise ValueError(f"events must hold 'xstart'/'xend' (mm) or {CRYSTAL_ID_COLUMNS}; got keys {sorted(events)}")


def _canonical(events):
    """Events given as crystal ids in canonical form (:func:`refsuite.events.canonical_pairs`, rows by
    :func:`refsuite.events.canonical_row_order`) with the columns :func:`lm_osem` uses; others as given."""
    if ("xstart" in events and "xend" in events) or not all(k in events for k in CRYSTAL_ID_COLUMNS):
        return events
    extra = ("tof_bin", *(f"PostPosition_{a}{k}" for a in "XYZ" for k in (1, 2)))
    ev = canonical_pairs(events, columns=[*CRYSTAL_ID_COLUMNS, *(c for c in extra if c in events)])
    return ev.take(canonical_row_order(crystal_ids(ev), ev.get("tof_bin")))


def lm_osem(
    events: Mapping[str, np.ndarray],
    scanner,
    *,
    image_shape,
    voxel_size,
    n_iter: int,
    n_subsets: int,
    origin=None,
    tof: TOFParameters | None = None,
    sensitivity: torch.Tensor | None = None,
    attenuation: torch.Tensor | None = None,
    efficiency: np.ndarray | None = None,
    lor_placement: LORPlacement | str | None = None,
    n_sensitivity_lines: int = 4_000_000,
    sensitivity_voxel_mm: float | None = 1.0,
    seed: int = 0,
    callback=None,
    dtype=torch.float32,
    device=None,
) -> torch.Tensor:
    """List-mode OSEM of ``events`` detected by ``scanner`` (DESIGN.md signature).

    The default sensitivity is :func:`detected_line_sensitivity` with ``scanner``'s geometry, one
    image per angular subset, so the image is in emissions per voxel (an acquisition of ``N``
    decays reconstructs to a total of about ``N`` inside the scanner's field of view). One
    image divided by ``n_subsets`` for every subset is only right for a scanner without gaps:
    on the block scanner ``thull_sim`` it lost 20 % of the emissions of a hot-rod phantom
    (6 subsets, 3 iterations; the test of this default is in ``tests/test_recon_hot_rod.py``).

    Parameters
    ----------
    events : mapping
        ``xstart``/``xend`` (n, 3) mm (taken to be drawn inside the crystal voxels,
        :attr:`LORPlacement.CRYSTAL_SAMPLES`) or crystal ids ``BlockID1, CrystalID1, BlockID2,
        CrystalID2`` as :func:`refsuite.io.read_events` reads them (placed by ``lor_placement``);
        optional ``tof_bin`` (n,) signed TOF bins (with ``tof``). Events given as crystal ids are
        used in the canonical pair and row order of :func:`refsuite.events.canonical_pairs`, so
        the same coincidences read from a ROOT or a PETSIRD file reconstruct identically.
    scanner : refsuite.geometry.Scanner
        The geometry the reconstruction believes in.
    image_shape : (3,) ints; voxel_size : float or (3,) mm
    n_iter, n_subsets : int
    origin : (3,) mm, optional
        Centre of voxel (0, 0, 0); default: the image centred on the scanner axis origin.
    tof : TOFParameters, optional
    sensitivity : torch.Tensor, shape image_shape or (n_subsets, *image_shape), optional
        Precomputed sensitivity (see :func:`refsuite.recon.lm_osem_lors`); default: computed as
        described above, with the same attenuation and efficiency factors as the events.
    attenuation : torch.Tensor, optional
        Linear attenuation map (1/mm) on the image grid.
    efficiency : ndarray, shape (n_blocks, n_crystals), optional
        Detection efficiency of each crystal; a LOR's factor is the product of its two crystals'.
        Needs events given with crystal ids.
    lor_placement : LORPlacement or str, optional
        Where events given as crystal ids are placed (:func:`refsuite.events.lor_endpoints`;
        default :attr:`LORPlacement.CRYSTAL_CENTRES`; ``CRYSTAL_SAMPLES`` draws with seed
        ``[seed, 1]``); the default sensitivity uses the same placement. Events given as
        ``xstart``/``xend`` are taken as ``CRYSTAL_SAMPLES`` unless this says otherwise.
    n_sensitivity_lines : int
        Lines of the default sensitivity's Monte Carlo.
    sensitivity_voxel_mm : float or None
        Grid (mm) the default sensitivity is back-projected onto before trilinear interpolation to
        the image (``sampling_voxel_size`` of :func:`detected_line_sensitivity`; the larger of it
        and the voxel size is used): OSEM divides by the sensitivity, so its Monte Carlo noise
        biases the image upwards. None: the image grid.
    seed : int
        Seed of the sensitivity Monte Carlo.
    callback : callable(iteration, subset, image), optional
        Called after every subset update (:func:`refsuite.recon.lm_osem_lors`), e.g. a progress bar.
    dtype, device

    Returns
    -------
    torch.Tensor, shape image_shape
        Emissions per voxel (with the default sensitivity).
    """
    shape = tuple(int(s) for s in image_shape)
    vs = np.broadcast_to(np.asarray(voxel_size, float), (3,))
    org = tuple(-(np.asarray(shape) - 1) / 2.0 * vs) if origin is None else origin
    placement = None if lor_placement is None else LORPlacement(lor_placement)
    events = _canonical(events)
    xs, xe, ids = events_to_lors(events, scanner, lor_placement=placement, rng=np.random.default_rng([int(seed), 1]))
    dev = torch_device(device, purpose="lm_osem")
    t = lambda a: torch.as_tensor(a, dtype=dtype, device=dev)  # noqa: E731
    xs_t, xe_t = t(xs), t(xe)
    grid = dict(voxel_size=tuple(vs), origin=org)
    factors = torch.ones(xs.shape[0], dtype=dtype, device=dev)
    mu = None
    eff = _check_efficiency(efficiency, scanner)
    if eff is not None:
        if ids is None:
            raise ValueError("efficiency needs events with crystal ids (BlockID1, CrystalID1, BlockID2, CrystalID2)")
        factors = factors * t(eff[ids[:, 0], ids[:, 1]] * eff[ids[:, 2], ids[:, 3]])
    if attenuation is not None:
        mu = attenuation.to(device=dev, dtype=dtype)
        factors = factors * attenuation_factors(mu, xs_t, xe_t, **grid)
    if sensitivity is None:
        if placement is None:
            placement = LORPlacement.CRYSTAL_SAMPLES if "xstart" in events else LORPlacement.CRYSTAL_CENTRES
        sampling = None if sensitivity_voxel_mm is None else max(float(sensitivity_voxel_mm), float(vs.max()))
        sensitivity = detected_line_sensitivity(
            scanner, image_shape=shape, voxel_size=tuple(vs), origin=org, n_lines=int(n_sensitivity_lines),
            rng=np.random.default_rng(seed), attenuation=mu, efficiency=efficiency, lor_placement=placement,
            n_subsets=int(n_subsets), sampling_voxel_size=sampling, dtype=dtype, device=dev)
    tb = t(events["tof_bin"]) if (tof is not None and "tof_bin" in events) else None
    return lm_osem_lors(xs_t, xe_t, sensitivity=sensitivity.to(device=dev, dtype=dtype), n_iter=n_iter,
                        n_subsets=n_subsets, tof=tof, tof_bin=tb, event_factors=factors, callback=callback,
                        device=dev, **grid)


def detected_line_sensitivity(scanner, *, image_shape, voxel_size, origin, n_lines: int, rng: np.random.Generator,
                              attenuation: torch.Tensor | None = None, efficiency: np.ndarray | None = None,
                              lor_placement: LORPlacement = LORPlacement.CRYSTAL_SAMPLES, n_subsets: int | None = None, sampling_voxel_size: float | None = None,
                              chunk_lines: int = 1 << 20, dtype=torch.float32, device=None) -> torch.Tensor:
    """Sensitivity image ``s_j`` = probability that an emission in voxel ``j`` is detected (dimensionless).

    Monte Carlo over the isotropic line measure through the image (the block analogue of
    :func:`refsuite.recon.ideal_cylinder_lors`): lines get an isotropic direction and a foot
    point uniform on the disc of radius ``r`` (the image's half-diagonal) perpendicular to it
    through the image centre, so every line crossing the image is drawn with its measure. Both
    photons of a line are traced into ``scanner``'s blocks with an exponential first-interaction
    depth (``scanner.mu_per_mm``, :func:`refsuite.geometry.trace_pairs`, the built-in Monte Carlo's
    detector model); a detected line is back-projected as the events' LORs are placed
    (``lor_placement``), with the weight ``pi r^2 / (n_lines V_voxel)`` times its attenuation
    factor and its crystals' efficiencies. The result is a detection probability, so OSEM with
    it reconstructs emissions per voxel. Unlike sampling crystal pairs, every line crosses the
    image, so a small image around a phantom gets ~(scanner size / image size)^2 times less
    Monte Carlo noise for the same work.

    Parameters
    ----------
    scanner : refsuite.geometry.Scanner
        The geometry the reconstruction uses.
    image_shape, voxel_size, origin
        Image grid (mm); ``origin`` = centre of voxel (0, 0, 0).
    n_lines : int
        Lines drawn (detected or not).
    rng : numpy Generator
    attenuation : torch.Tensor, optional
        Linear attenuation map (1/mm) on the image grid.
    efficiency : ndarray, shape (n_blocks, n_crystals), optional
        Detection efficiency of each crystal voxel; a line counts with the product of its two.
    lor_placement : LORPlacement
        Back-project the detected crystal pair's LOR between points drawn inside the two voxels
        (default), between their centres, or the line itself.
    n_subsets : int, optional
        Return one image per angular subset (:func:`refsuite.recon.angle_subsets` applied to the
        back-projected LORs), the stack :func:`refsuite.recon.lm_osem_lors` needs for unbiased
        OSEM on a block scanner; the images sum to the full sensitivity.
    sampling_voxel_size : float, optional
        Cubic voxel size (mm) of the grid the lines are back-projected onto, when it is coarser
        than ``voxel_size``; the result is then interpolated (trilinearly, between coarse voxel
        centres) onto the requested grid. The sensitivity varies on the scale of the crystal
        voxels, but its Monte Carlo noise grows as the voxels shrink (the lines crossing a voxel
        scale as ``h^2``), and OSEM divides by it: ``E[1/s] > 1/E[s]`` inflates the image
        (measured: +40 % emissions at 0.2 mm voxels from 2e7 lines). Default (or equal to
        ``voxel_size``): the image grid itself.
    chunk_lines : int
        Lines traced at once (memory bound).
    dtype, device

    Returns
    -------
    torch.Tensor, shape image_shape, or (n_subsets, *image_shape)
    """
    from refsuite.geometry import trace_pairs

    from .osem import angle_subsets
    from .simulate import isotropic_lines

    shape = tuple(int(s) for s in image_shape)
    vs = np.broadcast_to(np.asarray(voxel_size, float), (3,))
    org = np.asarray(origin, float)
    centre = org + (np.asarray(shape) - 1) / 2 * vs
    dev = torch_device(device, purpose="detected_line_sensitivity")
    grid = dict(voxel_size=tuple(vs), origin=tuple(org))  # the image's grid (attenuation map)
    coarse = sampling_voxel_size is not None and not np.allclose(vs, float(sampling_voxel_size))
    if coarse:
        hc = float(check_positive("sampling_voxel_size", sampling_voxel_size, unit="mm"))
        if hc < vs.max():
            raise ValueError(f"sampling_voxel_size must be >= the image voxel size {vs.max():g} mm, got {hc:g} mm")
        # the coarse grid shares the image's centre and covers its voxel centres
        bp_shape = tuple(int(n) for n in np.ceil((np.asarray(shape) - 1) * vs / hc).astype(int) + 2)
        bp_vs = np.full(3, hc)
        bp_org = centre - (np.asarray(bp_shape) - 1) / 2 * hc
    else:
        bp_shape, bp_vs, bp_org = shape, vs, org
    bp_grid = dict(voxel_size=tuple(bp_vs), origin=tuple(bp_org))
    r = float(np.linalg.norm(np.asarray(bp_shape) * bp_vs) / 2)
    w = np.pi * r**2 / (int(n_lines) * float(np.prod(bp_vs)))
    lor_placement = LORPlacement(lor_placement)
    eff = _check_efficiency(efficiency, scanner)
    mu = float(scanner.mu_per_mm)
    out = torch.zeros((1 if n_subsets is None else int(n_subsets),) + bp_shape, dtype=dtype, device=dev)
    for a in range(0, int(n_lines), int(chunk_lines)):
        n = min(int(chunk_lines), int(n_lines) - a)
        foot, u = isotropic_lines(n, radius_mm=r, rng=rng, centre_mm=centre)
        depth = rng.exponential(1.0 / mu, (2, n))
        # drawn per line before tracing, so that the same seed gives the same numbers to the same
        # line whatever the geometry (common random numbers across geometries)
        offsets = rng.uniform(-1.0, 1.0, (2, n, 3))
        k, (b1, l1, _), (b2, l2, _) = trace_pairs(scanner, foot, u, depth[0], depth[1])
        if lor_placement is LORPlacement.LINE:
            xs, xe = foot[k] + 100 * r * u[k], foot[k] - 100 * r * u[k]
        if lor_placement is not LORPlacement.LINE or eff is not None:
            c1, c2 = scanner.crystals.locate(l1), scanner.crystals.locate(l2)
            if lor_placement is not LORPlacement.LINE:
                # a line grazing one block can put both photons in the same crystal: not a
                # coincidence a scanner records, and a zero-length LOR between crystal centres
                keep = (b1 != b2) | (c1 != c2)
                if not keep.all():
                    k, b1, c1, b2, c2 = k[keep], b1[keep], c1[keep], b2[keep], c2[keep]
        if lor_placement is LORPlacement.CRYSTAL_CENTRES:
            xs, xe = scanner.crystal_positions(b1, c1), scanner.crystal_positions(b2, c2)
        elif lor_placement is LORPlacement.CRYSTAL_SAMPLES:
            xs = scanner.sample_in_crystals(b1, c1, None, fractions=offsets[0, k])
            xe = scanner.sample_in_crystals(b2, c2, None, fractions=offsets[1, k])
        xs_t, xe_t = (torch.as_tensor(x, dtype=dtype, device=dev) for x in (xs, xe))
        wt = torch.full((xs_t.shape[0],), w, dtype=dtype, device=dev)
        if eff is not None:
            wt = wt * torch.as_tensor(eff[b1, c1] * eff[b2, c2], dtype=dtype, device=dev)
        if attenuation is not None:
            wt = wt * attenuation_factors(attenuation.to(device=dev, dtype=dtype), xs_t, xe_t, **grid)
        subs = [torch.arange(xs_t.shape[0], device=dev)] if n_subsets is None else angle_subsets(xs_t, xe_t, int(n_subsets))
        for b, idx in enumerate(subs):
            out[b] += sensitivity_image(xs_t[idx], xe_t[idx], image_shape=bp_shape, weights=wt[idx], **bp_grid)
    if coarse:
        out = _interpolate_grid(out, bp_vs, bp_org, shape, vs, org)
    return out[0] if n_subsets is None else out


def _interpolate_grid(images: torch.Tensor, src_vs, src_org, shape, vs, org) -> torch.Tensor:
    """Trilinear interpolation of ``images`` (c, *src_shape) between their voxel centres onto the
    voxel centres of the grid ``(shape, vs, org)`` (mm; the target must lie inside the source)."""
    import torch.nn.functional as F

    src_shape = np.asarray(images.shape[1:])
    axes = []
    for i in range(3):
        x = org[i] + vs[i] * np.arange(shape[i])
        # grid_sample's normalised coordinate with align_corners=True: -1 / +1 = first / last centre
        axes.append(torch.as_tensor(2 * (x - src_org[i]) / (src_vs[i] * (src_shape[i] - 1)) - 1,
                                    dtype=images.dtype, device=images.device))
    g = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)
    # grid_sample orders the last dimension (W, H, D) = reversed array axes
    out = F.grid_sample(images[None], g.flip(-1)[None], mode="bilinear", padding_mode="border", align_corners=True)
    return out[0]
