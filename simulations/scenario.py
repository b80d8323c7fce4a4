"""Simulation scenarios as data: TOML files validated with pydantic before any work starts.

A scenario names a scanner (preset + options, or a scanner ``.json`` with explicit poses),
its misalignment (seed, sigmas, groups), a phantom, the source particle, the acquisition
time and the digitiser settings (Thull et al., sec. 2.5: energy-weighted centroid readout,
12 % energy FWHM, 250 ps CTR, 450-650 keV, 5 ns coincidence window). A line source may list
radial offsets (the Lin et al. sweep, 0 ... 375 mm in 25 mm steps): the scenario then
expands into one :class:`Run` per offset. Both engines (:mod:`simulations.gate`, built-in MC
via :func:`simulations.builtin.run_builtin`) read the same :class:`Run` objects.

Units as in refsuite: mm, ps, keV, Bq, seconds for acquisition times; angles in degrees in
the file (``sigma_r_deg``, ``azimuth_deg``) and converted where used.
"""

from __future__ import annotations

import enum
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from refsuite._checks import validation_lines
from refsuite.geometry.spec import ScannerSpec

__all__ = [
    "Scenario", "Run", "Particle", "ReadoutPolicy", "load_scenario", "scenario_from_dict", "SCENARIO_DIR",
    "shipped_scenarios", "ScenarioError", "check_phantom_clear_of_blocks", "check_blocks_disjoint",
]

#: Folder of the scenario files shipped with refsuite.
SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"


class ScenarioError(ValueError):
    """A scenario file that cannot be read or fails validation (the message names the file)."""


class Particle(enum.Enum):
    """Emission model of the sources."""

    BACK_TO_BACK = "back_to_back"  #: two collinear 511 keV photons (Thull et al., sec. 2.5)
    F18 = "F18"  #: 18F ion with radioactive decay (positron range, acollinearity, 97 % beta+)
    NA22 = "Na22"  #: 22Na ion with radioactive decay (adds the 1275 keV gamma)


class ReadoutPolicy(enum.Enum):
    """How hits of one event in one block are merged into a single (GATE ``DigitizerAdderActor``)."""

    CENTROID = "EnergyWeightedCentroidPosition"  #: Thull et al., sec. 2.5
    WINNER = "EnergyWinnerPosition"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MisalignmentSpec(_Model):
    """Gaussian block misalignment (:func:`refsuite.geometry.perturb`); clear blocks unless ``allow_overlaps``."""

    seed: int
    #: translation sigma, mm; at most 100 mm (the studies use <= 1 mm; a larger value moves blocks
    #: out of any scanner and is a unit mistake, e.g. um for mm)
    sigma_t_mm: float = Field(ge=0.0, le=100.0)
    sigma_r_deg: float = Field(ge=0.0, le=90.0)  #: rotation sigma, degrees (at most 90)
    groups: bool = False  #: share the noise within the scanner's groups (rings, half-rings)
    #: draw without perturb's clearance rule and accept blocks pushed into each other (GATE rejects
    #: such a geometry; the built-in MC then counts a shared volume for both blocks)
    allow_overlaps: bool = False


class PointsSpec(_Model):
    kind: Literal["points"]
    n_sources: int = Field(10, ge=1, le=1_000_000)  #: at most 1e6 (the arrays are per source)
    seed: Optional[int] = None  #: random positions (PointSources.random) when ``centres_mm`` is absent
    centres_mm: Optional[list[tuple[float, float, float]]] = None
    fov_radius_mm: float = Field(60.0, gt=0)
    fov_half_length_mm: float = Field(60.0, gt=0)
    radius_mm: float = Field(0.125, gt=0)
    cube_mm: float = Field(1.0, ge=0)
    activity_bq: float = Field(1.0e5, gt=0)  #: per source

    @model_validator(mode="after")
    def _positions(self):
        if (self.seed is None) == (self.centres_mm is None):
            raise ValueError("points phantom needs exactly one of 'seed' (random positions) or 'centres_mm'")
        return self


class TubeSpec(PointsSpec):
    """B-spline tube through the point-source positions (Thull et al., sec. 2.5).

    ``order = "nearest"`` threads the positions greedily from the lowest z to the nearest
    unvisited one: random positions in their drawn order give a spline that overshoots
    far outside the field of view (into the detector blocks for ``thull_sim``).
    """

    kind: Literal["tube"]
    diameter_mm: float = Field(0.25, gt=0)
    activity_bq: float = Field(1.0e6, gt=0)  #: whole tube
    order: Literal["nearest", "as_given"] = "nearest"


class ShellSpec(_Model):
    kind: Literal["shell"]
    inner_radius_mm: float = Field(45.0, ge=0)
    outer_radius_mm: float = Field(47.0, gt=0)
    length_mm: float = Field(140.0, gt=0)
    centre_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    activity_bq: float = Field(1.0e6, gt=0)


