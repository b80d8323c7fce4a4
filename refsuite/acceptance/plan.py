"""Acceptance plans: TOML files validated with pydantic before any work starts.

A plan names the scanner blueprint (the accepted geometry), the calibration scans and a
tolerance with its unit for every check it asks for::

    name = "after-module-swap"
    [scanner]
    file = "blueprint.json"          # or preset = "thull_sim" with options = {...}
    [data]
    point_sources = "points.root"    # ROOT (GATE 9/10), .npz list-mode or PETSIRD (.petsird/.ndjson)
    point_phantom = "points.json"    # the known tracer (refsuite.phantoms, PointSources/Tube)
    shell = "shell.root"
    timing = "timing.root"
    timing_phantom = "timing.json"   # PointSources at known positions, one at the iso-centre
    [checks.geometry]
    translation = "100 um"
    rotation = "0.1 deg"
    [checks.efficiency]
    min_fraction = 0.5
    [checks.timing]
    skew_change = "50 ps"
    ctr = "300 ps"
    [data.line_sweep]                # optional, for [checks.sensitivity]
    source_length_mm = 150
    points = [{ offset_mm = 0, file = "line_r0.npz" }, { offset_mm = 5, file = "line_r5.npz" }, ...]
    [checks.sensitivity]
    max_shape_deviation = "2 %"
    # optional: data.hot_rod + data.hot_rod_phantom and [checks.image_quality] min_pvr_fraction = "90 %"

Relative paths are relative to the plan file. Every error names the field (``data.shell``,
``checks.geometry.translation``) and nothing is computed or written before the plan is valid.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from refsuite._checks import validation_lines
from refsuite.geometry.spec import ScannerSpec
from refsuite.timing.listmode_skew import ChannelGranularity

from .quantities import Angle, Fraction, Length, Time

__all__ = ["AcceptancePlan", "PlanError", "load_plan", "plan_from_dict", "CHECK_NAMES", "DATA_FOR_CHECK"]


class PlanError(ValueError):
    """An acceptance plan that cannot be read or fails validation; the message names the fields."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class SweepPoint(_Model):
    """One acquisition of a line-source sweep."""

    offset_mm: float = Field(ge=0)  #: measured radial offset of the source, mm
    file: str
    exposure: float = Field(1.0, gt=0)  #: relative number of decays (activity x time) of this point


class LineSweep(_Model):
    """A line source along z stepped across the field of view (Lin et al., sec. III)."""

    source_length_mm: float = Field(gt=0)
    azimuth_deg: float = 0.0  #: sweep direction in the transaxial plane (0: +x)
    points: list[SweepPoint] = Field(min_length=3)


class DataFiles(_Model):
    """The calibration scans (paths) and the known phantoms behind them."""

    point_sources: Optional[str] = None  #: list-mode scan of known point sources (or a tube)
    point_phantom: Optional[str] = None  #: its phantom .json
    shell: Optional[str] = None  #: cylindrical-shell scan for fan-sum efficiencies
    timing: Optional[str] = None  #: timing scan of point sources at known positions
    timing_phantom: Optional[str] = None  #: its phantom .json (PointSources)
    line_sweep: Optional[LineSweep] = None  #: radial sensitivity sweep
    hot_rod: Optional[str] = None  #: hot-rod scan (image quality)
    hot_rod_phantom: Optional[str] = None  #: its phantom .json (HotRod)


class GeometryCheck(_Model):
    """ML alignment from the point-source scan (Thull et al.); per-block deviation from the
    blueprint after a global Procrustes fit. With ``tof``, the scan's timestamps must be
    skew-calibrated: the plan's timing check does it (its offsets are applied first), else
    the file's times are used as they are (100 ps of skew moves an event 15 mm along its LOR)."""

    translation: Length = "100 um"  #: largest allowed |translation| of a block
    rotation: Angle = "0.1 deg"  #: largest allowed tilt of a block axis
    n_iter: int = Field(200, ge=1)
    batch_size: int = Field(1_000_000, ge=2)
    tof: bool = True
    seed: int = Field(0, ge=0)


class EfficiencyCheck(_Model):
    """Fan-sum efficiencies from the shell scan; crystal voxels significantly below
    ``min_fraction`` of the median of their module and depth layer are dead or weak."""

    min_fraction: Fraction = 0.5
    false_alarm: float = Field(0.01, gt=0, lt=1)  #: chance of flagging any healthy voxel of the scanner
    fan_half_angle_deg: float = Field(50.0, gt=0, lt=180)


class TimingCheck(_Model):
    """First-order skew calibration and CTR at the iso-centre from the timing scan."""

    skew_change: Time = "50 ps"  #: largest allowed change of a channel offset since the baseline
    ctr: Time = "300 ps"  #: largest allowed CTR (FWHM) at the iso-centre after the skew calibration
    granularity: ChannelGranularity = ChannelGranularity.BLOCK
    max_source_distance_mm: float = Field(5.0, gt=0)


class SensitivityCheck(_Model):
    """Line-source sweep counts against the blueprint's block-quadrature profile
    (:func:`refsuite.sensitivity.block_profile_reference`) times a fitted efficiency."""

    max_shape_deviation: Fraction = "2 %"  #: largest relative departure from the reference shape
    z_max: float = Field(4.0, gt=0)  #: and only when statistically significant (|z| above this)


