"""refsuite.io.nifti: the one NIfTI reader/writer, its axis order, and the ITK displacement field.

Grids here are deliberately not diagonal (axes permuted and flipped, anisotropic voxels, an
offset), so that a swapped axis, a lost sign or a voxel/mm mix-up shows as a wrong value.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pytest

from refsuite.cli import main
from refsuite.io.nifti import (
    as_zyx, check_itk_grid, from_zyx, itk_displacement_image, read_nifti, save_images, volume_image, write_nifti,
    zyx_affine,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]
SHAPE = (10, 12, 14)
# array axis 0 -> world -y (2 mm), axis 1 -> world +x (3 mm), axis 2 -> world +z (1.5 mm)
AFFINE = np.array([[0.0, 3.0, 0.0, -20.0], [-2.0, 0.0, 0.0, 11.0], [0.0, 0.0, 1.5, 4.0], [0.0, 0.0, 0.0, 1.0]])
SPACING = np.array([2.0, 3.0, 1.5])


def _image(shape=SHAPE) -> np.ndarray:
    """A smooth image with no symmetry, so any transpose or flip changes it."""
    g = np.meshgrid(*[np.linspace(0, 1, n) for n in shape], indexing="ij")
    return (1.0 + np.sin(3 * g[0] + 0.5) * np.cos(2 * g[1]) + g[2] ** 2 + 0.3 * g[0] * g[2]).astype(np.float32)


def _ddf(shape=SHAPE) -> np.ndarray:
    """A smooth DDF (3, D, H, W), voxel units, up to about 1.2 voxels, different in each channel."""
    g = np.meshgrid(*[np.linspace(0, np.pi, n) for n in shape], indexing="ij")
    return np.stack([0.9 * np.sin(g[1]) * np.cos(g[2]), -1.2 * np.sin(g[0]) * np.sin(g[2]),
                     0.7 * np.cos(g[0] + g[1])]).astype(np.float32)


def _singular(path) -> None:
    """A NIfTI file whose sform (the affine readers use) has a zero row: no voxel size along y."""
    import nibabel as nib

    hdr = nib.Nifti1Header()
    hdr.set_data_shape(SHAPE)
    hdr.set_data_dtype(np.float32)
    hdr["qform_code"], hdr["sform_code"] = 0, 1
    hdr["srow_x"], hdr["srow_y"], hdr["srow_z"] = [2.0, 0, 0, 0], [0.0, 0, 0, 0], [0.0, 0, 2, 0]
    nib.save(nib.Nifti1Image(_image(), None, header=hdr), str(path))


def _cli(argv) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main([str(a) for a in argv])
    return code, err.getvalue()


# ------------------------------------------------------------------------- reading and writing
@pytest.mark.parametrize("name", ["a.nii", "a.nii.gz"])
def test_round_trip_keeps_axis_order_affine_and_mm(tmp_path, name):
    import nibabel as nib

    img = _image()
    path = write_nifti(tmp_path / name, img, affine=AFFINE)
    data, spacing, affine = read_nifti(path)
    np.testing.assert_array_equal(data, img)  # the array order is the file's: no transpose either way
    np.testing.assert_allclose(affine, AFFINE, atol=1e-5)
    np.testing.assert_allclose(spacing, SPACING, atol=1e-6)
    hdr = nib.load(str(path)).header
    assert hdr.get_xyzt_units()[0] == "mm" and int(hdr["qform_code"]) == int(hdr["sform_code"]) == 1
    # the grid form gives the same file as the explicit affine of the grid
    data2, _, aff2 = read_nifti(write_nifti(tmp_path / ("g" + name), img, voxel_size=(2, 3, 1.5), origin=(1, 2, 3)))
    np.testing.assert_allclose(aff2, [[2, 0, 0, 1], [0, 3, 0, 2], [0, 0, 1.5, 3], [0, 0, 0, 1]])
    np.testing.assert_array_equal(data2, img)


def test_lengths_in_metres_are_read_as_mm(tmp_path):
    import nibabel as nib

    img = nib.Nifti1Image(_image(), np.diag([0.002, 0.003, 0.004, 1.0]))
    img.header.set_xyzt_units(xyz="meter")
    nib.save(img, str(tmp_path / "m.nii"))
    _, spacing, affine = read_nifti(tmp_path / "m.nii")
    np.testing.assert_allclose(spacing, [2.0, 3.0, 4.0], rtol=1e-6)
    np.testing.assert_allclose(np.diag(affine)[:3], [2.0, 3.0, 4.0], rtol=1e-6)


def test_zyx_conversion_and_zyx_affine():
    img = _image()
    zyx, sp = as_zyx(img, SPACING)
    assert zyx.shape == SHAPE[::-1] and zyx[3, 2, 1] == img[1, 2, 3]
    np.testing.assert_allclose(sp, SPACING[::-1])
    np.testing.assert_array_equal(from_zyx(zyx), img)
    aff = zyx_affine([5.0, 2.0, 3.0], origin=(1.0, 2.0, 3.0))  # (nz, ny, nx) array, voxel (z 5, y 2, x 3) mm
    np.testing.assert_allclose(aff @ [1, 0, 0, 1], [1, 2, 8, 1])  # one step along axis 0 = 5 mm along z
    np.testing.assert_allclose(aff @ [0, 0, 1, 1], [4, 2, 3, 1])  # one step along axis 2 = 3 mm along x


def test_no_other_module_reads_or_writes_nifti():
    pattern = re.compile(r"^\s*(import nibabel|from nibabel)", re.M)
    users = sorted(str(p.relative_to(REPO)) for d in ("refsuite", "simulations", "validation")
                   for p in (REPO / d).rglob("*.py") if pattern.search(p.read_text()))
    assert users == ["refsuite/io/nifti.py"], users


def test_one_file_is_read_the_same_way_by_pvc_and_registration(tmp_path):
    """Both commands read through read_nifti; pvc's (nz, ny, nx) is the same voxels transposed once,
    with the voxel sizes along its axes; registration keeps the file's order and spacing."""
    from refsuite.pvc.commands import _read_nifti
    from refsuite.registration.commands import _load

    img = _image()
    path = write_nifti(tmp_path / "one.nii.gz", img, affine=AFFINE)
    vol, zyx, zooms = _read_nifti(str(path), "IN")
    reg, reg_affine = _load(str(path), "--fixed")
    np.testing.assert_array_equal(reg, img)
    np.testing.assert_array_equal(zyx, reg.transpose(2, 1, 0))
    np.testing.assert_allclose(zooms, SPACING[::-1])
    np.testing.assert_allclose(reg_affine, vol.affine)


