"""``refsuite pvc simulate|train|correct|evaluate`` (heavy imports inside the handlers).

Each handler checks its inputs and output location first (:mod:`refsuite._cli_errors`): a bad
input is one line on stderr and exit status 2, and nothing is written.
"""

from __future__ import annotations

import argparse
import json

from refsuite._cli_errors import (
    UsageError, check_memory, count, device, input_dir, input_file, nonnegative_int, output_dir, output_file,
    positive_float, positive_int, positive_int_list, reading, require_device,
)
from refsuite.execution import add_execution_flags, check_execution, executor_from_args

_MODEL = "a DL-PVC model from 'refsuite pvc train' (.pt)"
_NIFTI = "a 3-D NIfTI image (.nii or .nii.gz)"


def _name_list(text: str) -> tuple[str, ...]:
    values = tuple(t.strip() for t in text.split(","))
    if not all(values):
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return values


def register(subparsers) -> None:
    p = subparsers.add_parser("pvc", help="177Lu SPECT partial-volume correction (Leube et al.)",
                              description="Simulate a DL-PVC dataset, train, correct NIfTI images, evaluate.")
    sub = p.add_subparsers(dest="pvc_command", required=True, metavar="ACTION")

    s = sub.add_parser("simulate", help="generate (or resume) a dataset directory")
    s.add_argument("--out", required=True, metavar="DIR")
    s.add_argument("--cases", type=count, required=True, help="number of cases (>= 1)")
    s.add_argument("--quick", action="store_true", help="the quick study's 16x24x24 / 24-view configuration")
    s.add_argument("--seed", type=nonnegative_int, default=12345)
    s.add_argument("--chunk-size", type=positive_int, default=8, help="cases per chunk file (default 8)")
    s.add_argument("--device", type=device, default="cpu")
    add_execution_flags(s, what="the chunks (one task each; DIR on a shared file system)")
    s.set_defaults(func=_simulate)

    t = sub.add_parser("train", help="train DL-PVC on a dataset (checkpoints, resume)")
    t.add_argument("--data", required=True, metavar="DIR")
    t.add_argument("--out", required=True, metavar="MODEL.pt")
    t.add_argument("--checkpoint-dir", metavar="DIR")
    t.add_argument("--arch", choices=["r2unet", "unet"], default="r2unet")
    t.add_argument("--features", type=positive_int_list, default=(16, 32, 64, 128),
                   help="channels per level, comma-separated")
    t.add_argument("--inputs", type=_name_list, default=("RR_n", "RR_nf"), help="dataset images used as inputs")
    t.add_argument("--epochs", type=positive_int, default=50)
    t.add_argument("--batch-size", type=positive_int, default=2)
    t.add_argument("--lr", type=positive_float, default=1e-3)
    t.add_argument("--patch", type=positive_int, default=None,
                   help="train on patches of this edge (voxels; 8 ... the images' largest edge)")
    t.add_argument("--loss", choices=["mse", "l1"], default="l1")
    t.add_argument("--schedule", choices=["cosine", "constant"], default="cosine", help="learning-rate schedule")
    t.add_argument("--seed", type=nonnegative_int, default=0)
    t.add_argument("--device", type=device, default="cpu")
    t.set_defaults(func=_train)

    c = sub.add_parser("correct", help="correct a NIfTI SPECT image (affine kept)",
                       description="Correct a SPECT image (activity concentration >= 0, in the unit the model was "
                                   "trained on). --method dl refuses an image whose voxel size differs from the "
                                   "model's unless --resample is given.")
    c.add_argument("image", metavar="IN.nii[.gz]")
    c.add_argument("output", metavar="OUT.nii[.gz]")
    c.add_argument("--method", choices=["dl", "iy"], default="dl")
    c.add_argument("--model", metavar="MODEL.pt", help="for --method dl")
    c.add_argument("--patch", type=positive_int, default=None, help="sliding-window edge (voxels)")
    c.add_argument("--labels", metavar="LABELS.nii[.gz]", help="region labels for --method iy")
    c.add_argument("--fwhm-mm", type=positive_float, help="PSF FWHM for --method iy (mm)")
    c.add_argument("--iterations", type=positive_int, default=10, help="IY-PVC iterations (>= 1)")
    c.add_argument("--resample", action="store_true",
                   help="--method dl: when the image's voxel size is not the model's, resample it (trilinear) onto "
                        "the model's voxel size over the same field of view, correct, and resample the result back "
                        "onto the image's grid (else an error)")
    c.add_argument("--device", type=device, default="cpu")
    c.set_defaults(func=_correct)

    e = sub.add_parser("evaluate", help="metrics of none / IY-PVC / DL-PVC on a dataset (JSON)")
    e.add_argument("--data", required=True, metavar="DIR")
    e.add_argument("--model", required=True, metavar="MODEL.pt")
    e.add_argument("--key", default="RR_n")
    e.add_argument("--fwhm-mm", type=positive_float, help="IY-PVC resolution; default: matched-filter estimate")
    e.add_argument("--device", type=device, default="cpu")
    e.set_defaults(func=_evaluate)