class ImageQualityCheck(_Model):
    """Hot-rod list-mode OSEM with the accepted geometry; peak-to-valley ratio per rod size."""

    #: of the baseline's PVR, for every rod size. Measured on thull_sim (2 mm voxels, 2e5 coincidences,
    #: 0.5 mm voxels, 3 x 8 OSEM): independent scans of one scanner give ratios 0.71-1.15 (the valleys
    #: of the large rods hold few counts); the blueprint used for a 1 mm / 1 deg misaligned scanner
    #: gives 0.36-0.86 (measured with the single sensitivity image lm_osem used before its per-subset
    #: default; both sides of the ratio share the pipeline). Longer scans allow a tighter bound.
    min_pvr_fraction: Fraction = "60 %"
    min_pvr_largest: float = Field(1.5, gt=0)  #: without a baseline: the largest rods must be resolved
    voxel_mm: float = Field(0.5, gt=0)
    n_iter: int = Field(3, ge=1)
    n_subsets: int = Field(8, ge=1)
    seed: int = Field(0, ge=0)
    #: lines of the sensitivity Monte Carlo (refsuite.recon.lm_osem's default sensitivity)
    n_sensitivity_lines: int = Field(4_000_000, ge=1)


class Checks(_Model):
    """The checks to run (any subset; unknown names are errors)."""

    geometry: Optional[GeometryCheck] = None
    efficiency: Optional[EfficiencyCheck] = None
    timing: Optional[TimingCheck] = None
    sensitivity: Optional[SensitivityCheck] = None
    image_quality: Optional[ImageQualityCheck] = None


#: the data each check needs
DATA_FOR_CHECK = {
    "geometry": ("point_sources", "point_phantom"),
    "efficiency": ("shell",),
    "timing": ("timing", "timing_phantom"),
    "sensitivity": ("line_sweep",),
    "image_quality": ("hot_rod", "hot_rod_phantom"),
}
CHECK_NAMES = tuple(DATA_FOR_CHECK)


class AcceptancePlan(_Model):
    """A whole acceptance plan (one TOML file); see the module docstring."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    scanner: ScannerSpec
    data: DataFiles
    checks: Checks
    base_dir: Optional[str] = Field(None, exclude=True)  #: folder of the plan file (relative paths)

    @model_validator(mode="after")
    def _data_for_checks(self):
        missing = [f"checks.{c} needs data.{d}" for c in self.enabled_checks()
                   for d in DATA_FOR_CHECK[c] if getattr(self.data, d) is None]
        if missing:
            raise ValueError("; ".join(missing))
        if not self.enabled_checks():
            raise ValueError(f"the plan enables no check; add at least one of [checks.{']/[checks.'.join(CHECK_NAMES)}]")
        return self

    def enabled_checks(self) -> list[str]:
        return [c for c in CHECK_NAMES if getattr(self.checks, c) is not None]

    def path(self, field: str) -> Path:
        """Absolute path of ``data.<field>``."""
        return self.resolve(getattr(self.data, field))

    def resolve(self, name) -> Path:
        """A path of the plan, relative to the plan's folder."""
        p = Path(name)
        return p if p.is_absolute() or self.base_dir is None else Path(self.base_dir) / p

    def build_scanner(self):
        """The blueprint :class:`refsuite.geometry.Scanner`."""
        return self.scanner.build(self.base_dir)


def _format(exc: ValidationError, source: str) -> str:
    return f"invalid acceptance plan {source}:\n" + "\n".join("  " + line for line in validation_lines(exc))


def plan_from_dict(d: dict, *, source: str = "<dict>", base_dir=None) -> AcceptancePlan:
    """Validate a plan given as a dict; files are checked for existence (errors name the field)."""
    try:
        plan = AcceptancePlan(**d, base_dir=None if base_dir is None else str(base_dir))
    except ValidationError as exc:
        raise PlanError(_format(exc, source)) from None
    except TypeError as exc:
        raise PlanError(f"invalid acceptance plan {source}: {exc}") from None
    problems = [f"  data.{f}: file not found: {plan.path(f)}" for f in DataFiles.model_fields
                if f != "line_sweep" and getattr(plan.data, f) is not None and not plan.path(f).is_file()]
    if plan.data.line_sweep is not None:
        problems += [f"  data.line_sweep.points.{i}.file: file not found: {plan.resolve(p.file)}"
                     for i, p in enumerate(plan.data.line_sweep.points) if not plan.resolve(p.file).is_file()]
    p = plan.scanner.path(base_dir)
    if p is not None and not p.is_file():
        problems.append(f"  scanner.file: file not found: {p}")
    if problems:
        raise PlanError(f"invalid acceptance plan {source}:\n" + "\n".join(problems))
    try:
        plan.build_scanner()
    except (ValueError, TypeError, OSError) as exc:
        raise PlanError(f"invalid acceptance plan {source}:\n  scanner: {exc}") from None
    return plan


def load_plan(path) -> AcceptancePlan:
    """Read and validate an acceptance plan TOML file (see the module docstring)."""
    path = Path(path)
    try:
        d = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise PlanError(f"acceptance plan not found: {path}") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PlanError(f"cannot read acceptance plan {path}: {exc}") from None
    return plan_from_dict(d, source=str(path), base_dir=path.resolve().parent)
