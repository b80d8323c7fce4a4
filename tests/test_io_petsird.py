"""PETSIRD files: round trips, files made with petsird's own writer, the TOF sign, bad files."""

from __future__ import annotations

import copy
import json
import random
import struct

import numpy as np
import pytest

petsird = pytest.importorskip("petsird")
import petsird.helpers  # noqa: E402  (expand_detection_bin: their reading of a detection bin)

from refsuite.geometry import CrystalLUT, Scanner, preset  # noqa: E402
from refsuite.io.petsird import petsird_format, read_petsird, write_petsird  # noqa: E402
from refsuite.mc import SPEED_OF_LIGHT_MM_PER_NS, simulate, tof_offsets_mm  # noqa: E402
from refsuite.phantoms import PointSources  # noqa: E402

IDS = ("BlockID1", "CrystalID1", "BlockID2", "CrystalID2")
SOURCES = np.array([[0.0, 0.0, 0.0], [6.0, -4.0, 10.0], [-8.0, 5.0, -20.0]])


@pytest.fixture(scope="module")
def thull():
    s = preset("thull_sim")
    return s, simulate(s, PointSources(SOURCES), n_decays=20_000, seed=3)


def _f32_exact_scanner():
    """Blocks whose poses and crystal boxes are exactly representable in 32-bit floats."""
    y = np.array([[1.0, 0, 0], [0, 1.0, 0], [-1.0, 0, 0], [0, -1.0, 0]])
    z = np.array([0.0, 0.0, 1.0])
    axes = np.stack([np.stack([np.cross(v, z), v, z]) for v in y])
    pos = 80.0 * y + np.array([0.0, 0.0, 2.5])
    size = np.array([48.0, 10.0, 48.0])
    return Scanner(pos, axes, size, CrystalLUT.regular(size, (12, 2, 12)), name="square")


def _assert_events_match(ours, back, width_ps, block_ms=1, energy_tol_mev=0.1):
    """Same coincidences after a PETSIRD round trip (single-type scanner, events in time order)."""
    assert back.n_events == ours.n_events > 100
    dt0 = 1e3 * (ours["GlobalTime1"] - ours["GlobalTime2"])
    dt1 = 1e3 * (back["GlobalTime1"] - back["GlobalTime2"])
    # t1 - t2 comes back as its TOF bin centre: within half a bin (+ float32 rounding of the edges)
    assert np.all(np.abs(dt1 - dt0) <= width_ps / 2 + 1e-3)
    # absolute time: the start of the (1 ms) time block of the earlier single
    early = np.minimum(ours["GlobalTime1"], ours["GlobalTime2"])
    assert np.all((back["GlobalTime1"] <= early) & (early - back["GlobalTime1"] < block_ms * 1e6))
    centre = np.abs(dt1) < 1e-9  # the bin centred on 0 does not say which single came first
    same = np.all([back[k] == ours[k] for k in IDS], axis=0)
    assert same[~centre].all(), "crystal ids (ordered: earlier single first) must survive off the centre bin"
    swapped = ((back["BlockID1"] == ours["BlockID2"]) & (back["CrystalID1"] == ours["CrystalID2"])
               & (back["BlockID2"] == ours["BlockID1"]) & (back["CrystalID2"] == ours["CrystalID1"]))
    assert np.all(same | swapped)
    assert np.all(np.abs(dt0[centre]) <= width_ps / 2 + 1e-3)
    # each single's energy comes back as its energy bin's centre (one 450-650 keV bin: 550 keV)
    e1 = np.where(same, ours["TotalEnergyDeposit1"], ours["TotalEnergyDeposit2"])
    e2 = np.where(same, ours["TotalEnergyDeposit2"], ours["TotalEnergyDeposit1"])
    assert np.all(np.abs(back["TotalEnergyDeposit1"] - e1) <= energy_tol_mev + 1e-6)
    assert np.all(np.abs(back["TotalEnergyDeposit2"] - e2) <= energy_tol_mev + 1e-6)