class LineSpec(_Model):
    """Line source along z; ``radial_offsets_mm`` expands the scenario into a sweep."""

    kind: Literal["line"]
    radial_offsets_mm: list[float] = Field(default_factory=lambda: [0.0], min_length=1)
    azimuth_deg: float = 90.0  #: direction of the radial offset in the x-y plane (90: along +y)
    radius_mm: float = Field(0.01, gt=0)
    length_mm: float = Field(700.0, gt=0)
    centre_z_mm: float = 0.0
    activity_bq: float = Field(7.4e6, gt=0)

    @field_validator("radial_offsets_mm")
    @classmethod
    def _non_negative(cls, v):
        if any(r < 0 for r in v):
            raise ValueError(f"radial_offsets_mm must be >= 0, got {v}")
        return v


class HotRodSpec(_Model):
    kind: Literal["hotrod"]
    diameters_mm: Optional[tuple[float, ...]] = None
    sector_radius_mm: float = Field(12.0, gt=0)
    body_radius_mm: float = Field(15.0, gt=0)
    length_mm: float = Field(20.0, gt=0)
    centre_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rotation_deg: float = 0.0
    activity_bq: float = Field(1.0e6, gt=0)


class CylinderSpec(_Model):
    kind: Literal["cylinder"]
    radius_mm: float = Field(25.0, gt=0)
    length_mm: float = Field(100.0, gt=0)
    centre_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    activity_bq: float = Field(1.0e6, gt=0)


class FileSpec(_Model):
    """A phantom saved as ``.json`` (:func:`refsuite.phantoms.load_phantom`), relative to the scenario's folder."""

    kind: Literal["file"]
    path: str


PhantomSpec = Annotated[Union[PointsSpec, TubeSpec, ShellSpec, LineSpec, HotRodSpec, CylinderSpec, FileSpec],
                        Field(discriminator="kind")]


class SourceSpec(_Model):
    particle: Particle = Particle.BACK_TO_BACK
    #: FWHM of the deviation from 180 degrees, degrees; back_to_back only (GATE: accolinearity_fwhm).
    #: Water gives about 0.5 degrees (ICRU); at most 10 (a larger value is a unit mistake, not a positron)
    acollinearity_fwhm_deg: float = Field(0.0, ge=0.0, le=10.0)


class AcquisitionSpec(_Model):
    """Acquisition: ``duration_s`` of the phantom's activity, or an explicit ``n_decays``."""

    duration_s: Optional[float] = Field(None, gt=0)
    n_decays: Optional[int] = Field(None, ge=1)
    seed: int = 12345

    @model_validator(mode="after")
    def _one(self):
        if (self.duration_s is None) == (self.n_decays is None):
            raise ValueError("acquisition needs exactly one of 'duration_s' or 'n_decays'")
        return self


class DigitizerSpec(_Model):
    """Digitiser chain of Thull et al., sec. 2.5 (defaults are the paper's values)."""

    readout: ReadoutPolicy = ReadoutPolicy.CENTROID
    energy_resolution: float = Field(0.12, gt=0, lt=1)  #: FWHM / 511 keV
    ctr_ps: float = Field(250.0, gt=0)  #: coincidence time resolution (FWHM of t1 - t2)
    energy_window_kev: tuple[float, float] = (450.0, 650.0)
    coincidence_window_ns: float = Field(5.0, gt=0)

    @field_validator("energy_window_kev")
    @classmethod
    def _ordered(cls, v):
        if not 0 <= v[0] < v[1]:
            raise ValueError(f"energy_window_kev must satisfy 0 <= low < high, got {v}")
        return v

    @property
    def single_time_sigma_ps(self) -> float:
        """Per-single Gaussian time sigma giving ``t1 - t2`` a FWHM of ``ctr_ps``: CTR / (2.3548 sqrt 2)."""
        return self.ctr_ps / (2.0 * np.sqrt(2.0 * np.log(2.0))) / np.sqrt(2.0)


