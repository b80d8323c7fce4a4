"""List-mode coincidences of two facing light-sharing detector stacks with known timing truth.

No measured data is available, so the truth is simulated: every deterministic delay of
every timestamp is drawn from the physics described in :class:`~refsuite.timing.detector.DetectorModel`
and recorded next to the events, so a calibration can be judged against it.

Event layout (``events`` dictionary, ``n`` coincidences, ``C = n_side**2`` channels):

``time_ps`` (n, 2, C) float64
    Hit timestamps (ps) of channel ``k`` of detector A (index 0) and B (index 1); NaN where
    the channel did not trigger. Absolute times include a random event time.
``energy_au`` (n, 2, C) float32
    Hit energies (a.u., about keV after gain calibration); NaN where not triggered.
``source_mm`` (n, 3) float64
    Nominal source position (x, y, z) of the acquisition (mm), the only label information
    an experimenter has.
"""

from __future__ import annotations

import numpy as np

from refsuite._checks import check_finite, check_in_range, check_positive
from refsuite.constants import FWHM_PER_SIGMA

from .detector import SPEED_OF_LIGHT_MM_PER_PS, DetectorModel

__all__ = ["simulate_detector_pair", "detector_constants", "axial_positions", "in_plane_grid", "REQUIRED_COLUMNS"]

#: Columns every event dictionary must carry.
REQUIRED_COLUMNS = ("time_ps", "energy_au", "source_mm")

_E_GAMMA_KEV = 511.0
_ME_KEV = 510.99895
_CHUNK = 100_000


def axial_positions(step_mm: float, *, half_range_mm: float = 150.0) -> np.ndarray:
    """Source positions (x, y, z) (mm) along the detector axis, ``-half_range ... +half_range``.

    The paper's transaxial study uses 10, 50 and 100 mm steps over +-150 mm.
    Returns shape (m, 3) with x = y = 0.
    """
    check_positive("step_mm", step_mm, unit="mm")
    check_positive("half_range_mm", half_range_mm, unit="mm")
    n = int(round(2 * half_range_mm / step_mm))
    if not np.isclose(n * step_mm, 2 * half_range_mm):
        raise ValueError(f"step_mm must divide 2 * half_range_mm = {2 * half_range_mm:g} mm, got {step_mm!r} mm")
    z = np.linspace(-half_range_mm, half_range_mm, n + 1)
    return np.stack([np.zeros_like(z), np.zeros_like(z), z], axis=1)


def in_plane_grid(n: int, *, z_mm: float = 0.0, half_width_mm: float = 7.6) -> np.ndarray:
    """An ``n x n`` grid of source positions (mm) in the plane ``z = z_mm``.

    The face ``-half_width ... +half_width`` is split into ``n x n`` equal cells and a source
    sits at each cell centre (a single centred source for ``n = 1``), as the paper's in-plane
    study (1x1 ... 33x33). Cell centres keep every source inside the face: a source on the
    edge of the face at ``z = 0`` has no coincidence acceptance. Returns shape (n*n, 3).
    """
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    check_positive("half_width_mm", half_width_mm, unit="mm")
    c = (np.arange(n) + 0.5) * (2.0 * half_width_mm / n) - half_width_mm
    gx, gy = np.meshgrid(c, c, indexing="xy")
    return np.stack([gx.ravel(), gy.ravel(), np.full(n * n, float(z_mm))], axis=1)


def detector_constants(model: DetectorModel, seed: int) -> dict[str, np.ndarray]:
    """Per-channel constants of one physical detector pair, drawn from ``seed``.

    Returns ``skew_ps`` (first-order skews), ``walk_ps`` (walk coefficients) and ``gain``,
    each of shape (2, C). Training and test sets of one study share these constants (the
    same physical detectors), so they come from their own seed.
    """
    rng = np.random.default_rng([int(seed), 0x5CE])
    shape = (2, model.n_channels)
    return {
        "skew_ps": rng.normal(0.0, model.skew_sigma_ps, shape),
        "walk_ps": model.walk_ps * np.clip(rng.normal(1.0, model.walk_spread, shape), 0.2, None),
        "gain": np.clip(rng.normal(1.0, model.gain_spread, shape), 0.5, None),
    }