@pytest.mark.parametrize("fmt", ["binary", "ndjson"])
def test_round_trip_ring_scanner(thull, tmp_path, fmt):
    s, ev = thull
    eff = np.random.default_rng(0).uniform(0.5, 1.5, (s.n_blocks, s.n_crystals))
    path = write_petsird(tmp_path / "scan.petsird", s, ev, format=fmt, efficiencies=eff, tof_bin_width_ps=25.0)
    assert petsird_format(path) == fmt
    scan = read_petsird(path)
    r = scan.scanner
    # PETSIRD floats are 32-bit: poses to float32 rounding (~6e-8 relative), LUT exact here
    assert np.abs(r.positions - s.positions).max() <= 2.0**-23 * np.abs(s.positions).max()
    assert np.abs(r.axes - s.axes).max() <= 1e-7
    assert np.array_equal(r.block_size, s.block_size) and r.crystals.equals(s.crystals)
    assert r.material == s.material and r.mu_per_mm == s.mu_per_mm and r.name == s.name
    _assert_events_match(ev, scan.prompts, 25.0)
    assert scan.delayeds.n_events == 0
    assert np.allclose(scan.efficiencies, eff, rtol=1e-7, atol=0)
    # stored as float32 c ctr / 2 mm; read back as the shortest decimal that fits: the CTR written
    assert scan.prompts.attrs["ctr_ps"] == ev.attrs["ctr_ps"] == 250.0
    assert scan.prompts.attrs["energy_resolution"] == ev.attrs["energy_resolution"]
    assert scan.prompts.attrs["energy_window_kev"] == [450.0, 650.0]
    assert np.allclose(scan.prompts["PostPosition_X1"],
                       s.crystal_positions(scan.prompts["BlockID1"], scan.prompts["CrystalID1"])[:, 0])


@pytest.mark.parametrize("fmt", ["binary", "ndjson"])
def test_round_trip_float32_exact_poses(tmp_path, fmt):
    s = _f32_exact_scanner()
    ev = simulate(s, PointSources(SOURCES[:2]), n_decays=20_000, seed=5)
    scan = read_petsird(write_petsird(tmp_path / "sq.petsird", s, ev, format=fmt, n_energy_bins=4))
    r = scan.scanner
    assert np.abs(r.positions - s.positions).max() <= 1e-9
    assert np.abs(r.axes - s.axes).max() <= 1e-9
    assert np.abs(r.block_size - s.block_size).max() <= 1e-9
    assert np.abs(r.crystals.centres - s.crystals.centres).max() <= 1e-9
    _assert_events_match(ev, scan.prompts, 25.0, energy_tol_mev=0.025)  # four 50 keV energy bins


@pytest.mark.parametrize("name", ["lin_clinical", "thull_halfrings"])
def test_poses_round_trip_to_half_a_float32_ulp(tmp_path, name):
    """PETSIRD's RigidTransformation is float32 (schema): each pose coordinate comes back rounded
    to nearest, |dP_i| <= 2^-24 |P_i| (1.5e-5 mm at lin_clinical's 414 mm), not to 1e-9 mm;
    float32-exact poses come back exactly (test_round_trip_float32_exact_poses)."""
    from refsuite.geometry import perturb

    s = perturb(preset(name), sigma_t_mm=0.3, sigma_r_deg=0.3, rng=np.random.default_rng(4))
    r = read_petsird(write_petsird(tmp_path / "p.petsird", s)).scanner
    ulp = 2.0**-24
    dp = np.abs(r.positions - s.positions)
    assert np.all(dp <= ulp * np.abs(s.positions)) and dp.max() > 0
    assert np.abs(r.axes - s.axes).max() <= ulp  # entries <= 1, re-orthonormalised on reading
    assert np.abs(r.crystals.centres - s.crystals.centres).max() <= ulp * np.abs(s.crystals.centres).max()
    blk, cr = np.divmod(np.arange(s.n_blocks * s.n_crystals), s.n_crystals)
    a, b = s.crystal_positions(blk, cr), r.crystal_positions(blk, cr)
    assert np.linalg.norm(a - b, axis=1).max() <= 2 * ulp * np.linalg.norm(a, axis=1).max()


