"""The compiled (numba) CPU kernel of the Joseph projector against the torch path (the reference):
agreement, adjointness, gradients of the autograd Functions, TOF sign, threads, dispatch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refsuite._threads import limited_threads
from refsuite.projectors import (
    JosephOperator,
    TOFParameters,
    TOFSign,
    chord_length,
    joseph_back,
    joseph_forward,
    joseph_forward_all_bins,
)
from refsuite.projectors import _cpu_kernel

F64 = torch.float64

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.skipif(not _cpu_kernel.numba_available(), reason="numba not importable")]


def _box(shape, vs, origin):
    vs_t, org = torch.tensor(vs, dtype=F64), torch.tensor(origin, dtype=F64)
    return org - vs_t / 2, org + (torch.tensor(shape, dtype=F64) - 0.5) * vs_t


def _lors(rng, lo, hi, n):
    """Through the box, starting/ending inside, missing it, axis-parallel (through the box, in a
    face plane, outside), lying in a face plane, and LORs along the box diagonal."""
    lo, hi = lo.numpy(), hi.numpy()
    centre, half = (lo + hi) / 2, (hi - lo) / 2
    far = rng.normal(size=(n, 3)) * 3 * half.max() + centre
    inside = rng.uniform(lo, hi, size=(n, 3))
    near = rng.uniform(lo - half, hi + half, size=(n, 3))
    miss = far + np.sign(far - centre) * 10 * half.max()  # both ends far out on the same side
    xs = [far, inside, near, miss]
    xe = [2 * centre - far + rng.normal(size=(n, 3)) * half, far, inside, miss + rng.normal(size=(n, 3))]
    axis = rng.integers(0, 3, n)
    rows = np.arange(n)
    for offset in ("inside", "face", "outside"):  # axis-parallel LORs
        s = rng.uniform(lo, hi, size=(n, 3))
        other = (axis + 1) % 3
        if offset == "face":
            s[rows, other] = np.where(rng.random(n) < 0.5, lo[other], hi[other])
        elif offset == "outside":
            s[rows, other] = hi[other] + 0.5 * half[other] + 1.0
        e = s.copy()
        s[rows, axis] = lo[axis] - 3.0
        e[rows, axis] = hi[axis] + 3.0
        xs.append(s)
        xe.append(e)
    g = rng.uniform(lo, hi, size=(n, 3))  # in a face plane, oblique
    g[rows, axis] = lo[axis]
    ge = g + rng.normal(size=(n, 3)) * half.max() * 4
    ge[rows, axis] = lo[axis]
    xs += [g, lo[None, :] - 1.0]
    xe += [ge, hi[None, :] + 1.0]
    xs, xe = np.concatenate(xs), np.concatenate(xe)
    keep = np.any(xs != xe, axis=1)
    return torch.as_tensor(xs[keep]), torch.as_tensor(xe[keep])


geometries = st.tuples(
    st.tuples(*[st.integers(1, 9)] * 3),
    st.tuples(*[st.floats(0.5, 3.0)] * 3),
    st.tuples(*[st.floats(-10.0, 10.0)] * 3),
    st.integers(0, 2**31 - 1),
)


def _tof_kw(rng, n, sign=TOFSign.TOWARDS_XEND):
    tof = TOFParameters(num_bins=7, bin_width_mm=1.5, sigma_mm=2.0, n_sigmas=2.5, sign=sign)
    return dict(tof=tof, tof_bin=torch.as_tensor(rng.integers(-3, 4, n), dtype=F64),
                tof_offset=torch.as_tensor(rng.normal(0.0, 1.0, n), dtype=F64))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(geometries, st.sampled_from(["non-TOF", "TOF+", "TOF-"]))
def test_kernel_matches_torch_path_float64(geometry, mode):
    """Forward and back projections of both paths agree to 1e-11 relative (float64 rounding; the
    TOF kernel's erf table adds < 1e-13), on LORs hitting, missing and grazing the box."""
    shape, vs, origin, seed = geometry
    rng = np.random.default_rng(seed)
    xs, xe = _lors(rng, *_box(shape, vs, origin), 12)
    kw = dict(voxel_size=vs, origin=origin)
    if mode != "non-TOF":
        kw.update(_tof_kw(rng, xs.shape[0], TOFSign.TOWARDS_XEND if mode == "TOF+" else TOFSign.TOWARDS_XSTART))
    img = torch.as_tensor(rng.random(shape))
    fk = joseph_forward(img, xs, xe, backend="numba", **kw)
    ft = joseph_forward(img, xs, xe, backend="torch", **kw)
    assert (ft != 0).any() and (ft == 0).any()  # the mix does hit and miss the box
    torch.testing.assert_close(fk, ft, rtol=1e-11, atol=1e-11 * float(ft.abs().max()))
    y = torch.as_tensor(rng.normal(size=xs.shape[0]))
    bk = joseph_back(y, xs, xe, image_shape=shape, backend="numba", **kw)
    bt = joseph_back(y, xs, xe, image_shape=shape, backend="torch", **kw)
    torch.testing.assert_close(bk, bt, rtol=1e-11, atol=1e-11 * float(bt.abs().max()))


def test_kernel_chord_oracle_and_axis_parallel_cases():
    """Uniform image -> exact chord length (incl. axis-parallel and in-face LORs), kernel path."""
    shape, vs, origin = (7, 5, 6), (1.3, 0.7, 2.1), (-3.0, 1.0, 0.5)
    lo, hi = _box(shape, vs, origin)
    xs, xe = _lors(np.random.default_rng(5), lo, hi, 50)
    proj = joseph_forward(torch.ones(shape, dtype=F64), xs, xe, voxel_size=vs, origin=origin, backend="numba")
    ref = chord_length(xs, xe, box_low=lo, box_high=hi)
    assert torch.max(torch.abs(proj - ref)).item() <= 1e-9 * ref.max().item()


def test_kernel_matches_torch_path_float32_benchmark_geometry():
    """float32 on the BENCHMARKS.md geometry (scaled): agreement to float32 rounding (1e-5 relative)."""
    from refsuite.projectors.workloads import BENCHMARK_TOF, benchmark_image_geometry, cylinder_lors

    shape, vs, origin = benchmark_image_geometry(40, 5.0)
    xs, xe, tb = cylinder_lors(3000, rng=np.random.default_rng(1))
    img = torch.rand(shape, generator=torch.Generator().manual_seed(2))
    for kw in ({}, dict(tof=BENCHMARK_TOF, tof_bin=tb)):
        fk = joseph_forward(img, xs, xe, voxel_size=vs, origin=origin, backend="numba", **kw)
        ft = joseph_forward(img, xs, xe, voxel_size=vs, origin=origin, backend="torch", **kw)
        assert fk.dtype == torch.float32
        torch.testing.assert_close(fk, ft, rtol=1e-5, atol=1e-5 * float(ft.max()))
        bk = joseph_back(ft, xs, xe, image_shape=shape, voxel_size=vs, origin=origin, backend="numba", **kw)
        bt = joseph_back(ft, xs, xe, image_shape=shape, voxel_size=vs, origin=origin, backend="torch", **kw)
        torch.testing.assert_close(bk, bt, rtol=1e-5, atol=1e-5 * float(bt.max()))


def test_degenerate_lor_rejected_by_both_paths():
    img = torch.ones((3, 3, 3), dtype=F64)
    xs = torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]], dtype=F64)
    xe = torch.tensor([[5.0, 0.0, 0.0], [1.0, 2.0, 3.0]], dtype=F64)
    for backend in ("numba", "torch"):
        with pytest.raises(ValueError, match="differ"):
            joseph_forward(img, xs, xe, voxel_size=1.0, origin=0.0, backend=backend)
        with pytest.raises(ValueError, match="differ"):
            joseph_back(torch.ones(2, dtype=F64), xs, xe, image_shape=(3, 3, 3), voxel_size=1.0, origin=0.0,
                        backend=backend)