# Peak memory per voxel of one simulated case (float64 projections, OSEM of noisy and noise-free
# data together, PSF kernels), and per voxel and feature channel (sum over levels of features /
# 8**level) of one training sample (activations and gradients of the R2U-Net, float32): peak
# RSS growth measured on the quick configuration (16x24x24, chunks of 8 and 16 cases; batches
# of 2 and 4), rounded up. Used only to refuse runs that cannot fit, before they start.
_SIM_BYTES_PER_VOXEL = 2500
_TRAIN_BYTES_PER_VOXEL_CHANNEL = 700


def _simulate(args: argparse.Namespace) -> int:
    import numpy as np

    from . import DatasetConfig, simulate_dataset

    output_dir(args.out, "--out")
    require_device(args.device)
    cfg = DatasetConfig(shape=(16, 24, 24), n_views=24, time_per_view_s=150.0) if args.quick else DatasetConfig()
    check_execution(args.workers, args.scheduler, names=("--workers", "--scheduler"))
    chunk = min(args.chunk_size, args.cases)
    local = min(args.workers or 1, -(-args.cases // chunk))  # chunks simulated at once on this machine
    check_memory(local * chunk * int(np.prod(cfg.shape)) * _SIM_BYTES_PER_VOXEL, "--chunk-size", args.chunk_size,
                 f"cases of {'x'.join(map(str, cfg.shape))} voxels are simulated a chunk at a time "
                 f"({local} chunk{'' if local == 1 else 's'} at once); use a smaller --chunk-size or fewer --workers")
    _check_disk(args.out, args.cases * int(np.prod(cfg.shape)) * 4 * (6 + 2 * len(cfg.recons)), "--cases", args.cases)
    with executor_from_args(args) as ex:
        path = simulate_dataset(args.out, args.cases, config=cfg, seed=args.seed, chunk_size=args.chunk_size,
                                device=args.device, executor=ex)
    print(f"dataset: {path}")
    return 0


def _check_disk(out, need_bytes: float, flag: str, value) -> None:
    """Refuse a dataset whose uncompressed size (float32 images) exceeds the free disk space."""
    import shutil
    from pathlib import Path

    probe = Path(out)
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if need_bytes > free:
        raise UsageError(f"{flag} {value}: the dataset needs up to {need_bytes / 1e9:.3g} GB on disk, "
                         f"{free / 1e9:.3g} GB free in {str(probe)!r}; simulate fewer cases")


def _load_dataset(path, flag: str = "--data", keys=None) -> dict:
    from . import load_dataset

    input_dir(path, flag, "a DL-PVC dataset directory from 'refsuite pvc simulate'")
    return load_dataset(path, keys=keys)


def _load_model(path, device: str, flag: str = "--model"):
    from . import load_model

    input_file(path, flag, _MODEL)
    with reading(path, flag, _MODEL):
        return load_model(path, device=device)


def _train(args: argparse.Namespace) -> int:
    import numpy as np

    from . import TrainConfig, save_model, train

    output_file(args.out, "--out")
    if args.checkpoint_dir:
        _check_checkpoint(output_dir(args.checkpoint_dir, "--checkpoint-dir") / "last.pt")
    require_device(args.device)
    if args.patch is not None and args.patch < 8:
        raise UsageError(f"--patch {args.patch}: expected None or >= 8 voxels")
    cfg = TrainConfig(arch=args.arch, features=args.features, inputs=args.inputs, epochs=args.epochs,
                      batch_size=args.batch_size, learning_rate=args.lr, patch=args.patch, loss=args.loss,
                      schedule=args.schedule, seed=args.seed)
    _check_inputs(args.data, args.inputs)
    data = _load_dataset(args.data, keys=["truth", *dict.fromkeys(args.inputs)])
    shape = data["truth"].shape[1:]
    if args.patch is not None and args.patch > max(shape):
        raise UsageError(f"--patch {args.patch}: larger than the dataset's images ({' x '.join(map(str, shape))} "
                         f"voxels); expected 8 ... {max(shape)}")
    voxels = args.patch ** 3 if args.patch is not None else int(np.prod(shape))
    channels = sum(f / 8 ** level for level, f in enumerate(args.features))
    check_memory(args.batch_size * voxels * channels * _TRAIN_BYTES_PER_VOXEL_CHANNEL + data["truth"].nbytes
                 * (1 + len(args.inputs)), "--batch-size", args.batch_size,
                 f"training {'patches' if args.patch else 'whole images'} of {voxels} voxels, features "
                 f"{','.join(map(str, args.features))}; use a smaller --batch-size, --patch or --features")
    result = train(data, config=cfg, checkpoint_dir=args.checkpoint_dir, device=args.device)
    save_model(args.out, result)
    print(f"model: {args.out} (final train loss {result.history[-1]['train_loss']:.4g})")
    return 0


def _check_checkpoint(last) -> None:
    """A checkpoint to resume from must load (a truncated one from a killed run is named, not a traceback)."""
    if not last.exists():
        return
    import torch

    what = "a DL-PVC training checkpoint (delete it to start afresh)"
    input_file(last, "--checkpoint-dir", what)
    with reading(last, "--checkpoint-dir", what):
        torch.load(last, map_location="cpu", weights_only=True)


def _check_inputs(data_dir, inputs) -> None:
    """The dataset is complete and holds the images ``inputs`` (looked up in its first chunk)."""
    import numpy as np

    from pathlib import Path

    _load_dataset(data_dir, keys=[])  # directory, manifest and completeness checks; reads only case indices
    manifest = json.loads((Path(data_dir) / "manifest.json").read_text())
    first = Path(data_dir) / manifest["chunks"][sorted(manifest["chunks"])[0]]["file"]
    with reading(first, "--data", "a DL-PVC dataset chunk (.npz)"), np.load(first, allow_pickle=False) as z:
        have = set(z.files)
    missing = [k for k in inputs if k not in have]
    if missing:
        images = sorted(k for k in have if k.startswith(("RR", "noRR")))
        raise UsageError(f"--inputs {','.join(inputs)}: the dataset has no image {missing[0]!r}; it has "
                         f"{', '.join(images)}")


def _read_nifti(path, flag: str):
    """``(volume, data (nz, ny, nx) float64, voxel size (3,) mm along (z, y, x))`` of a 3-D NIfTI file.

    :func:`refsuite.io.nifti.read_nifti` reads the file's order (x, y, z); the solvers take
    (nz, ny, nx), converted here with :func:`refsuite.io.nifti.as_zyx` (the one place pvc does).
    """
    import numpy as np

    from ..io.nifti import as_zyx, read_nifti

    input_file(path, flag, _NIFTI)
    with reading(path, flag, _NIFTI):
        vol = read_nifti(path, dtype=np.float64)
    data, zooms = as_zyx(vol.data, vol.spacing)
    return vol, data, zooms


def _check_activity(data, path, flag: str) -> None:
    neg = data < 0
    if neg.any():
        raise UsageError(f"{flag} {str(path)!r}: {int(neg.sum())} voxels are negative (min {data.min():.4g}); "
                         "expected activity concentrations >= 0 (clip or rescale the reconstruction first)")
    if not data.sum() > 0:
        raise UsageError(f"{flag} {str(path)!r}: the image is all zero; expected a positive total activity")


def _model_grid(model, zooms, path, resample: bool) -> bool:
    """Whether the image must be resampled to the model's voxel size; refuses a mismatch without
    ``--resample``."""
    import numpy as np

    if model.voxel_mm is None:
        raise UsageError("--model: the file records no voxel size (written before refsuite stored it); retrain it "
                         "with 'refsuite pvc train' so that images can be checked against it")
    if np.allclose(zooms, model.voxel_mm, rtol=0.01):
        return False
    if not resample:
        size = " x ".join(f"{z:g}" for z in zooms[::-1])
        raise UsageError(f"IN {str(path)!r}: voxel size {size} mm, the model was trained at {model.voxel_mm:g} mm; "
                         f"pass --resample to correct it on {model.voxel_mm:g} mm voxels and resample the result "
                         "back (trilinear), or resample the image yourself")
    return True


def _correct_dl(args, img, data, zooms):
    """DL-PVC of ``data`` (nz, ny, nx) on the model's voxel size (resampled there and back with
    ``--resample``, said on stdout)."""
    from ..io.nifti import as_zyx, from_zyx, regrid, resample_to_reference
    from . import correct

    model = _load_model(args.model, args.device)
    resample = _model_grid(model, zooms, args.image, args.resample)
    shape = data.shape  # (nz, ny, nx) of the image the network sees
    if resample:
        shape_m, affine_m = regrid(img.data.shape, img.affine, model.voxel_mm)
        shape = shape_m[::-1]
    if args.patch is not None and (args.patch % model.multiple or args.patch > max(shape) + model.multiple):
        raise UsageError(f"--patch {args.patch}: expected a multiple of {model.multiple} of at most "
                         f"{-(-max(shape) // model.multiple) * model.multiple} (the image is "
                         f"{' x '.join(map(str, shape[::-1]))} voxels{' on the model grid' if resample else ''})")
    if resample:
        data = as_zyx(resample_to_reference(from_zyx(data), img.affine, shape_m, affine_m, mode="nearest"),
                      zooms)[0].astype(float)
        print(f"resampled IN from {' x '.join(f'{z:g}' for z in zooms[::-1])} mm to the model's {model.voxel_mm:g} mm "
              f"voxels ({' x '.join(map(str, shape_m))}), trilinear; the result is resampled back onto IN's grid")
    out = correct(data, model, patch=args.patch, device=args.device)
    if resample:
        out = as_zyx(resample_to_reference(from_zyx(out), affine_m, img.data.shape, img.affine, mode="nearest"),
                     zooms)[0]
    return out, getattr(model, "image_unit", None)


def _check_fwhm(fwhm_mm, extent_mm) -> None:
    """Refuse a PSF wider than the image (its Gaussian kernel would not fit in memory and the
    correction means nothing); ``None``: estimated from the data."""
    if fwhm_mm is not None and fwhm_mm > float(max(extent_mm)):
        raise UsageError(f"--fwhm-mm {fwhm_mm:g}: expected at most the image's extent, {float(max(extent_mm)):g} mm")


def _correct(args: argparse.Namespace) -> int:
    import numpy as np

    from ..io.nifti import from_zyx, write_nifti

    output_file(args.output, "OUT", suffixes=(".nii", ".nii.gz"))
    require_device(args.device)
    if args.method == "dl" and not args.model:
        raise UsageError("--model is required for --method dl")
    if args.method == "iy" and (not args.labels or args.fwhm_mm is None):
        raise UsageError("--labels and --fwhm-mm are required for --method iy")
    img, data, zooms = _read_nifti(args.image, "IN")
    _check_activity(data, args.image, "IN")
    unit = None
    if args.method == "dl":
        out, unit = _correct_dl(args, img, data, zooms)
    else:
        from . import iterative_yang

        lab, labels, _ = _read_nifti(args.labels, "--labels")
        if labels.shape != data.shape or not np.allclose(lab.affine, img.affine, atol=1e-4):
            raise UsageError(f"--labels must match the image grid: shape {labels.shape} vs {data.shape}, "
                             f"affine equal: {np.allclose(lab.affine, img.affine, atol=1e-4)}")
        _check_fwhm(args.fwhm_mm, np.asarray(data.shape) * np.asarray(zooms))
        out = iterative_yang(data, np.rint(labels).astype(np.int64), fwhm_mm=args.fwhm_mm,
                             voxel_size_mm=zooms, n_iter=args.iterations)
    write_nifti(args.output, from_zyx(out), affine=img.affine)
    print(f"corrected: {args.output}" + (f" (in the input's unit; model trained on {unit} images)" if unit else ""))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import numpy as np

    from ..metrics.pvc import activity_deviation, nrmse, ssim, vaa, wilcoxon_paired
    from . import correct, iterative_yang, matched_filter_fwhm

    require_device(args.device)
    data = _load_dataset(args.data)
    images = sorted(k for k in data if k.startswith(("RR", "noRR")))
    if args.key not in images:  # truth and mask are arrays of the dataset too, but not acquisitions
        raise UsageError(f"--key {args.key!r}: not an image of the dataset; it has {', '.join(images)}")
    model = _load_model(args.model, args.device)
    voxel = float(data["voxel_mm"])
    if model.voxel_mm is not None and not np.isclose(model.voxel_mm, voxel, rtol=0.01):
        raise UsageError(f"--model {args.model!r}: trained at {model.voxel_mm:g} mm voxels, the dataset has "
                         f"{voxel:g} mm")
    nf_key = args.key[:-2] + "_nf" if args.key.endswith("_n") else args.key
    _check_fwhm(args.fwhm_mm, np.asarray(data["truth"].shape[1:]) * voxel)
    fwhm = args.fwhm_mm if args.fwhm_mm is not None else matched_filter_fwhm(
        data[nf_key], data["truth"], voxel_size_mm=voxel)
    rows = {"none": [], "IY-PVC": [], "DL-PVC": []}
    for i in range(len(data["truth"])):
        g, t, m = data[args.key][i].astype(float), data["truth"][i].astype(float), data["mask"][i]
        for name, img in (("none", g), ("IY-PVC", iterative_yang(g, m.astype(int), fwhm_mm=fwhm, voxel_size_mm=voxel)),
                          ("DL-PVC", correct(g, model, device=args.device))):
            rows[name].append([ssim(img, t, m), 100 * nrmse(img, t, m), 100 * vaa(img, t, m),
                               100 * activity_deviation(img, t)])
    names = ["ssim", "nrmse_pct", "vaa_pct", "ad_pct"]
    summary = {name: dict(zip(names, np.mean(v, 0).tolist())) for name, v in rows.items()}
    # Paired two-sided Wilcoxon of DL-PVC against each other method (the paper's Table 1 tests).
    dl = np.array(rows["DL-PVC"])
    pvalues = {other: {names[j]: wilcoxon_paired(dl[:, j], np.array(rows[other])[:, j]) for j in range(3)}
               for other in ("none", "IY-PVC")} if len(dl) >= 2 else None
    from ..io.jsonsafe import dumps_strict

    print(dumps_strict({"key": args.key, "fwhm_mm": fwhm, "n_cases": len(data["truth"]), "mean": summary,
                        "wilcoxon_p_dl_vs": pvalues}, indent=1))
    return 0