def test_prompts_and_delayeds_kept_apart(thull, tmp_path):
    s, ev = thull
    half = ev.n_events // 2
    prompts = type(ev)({k: v[:half] for k, v in ev.items()}, attrs=ev.attrs)
    delayeds = type(ev)({k: v[half:] for k, v in ev.items()})
    scan = read_petsird(write_petsird(tmp_path / "pd.petsird", s, prompts, delayeds=delayeds))
    _assert_events_match(prompts, scan.prompts, 25.0)
    _assert_events_match(delayeds, scan.delayeds, 25.0)


def test_several_crystal_sizes_become_module_types(tmp_path):
    s = preset("thull_halfrings")
    ev = simulate(s, PointSources(SOURCES), n_decays=20_000, seed=2)
    path = write_petsird(tmp_path / "hr.petsird", s, ev)
    with petsird.BinaryPETSIRDReader(str(path)) as reader:
        header = reader.read_header()
        for _ in reader.read_time_blocks():
            pass
    assert len(header.scanner.scanner_geometry.replicated_modules) == 3  # three needle heights
    scan = read_petsird(path)
    r = scan.scanner
    assert np.abs(r.crystals.centres - s.crystals.centres).max() <= 1e-6
    assert np.abs(r.crystals.half_sizes - s.crystals.half_sizes).max() <= 1e-6
    # events are regrouped by module-type pair inside a time block: compare as sets of id tuples
    def rows(e):
        return sorted(zip(*(np.asarray(e[k]).tolist() for k in IDS)))
    back = scan.prompts
    dt = back["GlobalTime1"] - back["GlobalTime2"]
    assert back.n_events == ev.n_events
    unordered = sorted(tuple(sorted([(a, b), (c, d)])) for a, b, c, d in rows(ev))
    assert unordered == sorted(tuple(sorted([(a, b), (c, d)])) for a, b, c, d in rows(back))
    off = np.abs(dt) > 0  # off the centre TOF bin the earlier single comes first, as in ours
    assert off.sum() > 0.5 * back.n_events
    assert set(rows({k: back[k][off] for k in IDS})) <= set(rows(ev))


def test_tof_sign_follows_petsird(tmp_path):
    """PETSIRD: TOF value (t1 - t2) c / 2 with t1 at the event's first detection bin."""
    s = _f32_exact_scanner()
    ev = simulate(s, PointSources(SOURCES[1:2]), n_decays=20_000, seed=7)
    path = write_petsird(tmp_path / "tof.petsird", s, ev, tof_bin_width_ps=10.0)
    with petsird.BinaryPETSIRDReader(str(path)) as reader:
        header = reader.read_header()
        blocks = [tb.value for tb in reader.read_time_blocks()]
    info = header.scanner
    edges = np.asarray(info.tof_bin_edges[0][0].edges, float)
    stored = [e for block in blocks for e in block.prompt_events[0][0]]  # one module type: our order
    assert len(stored) == ev.n_events > 100
    kept = 0
    for i, e in enumerate(stored):
        first, second = (petsird.helpers.expand_detection_bin(info, 0, b) for b in e.detection_bins)
        a = (first.module_index, first.element_index)
        b = (second.module_index, second.element_index)
        ours = [(ev["BlockID1"][i], ev["CrystalID1"][i]), (ev["BlockID2"][i], ev["CrystalID2"][i])]
        s_mm = SPEED_OF_LIGHT_MM_PER_NS * (ev["GlobalTime1"][i] - ev["GlobalTime2"][i]) / 2
        if [a, b] == ours:  # our single 1 first: t_first - t_second = t1 - t2
            expect, kept = s_mm, kept + 1
        else:  # swapped by PETSIRD's ordering rule: t_first - t_second = t2 - t1
            assert [b, a] == ours
            expect = -s_mm
        value = (edges[e.tof_idx] + edges[e.tof_idx + 1]) / 2
        assert abs(value - expect) <= (edges[1] - edges[0]) / 2 + 1e-4
        assert e.detection_bins[0] >= e.detection_bins[1]
    assert 0.2 < kept / len(stored) < 0.8  # both orders occur, so both branches were checked


