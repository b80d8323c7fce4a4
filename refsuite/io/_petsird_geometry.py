"""Our :class:`~refsuite.geometry.Scanner` as a PETSIRD ``ScannerGeometry`` and back.

Private helpers of :mod:`refsuite.io.petsird`. The mapping (PETSIRD model files
``GeometryInformation.yml`` and ``DetectorInformation.yml``, petsird 0.12):

* block ``d`` -> module instance ``d``, placed by the ``RigidTransformation``
  ``[A_d^T | P_d]`` (3 x 4): ``global = A_d^T l + P_d``, which is our
  ``P_d + l @ A_d`` (:mod:`refsuite.geometry.scanner`);
* crystal voxel ``m`` -> a detecting element: an axis-aligned ``BoxShape`` of half-sizes
  ``h_m`` centred on the module origin, placed by a pure translation ``L_m``. PETSIRD
  requires the elements of one module type to be identical boxes, so crystals are grouped
  by half-size into module types (in order of first appearance in the LUT); every type is
  replicated with the same module transforms. A crystal's id is its type's offset plus its
  element index, so ids survive when crystals of one size are contiguous in the LUT (every
  preset).

PETSIRD stores coordinates and matrices as 32-bit floats: positions round to nearest
(``|dP_i| <= 2^-24 |P_i|``), and rotations are re-orthonormalised (nearest rotation, SVD) on
reading (see :mod:`refsuite.io.petsird` for the bounds).
"""

from __future__ import annotations

import numpy as np

__all__ = ["crystal_types", "scanner_geometry", "scanner_from_info"]

#: Corner order of a box (as petsird's example generator builds one): x slowest, then z, y.
_CORNER_SIGNS = np.array([[-1, -1, -1], [-1, -1, 1], [-1, 1, 1], [-1, 1, -1],
                          [1, -1, -1], [1, -1, 1], [1, 1, 1], [1, 1, -1]], float)
_MU_PER_MM = {"LYSO": 0.087}  # refsuite's LYSO at 511 keV (refsuite.geometry.Scanner)