@settings(max_examples=20, deadline=None)
@given(geometries, st.booleans())
def test_kernel_adjointness_property(geometry, use_tof):
    """<A x, y> = <x, A^T y> for the kernel, to 1e-12 relative in float64."""
    shape, vs, origin, seed = geometry
    rng = np.random.default_rng(seed)
    xs, xe = _lors(rng, *_box(shape, vs, origin), 10)
    kw = _tof_kw(rng, xs.shape[0]) if use_tof else {}
    op = JosephOperator(xs, xe, image_shape=shape, voxel_size=vs, origin=origin, backend="numba", **kw)
    assert op.adjointness_error(seed=seed) <= 1e-12


@pytest.mark.parametrize("sort", [True, False], ids=["locality-sorted", "input-order"])
def test_kernel_adjointness_float32_with_two_threads(monkeypatch, sort):
    """Two threads: still the adjoint (float32 rounding), and the back projection is identical bit
    for bit to one thread's (each thread owns a slab of x planes and adds the LORs in the same
    order), also for more slabs than threads, with the slab bounds moving from part to part of
    the LORs (parts of 777 LORs here) and LORs of value 0 skipped."""
    from refsuite.projectors import _joseph_numba, _locality
    from refsuite.projectors.workloads import BENCHMARK_TOF, benchmark_image_geometry, cylinder_lors

    monkeypatch.setattr(_locality, "SORT_MIN_VOXELS", 0 if sort else 10**12)
    monkeypatch.setattr(_joseph_numba, "PART", 777)

    shape, vs, origin = benchmark_image_geometry(30, 6.0)
    xs, xe, _ = cylinder_lors(6000, rng=np.random.default_rng(4))
    op = JosephOperator(xs, xe, image_shape=shape, voxel_size=vs, origin=origin, backend="numba")
    y = torch.rand(xs.shape[0], generator=torch.Generator().manual_seed(0))
    y[::10] = 0.0
    with limited_threads(2):
        assert op.adjointness_error(dtype=torch.float32) <= 1e-5
        two = op.adjoint(y)
    one = op.adjoint(y)
    assert torch.equal(two, one)
    k = _cpu_kernel.load_kernels()
    tb = torch.as_tensor(np.random.default_rng(5).integers(-5, 6, xs.shape[0]), dtype=torch.float32)
    for tof in (None, BENCHMARK_TOF):
        ref = joseph_back(y, xs, xe, image_shape=shape, voxel_size=vs, origin=origin, backend="numba", tof=tof,
                          tof_bin=tb if tof else None).numpy().reshape(-1)
        g = _cpu_kernel._geometry(xs, xe, vs, origin, tof, tb if tof else None, None, torch.float32)
        for n_slabs in (2, 3, 7, 30):
            out = np.zeros(one.numel(), np.float32)
            k.back(y.numpy(), np.asarray(shape, np.int64), *g.args(), out, n_slabs)
            assert np.array_equal(out, ref), (tof, n_slabs)