def test_tof_bins_are_the_solvers_bins_even_at_the_edges(thull, tmp_path):
    """The file's TOF bin of every event is the bin the alignment gives it from the exact times,
    also for offsets within float32 rounding of a bin edge (binned from the width, in float64)."""
    from refsuite.events import canonical_pairs
    from refsuite.projectors import TOFParameters

    s, ev = thull
    w = TOFParameters.from_ctr(num_bins=1, bin_width_ps=25.0, ctr_fwhm_ps=200.0).bin_width_mm
    k = np.random.default_rng(3).integers(-40, 40, ev.n_events)
    eps = np.random.default_rng(4).choice([-1e-7, -1e-9, 1e-9, 1e-7], ev.n_events)
    edge = dict(ev, GlobalTime2=ev["GlobalTime1"] - 2 * (k + 0.5 + eps) * w / SPEED_OF_LIGHT_MM_PER_NS)
    back = read_petsird(write_petsird(tmp_path / "edge.petsird", s, edge, tof_bin_width_ps=25.0)).prompts

    def bins(e):
        return np.round(tof_offsets_mm(canonical_pairs(e)) / w)

    assert back.n_events == ev.n_events
    np.testing.assert_array_equal(bins(back), bins(edge))


def _generator_file(path, n_events=300):
    """A file built the way petsird's example generator builds one (petsird.helpers.generator),
    with one module type, written by petsird's own BinaryPETSIRDWriter."""
    from petsird.helpers import generator as gen

    random.seed(11)
    header = petsird.Header(scanner=gen.get_scanner_info([gen.mtype0_def]))
    events = list(gen.get_events(header, petsird.TypeOfModulePair((0, 0)), n_events))
    delayed = list(gen.get_events(header, petsird.TypeOfModulePair((0, 0)), 40))
    header.scanner.delayed_event_policy = petsird.CoincidencePolicy.REJECT_HIGHER_MULTIPLES
    with petsird.BinaryPETSIRDWriter(str(path)) as w:
        w.write_header(header)
        w.write_time_blocks([petsird.TimeBlock.EventTimeBlock(petsird.EventTimeBlock(
            time_interval=petsird.TimeInterval(start=3, stop=4), prompt_events=[[events]],
            delayed_events=[[delayed]]))])
    return header, events, delayed


