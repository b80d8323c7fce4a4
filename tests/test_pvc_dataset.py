"""Phantoms and the chunked, resumable, seeded dataset writer; the CLI round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import ndimage

from refsuite.pvc import DatasetConfig, load_dataset, simulate_dataset
from refsuite.pvc.phantoms import MU_208KEV_PER_MM, BodyRegion, activity_distribution, attenuation_map, random_shape

TINY = DatasetConfig(shape=(8, 16, 16), n_views=8, time_per_view_s=450.0, recons=("RR", "noRR"))


@given(st.integers(1, 100), st.integers(0, 2**32 - 1))
@settings(max_examples=40, deadline=None)
def test_random_shape_is_connected_with_exact_size(n, seed):
    pts = random_shape(n, np.random.default_rng(seed))
    assert len(np.unique(pts, axis=0)) == n
    grid = np.zeros(tuple(np.ptp(pts, 0) + 1), bool)
    grid[tuple((pts - pts.min(0)).T)] = True
    assert ndimage.label(grid)[1] == 1


@pytest.mark.parametrize("region", list(BodyRegion))
def test_attenuation_map_and_activity(region):
    rng = np.random.default_rng(5)
    mu, reg = attenuation_map((16, 32, 32), 4.8, region=region, rng=rng)
    assert reg is region and set(np.unique(mu)) <= set(MU_208KEV_PER_MM.values())
    assert (mu > 0).mean() > 0.05 and not (mu[:, 0, :] > 0).any()  # body inside the field of view
    if region is BodyRegion.THORAX:
        assert (mu == MU_208KEV_PER_MM["lung"]).any()
    truth = activity_distribution(mu, 4.8, rng=rng, active_fraction=0.05, mean_concentration_kbq_ml=200.0)
    assert not (truth.mask & (mu == 0)).any()
    assert truth.active_fraction >= 0.05 and truth.concentration_kbq_ml[truth.mask].mean() == pytest.approx(200.0)
    assert truth.total_activity_mbq == pytest.approx(truth.concentration_kbq_ml.sum() * 0.48**3 / 1000)


def test_dataset_is_chunked_resumable_and_seeded(tmp_path):
    path = simulate_dataset(tmp_path / "a", 3, config=TINY, seed=7, chunk_size=2, progress=False)
    manifest = json.loads(path.read_text())
    assert sorted(manifest["chunks"]) == ["00000", "00001"] and manifest["units"]["truth"] == "kBq/mL"
    mtime = (tmp_path / "a" / "chunk_00000.npz").stat().st_mtime_ns
    simulate_dataset(tmp_path / "a", 3, config=TINY, seed=7, chunk_size=2, progress=False)  # nothing left to do
    assert (tmp_path / "a" / "chunk_00000.npz").stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match="holds a different dataset"):
        simulate_dataset(tmp_path / "a", 3, config=TINY, seed=8, chunk_size=2, progress=False)
    data = load_dataset(tmp_path / "a")
    assert data["truth"].shape == (3, 8, 16, 16) and set(data) >= {"RR_n", "RR_nf", "noRR_n", "noRR_nf", "mask"}
    # an "interrupted" run: drop the last chunk from the manifest, resume recomputes it identically
    del manifest["chunks"]["00001"]
    path.write_text(json.dumps(manifest))
    simulate_dataset(tmp_path / "a", 3, config=TINY, seed=7, chunk_size=2, progress=False)
    again = load_dataset(tmp_path / "a")
    assert all(np.array_equal(data[k], again[k]) for k in ("truth", "RR_n", "noRR_nf"))
    # case 2 does not depend on the chunking
    single = load_dataset(simulate_dataset(tmp_path / "b", 3, config=TINY, seed=7, chunk_size=3, progress=False))
    assert np.array_equal(single["truth"][2], data["truth"][2])
    assert np.allclose(single["RR_n"][2], data["RR_n"][2], rtol=1e-4, atol=1e-3)
    # noise-free RR keeps the total activity; Poisson noise is there
    nf, n, t = data["RR_nf"].sum((1, 2, 3)), data["RR_n"].sum((1, 2, 3)), data["truth"].sum((1, 2, 3))
    assert np.allclose(nf, t, rtol=0.05) and not np.allclose(n, nf, rtol=1e-4)


def main(argv):
    """``refsuite pvc ...`` through the command's error path (exit status 2 for bad input)."""
    from refsuite.cli import main as cli_main

    return cli_main(argv)