@pytest.mark.parametrize("use_tof", [False, True])
def test_kernel_batches_stream_in_global_locality_order(monkeypatch, use_tof):
    """Tiny batches (many groups, and bins holding more LORs than a batch) give the same
    projections, bit for bit, as one batch: the LORs are processed in the same global order."""
    from refsuite.projectors import _locality
    from refsuite.projectors.workloads import BENCHMARK_TOF, benchmark_image_geometry, cylinder_lors

    shape, vs, origin = benchmark_image_geometry(20, 8.0)
    xs, xe, tb = cylinder_lors(3000, rng=np.random.default_rng(6))
    kw = dict(voxel_size=vs, origin=origin, backend="numba", **(dict(tof=BENCHMARK_TOF, tof_bin=tb) if use_tof else {}))
    img = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    y = torch.rand(xs.shape[0], generator=torch.Generator().manual_seed(2))
    monkeypatch.setattr(_locality, "SORT_MIN_VOXELS", 0)  # sort even this small image
    whole = joseph_forward(img, xs, xe, **kw), joseph_back(y, xs, xe, image_shape=shape, **kw)
    batches = []
    real = _locality._collect
    monkeypatch.setattr(_locality, "_collect", lambda *a: batches.append(real(*a)) or batches[-1])
    monkeypatch.setattr(_locality, "CHUNK", 7)
    monkeypatch.setattr(_locality, "MAX_SCANS", 10**9)
    with limited_threads(2):
        small = joseph_forward(img, xs, xe, **kw), joseph_back(y, xs, xe, image_shape=shape, **kw)
    assert len(batches) > 2 * 3000 // 7 and max(batches) == 7 and sum(batches) == 2 * 3000  # every LOR once
    assert torch.equal(small[0], whole[0]) and torch.equal(small[1], whole[1])


