"""`refsuite simulate` -> `refsuite recon` through the CLI alone, and a GATE 9 file through recon.

The recon command must give the image of ``refsuite.recon.lm_osem`` called from Python on the
same file (same default block sensitivity), in emissions per voxel, as NIfTI with the grid's
affine in the scanner frame."""

from __future__ import annotations

import numpy as np
import pytest

from refsuite.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N_DECAYS = 200_000
GRID = ["--voxel", "4", "--shape", "12", "12", "10", "--iterations", "2", "--subsets", "4",
        "--sensitivity-lines", "400000", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("chain")
    out = d / "run.root"
    assert main(["simulate", "--scanner", "thull_sim", "--binning", "4mm", "--phantom", "hotrod", "--no-attenuation",
                 "--n-decays", str(N_DECAYS), "--seed", "5", "--out", str(out), "--no-progress"]) == 0
    return d, out


def test_simulate_then_recon_is_lm_osem(run, capsys):
    import nibabel as nib
    import torch

    from refsuite.geometry import Scanner
    from refsuite.io import read_events
    from refsuite.io.nifti import read_nifti
    from refsuite.recon import lm_osem

    d, out = run
    img_path = d / "img.nii.gz"
    assert main(["recon", str(out), "--scanner", str(d / "run.scanner.json"), "--out", str(img_path), "--npy",
                 *GRID]) == 0
    img, _, aff = read_nifti(img_path)
    assert img.shape == (12, 12, 10)
    np.testing.assert_array_equal(np.load(d / "img.npy"), img)
    assert nib.load(str(img_path)).header.get_xyzt_units()[0] == "mm"
    scanner = Scanner.load(d / "run.scanner.json")
    origin = aff[:3, 3]
    np.testing.assert_allclose(aff[:3, :3], 4.0 * np.eye(3))
    np.testing.assert_allclose(origin[:2], -(12 - 1) / 2 * 4.0)  # centred on the axis
    ref = lm_osem(read_events(out, scanner), scanner, image_shape=(12, 12, 10), voxel_size=4.0, origin=tuple(origin),
                  n_iter=2, n_subsets=4, n_sensitivity_lines=400_000, seed=0, device="cpu")
    torch.testing.assert_close(torch.as_tensor(img), ref.to(torch.float32), rtol=1e-5, atol=1e-3)
    # emissions per voxel with the block sensitivity: the hot-rod phantom lies inside the image, so the
    # image holds about the simulated decays (the ideal-cylinder sensitivity gave ~0.8 of them)
    ratio = float(img.sum()) / N_DECAYS
    assert 0.93 < ratio < 1.07, ratio
    # the activity sits where the affine says: the image's centroid in world mm is the phantom's
    from refsuite.phantoms import HotRod

    idx = np.stack(np.meshgrid(*[np.arange(s) for s in img.shape], indexing="ij"), -1).reshape(-1, 3)
    centroid = aff[:3, :3] @ (idx * img.reshape(-1, 1)).sum(0) / img.sum() + origin
    truth = HotRod().sample(200_000, np.random.default_rng(0)).mean(0)
    assert np.linalg.norm(centroid - truth) < 0.5, (centroid, truth)


def test_recon_reads_gate9_as_the_root_file(run, tmp_path, write_gate9):
    """The simulate output rewritten in GATE 9's layout (s, MeV, globalPos*) reconstructs to the same image
    with crystal ids assigned from the interaction points."""
    from refsuite.io import read_events
    from refsuite.io.nifti import read_nifti

    d, out = run
    path = write_gate9(tmp_path / "gate9.root", read_events(out))
    images = []
    for src in (out, path):
        img = tmp_path / f"{src.stem}.nii"
        assert main(["recon", str(src), "--scanner", str(d / "run.scanner.json"), "--out", str(img),
                     "--crystal-ids", "assign", *GRID]) == 0
        images.append(read_nifti(img)[0])
    np.testing.assert_array_equal(images[0], images[1])
    assert images[0].sum() > 0.9 * N_DECAYS


def test_recon_errors_are_one_line(run, tmp_path, capsys):
    d, out = run
    scanner = str(d / "run.scanner.json")
    cases = [
        (["recon", str(out), "--scanner", scanner, "--out", str(tmp_path / "x.npy")], "expected a file name ending in .nii"),
        (["recon", str(tmp_path / "none.root"), "--scanner", scanner, "--out", str(tmp_path / "x.nii")],
         "none.root': no such file"),
        (["recon", str(out), "--scanner", str(out), "--out", str(tmp_path / "x.nii")], "cannot read scanner"),
        (["recon", str(out), "--scanner", scanner, "--out", str(tmp_path / "x.nii"), "--iterations", "0"],
         "argument --iterations: expected an integer >= 1, got '0'"),
        (["recon", str(out), "--scanner", scanner, "--out", str(tmp_path / "x.nii"), "--voxel", "nan"],
         "argument --voxel: expected a finite number > 0"),
        (["recon", str(d / "run.scanner.json"), "--scanner", scanner, "--out", str(tmp_path / "x.nii")],
         "cannot be read as coincidences"),
        (["recon", str(out), "--scanner", scanner, "--out", str(tmp_path)], "is a directory"),
        (["recon", str(out), "--scanner", scanner, "--out", str(tmp_path / "x.nii"), "--iterations", "100000000"],
         "--iterations 100000000: expected at most 1000"),
        (["recon", str(out), "--scanner", scanner, "--out", str(tmp_path / "x.nii"), "--voxel", "1e-4", "--shape",
          "8", "8", "8"], "--voxel 0.0001: expected at least 0.01 mm"),
    ]
    for argv, msg in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert msg in err and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert not any(p.name.startswith("x.") for p in tmp_path.iterdir())


def test_recon_refuses_an_image_no_line_crosses(run, tmp_path, capsys):
    """Interaction points in another frame (here 1 m off along x, as from a file in other units or
    another scanner's frame) with --lor-placement line: no line crosses the image; one line, exit 2."""
    from refsuite.io import read_events, save_listmode

    d, out = run
    ev = read_events(out)
    for k in ("PostPosition_X1", "PostPosition_X2"):
        ev[k] = np.asarray(ev[k]) + 1000.0
    save_listmode(tmp_path / "far.npz", ev)
    argv = ["recon", str(tmp_path / "far.npz"), "--scanner", str(d / "run.scanner.json"), "--lor-placement", "line",
            "--out", str(tmp_path / "x.nii"), *GRID]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "is crossed by none of the" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "x.nii").exists()