class Scenario(_Model):
    """A whole simulation scenario (one TOML file); see the module docstring."""

    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    description: str = ""
    scanner: ScannerSpec
    misalignment: Optional[MisalignmentSpec] = None
    phantom: PhantomSpec
    source: SourceSpec = SourceSpec()
    acquisition: AcquisitionSpec
    digitizer: DigitizerSpec = DigitizerSpec()
    world_size_mm: Optional[float] = Field(None, gt=0)  #: default: enclose scanner and phantom
    #: attenuation in the phantom; the built-in MC can switch it off (GATE always attenuates)
    attenuation: bool = True

    # the folder of the file, for relative scanner files (not part of the data)
    base_dir: Optional[str] = Field(None, exclude=True)

    def build_blueprint(self):
        """The nominal :class:`refsuite.geometry.Scanner` (before the misalignment is drawn)."""
        return self.scanner.build(self.base_dir)

    def build_scanner(self, blueprint=None):
        """The (misaligned) :class:`refsuite.geometry.Scanner`; truth in ``.misalignment``.

        ``blueprint`` is the nominal scanner when already built (:meth:`build_blueprint`).
        """
        from refsuite.geometry import perturb

        scan = self.build_blueprint() if blueprint is None else blueprint
        m = self.misalignment
        if m is not None and (m.sigma_t_mm > 0 or m.sigma_r_deg > 0):
            scan = perturb(scan, sigma_t_mm=m.sigma_t_mm, sigma_r_deg=m.sigma_r_deg,
                           groups=True if m.groups else None, rng=np.random.default_rng(m.seed),
                           min_clearance_mm=None if m.allow_overlaps else 0.0)
        return scan

    def runs(self, *, overlap_hint: Optional[str] = None) -> list["Run"]:
        """The scenario's runs: one, or one per radial offset of a line-source sweep.

        Raises ValueError when blocks overlap (unless ``misalignment.allow_overlaps``; the
        message ends with ``overlap_hint``, by default how to allow it in the file) or a
        phantom would emit inside a detector block.
        """
        from refsuite import phantoms as ph

        spec, blueprint = self.phantom, self.build_blueprint()
        scanner = self.build_scanner(blueprint)
        if isinstance(spec, LineSpec):
            phi = np.deg2rad(spec.azimuth_deg)
            out = []
            for r in spec.radial_offsets_mm:
                p = ph.LineSource(position_mm=(float(r * np.cos(phi)), float(r * np.sin(phi))),
                                  radius_mm=spec.radius_mm, length_mm=spec.length_mm,
                                  centre_z_mm=spec.centre_z_mm, activity_bq=spec.activity_bq)
                label = f"r{r:g}mm" if len(spec.radial_offsets_mm) > 1 else ""
                out.append(Run(self, label, scanner, p, {"radial_offset_mm": float(r)}, blueprint))
        else:
            out = [Run(self, "", scanner, _phantom(spec, self.base_dir), {}, blueprint)]
        if not (self.misalignment is not None and self.misalignment.allow_overlaps):
            check_blocks_disjoint(scanner, hint=overlap_hint)
        for run in out:
            check_phantom_clear_of_blocks(run.scanner, run.phantom)
        return out

    def n_decays(self, phantom) -> int:
        """Decays of one run: ``n_decays`` or activity (Bq) x ``duration_s``."""
        a = self.acquisition
        return int(a.n_decays) if a.n_decays is not None else int(round(phantom.total_activity * a.duration_s))

    def duration_s(self, phantom) -> float:
        """Acquisition time of one run, s (``n_decays`` / activity when given as decays)."""
        a = self.acquisition
        return float(a.duration_s) if a.duration_s is not None else a.n_decays / phantom.total_activity


def _phantom(spec, base_dir=None):
    from refsuite import phantoms as ph

    if isinstance(spec, FileSpec):
        p = Path(spec.path)
        return ph.load_phantom(p if p.is_absolute() or base_dir is None else Path(base_dir) / p)
    if isinstance(spec, (PointsSpec, TubeSpec)):
        if spec.centres_mm is not None:
            centres = np.asarray(spec.centres_mm, float)
        else:
            centres = ph.PointSources.random(spec.n_sources, fov_radius_mm=spec.fov_radius_mm,
                                             fov_half_length_mm=spec.fov_half_length_mm,
                                             rng=np.random.default_rng(spec.seed)).centres_mm
        if isinstance(spec, TubeSpec):
            if spec.order == "nearest":
                centres = centres[_nearest_neighbour_order(centres)]
            return ph.Tube(centres, diameter_mm=spec.diameter_mm, activity_bq=spec.activity_bq)
        return ph.PointSources(centres, radius_mm=spec.radius_mm, activities_bq=spec.activity_bq, cube_mm=spec.cube_mm)
    if isinstance(spec, ShellSpec):
        return ph.CylindricalShell(inner_radius_mm=spec.inner_radius_mm, outer_radius_mm=spec.outer_radius_mm,
                                   length_mm=spec.length_mm, centre_mm=tuple(spec.centre_mm),
                                   activity_bq=spec.activity_bq)
    if isinstance(spec, HotRodSpec):
        kw = {} if spec.diameters_mm is None else {"diameters_mm": tuple(spec.diameters_mm)}
        return ph.HotRod(sector_radius_mm=spec.sector_radius_mm, body_radius_mm=spec.body_radius_mm,
                         length_mm=spec.length_mm, centre_mm=tuple(spec.centre_mm), rotation_deg=spec.rotation_deg,
                         activity_bq=spec.activity_bq, **kw)
    return ph.UniformCylinder(radius_mm=spec.radius_mm, length_mm=spec.length_mm, centre_mm=tuple(spec.centre_mm),
                              activity_bq=spec.activity_bq)


