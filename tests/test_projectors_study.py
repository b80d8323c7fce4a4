"""The projectors study turns red on deliberately broken inputs (and is green on correct ones)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import refsuite.projectors as P
from refsuite.report import Section
from validation import projectors as study


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _section():
    return Section(study="projectors", title="t")


def test_adjoint_and_gradient_checks_green_then_red(monkeypatch):
    s = _section()
    study._adjoint_and_gradients(s, np.random.default_rng(0))
    assert s.passed and len(s.checks) == 4
    real_back = P.joseph_back
    # a back projector that is not the adjoint (mirrored image) must be caught
    monkeypatch.setattr(P, "joseph_back", lambda *a, **k: torch.flip(real_back(*a, **k), dims=(0,)))
    real_adjoint = P.JosephOperator.adjoint
    monkeypatch.setattr(P.JosephOperator, "adjoint", lambda self, y: torch.flip(real_adjoint(self, y), dims=(0,)))
    s = _section()
    study._adjoint_and_gradients(s, np.random.default_rng(0))
    failed = {c.name for c in s.checks if not c.passed}
    assert "adjointness <Ax,y> - <x,A^T y> (non-TOF, float64)" in failed
    assert "image gradient vs back projection" in failed


def test_chord_and_tof_sign_checks_red_on_wrong_sign(monkeypatch):
    s = _section()
    study._chord_and_tof_sign(s, np.random.default_rng(0))
    assert s.passed
    real = P.TOFParameters
    # flip the convention behind the study's back: the peak moves to bin -3
    monkeypatch.setattr(P, "TOFParameters", lambda **k: real(**k, sign=P.TOFSign.TOWARDS_XSTART))
    s = _section()
    study._chord_and_tof_sign(s, np.random.default_rng(0))
    assert [c.passed for c in s.checks if c.name.startswith("TOF peak")] == [False]


def test_chord_check_red_on_classic_clipping(monkeypatch):
    """A projector that loses half a voxel at each end (the classic boundary error) fails the oracle."""
    real = P.joseph_forward

    def half_voxel_short(img, xs, xe, **kw):
        out = real(img, xs, xe, **kw)
        return out - 0.5 * (out > 0)

    monkeypatch.setattr(P, "joseph_forward", half_voxel_short)
    s = _section()
    study._chord_and_tof_sign(s, np.random.default_rng(0))
    assert [c.passed for c in s.checks if c.name.startswith("chord")] == [False]


def test_accuracy_checks_red_on_misplaced_phantom(monkeypatch):
    real = P.voxelise_blobs
    monkeypatch.setattr(P, "voxelise_blobs", lambda c, *a, **k: real(c + 1.0, *a, **k))  # 1 mm registration error
    s = _section()
    study._accuracy(s, np.random.default_rng(0), quick=True)
    assert any(not c.passed for c in s.checks if c.name.startswith("blob"))


def test_hot_rod_red_on_misaligned_reconstruction_geometry():
    """MC data of the blueprint reconstructed with a badly misaligned geometry (3 mm, 3 deg per block)
    blurs the 1.5 mm rods together; the honest run is the study's own (green in the quick report)."""
    from refsuite.geometry import perturb, preset

    wrong = perturb(preset("thull_sim"), sigma_t_mm=3.0, sigma_r_deg=3.0, rng=np.random.default_rng(5))
    s = _section()
    study._hot_rod(s, 12349, quick=True, recon_scanner=wrong)
    by_name = {c.name: c for c in s.checks}
    assert by_name["hot-rod PVR, 1.5 mm rods"].passed is False
    assert by_name["hot-rod PVR, 1.5 mm rods"].measured < 1.3