def simulate_detector_pair(
    *,
    source_positions_mm,
    n_per_position,
    seed: int,
    model: DetectorModel | None = None,
    detector_seed: int = 0,
    constants: dict[str, np.ndarray] | None = None,
) -> tuple[dict[str, np.ndarray], dict]:
    """Simulate list-mode coincidences of a 22Na point source between two detector stacks.

    Parameters
    ----------
    source_positions_mm : array_like, shape (m,) or (m, 3)
        Source positions (mm): axial positions ``z`` (x = y = 0) or full (x, y, z) in the
        detector-pair frame. ``|z|`` must be inside the gap (``< distance/2``) and ``|x|``,
        ``|y|`` within the detector face.
    n_per_position : int or array_like of int, shape (m,)
        Accepted coincidences (both detectors triggered) per source position.
    seed : int
        Seed of the event generator.
    model : DetectorModel, optional
        Geometry and physics (default: the paper's setup).
    detector_seed : int
        Seed of the per-channel constants (skews, walk coefficients, gains); the same value
        gives the same physical detectors. Ignored when ``constants`` is given.
    constants : dict, optional
        Per-channel constants from :func:`detector_constants` (overrides ``detector_seed``).

    Returns
    -------
    events : dict of ndarray
        ``time_ps`` (n, 2, C), ``energy_au`` (n, 2, C), ``source_mm`` (n, 3); see module docstring.
    truth : dict
        ``model`` (parameters), ``constants`` (per-channel skews, walk coefficients, gains),
        and per event: ``emission_mm`` (n, 3), ``crystal``, ``depth_mm``, ``deposited_kev``,
        ``inter_crystal``, ``main_channel`` (each (n, 2)), the main-channel timestamp
        components ``gamma_ps`` (true arrival at the front face), ``doi_ps``, ``share_ps``,
        ``walk_ps``, ``skew_ps``, ``jitter_ps`` (each (n, 2), ps), and ``dt_oracle_ps`` (n,):
        the time difference with every deterministic skew removed (only jitter left).

    Notes
    -----
    One interaction chain per detector: depth from the LYSO attenuation (exponential,
    truncated to the crystal), full absorption (optionally shared with a neighbour crystal by
    inter-crystal scatter) or a Klein-Nishina Compton deposit; depth-dependent light sharing
    onto the SiPMs; timestamps as in :class:`DetectorModel` (Naunheim et al. 2025, eq. 1: a
    timestamp is the true time plus a sum of sub-offsets). Photon incidence is uniform over
    the face of detector A (solid-angle variation < 0.5 % at these distances).
    """
    model = DetectorModel() if model is None else model
    if not isinstance(model, DetectorModel):
        raise TypeError(f"model must be a DetectorModel, got {type(model).__name__}")
    pos = _positions(source_positions_mm, model)
    counts = np.broadcast_to(np.asarray(n_per_position), (len(pos),))
    if not np.issubdtype(counts.dtype, np.integer) or np.any(counts < 0):
        raise ValueError(f"n_per_position must be integers >= 0, got {n_per_position!r}")
    if counts.sum() == 0:
        raise ValueError("n_per_position: no coincidences requested (total 0)")
    consts = detector_constants(model, detector_seed) if constants is None else _check_constants(constants, model)
    rng = np.random.default_rng(seed)
    parts = []
    for p, n in zip(pos, counts):
        done = 0
        accept = 0.5
        empty = 0
        while done < n:
            batch = int(min(_CHUNK, max(256, 1.2 * (n - done) / accept)))
            out = _simulate_chunk(p, batch, model, consts, rng)
            accept = max(out["n_tried_accepted"] / batch, 1e-3)
            empty = empty + 1 if out["n_tried_accepted"] == 0 else 0
            if empty >= 20:
                raise ValueError(f"source_positions_mm: no coincidences in {20 * batch} decays at {p.tolist()} mm; "
                                 "both photons must reach a detector face (move the source inwards)")
            take = min(n - done, len(out["source_mm"]))
            parts.append({k: v[:take] for k, v in out.items() if k != "n_tried_accepted"})
            done += take
    cat = {k: np.concatenate([pt[k] for pt in parts]) for k in parts[0]}
    events = {k: cat.pop(k) for k in REQUIRED_COLUMNS}
    truth = {"model": model.as_dict(), "constants": {k: v.copy() for k, v in consts.items()},
             "seed": int(seed), "detector_seed": int(detector_seed), **cat}
    truth["dt_oracle_ps"] = (truth["gamma_ps"][:, 0] + truth["jitter_ps"][:, 0]) - (
        truth["gamma_ps"][:, 1] + truth["jitter_ps"][:, 1])
    return events, truth


