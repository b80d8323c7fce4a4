"""PETSIRD through the command line: `refsuite simulate --out scan.petsird` -> `refsuite align` and
`refsuite recon` on it give what the same events give through ROOT.

PETSIRD keeps per coincidence the crystal ids, the TOF bin and the time block. With 25 ps TOF
bins centred on 0 (the alignment's own binning) every event falls in the same TOF bin through
either file. What PETSIRD does not keep is which single came first inside the bin centred on 0
(~2 % of the events here): it stores such a pair in its own order (higher detection bin first).
The alignment and the reconstruction use every event in refsuite's canonical pair and row order
(refsuite.events.canonical_pairs: lower detection id first), so both are bitwise equal from the
two files, which is what these tests assert.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("petsird")

from refsuite.cli import main  # noqa: E402
from refsuite.geometry import Scanner, preset  # noqa: E402
from refsuite.io import petsird_format, read_events, read_petsird  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

IDS = ("BlockID1", "CrystalID1", "BlockID2", "CrystalID2")
SIM = ["simulate", "--binning", "4mm", "--seed", "3", "--no-progress"]


def _swapped(root_events, petsird_events):
    """Events whose singles the two files hold in opposite orders (only in the centre TOF bin)."""
    return root_events["BlockID1"] != petsird_events["BlockID1"]


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    d = tmp_path_factory.mktemp("petsird_chain")
    preset("thull_sim", binning="4mm").save(d / "bp.json")
    for name in ("scan.root", "scan.petsird"):
        assert main([*SIM, "--n-decays", "2e5", "--sigma-t-mm", "1", "--sigma-r-deg", "0.5", "--out",
                     str(d / name)]) == 0
    for name in ("shell.root", "shell.petsird"):
        assert main([*SIM, "--phantom", "shell", "--n-decays", "1e6", "--out", str(d / name)]) == 0
    for name in ("hotrod.root", "hotrod.petsird"):
        assert main([*SIM, "--phantom", "hotrod", "--n-decays", "3e5", "--out", str(d / name)]) == 0
    bp = Scanner.load(d / "bp.json")
    return d, _swapped(read_events(d / "scan.root", bp), read_events(d / "scan.petsird", bp))


def test_simulate_writes_the_nominal_scanner_and_the_events(chain, tmp_path):
    d, swapped = chain
    assert petsird_format(d / "scan.petsird") == "binary"
    scan = read_petsird(d / "scan.petsird")
    nominal, truth = preset("thull_sim", binning="4mm"), Scanner.load(d / "scan.scanner.json")
    # the header holds the nominal scanner (float32), the truth file the misaligned one
    assert np.abs(scan.scanner.positions - nominal.positions).max() <= 1e-4
    assert np.abs(truth.positions - nominal.positions).max() > 0.5
    root = read_events(d / "scan.root")
    pet = scan.prompts
    assert pet.n_events == root.n_events > 10_000 and scan.delayeds.n_events == 0
    dt_root = 1e3 * (root["GlobalTime1"] - root["GlobalTime2"])
    dt_pet = 1e3 * (pet["GlobalTime1"] - pet["GlobalTime2"])
    assert np.all(np.abs(dt_pet - dt_root) <= 12.5 + 1e-3)  # within half a 25 ps TOF bin
    same = np.all([pet[k] == root[k] for k in IDS], axis=0)
    assert np.array_equal(~same, swapped) and 0 < swapped.sum() < 0.05 * pet.n_events
    assert np.all(np.abs(dt_root[swapped]) <= 12.5 + 1e-6)  # only the centre bin loses the order
    # the NDJSON variant holds the same events; the truth files beside it as for ROOT
    assert main([*SIM, "--n-decays", "2e4", "--out", str(tmp_path / "small.ndjson")]) == 0
    assert main([*SIM, "--n-decays", "2e4", "--out", str(tmp_path / "small.root")]) == 0
    assert petsird_format(tmp_path / "small.ndjson") == "ndjson"
    assert (tmp_path / "small.scanner.json").is_file() and (tmp_path / "small.phantom.json").is_file()
    small_root, small_pet = read_events(tmp_path / "small.root"), read_events(tmp_path / "small.ndjson")
    assert small_pet.n_events == small_root.n_events > 0
    assert sorted(map(tuple, np.sort(np.stack([small_pet["BlockID1"], small_pet["BlockID2"]], 1), 1).tolist())) == \
        sorted(map(tuple, np.sort(np.stack([small_root["BlockID1"], small_root["BlockID2"]], 1), 1).tolist()))


def test_simulate_petsird_refuses_a_scenario(tmp_path, capsys):
    assert main(["simulate", "simulations/scenarios/nowhere.toml", "--out", str(tmp_path / "x.petsird")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "PETSIRD output is written without a scenario file" in err
    assert not (tmp_path / "x.petsird").exists()


def test_align_from_petsird_equals_align_from_root(chain):
    d, swapped = chain
    assert swapped.any()  # the two files differ in the order of some pairs
    found = {}
    for key, events, shell in (("pet", "scan.petsird", "shell.petsird"), ("root", "scan.root", "shell.root")):
        out = d / f"aligned_{key}.json"
        assert main(["align", "--events", str(d / events), "--scanner", str(d / "bp.json"), "--phantom",
                     str(d / "scan.phantom.json"), "--efficiency-events", str(d / shell), "--out", str(out),
                     "--n-iter", "4", "--batch-size", "5000", "--no-progress", "--device", "cpu",
                     "--petsird-out", str(d / f"aligned_{key}.petsird")]) == 0
        found[key] = json.loads(out.with_name(f"aligned_{key}.alignment.json").read_text())
    assert np.abs(found["pet"]["translations_mm"]).max() > 0.1  # the solver moved the blocks
    for k in ("translations_mm", "rotations_rad", "nll_history"):
        np.testing.assert_array_equal(found["pet"][k], found["root"][k])
    # the PETSIRD header of the result: the aligned poses (float32) and the fan-sum efficiencies
    from refsuite.alignment import fan_sum_efficiencies

    bp = Scanner.load(d / "bp.json")
    aligned = Scanner.load(d / "aligned_pet.json")
    header = read_petsird(d / "aligned_pet.petsird")
    assert header.prompts.n_events == 0
    assert np.abs(header.scanner.positions - aligned.positions).max() <= 2.0**-23 * np.abs(aligned.positions).max()
    assert np.abs(header.scanner.axes - aligned.axes).max() <= 1e-7
    eff = fan_sum_efficiencies(read_events(d / "shell.root", bp), bp)
    np.testing.assert_allclose(header.efficiencies, eff, rtol=1e-7)
    assert "fan sums" in header.header.scanner.detection_efficiencies.method_description


CHAIN_PLAN = """name = "chain"
[scanner]
file = "bp.json"
[data]
point_sources = "scan{ext}"
point_phantom = "scan.phantom.json"
shell = "shell{ext}"
hot_rod = "hotrod{ext}"
hot_rod_phantom = "hotrod.phantom.json"
[checks.geometry]
translation = "100 um"
rotation = "0.1 deg"
n_iter = 4
batch_size = 10000
[checks.efficiency]
min_fraction = 0.5
[checks.image_quality]
voxel_mm = 1.0
n_iter = 1
n_subsets = 2
n_sensitivity_lines = 100000
"""


def test_acceptance_on_petsird_scans_equals_the_root_path(chain):
    """simulate -> acceptance on a plan whose scans are the PETSIRD files: every measured value, state
    and verdict equals the run on the ROOT files of the same events (geometry from the ML alignment
    with TOF and the fan-sum efficiencies, image quality from LM-OSEM with the aligned scanner)."""
    d, swapped = chain
    assert swapped.any()
    results = {}
    for ext in (".petsird", ".root"):
        plan = d / f"plan_{ext[1:]}.toml"
        plan.write_text(CHAIN_PLAN.format(ext=ext))
        out = d / f"acc_{ext[1:]}"
        # the drawn 1 mm / 0.5 deg misalignment fails the geometry check (the short shell scan the
        # efficiency check's count floor)
        assert main(["acceptance", str(plan), "--out", str(out), "--no-progress", "--device", "cpu"]) == 1
        results[ext] = json.loads((out / "results.json").read_text())["acceptance"]
    pet, root = results[".petsird"], results[".root"]
    assert pet["failed"] == root["failed"] and "geometry" in pet["failed"]
    for name in ("geometry", "efficiency", "image_quality"):
        a, b = pet["checks"][name], root["checks"][name]
        assert a["criteria"] and a["state"], name
        for key in ("criteria", "offenders", "state", "passed"):
            assert a[key] == b[key], (name, key)
        untimed = [{k: v for k, v in x["figures"].items() if not k.endswith("_s")} for x in (a, b)]
        assert untimed[0] == untimed[1], name  # (run times differ)
    assert max(pet["checks"]["geometry"]["state"]["translation_um"]) > 100  # the alignment found the misalignment
    assert pet["checks"]["image_quality"]["figures"]


def test_align_petsird_out_needs_a_petsird_name(chain, capsys):
    d, _ = chain
    assert main(["align", "--events", str(d / "scan.petsird"), "--scanner", str(d / "bp.json"), "--phantom",
                 str(d / "scan.phantom.json"), "--out", str(d / "x.json"), "--petsird-out", str(d / "x.txt"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--petsird-out must end in .petsird, .bin or .ndjson" in err
    assert not (d / "x.json").exists()


def test_recon_from_petsird_equals_recon_from_root(chain):
    d, swapped = chain
    assert swapped.any()
    grid = ["--scanner", str(d / "bp.json"), "--voxel", "4", "--shape", "12", "12", "10", "--iterations", "2",
            "--subsets", "4", "--sensitivity-lines", "1e5", "--device", "cpu", "--no-progress", "--npy"]
    images = {}
    for key in ("scan.petsird", "scan.root"):
        out = d / f"img_{key.replace('.', '_')}.nii"
        assert main(["recon", str(d / key), "--out", str(out), *grid]) == 0
        images[key] = np.load(out.with_suffix(".npy"))
    pet = images["scan.petsird"]
    assert pet.sum() > 1000
    # crystal-centre LORs from the same crystal pairs, in the canonical order: bitwise equal
    np.testing.assert_array_equal(pet, images["scan.root"])


def test_acceptance_demo_writes_petsird_scans(tmp_path):
    """`--write-demo --scan-format petsird`: the same scans as the npz demo, as PETSIRD files that
    the plans name (blueprint in the header, the readout's crystal ids)."""
    from refsuite.acceptance import load_plan
    from refsuite.acceptance.demo import DemoSizes, write_demo
    from refsuite.io import load_listmode

    tiny = DemoSizes("4mm", point_decays=20_000, shell_decays=20_000, timing_decays=20_000, sweep_decays=2_000,
                     n_iter=2, batch_size=1000)
    npz = write_demo(tmp_path / "npz", sizes=tiny, workers=1)
    pet = write_demo(tmp_path / "pet", sizes=tiny, workers=1, scan_format="petsird")
    plan = load_plan(pet["b"])
    assert plan.path("timing").name == "timing.petsird" and plan.data.line_sweep.points[0].file.endswith(".petsird")
    bp = plan.build_scanner()
    head = read_petsird(plan.path("shell")).scanner
    assert np.abs(head.positions - bp.positions).max() <= 1e-4  # the blueprint, not the re-mounted truth
    for scan in ("points", "shell", "timing"):
        a, b = load_listmode(npz["b"].parent / f"{scan}.npz"), read_events(pet["b"].parent / f"{scan}.petsird", bp)
        assert a.n_events == b.n_events > 0
        pairs = [sorted(map(tuple, np.sort(np.stack([e["BlockID1"] * 10_000 + e["CrystalID1"],
                                                     e["BlockID2"] * 10_000 + e["CrystalID2"]], 1), 1).tolist()))
                 for e in (a, b)]
        assert pairs[0] == pairs[1]  # the dead voxel's events are gone from both