def _nearest_neighbour_order(points) -> np.ndarray:
    """Greedy path through ``points`` (K, 3): start at the lowest z, go to the nearest unvisited."""
    order = [int(np.argmin(points[:, 2]))]
    left = np.ones(len(points), bool)
    left[order[0]] = False
    while left.any():
        d = np.linalg.norm(points - points[order[-1]], axis=1)
        d[~left] = np.inf
        order.append(int(np.argmin(d)))
        left[order[-1]] = False
    return np.array(order)


def check_blocks_disjoint(scanner, *, hint: Optional[str] = None) -> None:
    """Raise ValueError naming the deepest pair when blocks of ``scanner`` intersect (Geant4
    rejects overlapping volumes); :func:`refsuite.geometry.check_block_clearance`. ``hint``
    (how to proceed) ends the message; by default how to allow overlaps in a scenario file."""
    from refsuite.geometry import check_block_clearance

    check_block_clearance(scanner, hint=hint or "use a scanner file with clear blocks, or set allow_overlaps = true "
                                                "in [misalignment]")


def check_phantom_clear_of_blocks(scanner, phantom, *, n_samples: int = 10000, seed: int = 0) -> None:
    """Raise ValueError when emission points of ``phantom`` fall inside a detector block.

    Checks ``n_samples`` sampled emission points (and a tube's centre line) against every
    block box of ``scanner``.
    """
    pts = phantom.sample(n_samples, np.random.default_rng(seed))
    if hasattr(phantom, "centre_line"):
        pts = np.concatenate([pts, phantom.centre_line(2000)])
    half = scanner.block_size / 2
    pos = scanner.positions
    # only pairs within the block's circumscribed sphere can be inside (a matrix product, cheap)
    d2 = (pts**2).sum(1)[:, None] + (pos**2).sum(1)[None] - 2.0 * pts @ pos.T
    n, b = np.nonzero(d2 <= (half**2).sum() * (1 + 1e-9))
    loc = np.einsum("kij,kj->ki", scanner.axes[b], pts[n] - pos[b])
    inside = np.all(np.abs(loc) <= half, axis=-1)
    if inside.any():
        k = int(np.argmax(inside))
        raise ValueError(f"phantom {type(phantom).__name__} emits inside detector block {b[k]} "
                         f"(e.g. at {np.round(pts[n[k]], 2).tolist()} mm)")


@dataclass(frozen=True)
class Run:
    """One simulation of a scenario: the scanner and phantom both engines use.

    Attributes
    ----------
    scenario : Scenario
    label : str
        Suffix distinguishing sweep points (``""`` for single-run scenarios).
    scanner : refsuite.geometry.Scanner
        The simulated (misaligned) scanner, the truth.
    phantom : refsuite.phantoms.Phantom
    parameters : dict
        The sweep parameters of this run (e.g. ``{"radial_offset_mm": 25.0}``).
    blueprint : refsuite.geometry.Scanner or None
        The nominal scanner, before the misalignment was drawn (``scanner`` when None).
    """

    scenario: Scenario
    label: str
    scanner: object
    phantom: object
    parameters: dict
    blueprint: object = None

    @property
    def nominal(self):
        """The blueprint, or the simulated scanner when no blueprint was recorded."""
        return self.scanner if self.blueprint is None else self.blueprint

    @property
    def n_decays(self) -> int:
        return self.scenario.n_decays(self.phantom)

    @property
    def duration_s(self) -> float:
        return self.scenario.duration_s(self.phantom)

    def output_path(self, out) -> Path:
        """``out`` for single runs, ``<stem>_<label>.root`` for sweep points."""
        out = Path(out)
        return out if not self.label else out.with_name(f"{out.stem}_{self.label}{out.suffix}")


def scenario_from_dict(d: dict, *, source: str = "<dict>", base_dir=None) -> Scenario:
    """Validate a scenario dictionary; errors are :class:`ScenarioError` naming ``source``."""
    try:
        return Scenario.model_validate({**d, "base_dir": None if base_dir is None else str(base_dir)})
    except ValidationError as exc:
        raise ScenarioError(f"{source}: invalid scenario: " + "; ".join(validation_lines(exc))) from None


def load_scenario(path) -> Scenario:
    """Read and validate a scenario TOML file (no simulation work is done here)."""
    path = Path(path)
    try:
        d = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read scenario ({exc})") from exc
    return scenario_from_dict(d, source=str(path), base_dir=path.parent)


def shipped_scenarios() -> dict[str, Path]:
    """The scenario files shipped in :data:`SCENARIO_DIR`, by stem."""
    return {p.stem: p for p in sorted(SCENARIO_DIR.glob("*.toml"))}