def test_reads_a_file_made_with_petsirds_writer(tmp_path):
    from petsird.helpers import generator as gen
    from petsird.helpers.geometry import get_detecting_box

    path = tmp_path / "generator.petsird"
    header, events, delayed = _generator_file(path)
    info = header.scanner
    scan = read_petsird(path, mu_per_mm=0.087)
    s = scan.scanner
    d = gen.mtype0_def
    assert s.n_blocks == d.num_modules_along_ring * d.num_modules_along_axis == 40
    assert s.n_crystals == int(np.prod(d.num_crystals_per_module)) == 56
    # every crystal's centre equals the centre of petsird's own detecting box
    for m in (0, 7, 39):
        for el in (0, 13, 55):
            box = get_detecting_box(info, 0, petsird.ExpandedDetectionBin(module_index=m, element_index=el))
            centre = np.mean([c.c for c in box.corners], axis=0)
            assert np.abs(s.crystal_positions(m, el) - centre).max() <= 1e-3
    # our convention: local Y (DOI) points outwards, Z along the scanner axis
    radial = s.positions[:, :2] / np.linalg.norm(s.positions[:, :2], axis=1, keepdims=True)
    assert np.all(np.einsum("ni,ni->n", s.axes[:, 1, :2], radial) > 0.999)
    assert np.allclose(s.axes[:, 2], [0, 0, 1])
    assert np.allclose(s.block_size, [16.0, 40.0, 28.0])  # tangential 4 x 4, radial (DOI) 2 x 20, axial 7 x 4 mm
    edges_e = np.asarray(info.event_energy_bin_edges[0].edges, float)
    edges_t = np.asarray(info.tof_bin_edges[0][0].edges, float)
    for table, raw in ((scan.prompts, events), (scan.delayeds, delayed)):
        assert table.n_events == len(raw)
        for i, e in enumerate(raw):
            x = [petsird.helpers.expand_detection_bin(info, 0, b) for b in e.detection_bins]
            value = (edges_t[e.tof_idx] + edges_t[e.tof_idx + 1]) / 2
            order = x[::-1] if value > 0 else x  # earlier detection first
            got = [(table["BlockID1"][i], table["CrystalID1"][i]), (table["BlockID2"][i], table["CrystalID2"][i])]
            assert got == [(o.module_index, o.element_index) for o in order]
            kev = [(edges_e[o.energy_index] + edges_e[o.energy_index + 1]) / 2 for o in order]
            assert np.allclose([table["TotalEnergyDeposit1"][i], table["TotalEnergyDeposit2"][i]], np.array(kev) / 1e3)
            dt = table["GlobalTime1"][i] - table["GlobalTime2"][i]
            assert dt == pytest.approx(-2 * abs(value) / SPEED_OF_LIGHT_MM_PER_NS, abs=1e-9)
            assert table["GlobalTime1"][i] == 3e6  # block start, 3 ms
    assert np.all(scan.efficiencies == 1.0)  # the generator writes detection-bin efficiencies of 1


def test_header_only_file_for_an_aligned_scanner(tmp_path):
    s = preset("thull_sim").transform(np.full((24, 3), 0.01), np.full((24, 3), 0.3))
    scan = read_petsird(write_petsird(tmp_path / "aligned.petsird", s))
    assert scan.prompts.n_events == 0 and scan.delayeds.n_events == 0
    assert np.abs(scan.scanner.positions - s.positions).max() <= 2.0**-23 * np.abs(s.positions).max()
    assert np.abs(scan.scanner.axes - s.axes).max() <= 1e-7


def test_gantry_alignment_moves_the_modules(tmp_path):
    s = _f32_exact_scanner()
    path = write_petsird(tmp_path / "g.petsird", s)
    with petsird.BinaryPETSIRDReader(str(path)) as reader:
        header = reader.read_header()
        list(reader.read_time_blocks())
    rz = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    shift = np.array([1.0, 2.0, 3.0])
    header.scanner.gantry_alignment = petsird.RigidTransformation(
        matrix=np.concatenate([rz, shift[:, None]], 1).astype(np.float32))
    moved = tmp_path / "moved.petsird"
    with petsird.BinaryPETSIRDWriter(str(moved)) as w:
        w.write_header(header)
        w.write_time_blocks([])
    r = read_petsird(moved).scanner
    np.testing.assert_allclose(r.crystal_centres(), s.crystal_centres() @ rz.T + shift, atol=1e-9)
    np.testing.assert_allclose(r.axes, s.axes @ rz.T, atol=1e-12)


