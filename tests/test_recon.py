"""List-mode OSEM: quantitative recovery on an ideal cylinder, attenuation, efficiencies, scanner adapter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from refsuite.projectors import TOFParameters, joseph_back
from refsuite.recon import (
    angle_subsets,
    attenuation_factors,
    events_to_lors,
    ideal_cylinder_events,
    ideal_cylinder_lors,
    lm_osem,
    lm_osem_lors,
    sensitivity_image,
)

R, H = 60.0, 20.0
SHAPE, VOX = (24, 24, 6), 4.0
ORIGIN = tuple(-(s - 1) / 2 * VOX for s in SHAPE)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


T = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731


def _phantom(rng, n_bg=80_000, ratio=4.0):
    """Uniform cylinder (r 25 mm, |z| < 8 mm) plus a hot sphere (r 8 mm at x = +10 mm), hot/bg = ratio."""
    r = 25 * np.sqrt(rng.random(n_bg))
    a = rng.uniform(0, 2 * np.pi, n_bg)
    bg = np.stack([r * np.cos(a), r * np.sin(a), rng.uniform(-8, 8, n_bg)], 1)
    n_hot = int(n_bg / (np.pi * 25**2 * 16) * (4 / 3 * np.pi * 8**3) * (ratio - 1))
    p = rng.normal(size=(n_hot, 3))
    p *= (8 * rng.random(n_hot) ** (1 / 3) / np.linalg.norm(p, axis=1))[:, None]
    return np.concatenate([bg, p + [10.0, 0, 0]]), n_bg / (np.pi * 25**2 * 16) * VOX**3


def _regions():
    g = [ORIGIN[i] + VOX * np.arange(SHAPE[i]) for i in range(3)]
    x, y, z = np.meshgrid(*g, indexing="ij")
    hot = ((x - 10) ** 2 + y**2 + z**2) < 5**2
    bg = ((x + 10) ** 2 + y**2 < 8**2) & (np.abs(z) < 5)
    return hot, bg


@pytest.fixture(scope="module")
def sensitivity():
    rng = np.random.default_rng(1)
    ss, se, w = ideal_cylinder_lors(400_000, radius_mm=R, half_length_mm=H, fov_radius_mm=50.0,
                                    voxel_volume_mm3=VOX**3, rng=rng)
    return sensitivity_image(T(ss), T(se), image_shape=SHAPE, voxel_size=VOX, origin=ORIGIN, weights=T(w))


@pytest.mark.parametrize("use_tof", [False, True])
def test_lm_osem_recovers_activity_and_contrast(sensitivity, use_tof):
    rng = np.random.default_rng(2)
    pts, bg_truth = _phantom(rng)
    tof = TOFParameters(num_bins=15, bin_width_mm=10.0, sigma_mm=15.9) if use_tof else None
    ev = ideal_cylinder_events(pts, radius_mm=R, half_length_mm=H, rng=rng, tof=tof)
    x = lm_osem_lors(T(ev["xstart"]), T(ev["xend"]), sensitivity=sensitivity, voxel_size=VOX, origin=ORIGIN,
                     n_iter=3, n_subsets=4, tof=tof, tof_bin=T(ev["tof_bin"]) if use_tof else None).numpy()
    hot, bg = _regions()
    # statistical + discretisation tolerances: ~2e4 events per region -> <1% noise; 4 mm voxels blur the 8 mm sphere
    assert x[bg].mean() == pytest.approx(bg_truth, rel=0.06)
    assert x[hot].mean() / x[bg].mean() == pytest.approx(4.0, rel=0.15)
    g = [ORIGIN[i] + VOX * np.arange(SHAPE[i]) for i in range(3)]
    xx, yy = np.meshgrid(g[0], g[1], indexing="ij")
    central = (xx**2 + yy**2) < 34**2  # the phantom (r 25 mm) plus blur, away from the noisy FOV edge
    assert x[central].sum() == pytest.approx(pts.shape[0], rel=0.04)  # the image counts emissions
    # EM keeps the expected number of detected events equal to the observed one (to subset noise)
    assert float((sensitivity.numpy() * x).sum()) == pytest.approx(ev["xstart"].shape[0], rel=0.02)


def test_lm_osem_attenuation_correction(sensitivity):
    """Events thinned by exp(-int mu) are recovered with attenuation factors, and biased low without."""
    rng = np.random.default_rng(3)
    pts, bg_truth = _phantom(rng, n_bg=80_000, ratio=1.0)
    mu = torch.zeros(SHAPE)
    g = [ORIGIN[i] + VOX * np.arange(SHAPE[i]) for i in range(3)]
    xx, yy = np.meshgrid(g[0], g[1], indexing="ij")
    mu[torch.as_tensor((xx**2 + yy**2) < 30**2)] = 0.0096  # water at 511 keV, 1/mm
    grid = dict(voxel_size=VOX, origin=ORIGIN)
    survive = lambda a, b: attenuation_factors(mu, T(a), T(b), **grid).numpy()  # noqa: E731
    ev = ideal_cylinder_events(pts, radius_mm=R, half_length_mm=H, rng=rng, attenuation=survive)
    ss, se, w = ideal_cylinder_lors(300_000, radius_mm=R, half_length_mm=H, fov_radius_mm=50.0,
                                    voxel_volume_mm3=VOX**3, rng=rng)
    w_att = T(w) * attenuation_factors(mu, T(ss), T(se), **grid)
    sens_att = sensitivity_image(T(ss), T(se), image_shape=SHAPE, weights=w_att, **grid)
    xs, xe = T(ev["xstart"]), T(ev["xend"])
    m = attenuation_factors(mu, xs, xe, **grid)
    corrected = lm_osem_lors(xs, xe, sensitivity=sens_att, event_factors=m, n_iter=2, n_subsets=4, **grid).numpy()
    uncorrected = lm_osem_lors(xs, xe, sensitivity=sensitivity, n_iter=2, n_subsets=4, **grid).numpy()
    _, bg = _regions()
    assert corrected[bg].mean() == pytest.approx(bg_truth, rel=0.06)
    assert uncorrected[bg].mean() < 0.8 * bg_truth  # ~ exp(-0.0096 * 50 mm) = 0.62 at the centre


def test_sensitivity_image_is_weighted_back_projection():
    g = np.random.default_rng(4)
    xs, xe = T(g.normal(size=(50, 3)) * 30), T(g.normal(size=(50, 3)) * 30)
    w = T(g.random(50))
    s = sensitivity_image(xs, xe, image_shape=(6, 6, 6), voxel_size=5.0, origin=-12.5, weights=w, chunk_lors=7)
    torch.testing.assert_close(s, joseph_back(w, xs, xe, image_shape=(6, 6, 6), voxel_size=5.0, origin=-12.5),
                               rtol=1e-5, atol=1e-5)


def test_angle_subsets_partition_and_balance():
    g = np.random.default_rng(5)
    phi = g.uniform(0, 2 * np.pi, 4000)
    xs = T(np.stack([np.cos(phi), np.sin(phi), np.zeros_like(phi)], 1) * 50)
    subs = angle_subsets(xs, -xs, 6)
    allidx = torch.sort(torch.cat(subs)).values
    assert torch.equal(allidx, torch.arange(4000))
    sizes = np.array([len(s) for s in subs])
    assert sizes.min() > 0.8 * sizes.mean()
    with pytest.raises(ValueError, match="n_subsets"):
        angle_subsets(xs, -xs, 0)


def _ring_scanner(n_blocks=12, radius=70.0):
    """A small ring of refsuite.geometry.Scanner blocks: 8 x 8 crystal columns at DOI 0."""
    from refsuite.geometry import CrystalLUT, Scanner

    ang = 2 * np.pi * np.arange(n_blocks) / n_blocks
    radial = np.stack([np.cos(ang), np.sin(ang), np.zeros(n_blocks)], 1)
    zax = np.tile([0.0, 0.0, 1.0], (n_blocks, 1))
    xax = np.cross(radial, zax)
    axes = np.stack([xax, radial, zax], 1)  # rows X (planar), Y (DOI, outward), Z; X x Y = Z
    cx, cz = np.meshgrid(np.linspace(-14, 14, 8), np.linspace(-14, 14, 8), indexing="ij")
    centres = np.stack([cx.ravel(), np.zeros(64), cz.ravel()], 1)
    half = np.tile([2.0, 5.0, 2.0], (64, 1))
    return Scanner(positions=radial * (radius + 5.0), axes=axes, block_size=(32.0, 10.0, 32.0),
                   crystals=CrystalLUT(centres, half))


def test_scanner_adapter_events_to_lors():
    sc = _ring_scanner()
    p = sc.crystal_positions(np.array([0, 3]), np.array([0, 63]))
    radial = sc.positions[[0, 3]] / 75.0
    assert np.sum(p * radial, axis=1) == pytest.approx([75.0, 75.0])  # crystal centres at DOI 0
    assert p[:, 2] == pytest.approx([-14.0, 14.0])
    # events given by crystal ids -> crystal centres
    ev = {"BlockID1": np.array([0]), "CrystalID1": np.array([5]), "BlockID2": np.array([6]), "CrystalID2": np.array([5])}
    a, b, ids = events_to_lors(ev, sc)
    assert ids.shape == (1, 4) and np.allclose(a, sc.crystal_positions([0], [5]))
    assert np.allclose(b, sc.crystal_positions([6], [5]))
    # ... or drawn inside the crystal voxels
    a2, _, _ = events_to_lors(ev, sc, lor_placement="crystal_samples", rng=np.random.default_rng(0))
    assert 0 < np.abs(a2 - a).max() and np.all(np.abs(sc.to_local(a2, [0]) - sc.crystals.centres[5]) <= [2, 5, 2])
    with pytest.raises(ValueError, match="xstart"):
        events_to_lors({"foo": np.zeros(3)}, sc)
    with pytest.raises(ValueError, match="do not map to the scanner's crystals: 1 BlockID"):
        events_to_lors(dict(ev, BlockID2=np.array([12])), sc)
    x = lm_osem(ev, sc, image_shape=(4, 4, 4), voxel_size=10.0, n_iter=1, n_subsets=1,
                sensitivity=torch.ones((4, 4, 4)), device="cpu")
    assert x.shape == (4, 4, 4) and float(x.sum()) > 0


def test_lm_osem_with_scanner_recovers_a_hot_spot():
    """End to end through the adapter on thull_sim: a point source at (10, -5, 2) mm reconstructs there."""
    from refsuite.geometry import preset
    from refsuite.mc import simulate
    from refsuite.phantoms import PointSources

    sc = preset("thull_sim")
    ev = simulate(sc, PointSources(np.array([[10.0, -5.0, 2.0]]), radius_mm=1.0, cube_mm=0.0), n_decays=200_000, seed=7)
    ids = {k: ev[k] for k in ("BlockID1", "CrystalID1", "BlockID2", "CrystalID2")}
    shape, vox = (20, 20, 6), 2.0
    x = lm_osem(ids, sc, image_shape=shape, voxel_size=vox, n_iter=2, n_subsets=4, n_sensitivity_lines=500_000,
                seed=1, device="cpu")
    peak = np.unravel_index(int(torch.argmax(x)), x.shape)
    centre = (-(np.array(shape) - 1) / 2 * vox) + vox * np.array(peak)
    assert np.linalg.norm(centre - [10.0, -5.0, 2.0]) <= vox * np.sqrt(3) / 2 + 1e-9
    with pytest.raises(ValueError, match="crystal ids"):
        lm_osem({"xstart": np.zeros((1, 3)), "xend": np.ones((1, 3))}, sc, image_shape=(4, 4, 4), voxel_size=3.0,
                n_iter=1, n_subsets=1, efficiency=np.ones((24, 2880)))


def test_lm_osem_argument_errors(sensitivity):
    xs = torch.zeros((3, 3))
    with pytest.raises(ValueError, match="n_iter"):
        lm_osem_lors(xs, xs + 1, sensitivity=sensitivity, voxel_size=VOX, origin=ORIGIN, n_iter=0, n_subsets=1)
    with pytest.raises(ValueError, match="event_factors"):
        lm_osem_lors(xs, xs + 1, sensitivity=sensitivity, voxel_size=VOX, origin=ORIGIN, n_iter=1, n_subsets=1,
                     event_factors=torch.ones(2))


def test_lm_osem_efficiency_factors_enter_events_and_sensitivity():
    """Efficiencies enter the sensitivity (and cancel in each event's ratio m_i / (m_i A_i x)): the same events
    seen by crystals of efficiency 1/2 (pair factor 1/4) mean 4 times the activity. Events by crystal ids."""
    from refsuite.geometry import preset

    sc = preset("thull_sim")
    rng = np.random.default_rng(9)
    b1 = rng.integers(0, 24, 3000)
    ev = {"BlockID1": b1, "CrystalID1": rng.integers(0, 2880, 3000), "BlockID2": (b1 + 12) % 24,
          "CrystalID2": rng.integers(0, 2880, 3000)}
    kw = dict(image_shape=(12, 12, 6), voxel_size=4.0, n_iter=1, n_subsets=2, n_sensitivity_lines=100_000, seed=3,
              device="cpu")
    plain = lm_osem(ev, sc, **kw)
    halved = lm_osem(ev, sc, efficiency=np.full((24, 2880), 0.5), **kw)
    torch.testing.assert_close(halved, 4.0 * plain, rtol=1e-4, atol=1e-6)
    assert float(plain.sum()) > 0
    # a dead block: its LORs leave the sensitivity, so the image changes
    eff = np.ones((24, 2880))
    eff[0] = 0.0
    dead = lm_osem(ev, sc, efficiency=eff, **kw)
    assert not torch.allclose(dead, plain)
    with pytest.raises(ValueError, match="efficiency"):
        lm_osem(ev, sc, efficiency=np.ones((3, 3)), **kw)


def test_block_sensitivity_drops_lines_with_both_photons_in_one_crystal():
    """Lines of the sensitivity Monte Carlo that graze one block can put both photons in the
    same crystal; at crystal-centre placement that is a zero-length LOR, which the projector
    refuses. The default `refsuite recon` grid on thull_sim at 4 mm met such lines."""
    from refsuite.geometry import preset
    from refsuite.recon import detected_line_sensitivity

    scanner = preset("thull_sim", binning="4mm")
    kw = dict(image_shape=(28, 28, 36), voxel_size=4.0, origin=(-54.0, -54.0, -70.0), n_lines=200_000)
    sens = detected_line_sensitivity(scanner, rng=np.random.default_rng(3), lor_placement="crystal_centres", **kw)
    assert torch.isfinite(sens).all() and float(sens.sum()) > 0
    line = detected_line_sensitivity(scanner, rng=np.random.default_rng(3), lor_placement="line", **kw)
    # both placements estimate the same detected-line density: totals agree to MC/placement noise
    assert float(sens.sum()) == pytest.approx(float(line.sum()), rel=0.1)