def test_cli_correct_keeps_affine_and_rejects_mismatch(tmp_path):
    import nibabel as nib

    rng = np.random.default_rng(0)
    img = np.zeros((16, 16, 8), np.float32)
    img[4:10, 5:11, 2:6] = rng.uniform(1, 2, (6, 6, 4))
    affine = np.diag([4.8, 4.8, 4.8, 1.0])
    affine[:3, 3] = [-30.0, 12.0, 5.0]
    nib.save(nib.Nifti1Image(img, affine), tmp_path / "in.nii.gz")
    labels = (img > 0).astype(np.int16)
    nib.save(nib.Nifti1Image(labels, affine), tmp_path / "lab.nii.gz")
    assert main(["pvc", "correct", str(tmp_path / "in.nii.gz"), str(tmp_path / "out.nii.gz"), "--method", "iy",
                 "--labels", str(tmp_path / "lab.nii.gz"), "--fwhm-mm", "9"]) == 0
    out = nib.load(tmp_path / "out.nii.gz")
    assert np.allclose(out.affine, affine) and out.shape == img.shape
    assert np.asarray(out.dataobj)[img > 0].mean() > img[img > 0].mean()  # activity folded back into the mask
    shifted = affine.copy()
    shifted[0, 3] += 4.8
    nib.save(nib.Nifti1Image(labels, shifted), tmp_path / "lab2.nii.gz")
    assert main(["pvc", "correct", str(tmp_path / "in.nii.gz"), str(tmp_path / "o2.nii.gz"), "--method", "iy",
                 "--labels", str(tmp_path / "lab2.nii.gz"), "--fwhm-mm", "9"]) == 2
    assert not (tmp_path / "o2.nii.gz").exists()
    assert main(["pvc", "correct", str(tmp_path / "in.nii.gz"), str(tmp_path / "o3.nii.gz"), "--method", "iy",
                 "--labels", str(tmp_path / "lab.nii.gz"), "--fwhm-mm", "-2"]) == 2
    bad = img.copy()
    bad[5, 6, 3] = np.nan
    nib.save(nib.Nifti1Image(bad, affine), tmp_path / "nan.nii.gz")
    assert main(["pvc", "correct", str(tmp_path / "nan.nii.gz"), str(tmp_path / "o4.nii.gz"), "--method", "iy",
                 "--labels", str(tmp_path / "lab.nii.gz"), "--fwhm-mm", "9"]) == 2
    assert not (tmp_path / "o4.nii.gz").exists()


def test_cli_simulate_train_evaluate_correct(tmp_path, capsys):
    import nibabel as nib
    from scipy.ndimage import correlate1d

    assert main(["pvc", "simulate", "--out", str(tmp_path / "ds"), "--cases", "2", "--quick", "--chunk-size", "2",
                 "--seed", "3"]) == 0
    assert main(["pvc", "train", "--data", str(tmp_path / "ds"), "--out", str(tmp_path / "m.pt"), "--features", "2,4",
                 "--epochs", "1", "--inputs", "RR_n", "--checkpoint-dir", str(tmp_path / "ck")]) == 0
    capsys.readouterr()
    assert main(["pvc", "evaluate", "--data", str(tmp_path / "ds"), "--model", str(tmp_path / "m.pt"),
                 "--fwhm-mm", "8"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_cases"] == 2 and set(report["mean"]) == {"none", "IY-PVC", "DL-PVC"}
    assert report["mean"]["DL-PVC"]["ad_pct"] == pytest.approx(report["mean"]["none"]["ad_pct"], abs=1e-6)
    p = report["wilcoxon_p_dl_vs"]
    assert set(p) == {"none", "IY-PVC"} and all(0 < v <= 1 for d in p.values() for v in d.values())
    image = load_dataset(tmp_path / "ds")["RR_n"][0].transpose(2, 1, 0)
    nib.save(nib.Nifti1Image(image, np.diag([4.8, 4.8, 4.8, 1.0])), tmp_path / "spect.nii")
    assert main(["pvc", "correct", str(tmp_path / "spect.nii"), str(tmp_path / "dl.nii"), "--model",
                 str(tmp_path / "m.pt")]) == 0
    out = np.asarray(nib.load(tmp_path / "dl.nii").dataobj)
    assert out.shape == image.shape and out.sum() == pytest.approx(image.sum(), rel=1e-5)
    # the same image on 2.4 mm voxels (each voxel split in 8): refused, or corrected on the model's 4.8 mm grid
    fine = image.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    fine_affine = np.diag([2.4, 2.4, 2.4, 1.0])
    fine_affine[:3, 3] = -1.2  # the fine voxels' centres inside the coarse voxels
    nib.save(nib.Nifti1Image(fine, fine_affine), tmp_path / "fine.nii")
    capsys.readouterr()
    assert main(["pvc", "correct", str(tmp_path / "fine.nii"), str(tmp_path / "f.nii"), "--model",
                 str(tmp_path / "m.pt")]) == 2
    assert "--resample" in capsys.readouterr().err and not (tmp_path / "f.nii").exists()
    assert main(["pvc", "correct", str(tmp_path / "fine.nii"), str(tmp_path / "f.nii"), "--model",
                 str(tmp_path / "m.pt"), "--resample"]) == 0
    assert "resampled IN from 2.4 x 2.4 x 2.4 mm to the model's 4.8 mm" in capsys.readouterr().out
    f = nib.load(tmp_path / "f.nii")
    assert f.shape == fine.shape and np.allclose(f.affine, fine_affine)
    f = np.asarray(f.dataobj)
    assert f.sum() / 8 == pytest.approx(out.sum(), rel=0.03)  # activity kept (2.4^3 = 4.8^3 / 8)
    coarse = f.reshape(out.shape[0], 2, out.shape[1], 2, out.shape[2], 2).mean((1, 3, 5))
    # The 2x2x2 blocks of the fine grid are the model's voxels, so the network saw the native image
    # and returned the native correction; trilinear upsampling puts each fine voxel a quarter of a
    # voxel from its block's centre (weights 3/4, 1/4), so a block's mean is the native output
    # filtered by (1/8, 3/4, 1/8) along each axis (edges held).
    expected = out.astype(float)
    for axis in range(3):
        expected = correlate1d(expected, [0.125, 0.75, 0.125], axis=axis, mode="nearest")
    assert np.abs(coarse - expected).sum() / out.sum() < 1e-4
    assert np.abs(coarse - expected[::-1]).sum() / out.sum() > 0.1  # a flipped axis would show
    assert main(["pvc", "train", "--data", str(tmp_path / "ds"), "--out", str(tmp_path / "x.pt"),
                 "--inputs", "nope", "--epochs", "1", "--features", "2,4"]) == 2