def test_streamed_file_equals_the_one_written_at_once(thull, tmp_path):
    """PetsirdWriter, fed chunks in time order, writes blocks as they complete: same content as
    write_petsird; an event older than a written block is refused; a failure leaves no file."""
    from refsuite.io import PetsirdWriter

    s, ev = thull
    ev = ev.take(np.argsort(np.minimum(ev["GlobalTime1"], ev["GlobalTime2"]), kind="stable"))
    stretch = 39.0 * np.minimum(ev["GlobalTime1"], ev["GlobalTime2"])  # 40 times longer: ~40 time blocks
    ev["GlobalTime1"], ev["GlobalTime2"] = ev["GlobalTime1"] + stretch, ev["GlobalTime2"] + stretch
    whole = read_petsird(write_petsird(tmp_path / "whole.petsird", s, ev, n_tof_bins=401))
    kw = dict(n_tof_bins=401, ctr_ps=ev.attrs["ctr_ps"], energy_resolution=ev.attrs["energy_resolution"])
    with PetsirdWriter(tmp_path / "streamed.petsird", s, **kw) as w:
        for part in np.array_split(np.arange(ev.n_events), 7):
            w.write(ev.take(part))
            written = w._written_below
    assert written is not None and written > 10  # blocks went out before the end
    assert w.n_prompts == ev.n_events
    streamed = read_petsird(tmp_path / "streamed.petsird")
    for k in whole.prompts:
        np.testing.assert_array_equal(streamed.prompts[k], whole.prompts[k])
    late = tmp_path / "late.petsird"
    with pytest.raises(ValueError, match="came after block .* was written: events must come in time order"):
        with PetsirdWriter(late, s, **kw) as w:
            w.write(ev.take(np.arange(ev.n_events // 2, ev.n_events)))
            w.write(ev.take(np.arange(10)))
    assert not late.exists() and not list(tmp_path.glob(".late*"))


# ------------------------------------------------------------------------------------------ read_events
@pytest.mark.parametrize("fmt", ["binary", "ndjson"])
def test_read_events_recognises_petsird_and_returns_the_prompts(thull, tmp_path, fmt):
    from refsuite.io import read_events

    s, ev = thull
    half = ev.n_events // 2
    prompts = type(ev)({k: v[:half] for k, v in ev.items()}, attrs=ev.attrs)
    delayeds = type(ev)({k: v[half:] for k, v in ev.items()})
    path = write_petsird(tmp_path / "scan.data", s, prompts, delayeds=delayeds, format=fmt)  # by content, not name
    scan = read_petsird(path)
    got = read_events(path)
    assert got.n_events == half and scan.delayeds.n_events == ev.n_events - half
    for k in scan.prompts:
        np.testing.assert_array_equal(got[k], scan.prompts[k])
    assert got.attrs["ctr_ps"] == pytest.approx(ev.attrs["ctr_ps"], rel=1e-6)
    kept = read_events(path, s)  # "keep": the file's ids on a scanner of the same shape
    for k in IDS:
        np.testing.assert_array_equal(kept[k], scan.prompts[k])


def test_read_events_assigns_petsird_ids_on_another_scanner(thull, tmp_path):
    """crystal_ids="assign" places the file's events (at its crystal centres) on the given scanner."""
    from refsuite.io import read_events

    s, ev = thull
    path = write_petsird(tmp_path / "scan.petsird", s, ev)
    same = read_events(path, s, crystal_ids="assign")
    for k in IDS:  # crystal centres lie in their own crystals
        np.testing.assert_array_equal(same[k], read_petsird(path).prompts[k])
    perm = np.roll(np.arange(s.n_blocks), 5)  # the same blocks, numbered differently
    renumbered = Scanner(s.positions[perm], s.axes[perm], s.block_size, s.crystals, name="renumbered")
    moved = read_events(path, renumbered, crystal_ids="assign")
    inverse = np.argsort(perm)
    for k in (1, 2):
        np.testing.assert_array_equal(moved[f"BlockID{k}"], inverse[same[f"BlockID{k}"]])
        np.testing.assert_array_equal(moved[f"CrystalID{k}"], same[f"CrystalID{k}"])
    other = preset("thull_sim", binning="4mm")
    with pytest.raises(ValueError, match=r"scan.petsird: the PETSIRD file's scanner has 24 modules x \d+ .*'assign'"):
        read_events(path, other)


# ------------------------------------------------------------------------------------------ bad files
def _binary_with(path, tmp_path, *, version=None, schema=None):
    data = path.read_bytes()
    n, pos, shift = 0, 9, 0
    while True:
        b = data[pos]
        n |= (b & 0x7F) << shift
        pos += 1
        shift += 7
        if not b & 0x80:
            break
    head, body = data[:5], data[pos + n:]
    old_schema = data[pos:pos + n]
    new_schema = old_schema if schema is None else schema(old_schema.decode()).encode()
    varint, m = b"", len(new_schema)
    while True:
        varint += bytes([(m & 0x7F) | (0x80 if m > 0x7F else 0)])
        m >>= 7
        if not m:
            break
    out = tmp_path / "patched.petsird"
    out.write_bytes(head + struct.pack("<i", 1 if version is None else version) + varint + new_schema + body)
    return out


@pytest.fixture(scope="module")
def small_file(tmp_path_factory, thull):
    s, ev = thull
    return write_petsird(tmp_path_factory.mktemp("p") / "ok.petsird", s, ev)


def test_bad_files_fail_in_one_line(tmp_path, small_file):
    garbage = tmp_path / "garbage.petsird"
    garbage.write_bytes(np.random.default_rng(1).bytes(500))
    cases = {
        garbage: "not a PETSIRD file",
        tmp_path / "missing.petsird": "no such file",
        _binary_with(small_file, tmp_path, version=2): "format version 2 is not supported",
    }
    for path, msg in cases.items():
        with pytest.raises(ValueError, match=msg) as err:
            read_petsird(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)
    truncated = tmp_path / "truncated.petsird"
    truncated.write_bytes(small_file.read_bytes()[: small_file.stat().st_size // 2])
    with pytest.raises(ValueError, match="corrupt or truncated") as err:
        read_petsird(truncated)
    assert str(truncated) in str(err.value)


def test_other_petsird_version_is_refused(tmp_path, small_file):
    # a schema with a changed type, as another PETSIRD release would write
    patched = _binary_with(small_file, tmp_path, schema=lambda s: s.replace(
        '{"name":"tofIdx","type":"uint32"}', '{"name":"tofIdx","type":"uint64"}'))
    with pytest.raises(ValueError, match=r"schema differs .* CoincidenceEvent") as err:
        read_petsird(patched)
    assert str(patched) in str(err.value)
    s = _f32_exact_scanner()
    nd = write_petsird(tmp_path / "x.ndjson", s, format="ndjson")
    lines = nd.read_text().splitlines()
    first = json.loads(lines[0])
    first["yardl"]["schema"]["types"] = [t for t in first["yardl"]["schema"]["types"] if t["name"] != "AnnulusShape"]
    nd.write_text("\n".join([json.dumps(first)] + lines[1:]) + "\n")
    with pytest.raises(ValueError, match="schema differs .* AnnulusShape"):
        read_petsird(nd)


def test_non_box_elements_and_unshared_modules_are_refused(tmp_path):
    from petsird.helpers import generator as gen

    base = gen.get_scanner_info([gen.mtype0_def])
    base.detection_efficiencies = petsird.DetectionEfficiencies()  # not needed here; large to write

    def write(modify, name):
        header = petsird.Header(scanner=copy.deepcopy(base))
        modify(header.scanner)
        path = tmp_path / name
        with petsird.BinaryPETSIRDWriter(str(path)) as w:
            w.write_header(header)
            w.write_time_blocks([])
        return path

    def wedge(info):  # move one corner: the box becomes a wedge
        shape = info.scanner_geometry.replicated_modules[0].object.detecting_elements.object.shape
        shape.corners[6].c = shape.corners[6].c + np.float32([0.0, 1.5, 0.0])

    with pytest.raises(ValueError, match="is not a rectangular box") as err:
        read_petsird(write(wedge, "wedge.petsird"), mu_per_mm=0.087)
    assert "wedge.petsird" in str(err.value)

    def second_type(info):  # a second module type on other modules (as the generator's insert)
        other = copy.deepcopy(info.scanner_geometry.replicated_modules[0])
        other.transforms = other.transforms[:10]
        info.scanner_geometry.replicated_modules.append(other)
        info.tof_bin_edges.append(info.tof_bin_edges[0] * 2)
        info.tof_resolution.append(info.tof_resolution[0] * 2)
        info.event_energy_bin_edges.append(info.event_energy_bin_edges[0])
        info.energy_resolution_at_511.append(info.energy_resolution_at_511[0])

    with pytest.raises(ValueError, match="placed differently"):
        read_petsird(write(second_type, "two.petsird"), mu_per_mm=0.087)
    with pytest.raises(ValueError, match="mu_per_mm"):  # no material given: ask for the coefficient
        read_petsird(write(lambda info: None, "nomaterial.petsird"))


def test_write_validates_before_writing(thull, tmp_path):
    s, ev = thull
    out = tmp_path / "never.petsird"
    no_ids = {k: v for k, v in ev.items() if not k.startswith("CrystalID")}
    with pytest.raises(ValueError, match="CrystalID1"):
        write_petsird(out, s, no_ids)
    with pytest.raises(ValueError, match="efficiencies"):
        write_petsird(out, s, ev, efficiencies=np.ones((3, 3)))
    with pytest.raises(ValueError, match="format"):
        write_petsird(out, s, ev, format="hdf5")
    with pytest.raises(ValueError, match="energy outside energy_window_kev"):
        write_petsird(out, s, ev, energy_window_kev=(500.0, 520.0))
    with pytest.raises(ValueError, match="beyond the TOF range"):
        write_petsird(out, s, ev, n_tof_bins=3)
    with pytest.raises(TypeError, match="Scanner"):
        write_petsird(out, "thull_sim", ev)
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.mark.slow
def test_align_from_petsird_equals_align_from_root(tmp_path):
    """The ML alignment sees the same data through PETSIRD as through ROOT.

    PETSIRD keeps crystal ids and the TOF bin (25 ps bins centred on 0, align's own binning);
    it does not keep which single came first inside the bin centred on 0, nor the row order
    across module types. ``align`` uses every event in the canonical pair and row order
    (refsuite.events.canonical_pairs), so the raw ROOT events, the PETSIRD events and the ROOT
    events in shuffled rows give bitwise the same float64 alignment.
    """
    import torch

    from refsuite.alignment import align
    from refsuite.geometry import perturb
    from refsuite.io import read_coincidences, write_coincidences

    rng = np.random.default_rng(11)
    bp = preset("thull_sim", binning="4mm")
    truth = perturb(bp, sigma_t_mm=1.0, sigma_r_deg=0.5, rng=rng)
    src = PointSources.random(10, fov_radius_mm=40.0, fov_half_length_mm=50.0, rng=rng)
    ev = simulate(truth, src, n_decays=100_000, seed=5)
    root = read_coincidences(write_coincidences(tmp_path / "scan.root", ev))
    pet = read_petsird(write_petsird(tmp_path / "scan.petsird", bp, ev, tof_bin_width_ps=25.0)).prompts
    swapped = root["BlockID1"] != pet["BlockID1"]
    dt_root = 1e3 * (root["GlobalTime1"] - root["GlobalTime2"])
    assert 0 < swapped.sum() and np.all(np.abs(dt_root[swapped]) <= 12.5 + 1e-6)  # the files differ there
    shuffled = root.take(np.random.default_rng(2).permutation(root.n_events))
    kw = dict(n_iter=6, batch_size=20_000, model_sigma_mm=0.5, support_radius_mm=4.5, max_support=200_000,
              progress=False, uncertainty=False, dtype=torch.float64)  # CTR from the files (250 ps)
    a, b, c = align(root, bp, src, **kw), align(pet, bp, src, **kw), align(shuffled, bp, src, **kw)
    assert np.abs(a.translations_mm).max() > 0.5  # the solver moved the blocks
    for other in (b, c):
        np.testing.assert_array_equal(a.translations_mm, other.translations_mm)
        np.testing.assert_array_equal(a.rotations_rad, other.rotations_rad)
        np.testing.assert_array_equal(a.nll_history, other.nll_history)