def crystal_types(lut):
    """Group crystal voxels by half-size.

    Returns
    -------
    kind : int array (M,)
        Module type of each crystal (types numbered in order of first appearance).
    element : int array (M,)
        Index of each crystal among the elements of its type.
    half_sizes : ndarray (K, 3)
        Half-sizes of each type, mm.
    """
    uniq, first, inverse = np.unique(lut.half_sizes, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    kind = rank[np.asarray(inverse).reshape(-1)]
    element = np.empty(len(kind), np.int64)
    for k in range(len(order)):
        idx = np.flatnonzero(kind == k)
        element[idx] = np.arange(len(idx))
    return kind, element, uniq[order]


def _transform(rotation, translation):
    import petsird

    m = np.concatenate([np.asarray(rotation, float), np.asarray(translation, float)[:, None]], 1)
    return petsird.RigidTransformation(matrix=m.astype(np.float32))


def scanner_geometry(scanner, kind, half_sizes, material_id: int = 0):
    """``petsird.ScannerGeometry`` of ``scanner``: one replicated module type per crystal size."""
    import petsird

    modules = [_transform(a.T, p) for a, p in zip(scanner.axes, scanner.positions)]
    eye = np.eye(3)
    types = []
    for k, h in enumerate(half_sizes):
        corners = [petsird.Coordinate(c=(s * h).astype(np.float32)) for s in _CORNER_SIGNS]
        box = petsird.BoxSolidVolume(shape=petsird.BoxShape(corners=corners), material_id=material_id)
        elements = petsird.ReplicatedBoxSolidVolume(
            object=box, transforms=[_transform(eye, c) for c in scanner.crystals.centres[kind == k]])
        types.append(petsird.ReplicatedDetectorModule(object=petsird.DetectorModule(detecting_elements=elements),
                                                      transforms=list(modules)))
    return petsird.ScannerGeometry(replicated_modules=types)


def _matrices(transforms):
    return np.array([np.asarray(t.matrix, float).reshape(3, 4) for t in transforms]).reshape(-1, 3, 4)


def _rigid(mats, path, what):
    """Rotations (n, 3, 3) re-orthonormalised and translations (n, 3) of 3 x 4 matrices."""
    r, t = mats[:, :, :3], mats[:, :, 3]
    u, s, vt = np.linalg.svd(r)
    if np.any(np.abs(s - 1.0) > 1e-4) or np.any(np.linalg.det(r) <= 0):
        bad = int(np.flatnonzero((np.abs(s - 1.0) > 1e-4).any(1) | (np.linalg.det(r) <= 0))[0])
        raise ValueError(f"{path}: {what} {bad} is not a rotation (singular values {s[bad].tolist()}, "
                         f"det {np.linalg.det(r[bad]):.6g}); only rigid, right-handed transforms are supported")
    return u @ vt, t


def _element_boxes(det_els, path, k):
    """Centres and half-sizes (n_el, 3) of a module type's detecting elements in the module frame."""
    shape = det_els.object.shape
    corners = np.array([np.asarray(c.c, float) for c in shape.corners]).reshape(-1, 3)
    rot, trans = _rigid(_matrices(det_els.transforms), path, f"module type {k}: element transform")
    pts = np.einsum("eij,cj->eci", rot, corners) + trans[:, None, :]
    lo, hi = pts.min(1), pts.max(1)
    span = hi - lo
    tol = 1e-5 * max(1.0, float(np.abs(pts).max(initial=0.0)))
    # a cuboid aligned with the module axes: every corner on a face pair, the 8 corners distinct
    on_face = np.minimum(np.abs(pts - lo[:, None]), np.abs(pts - hi[:, None])) <= tol
    pattern = (np.abs(pts - hi[:, None]) <= tol).astype(int) @ np.array([4, 2, 1])
    distinct = np.array([len(np.unique(p)) == 8 for p in pattern]) if len(pts) else np.array([], bool)
    ok = on_face.all((1, 2)) & distinct & (span > tol).all(1)
    if not ok.all():
        e = int(np.flatnonzero(~ok)[0])
        raise ValueError(f"{path}: module type {k}, detecting element {e} is not a rectangular box aligned with "
                         f"its module (corners {np.round(pts[e], 4).tolist()} mm); refsuite supports only "
                         "axis-aligned cuboid crystals")
    return (lo + hi) / 2, span / 2


def _doi_permutation(rot, where):
    """Signed axis permutation Q (3, 3) making local Y the outward radial and Z the axial axis.

    Our convention (Thull et al., sec. 2.1): local Y is the depth of interaction, pointing
    away from the field of view; Z is along the scanner axis. The module axis most aligned
    (on average over modules) with the outward radial direction becomes Y, the remaining
    one most aligned with global z becomes Z, and X = Y x Z. Identity for files we write.
    """
    radial = where.copy()  # global centres of the modules' crystals
    radial[:, 2] = 0.0
    norm = np.linalg.norm(radial, axis=1)
    if not np.any(norm > 1e-9):
        return np.eye(3)
    radial = radial[norm > 1e-9] / norm[norm > 1e-9, None]
    score = np.einsum("nij,ni->j", rot[norm > 1e-9], radial) / len(radial)  # columns = module axes
    jy = int(np.argmax(np.abs(score)))
    rest = [j for j in range(3) if j != jy]
    zscore = rot[:, 2, rest].mean(0)
    jz = rest[int(np.argmax(np.abs(zscore)))]
    e = np.eye(3)
    y = np.copysign(1.0, score[jy]) * e[jy]
    z = (1.0 if rot[:, 2, jz].mean() >= 0 else -1.0) * e[jz]
    return np.stack([np.cross(y, z), y, z])


def scanner_from_info(info, path, *, mu_per_mm=None):
    """Our Scanner from ``petsird.ScannerInformation``; also each type's crystal ids.

    Returns
    -------
    scanner : Scanner
    crystal_ids : list of int arrays
        ``crystal_ids[k][e]`` is our crystal id of element ``e`` of module type ``k``.
    """
    from refsuite.geometry import CrystalLUT, Scanner

    types = info.scanner_geometry.replicated_modules
    if not types:
        raise ValueError(f"{path}: the scanner geometry has no detector modules")
    mats = _matrices(types[0].transforms)
    for k, t in enumerate(types[1:], 1):
        if not np.array_equal(_matrices(t.transforms), mats):
            raise ValueError(f"{path}: module type {k} is placed differently from type 0 ({len(t.transforms)} vs "
                             f"{len(mats)} modules); refsuite needs every module type on the same modules")
    if info.gantry_alignment is not None:
        g = np.vstack([np.asarray(info.gantry_alignment.matrix, float).reshape(3, 4), [0, 0, 0, 1]])
        homogeneous = np.concatenate([mats, np.tile([[[0, 0, 0, 1.0]]], (len(mats), 1, 1))], 1)
        mats = np.einsum("ij,njk->nik", g[:3], homogeneous)  # PET gantry -> reference frame
    rot, pos = _rigid(mats, path, "module transform")
    boxes = [_element_boxes(t.object.detecting_elements, path, k) for k, t in enumerate(types)]
    centres = np.concatenate([c for c, _ in boxes])
    half = np.concatenate([h for _, h in boxes])
    mid = ((centres - half).min(0) + (centres + half).max(0)) / 2  # crystals' centre, module frame
    q = _doi_permutation(rot, pos + rot @ mid)
    axes = np.einsum("ij,njk->nik", q, np.swapaxes(rot, 1, 2))  # rows: local X, Y, Z in the global frame
    if not np.array_equal(q, np.eye(3)):
        centres, half = centres @ q.T, np.abs(half @ q.T)
    lo, hi = (centres - half).min(0), (centres + half).max(0)
    if np.all(lo <= 0) and np.all(hi >= 0):  # module origin inside the crystals: it is the block centre
        size = 2 * np.maximum(-lo, hi)
    else:  # e.g. modules placed about the scanner centre: centre the block on its crystals
        shift = (lo + hi) / 2
        centres, pos, size = centres - shift, pos + shift @ axes, hi - lo
    material = _material(info, types[0].object.detecting_elements.object.material_id)
    if mu_per_mm is None:
        if material.upper() not in _MU_PER_MM:
            raise ValueError(f"{path}: crystal material {material!r} has no known attenuation coefficient; "
                             f"pass mu_per_mm= (1/mm at 511 keV); known: {sorted(_MU_PER_MM)}")
        mu_per_mm = _MU_PER_MM[material.upper()]
    scanner = Scanner(pos, axes, size, CrystalLUT(centres, half), material=material or "unknown", mu_per_mm=mu_per_mm,
                      name=info.model_name or "petsird", metadata={"source": "petsird", "file": str(path)})
    offsets = np.cumsum([0] + [len(c) for c, _ in boxes])
    return scanner, [np.arange(offsets[k], offsets[k + 1]) for k in range(len(types))]


def _material(info, material_id):
    for m in info.bulk_materials or []:
        if m.id == material_id:
            return m.name
    return ""