@pytest.mark.parametrize("use_tof", [False, True])
def test_kernel_autograd_functions_gradcheck(use_tof):
    """gradcheck of the kernel's autograd Functions (image for forward, values for back), and
    second order (the backward of each is the other kernel)."""
    rng = np.random.default_rng(3)
    shape, vs, origin = (4, 5, 3), (1.5, 1.2, 2.0), (-2.25, -2.4, -2.0)
    xs, xe = _lors(rng, *_box(shape, vs, origin), 2)
    kw = dict(voxel_size=vs, origin=origin, backend="numba", **(_tof_kw(rng, xs.shape[0]) if use_tof else {}))
    img = torch.rand(shape, dtype=F64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    fwd = lambda im: joseph_forward(im, xs, xe, **kw)  # noqa: E731
    assert torch.autograd.gradcheck(fwd, (img,))
    assert torch.autograd.gradgradcheck(fwd, (img,))
    y = torch.rand(xs.shape[0], dtype=F64, requires_grad=True)
    bwd = lambda v: joseph_back(v, xs, xe, image_shape=shape, **kw)  # noqa: E731
    assert torch.autograd.gradcheck(bwd, (y,))
    # the image gradient is the back projection of the output gradient, as for the torch path
    g, = torch.autograd.grad((fwd(img) * y).sum(), img)
    gt, = torch.autograd.grad((joseph_forward(img, xs, xe, **{**kw, "backend": "torch"}) * y).sum(), img)
    torch.testing.assert_close(g, gt, rtol=1e-11, atol=1e-12)


def test_end_point_gradients_fall_back_to_the_torch_path(monkeypatch):
    """``auto`` uses the kernel for CPU float tensors; with end points requiring grad it uses the
    torch path (gradients identical to backend='torch'), also when 'numba' is asked for."""
    calls = []
    real = _cpu_kernel.kernel_forward
    monkeypatch.setattr(_cpu_kernel, "kernel_forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    xs = torch.tensor([[-30.0, 0.4, 0.0]], dtype=F64)
    xe = torch.tensor([[30.0, 0.4, 0.3]], dtype=F64)
    img = torch.zeros((21, 21, 3), dtype=F64)
    img[10, 10, :] = 1.0
    kw = dict(voxel_size=1.0, origin=(-10.0, -10.0, -1.0))
    joseph_forward(img, xs, xe, **kw)
    assert len(calls) == 1
    joseph_forward(img.to(torch.float16), xs, xe, **kw)  # not a kernel dtype: torch path
    assert len(calls) == 1
    grads = []
    for backend in ("auto", "numba", "torch"):
        a, b = xs.clone().requires_grad_(True), xe.clone().requires_grad_(True)
        joseph_forward(img, a, b, backend=backend, **kw).sum().backward()
        grads.append(torch.cat([a.grad, b.grad]))
    assert len(calls) == 1
    assert grads[0][0, 1] < 0  # the physical gradient (towards the line source)
    torch.testing.assert_close(grads[0], grads[2])
    torch.testing.assert_close(grads[1], grads[2])


@pytest.mark.parametrize("sign", list(TOFSign))
def test_kernel_tof_sign_point_source(sign):
    """A point source 30 mm from the midpoint towards xend peaks in bin +3 (TOWARDS_XEND) / -3;
    a kernel with the sign flipped would peak in the mirrored bin and fail this test."""
    shape, vs, origin = (81, 9, 9), 1.0, (-40.0, -4.0, -4.0)
    img = torch.zeros(shape, dtype=F64)
    img[70, 4, 4] = 1.0  # x = +30 mm
    tof = TOFParameters(num_bins=11, bin_width_mm=10.0, sigma_mm=6.0, n_sigmas=3.0, sign=sign)
    xs = torch.tensor([[-100.0, 0.2, -0.1]], dtype=F64)
    xe = torch.tensor([[100.0, -0.1, 0.3]], dtype=F64)
    kw = dict(voxel_size=vs, origin=origin, tof=tof)
    prof = joseph_forward_all_bins(img, xs, xe, backend="numba", **kw)[0]
    assert tof.bin_indices[int(torch.argmax(prof))].item() == (3.0 if sign is TOFSign.TOWARDS_XEND else -3.0)
    torch.testing.assert_close(prof, joseph_forward_all_bins(img, xs, xe, backend="torch", **kw)[0],
                               rtol=1e-11, atol=1e-14)
    swapped = joseph_forward_all_bins(img, xe, xs, backend="numba", **kw)[0]
    torch.testing.assert_close(swapped, torch.flip(prof, dims=(0,)), rtol=1e-9, atol=1e-14)
    # back projection of one event in bin +3 puts the most weight near the source side
    b = joseph_back(torch.ones(1, dtype=F64), xs, xe, image_shape=shape, backend="numba",
                    tof_bin=torch.tensor([3.0], dtype=F64), **kw)
    peak_x = origin[0] + int(torch.argmax(b.sum(dim=(1, 2))))
    assert peak_x == pytest.approx(30.0 if sign is TOFSign.TOWARDS_XEND else -30.0, abs=2.0)


def test_backend_argument_is_checked():
    xs = torch.tensor([[-5.0, 0.0, 0.0]], dtype=F64)
    xe = torch.tensor([[5.0, 0.0, 0.0]], dtype=F64)
    with pytest.raises(ValueError, match="backend"):
        joseph_forward(torch.ones((3, 3, 3), dtype=F64), xs, xe, voxel_size=1.0, origin=0.0, backend="cuda")
    with pytest.raises(ValueError, match="backend='numba'"):
        joseph_forward(torch.ones((3, 3, 3), dtype=torch.float16), xs, xe, voxel_size=1.0, origin=0.0,
                       backend="numba")
    with pytest.raises(ValueError, match="values"):
        joseph_back(torch.ones(2, dtype=F64), xs, xe, image_shape=(3, 3, 3), voxel_size=1.0, origin=0.0,
                    backend="numba")


def test_memory_reference_counts_touches_and_checks_arguments():
    """The bandwidth reference of the projector study: 4 voxel touches per Joseph sample (an
    x-parallel LOR through 7 planes, an oblique one through 7 + a partial plane at each end, a
    miss), and its timing function rejects bad arguments before any work."""
    from refsuite.projectors._membench import gather_scatter_seconds, voxel_touches

    img = torch.zeros((7, 5, 6), dtype=torch.float32)
    kw = dict(voxel_size=1.0, origin=0.0)
    along_x = voxel_touches(img, torch.tensor([[-3.0, 2.0, 2.0]]), torch.tensor([[9.0, 2.0, 2.0]]), **kw)
    assert along_x == 4 * 7
    miss = voxel_touches(img, torch.tensor([[-3.0, 20.0, 2.0]]), torch.tensor([[9.0, 20.0, 2.0]]), **kw)
    assert miss == 0
    # ends inside planes 1 and 5 (x = 1.2 .. 5.3): planes 1..5, five samples
    inside = voxel_touches(img, torch.tensor([[1.2, 1.0, 1.0]]), torch.tensor([[5.3, 2.0, 3.0]]), **kw)
    assert inside == 4 * 5
    t = gather_scatter_seconds((7, 5, 6), 1000, mode="random")
    assert set(t) == {"gather_s", "scatter_s"} and min(t.values()) > 0
    with pytest.raises(ValueError, match="mode"):
        gather_scatter_seconds((7, 5, 6), 1000, mode="strided")
    with pytest.raises(ValueError, match="n_touches"):
        gather_scatter_seconds((7, 5, 6), 1)