def _positions(source_positions_mm, model: DetectorModel) -> np.ndarray:
    pos = check_finite("source_positions_mm", source_positions_mm)
    if pos.ndim == 0:
        pos = pos[None]
    if pos.ndim == 1:
        pos = np.stack([np.zeros_like(pos), np.zeros_like(pos), pos], axis=1)
    if pos.ndim != 2 or pos.shape[1] != 3 or len(pos) == 0:
        raise ValueError(f"source_positions_mm must have shape (m,) or (m, 3) with m >= 1, got {pos.shape}")
    gap = 0.5 * model.distance_mm - 0.5 * model.source_diameter_mm
    check_in_range("source_positions_mm (z)", pos[:, 2], -gap, gap, low_inclusive=False, high_inclusive=False, unit="mm")
    hw = model.half_width_mm
    check_in_range("source_positions_mm (x, y)", pos[:, :2], -hw, hw, unit="mm")
    return pos


def _check_constants(constants: dict, model: DetectorModel) -> dict:
    out = {}
    for key in ("skew_ps", "walk_ps", "gain"):
        if key not in constants:
            raise ValueError(f"constants is missing {key!r}; expected keys skew_ps, walk_ps, gain")
        arr = check_finite(f"constants[{key!r}]", constants[key])
        if arr.shape != (2, model.n_channels):
            raise ValueError(f"constants[{key!r}] must have shape (2, {model.n_channels}), got {arr.shape}")
        out[key] = arr
    return out


def _kn_inverse_cdf() -> tuple[np.ndarray, np.ndarray]:
    """Klein-Nishina recoil-electron energy spectrum of a 511 keV photon, as an inverse-CDF table."""
    k = _E_GAMMA_KEV / _ME_KEV
    t_max = _E_GAMMA_KEV * 2 * k / (1 + 2 * k)
    t = np.linspace(0.0, t_max, 2049)
    s = t / _E_GAMMA_KEV
    # d sigma / dT of the recoil electron (Knoll, Radiation Detection and Measurement, eq. 10.3
    # with s = T / h nu, k = h nu / m c^2), up to a constant
    pdf = 2 + s**2 / (k**2 * (1 - s) ** 2) + s / (1 - s) * (s - 2 / k)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(t))])
    return cdf / cdf[-1], t


_KN_CDF, _KN_T = _kn_inverse_cdf()


