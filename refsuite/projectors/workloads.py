"""The benchmark workloads of BENCHMARKS.md, as seeded generators (shared by tests and studies).

List-mode projector workload: a 200^3 image of 1 mm voxels centred at 0; LOR end points on a
150 mm radius cylinder, z uniform in +-80 mm, the second end point opposite the first with a
N(0, 0.6 rad) angular jitter; TOF: 250 ps FWHM CTR (sigma 15.9 mm), 10 mm bins, 3 sigma
truncation, bins uniform in -5..5. BENCHMARKS.md's second image, 128x128x32, comes without voxel
sizes; here it has 2 x 2 x 5 mm voxels, so that it spans the LOR cylinder (256 x 256 x 160 mm).
"""

from __future__ import annotations

import numpy as np
import torch

from .tof import TOFParameters

__all__ = ["cylinder_lors", "BENCHMARK_TOF", "PARALLELPROJ_EVENTS_PER_S", "benchmark_image_geometry",
           "BENCHMARK_IMAGES", "TORCH_PATH_VS_PARALLELPROJ"]

#: parallelproj 1.10.2 C/OpenMP on 2 cores, 1e6 LORs, 200^3 image (BENCHMARKS.md), events/s.
PARALLELPROJ_EVENTS_PER_S = {"non-TOF": 1.32e5, "TOF": 1.42e5}

#: BENCHMARKS.md side by side: events/s of refsuite's torch path / parallelproj 1.10.2's, same run,
#: 1e6 LORs fwd + back, float32, by (image, mode, threads); ``(low, high)`` where a range is given.
TORCH_PATH_VS_PARALLELPROJ = {
    ("200^3", "non-TOF", 1): (1.53, 1.53), ("200^3", "non-TOF", 2): (0.43, 0.89),
    ("200^3", "TOF", 1): (2.24, 2.24), ("200^3", "TOF", 2): (0.67, 1.14),
    ("128x128x32", "non-TOF", 1): (1.05, 1.05), ("128x128x32", "non-TOF", 2): (1.30, 1.30),
    ("128x128x32", "TOF", 1): (1.38, 1.38), ("128x128x32", "TOF", 2): (1.43, 1.43),
}

#: TOF settings of the benchmark (250 ps FWHM -> sigma 15.9 mm along the LOR, 10 mm bins).
BENCHMARK_TOF = TOFParameters(num_bins=11, bin_width_mm=10.0, sigma_mm=15.9, n_sigmas=3.0)


def benchmark_image_geometry(n: int = 200, voxel_mm: float = 1.0):
    """``(shape, voxel_size, origin)`` of an ``n^3`` image of ``voxel_mm`` voxels centred at 0."""
    origin = -(n - 1) / 2.0 * voxel_mm
    return (n, n, n), (voxel_mm,) * 3, (origin,) * 3


#: ``(shape, voxel_size, origin)`` of the benchmark images (mm), centred at 0.
BENCHMARK_IMAGES = {
    "200^3": ((200, 200, 200), (1.0, 1.0, 1.0), (-99.5, -99.5, -99.5)),
    "128x128x32": ((128, 128, 32), (2.0, 2.0, 5.0), (-127.0, -127.0, -77.5)),
}


def cylinder_lors(n_lor: int, *, rng: np.random.Generator, radius_mm: float = 150.0, half_z_mm: float = 80.0,
                  jitter_rad: float = 0.6, dtype=torch.float32, device="cpu"):
    """LOR end points on a cylinder: ``(xstart, xend, tof_bin)``, tensors (n,3), (n,3), (n,).

    ``tof_bin`` is uniform over the integers -5..5 (the benchmark's TOF bins).
    """
    phi = rng.uniform(0.0, 2.0 * np.pi, n_lor)
    phi2 = phi + np.pi + rng.normal(0.0, jitter_rad, n_lor)
    z1 = rng.uniform(-half_z_mm, half_z_mm, n_lor)
    z2 = rng.uniform(-half_z_mm, half_z_mm, n_lor)
    xs = np.stack([radius_mm * np.cos(phi), radius_mm * np.sin(phi), z1], axis=1)
    xe = np.stack([radius_mm * np.cos(phi2), radius_mm * np.sin(phi2), z2], axis=1)
    tb = rng.integers(-5, 6, n_lor).astype(np.float64)
    t = lambda a: torch.as_tensor(a, dtype=dtype, device=device)
    return t(xs), t(xe), t(tb)
