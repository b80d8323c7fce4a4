"""Detector-pair model: geometry and the physics parameters of the timing simulator.

Frame of the detector pair (local to this sub-package): ``z`` is the axis connecting the
two detector stacks, from detector A (front face at ``z = -distance/2``) to detector B (front
face at ``z = +distance/2``); ``x`` and ``y`` span the planes of the front faces. The time
difference is ``dt = t_A - t_B`` (ps), so a source at ``z`` has the expected time difference
``2 z / c`` (Naunheim et al. 2025, eq. 3).

Channels are numbered row-major over the 4 x 4 SiPM array, ``k = 4 * iy + ix`` with ``ix``
along x; crystal ``k`` sits on SiPM ``k`` (one-to-one coupling, light sharing between them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from refsuite._checks import check_in_range, check_positive
from refsuite.constants import SPEED_OF_LIGHT_MM_PER_PS

__all__ = ["SPEED_OF_LIGHT_MM_PER_PS", "DetectorModel", "expected_time_difference"]

#: Speed of light in vacuum (mm/ps).


def expected_time_difference(z_mm):
    """Expected time difference ``t_A - t_B`` (ps) of a source at axial position ``z_mm`` (mm).

    ``dt = 2 z / c`` (Naunheim et al. 2025, eq. 3); broadcasts over arrays.
    """
    z = np.asarray(z_mm, dtype=np.float64)
    out = 2.0 * z / SPEED_OF_LIGHT_MM_PER_PS
    return out if out.ndim else float(out)


@dataclass(frozen=True)
class DetectorModel:
    """Geometry and timing physics of two identical facing light-sharing detector stacks.

    The defaults describe the paper's setup (Naunheim et al. 2025, sec. 2.1-2.2: 4 x 4 LYSO
    crystals of 3.8 x 3.8 x 20 mm on a 4 x 4 SiPM array of 3.8 mm pitch, TOFPET2 readout,
    stacks 565 mm apart, 0.5 mm 22Na source). The jitter and skew magnitudes are chosen so
    that the simulated detectors land near the paper's figures: about 200 ps CTR with every
    deterministic skew removed, about 370 ps after a constant per-channel calibration only.

    Timestamp of channel ``k`` of one detector (ps), for an interaction at depth ``d``
    (mm from the front face) in crystal ``c`` depositing light ``e_k`` (a.u.) in channel ``k``::

        t_k = t_gamma + d / c + optical_path_factor * n_lyso * (L - d) / c   # DOI transit
              + share_delay_ps_per_mm * r_ck                                 # light sharing
              + walk_k * (walk_reference_au / a_k) ** walk_exponent         # time walk
              + skew_k                                                      # first order
              + j_common                                                    # per detector
              + N(0, sqrt(jitter_electronic_ps**2
                          + jitter_photostat_ps**2 * walk_reference_au / e_k))

    with ``r_ck`` the lateral distance (mm) between crystal ``c`` and SiPM ``k``, ``a_k`` the
    signal amplitude (the channel's mean light times its gain and a log-normal fluctuation
    ``walk_amplitude_noise`` independent of the measured energy ``e_k``: the leading edge and
    the integrated charge see different photons) and ``j_common ~ N(0, jitter_common_ps)``
    shared by all channels of a detector in one event (scintillation and light-transport
    fluctuations seen by every SiPM of the light-sharing array). The random parts of walk
    and the common jitter cannot be learned from the hits; the independent channel jitter
    can partly be averaged over channels. The cluster timestamp is that of the main channel
    (highest energy).

    Attributes
    ----------
    distance_mm : float
        Distance between the two front faces (mm).
    n_side : int
        Crystals (and SiPMs) per side of the array.
    pitch_mm : float
        Crystal and SiPM pitch (mm).
    crystal_length_mm : float
        Crystal length along the detector axis (mm).
    source_diameter_mm : float
        Diameter of the spherical active volume of the 22Na source (mm).
    mu_per_mm : float
        Linear attenuation coefficient of LYSO at 511 keV (1/mm).
    full_absorption_prob : float
        Probability that an interacting photon deposits its full 511 keV.
    inter_crystal_prob : float
        Probability that a fully absorbed photon shares its energy with a neighbour crystal
        (Compton scatter followed by absorption one crystal away).
    energy_resolution_fwhm : float
        Relative energy resolution (FWHM) of the cluster energy at 511 keV.
    gain_spread : float
        Relative standard deviation of the per-channel gains.
    own_fraction_front, own_fraction_back : float
        Fraction of the light reaching the crystal's own SiPM for an interaction at the
        front face (far from the SiPM) and at the back face (on the SiPM); linear in depth.
    share_length_mm : float
        Decay length (mm) of the light shared with the other SiPMs, ``exp(-r / length)``.
    trigger_threshold_au : float
        Channel energy (a.u.) above which a channel triggers and reports a hit.
    n_lyso : float
        Effective (group) refractive index of LYSO for the scintillation light.
    optical_path_factor : float
        Mean optical path over straight path to the SiPM (reflections at depolished faces).
    share_delay_ps_per_mm : float
        Extra arrival delay of the light reaching a SiPM off the interaction crystal (ps/mm).
    walk_ps : float
        Mean time-walk coefficient (ps) at ``walk_reference_au``.
    walk_spread : float
        Relative standard deviation of the per-channel walk coefficients.
    walk_reference_au : float
        Reference channel energy (a.u.) of the walk and photostatistics terms.
    walk_exponent : float
        Exponent of the leading-edge walk, ``walk ~ e ** -walk_exponent``.
    skew_sigma_ps : float
        Standard deviation of the constant per-channel skews (ps).
    jitter_electronic_ps : float
        Energy-independent single-channel jitter (ps, 1 sigma).
    jitter_photostat_ps : float
        Photostatistical single-channel jitter at ``walk_reference_au`` (ps, 1 sigma),
        scaling as ``e ** -1/2``.
    jitter_common_ps : float
        Event-wise jitter shared by all channels of one detector (ps, 1 sigma).
    walk_amplitude_noise : float
        Relative (log-normal sigma) fluctuation of the leading-edge amplitude that drives
        the walk, independent of the measured channel energy.
    """

    distance_mm: float = 565.0
    n_side: int = 4
    pitch_mm: float = 3.8
    crystal_length_mm: float = 20.0
    source_diameter_mm: float = 0.5
    mu_per_mm: float = 0.087
    full_absorption_prob: float = 0.6
    inter_crystal_prob: float = 0.25
    energy_resolution_fwhm: float = 0.11
    gain_spread: float = 0.05
    own_fraction_front: float = 0.40
    own_fraction_back: float = 0.75
    share_length_mm: float = 3.8
    trigger_threshold_au: float = 10.0
    n_lyso: float = 1.82
    optical_path_factor: float = 1.5
    share_delay_ps_per_mm: float = 8.0
    walk_ps: float = 210.0
    walk_spread: float = 0.2
    walk_reference_au: float = 300.0
    walk_exponent: float = 1.0
    skew_sigma_ps: float = 250.0
    jitter_electronic_ps: float = 20.0
    jitter_photostat_ps: float = 38.0
    jitter_common_ps: float = 40.0
    walk_amplitude_noise: float = 0.12

    def __post_init__(self) -> None:
        for name in ("distance_mm", "pitch_mm", "crystal_length_mm", "mu_per_mm", "share_length_mm",
                     "trigger_threshold_au", "n_lyso", "optical_path_factor", "walk_reference_au"):
            check_positive(name, getattr(self, name))
        if not isinstance(self.n_side, (int, np.integer)) or self.n_side < 1:
            raise ValueError(f"n_side must be an integer >= 1, got {self.n_side!r}")
        for name in ("full_absorption_prob", "inter_crystal_prob", "own_fraction_front", "own_fraction_back"):
            check_in_range(name, getattr(self, name), 0.0, 1.0)
        for name in ("source_diameter_mm", "energy_resolution_fwhm", "gain_spread", "share_delay_ps_per_mm",
                     "walk_ps", "walk_spread", "walk_exponent", "skew_sigma_ps", "jitter_electronic_ps",
                     "jitter_photostat_ps", "jitter_common_ps", "walk_amplitude_noise"):
            check_in_range(name, getattr(self, name), 0.0, np.inf)

    @property
    def n_channels(self) -> int:
        """Channels (SiPMs) per detector."""
        return self.n_side * self.n_side

    @property
    def half_width_mm(self) -> float:
        """Half the lateral size of the crystal array (mm)."""
        return 0.5 * self.n_side * self.pitch_mm

    def channel_centres_mm(self) -> np.ndarray:
        """Lateral centres (x, y) of the channels (mm), shape (n_channels, 2)."""
        c = (np.arange(self.n_side) + 0.5) * self.pitch_mm - self.half_width_mm
        ix, iy = np.meshgrid(np.arange(self.n_side), np.arange(self.n_side), indexing="xy")
        return np.stack([c[ix.ravel()], c[iy.ravel()]], axis=1)

    def channel_distances_mm(self) -> np.ndarray:
        """Lateral distance (mm) between crystal ``c`` and SiPM ``k``, shape (n_channels, n_channels)."""
        xy = self.channel_centres_mm()
        return np.linalg.norm(xy[:, None, :] - xy[None, :, :], axis=-1)

    def share_matrix(self) -> np.ndarray:
        """Normalised light shared with the other SiPMs, ``W[c, k]`` (rows sum to 1, zero diagonal)."""
        r = self.channel_distances_mm()
        w = np.exp(-r / self.share_length_mm)
        np.fill_diagonal(w, 0.0)
        if self.n_channels == 1:
            return w
        return w / w.sum(axis=1, keepdims=True)

    def as_dict(self) -> dict:
        """Parameters as a plain dictionary (for the recorded truth and model files)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "DetectorModel":
        """Inverse of :meth:`as_dict`; unknown keys raise ``ValueError``."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"DetectorModel: unknown parameters {unknown}; known: {sorted(names)}")
        return cls(**values)