def _simulate_chunk(src: np.ndarray, n: int, m: DetectorModel, consts: dict, rng: np.random.Generator) -> dict:
    hw, half_d, length = m.half_width_mm, 0.5 * m.distance_mm, m.crystal_length_mm
    c_light = SPEED_OF_LIGHT_MM_PER_PS
    n_ch = m.n_channels
    # emission point in the 0.5 mm source sphere
    v = rng.normal(size=(n, 3))
    v *= (0.5 * m.source_diameter_mm * rng.random(n) ** (1 / 3) / np.linalg.norm(v, axis=1))[:, None]
    s = src[None, :] + v
    # back-to-back photons: uniform hit point on face A, the partner through the emission point
    face_a = np.concatenate([rng.uniform(-hw, hw, (n, 2)), np.full((n, 1), -half_d)], axis=1)
    ratio = (half_d - s[:, 2]) / (half_d + s[:, 2])
    face_b = np.concatenate([s[:, :2] + (s[:, :2] - face_a[:, :2]) * ratio[:, None], np.full((n, 1), half_d)], axis=1)
    ok = np.all(np.abs(face_b[:, :2]) < hw, axis=1)
    s, face_a, face_b = s[ok], face_a[ok], face_b[ok]
    n = len(s)
    face = np.stack([face_a, face_b], axis=1)  # (n, 2, 3)
    direction = face - s[:, None, :]
    path = np.linalg.norm(direction, axis=-1)
    slope_xy = direction[..., :2] / np.abs(direction[..., 2:3])
    t0 = rng.uniform(0.0, 1e9, n)
    gamma_ps = t0[:, None] + path / c_light

    # depth of the first interaction: exponential attenuation truncated to the crystal
    u = rng.random((n, 2))
    depth = -np.log1p(-u * -np.expm1(-m.mu_per_mm * length)) / m.mu_per_mm
    xy = face[..., :2] + slope_xy * depth[..., None]
    ij = np.clip(np.floor((xy + hw) / m.pitch_mm).astype(np.int64), 0, m.n_side - 1)
    crystal = ij[..., 1] * m.n_side + ij[..., 0]

    # energy deposits: full absorption (maybe shared with a neighbour) or a Compton escape
    full = rng.random((n, 2)) < m.full_absorption_prob
    compton_t = np.interp(rng.random((n, 2)), _KN_CDF, _KN_T)
    ics = full & (rng.random((n, 2)) < m.inter_crystal_prob)
    step = np.array([[1, 0], [-1, 0], [0, 1], [0, -1]])[rng.integers(0, 4, (n, 2))]
    ij2 = ij + step
    inside = np.all((ij2 >= 0) & (ij2 < m.n_side), axis=-1)
    crystal2 = np.where(inside, ij2[..., 1] * m.n_side + ij2[..., 0], crystal)
    e1 = np.where(full & ~ics, _E_GAMMA_KEV, compton_t)
    e2 = np.where(ics & inside, _E_GAMMA_KEV - compton_t, 0.0)
    depth2 = np.clip(depth + rng.normal(0.0, 2.0, (n, 2)), 0.0, length)

    # light sharing onto the SiPMs, then photostatistics and per-channel gains
    share = m.share_matrix()
    eye = np.eye(n_ch)

    def light(cry, d):
        f = (m.own_fraction_front + (m.own_fraction_back - m.own_fraction_front) * d / length)[..., None]
        return f * eye[cry] + (1.0 - f) * share[cry]

    l1 = e1[..., None] * light(crystal, depth)
    l2 = e2[..., None] * light(crystal2, depth2)
    mean_light = l1 + l2
    noise_var = (m.energy_resolution_fwhm / FWHM_PER_SIGMA) ** 2 * _E_GAMMA_KEV
    energy = consts["gain"][None] * np.clip(mean_light + rng.normal(size=mean_light.shape) * np.sqrt(noise_var * mean_light), 0.0, None)
    trig = energy >= m.trigger_threshold_au

    # timestamp components per channel; each channel is timed by the deposit giving it most light
    from_first = l1 >= l2
    src_crystal = np.where(from_first, crystal[..., None], crystal2[..., None])
    src_depth = np.where(from_first, depth[..., None], depth2[..., None])
    doi = src_depth / c_light + m.optical_path_factor * m.n_lyso * (length - src_depth) / c_light
    share_delay = m.share_delay_ps_per_mm * m.channel_distances_mm()[src_crystal, np.arange(n_ch)]
    e_safe = np.where(trig, energy, m.trigger_threshold_au)
    rel = m.walk_reference_au / e_safe
    amplitude = consts["gain"][None] * mean_light * np.exp(m.walk_amplitude_noise * rng.normal(size=energy.shape))
    amplitude = np.maximum(amplitude, 0.5 * m.trigger_threshold_au)
    walk = consts["walk_ps"][None] * (m.walk_reference_au / amplitude) ** m.walk_exponent
    jitter = rng.normal(size=energy.shape) * np.sqrt(m.jitter_electronic_ps**2 + m.jitter_photostat_ps**2 * rel)
    jitter += m.jitter_common_ps * rng.normal(size=(n, 2, 1))
    skew = np.broadcast_to(consts["skew_ps"][None], energy.shape)
    time = gamma_ps[..., None] + doi + share_delay + walk + skew + jitter

    valid = np.all(trig.any(axis=-1), axis=1)
    main = np.argmax(np.where(trig, energy, -1.0), axis=-1)

    def at_main(a):
        return np.take_along_axis(a, main[..., None], axis=-1)[..., 0]

    sel = valid
    out = {
        "time_ps": np.where(trig, time, np.nan)[sel],
        "energy_au": np.where(trig, energy, np.nan).astype(np.float32)[sel],
        "source_mm": np.broadcast_to(src, (n, 3))[sel].copy(),
        "emission_mm": s[sel],
        "crystal": crystal[sel],
        "depth_mm": depth[sel],
        "deposited_kev": (e1 + e2)[sel],
        "inter_crystal": (ics & inside)[sel],
        "main_channel": main[sel],
        "gamma_ps": gamma_ps[sel],
        "doi_ps": at_main(doi)[sel],
        "share_ps": at_main(share_delay)[sel],
        "walk_ps": at_main(walk)[sel],
        "skew_ps": at_main(skew)[sel],
        "jitter_ps": at_main(jitter)[sel],
    }
    out["n_tried_accepted"] = int(sel.sum())
    return out