def test_pvc_correct_writes_the_input_order_back(tmp_path):
    """An anisotropic, non-diagonal grid goes through `pvc correct --method iy` and comes back in
    the file's order on the same affine (a transpose missed on one side would change the shape)."""
    img = np.zeros(SHAPE, np.float32)
    img[3:7, 2:9, 4:11] = 2.0
    labels = (img > 0).astype(np.float32)
    write_nifti(tmp_path / "in.nii.gz", img + 0.1, affine=AFFINE)
    write_nifti(tmp_path / "lab.nii.gz", labels, affine=AFFINE)
    code, err = _cli(["pvc", "correct", tmp_path / "in.nii.gz", tmp_path / "out.nii", "--method", "iy",
                      "--labels", tmp_path / "lab.nii.gz", "--fwhm-mm", "4"])
    assert code == 0, err
    out, _, aff = read_nifti(tmp_path / "out.nii")
    assert out.shape == SHAPE
    np.testing.assert_allclose(aff, AFFINE, atol=1e-5)
    assert out[img > 0].mean() > out[img == 0].mean() > 0  # the region stays where it was in the file


def test_bad_files_raise_value_errors_naming_the_file(tmp_path):
    import nibabel as nib

    good = write_nifti(tmp_path / "good.nii.gz", _image(), affine=AFFINE)
    (tmp_path / "trunc.nii.gz").write_bytes(good.read_bytes()[:200])
    (tmp_path / "text.nii").write_text("not an image")
    nib.save(nib.Nifti1Image(np.ones((4, 4), np.float32), np.eye(4)), str(tmp_path / "flat.nii"))
    nan = _image()
    nan[1, 2, 3] = np.nan
    nib.save(nib.Nifti1Image(nan, AFFINE), str(tmp_path / "nan.nii"))
    _singular(tmp_path / "singular.nii")
    for name, match in [("trunc.nii.gz", "not a readable NIfTI"), ("text.nii", "not a readable NIfTI"),
                        ("flat.nii", "expected a 3-D image"), ("nan.nii", "1 voxels are NaN"),
                        ("singular.nii", "singular"), ("none.nii", "not a readable NIfTI")]:
        with pytest.raises(ValueError, match=match) as info:
            read_nifti(tmp_path / name)
        assert name in str(info.value)
    with pytest.raises(ValueError, match="must end in .nii"):
        write_nifti(tmp_path / "x.nrrd", _image(), affine=AFFINE)
    with pytest.raises(ValueError, match="either affine or voxel_size"):
        write_nifti(tmp_path / "x.nii", _image())


