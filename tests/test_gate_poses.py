"""Block placements handed to Geant4 (no opengate import): for any misalignment, a local point
placed as Geant4 does (``R l + t``) lands where the Scanner puts it (``P + l @ A``)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from refsuite.geometry import perturb, preset
from simulations.gate import block_poses


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), sigma_t=st.floats(0.0, 5.0), sigma_r=st.floats(0.0, 20.0),
       name=st.sampled_from(["thull_sim", "thull_halfrings", "lin_clinical"]))
def test_geant4_placement_equals_scanner_frame(seed, sigma_t, sigma_r, name):
    rng = np.random.default_rng(seed)
    # any pose, overlapping or not (no clear draw exists for lin_clinical at these sigmas)
    scan = perturb(preset(name), sigma_t_mm=sigma_t, sigma_r_deg=sigma_r, rng=rng, min_clearance_mm=None)
    t, r = block_poses(scan)
    local = rng.uniform(-1, 1, (scan.n_blocks, 3)) * scan.block_size / 2
    world = np.einsum("bij,bj->bi", r, local) + t
    assert np.abs(world - scan.to_global(local, np.arange(scan.n_blocks))).max() <= 1e-9
    # proper rotations: Geant4 needs det = +1 and orthonormal matrices
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-12)
    np.testing.assert_allclose(r @ np.swapaxes(r, 1, 2), np.broadcast_to(np.eye(3), r.shape), atol=1e-12)