@pytest.mark.parametrize("name", ["singular.nii", "flat.nii", "trunc.nii.gz"])
def test_bad_nifti_is_one_line_for_register_and_pvc(tmp_path, name):
    import nibabel as nib

    good = write_nifti(tmp_path / "good.nii.gz", _image(), affine=AFFINE)
    (tmp_path / "trunc.nii.gz").write_bytes(good.read_bytes()[:300])
    nib.save(nib.Nifti1Image(np.ones((6, 6), np.float32), np.eye(4)), str(tmp_path / "flat.nii"))
    _singular(tmp_path / "singular.nii")
    bad = tmp_path / name
    for argv in (["register", "--fixed", bad, "--moving", good, "--uniform-weight", "1", "--out-warped",
                  tmp_path / "w.nii", "--out-ddf", tmp_path / "d.nii"],
                 ["pvc", "correct", bad, tmp_path / "o.nii", "--method", "iy", "--labels", good, "--fwhm-mm", "5"]):
        code, err = _cli(argv)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and name in lines[0] and "Traceback" not in err, err
    assert not any(p.name.startswith(("w.", "d.", "o.")) for p in tmp_path.iterdir())


def test_save_images_is_all_or_none(tmp_path, monkeypatch):
    import nibabel

    first = write_nifti(tmp_path / "a.nii", _image(), affine=AFFINE)
    before = first.read_bytes()
    save = nibabel.save

    def broken(img, filename, *a, **k):
        if Path(filename).name.startswith(".b.nii"):
            raise OSError(28, "No space left on device")
        return save(img, filename, *a, **k)

    monkeypatch.setattr(nibabel, "save", broken)
    with pytest.raises(OSError, match="No space"):
        save_images({tmp_path / "a.nii": volume_image(2 * _image(), AFFINE),
                     tmp_path / "b.nii": volume_image(_image(), AFFINE)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii"] and first.read_bytes() == before


# ----------------------------------------------------------------- the ITK displacement field
def _warp_ours(moving: np.ndarray, ddf: np.ndarray) -> np.ndarray:
    import torch

    from refsuite.registration import warp

    return warp(torch.as_tensor(moving)[None, None], torch.as_tensor(ddf)[None])[0, 0].numpy()


def _interior(ddf: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Fixed voxels whose mapped position x + ddf(x) stays inside the moving grid (no padding rule)."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij"))
    q = idx + ddf
    return np.all([(q[a] >= margin) & (q[a] <= SHAPE[a] - 1 - margin) for a in range(3)], axis=0)


def test_itk_field_applied_with_nibabel_and_scipy_is_our_warp(tmp_path):
    """Read the ITK file as a plain NIfTI, apply it the way ITK defines it (fixed point p, LPS mm ->
    moving point p + u(p)), sample the moving image there: the warp of our voxel DDF."""
    import nibabel as nib
    from scipy.ndimage import map_coordinates

    moving, ddf = _image(), _ddf()
    save_images({tmp_path / "itk.nii.gz": itk_displacement_image(ddf, AFFINE)})
    f = nib.load(str(tmp_path / "itk.nii.gz"))
    assert f.shape == SHAPE + (1, 3) and int(f.header["intent_code"]) == 1007 and f.header.get_xyzt_units()[0] == "mm"
    u_lps = np.asarray(f.dataobj, np.float64)[:, :, :, 0, :]
    u_ras = u_lps * [-1.0, -1.0, 1.0]
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij"), -1).reshape(-1, 3)
    p = idx @ f.affine[:3, :3].T + f.affine[:3, 3]  # fixed voxel centres, RAS mm
    q = p + u_ras.reshape(-1, 3)  # their images in the moving scan, RAS mm
    vox = (q - AFFINE[:3, 3]) @ np.linalg.inv(AFFINE[:3, :3]).T  # the moving file shares the fixed affine
    theirs = map_coordinates(moving.astype(np.float64), vox.T, order=1, mode="nearest").reshape(SHAPE)
    ours = _warp_ours(moving, ddf)
    inside = _interior(ddf)
    assert inside.mean() > 0.6
    np.testing.assert_allclose(ours[inside], theirs[inside], atol=2e-5)
    # a field written without the RAS -> LPS flip (or in voxels) would move points elsewhere
    assert np.abs(map_coordinates(moving.astype(np.float64), ((p + u_lps.reshape(-1, 3) - AFFINE[:3, 3])
                                                              @ np.linalg.inv(AFFINE[:3, :3]).T).T, order=1,
                                  mode="nearest").reshape(SHAPE) - ours)[inside].max() > 1e-2


def test_itk_field_read_by_simpleitk_transforms_points_and_resamples_as_our_warp(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    moving, ddf = _image(), _ddf()
    save_images({tmp_path / "itk.nii.gz": itk_displacement_image(ddf, AFFINE)})
    write_nifti(tmp_path / "moving.nii.gz", moving, affine=AFFINE)
    field = sitk.ReadImage(str(tmp_path / "itk.nii.gz"))
    assert field.GetNumberOfComponentsPerPixel() == 3 and field.GetSize() == SHAPE
    tx = sitk.DisplacementFieldTransform(sitk.Cast(field, sitk.sitkVectorFloat64))
    lps = np.diag([-1.0, -1.0, 1.0])
    for v in [(0, 0, 0), (2, 5, 7), (9, 11, 13), (4, 1, 10)]:
        p = AFFINE[:3, :3] @ v + AFFINE[:3, 3]
        q = AFFINE[:3, :3] @ (np.array(v) + ddf[(slice(None), *v)]) + AFFINE[:3, 3]  # RAS, mm
        np.testing.assert_allclose(tx.TransformPoint(tuple(lps @ p)), lps @ q, atol=1e-4)
    mov = sitk.ReadImage(str(tmp_path / "moving.nii.gz"))
    resampled = sitk.Resample(mov, field, tx, sitk.sitkLinear, 0.0, sitk.sitkFloat64)
    theirs = sitk.GetArrayFromImage(resampled).transpose(2, 1, 0)  # SimpleITK arrays are (k, j, i)
    inside = _interior(ddf, margin=1e-3)
    np.testing.assert_allclose(_warp_ours(moving, ddf)[inside], theirs[inside], atol=2e-4)


def test_itk_grid_must_not_shear():
    sheared = AFFINE.copy()
    sheared[0, 0] = 1.0
    with pytest.raises(ValueError, match="shears"):
        check_itk_grid(sheared, "grid")
    with pytest.raises(ValueError, match="shears"):
        itk_displacement_image(_ddf(), sheared)
    with pytest.raises(ValueError, match="MONAI layout"):
        itk_displacement_image(_ddf()[:2], AFFINE)


def test_register_writes_the_itk_field_on_the_fixed_grid(tmp_path):
    import nibabel as nib

    fixed = _image((12, 12, 12))
    moving = np.roll(fixed, 1, axis=1)
    aff = AFFINE.copy()
    for name, img in (("f", fixed), ("m", moving)):
        write_nifti(tmp_path / f"{name}.nii.gz", img, affine=aff)
    out = {k: tmp_path / f"{k}.nii.gz" for k in ("w", "d", "i")}
    code, err = _cli(["register", "--fixed", tmp_path / "f.nii.gz", "--moving", tmp_path / "m.nii.gz",
                      "--uniform-weight", "1", "--iterations", "3", "--out-warped", out["w"], "--out-ddf", out["d"],
                      "--out-ddf-itk", out["i"]])
    assert code == 0, err
    ddf_vox = np.moveaxis(np.asarray(nib.load(str(out["d"])).dataobj, np.float64), -1, 0)
    itk = nib.load(str(out["i"]))
    assert np.abs(ddf_vox).max() > 1e-3  # the registration moved something
    np.testing.assert_allclose(itk.affine, aff, atol=1e-5)
    expected = np.einsum("ij,j...->...i", aff[:3, :3], ddf_vox) * [-1.0, -1.0, 1.0]
    np.testing.assert_allclose(np.asarray(itk.dataobj)[:, :, :, 0, :], expected, atol=1e-4)
    sheared = aff.copy()
    sheared[0, 0] = 1.0
    write_nifti(tmp_path / "s.nii.gz", fixed, affine=sheared)
    write_nifti(tmp_path / "sm.nii.gz", moving, affine=sheared)
    code, err = _cli(["register", "--fixed", tmp_path / "s.nii.gz", "--moving", tmp_path / "sm.nii.gz",
                      "--uniform-weight", "1", "--out-warped", tmp_path / "w2.nii", "--out-ddf", tmp_path / "d2.nii",
                      "--out-ddf-itk", tmp_path / "i2.nii"])
    assert code == 2 and "--out-ddf-itk" in err and len(err.strip().splitlines()) == 1, err
