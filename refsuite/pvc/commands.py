"""``refsuite pvc simulate|train|correct|evaluate`` (heavy imports inside the handlers)."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("pvc", help="177Lu SPECT partial-volume correction (Leube et al.)",
                              description="Simulate a DL-PVC dataset, train, correct NIfTI images, evaluate.")
    sub = p.add_subparsers(dest="pvc_command", required=True, metavar="ACTION")

    s = sub.add_parser("simulate", help="generate (or resume) a dataset directory")
    s.add_argument("--out", required=True, metavar="DIR")
    s.add_argument("--cases", type=int, required=True)
    s.add_argument("--quick", action="store_true", help="the quick study's 16x24x24 / 24-view configuration")
    s.add_argument("--seed", type=int, default=12345)
    s.add_argument("--chunk-size", type=int, default=8)
    s.add_argument("--device", default="cpu")
    s.set_defaults(func=_simulate)

    t = sub.add_parser("train", help="train DL-PVC on a dataset (checkpoints, resume)")
    t.add_argument("--data", required=True, metavar="DIR")
    t.add_argument("--out", required=True, metavar="MODEL.pt")
    t.add_argument("--checkpoint-dir", metavar="DIR")
    t.add_argument("--arch", choices=["r2unet", "unet"], default="r2unet")
    t.add_argument("--features", default="16,32,64,128", help="channels per level, comma-separated")
    t.add_argument("--inputs", default="RR_n,RR_nf")
    t.add_argument("--epochs", type=int, default=50)
    t.add_argument("--batch-size", type=int, default=2)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--patch", type=int, default=None, help="train on patches of this edge (voxels)")
    t.add_argument("--loss", choices=["mse", "l1"], default="l1")
    t.add_argument("--schedule", choices=["cosine", "constant"], default="cosine", help="learning-rate schedule")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="cpu")
    t.set_defaults(func=_train)

    c = sub.add_parser("correct", help="correct a NIfTI SPECT image (affine kept)")
    c.add_argument("image", metavar="IN.nii[.gz]")
    c.add_argument("output", metavar="OUT.nii[.gz]")
    c.add_argument("--method", choices=["dl", "iy"], default="dl")
    c.add_argument("--model", metavar="MODEL.pt", help="for --method dl")
    c.add_argument("--patch", type=int, default=None)
    c.add_argument("--labels", metavar="LABELS.nii[.gz]", help="region labels for --method iy")
    c.add_argument("--fwhm-mm", type=float, help="PSF FWHM for --method iy (mm)")
    c.add_argument("--iterations", type=int, default=10)
    c.add_argument("--device", default="cpu")
    c.set_defaults(func=_correct)

    e = sub.add_parser("evaluate", help="metrics of none / IY-PVC / DL-PVC on a dataset (JSON)")
    e.add_argument("--data", required=True, metavar="DIR")
    e.add_argument("--model", required=True, metavar="MODEL.pt")
    e.add_argument("--key", default="RR_n")
    e.add_argument("--fwhm-mm", type=float, help="IY-PVC resolution; default: matched-filter estimate")
    e.add_argument("--device", default="cpu")
    e.set_defaults(func=_evaluate)


def _fail(msg: str) -> int:
    print(f"refsuite pvc: {msg}", file=sys.stderr)
    return 2


def _simulate(args: argparse.Namespace) -> int:
    from . import DatasetConfig, simulate_dataset

    cfg = DatasetConfig(shape=(16, 24, 24), n_views=24, time_per_view_s=150.0) if args.quick else DatasetConfig()
    try:
        path = simulate_dataset(args.out, args.cases, config=cfg, seed=args.seed, chunk_size=args.chunk_size,
                                device=args.device)
    except ValueError as exc:
        return _fail(str(exc))
    print(f"dataset: {path}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from . import TrainConfig, load_dataset, save_model, train

    try:
        cfg = TrainConfig(arch=args.arch, features=tuple(int(f) for f in args.features.split(",")),
                          inputs=tuple(args.inputs.split(",")), epochs=args.epochs, batch_size=args.batch_size,
                          learning_rate=args.lr, patch=args.patch, loss=args.loss,
                          schedule=args.schedule, seed=args.seed)
        data = load_dataset(args.data)
        result = train(data, config=cfg, checkpoint_dir=args.checkpoint_dir, device=args.device)
    except (ValueError, KeyError) as exc:
        return _fail(str(exc))
    save_model(args.out, result)
    print(f"model: {args.out} (final train loss {result.history[-1]['train_loss']:.4g})")
    return 0


def _read_nifti(path):
    import nibabel as nib
    import numpy as np

    img = nib.load(path)
    data = np.asarray(img.dataobj, dtype=np.float64)
    if data.ndim != 3:
        raise ValueError(f"{path}: expected a 3-D image, got shape {data.shape}")
    zooms = np.array(img.header.get_zooms()[:3], dtype=np.float64)
    return img, data.transpose(2, 1, 0), zooms[::-1]  # (x, y, z) -> (nz, ny, nx)


def _correct(args: argparse.Namespace) -> int:
    import nibabel as nib
    import numpy as np

    from ..io.atomic import atomic_path

    try:
        img, data, zooms = _read_nifti(args.image)
        if args.method == "dl":
            if not args.model:
                return _fail("--model is required for --method dl")
            from . import correct, load_model

            out = correct(data, load_model(args.model, device=args.device), patch=args.patch, device=args.device)
        else:
            if not args.labels or args.fwhm_mm is None:
                return _fail("--labels and --fwhm-mm are required for --method iy")
            from . import iterative_yang

            lab, labels, _ = _read_nifti(args.labels)
            if labels.shape != data.shape or not np.allclose(lab.affine, img.affine, atol=1e-4):
                return _fail(f"--labels must match the image grid: shape {labels.shape} vs {data.shape}, "
                             f"affine equal: {np.allclose(lab.affine, img.affine, atol=1e-4)}")
            out = iterative_yang(data, np.rint(labels).astype(np.int64), fwhm_mm=args.fwhm_mm,
                                 voxel_size_mm=zooms, n_iter=args.iterations)
    except (ValueError, TypeError, OSError) as exc:
        return _fail(str(exc))
    suffix = ".nii.gz" if str(args.output).endswith(".gz") else ".nii"
    with atomic_path(args.output, suffix=suffix) as tmp:
        nib.save(nib.Nifti1Image(out.transpose(2, 1, 0).astype(np.float32), img.affine, img.header), str(tmp))
    print(f"corrected: {args.output}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import numpy as np

    from ..metrics.pvc import activity_deviation, nrmse, ssim, vaa, wilcoxon_paired
    from . import correct, iterative_yang, load_dataset, load_model, matched_filter_fwhm

    try:
        data = load_dataset(args.data)
        if args.key not in data:
            return _fail(f"--key {args.key!r} not in the dataset")
        model = load_model(args.model, device=args.device)
        voxel = float(data["voxel_mm"])
        nf_key = args.key[:-2] + "_nf" if args.key.endswith("_n") else args.key
        fwhm = args.fwhm_mm if args.fwhm_mm is not None else matched_filter_fwhm(
            data[nf_key], data["truth"], voxel_size_mm=voxel)
        rows = {"none": [], "IY-PVC": [], "DL-PVC": []}
        for i in range(len(data["truth"])):
            g, t, m = data[args.key][i].astype(float), data["truth"][i].astype(float), data["mask"][i]
            for name, img in (("none", g), ("IY-PVC", iterative_yang(g, m.astype(int), fwhm_mm=fwhm, voxel_size_mm=voxel)),
                              ("DL-PVC", correct(g, model, device=args.device))):
                rows[name].append([ssim(img, t, m), 100 * nrmse(img, t, m), 100 * vaa(img, t, m),
                                   100 * activity_deviation(img, t)])
    except (ValueError, KeyError) as exc:
        return _fail(str(exc))
    names = ["ssim", "nrmse_pct", "vaa_pct", "ad_pct"]
    summary = {name: dict(zip(names, np.mean(v, 0).tolist())) for name, v in rows.items()}
    # Paired two-sided Wilcoxon of DL-PVC against each other method (the paper's Table 1 tests).
    dl = np.array(rows["DL-PVC"])
    pvalues = {other: {names[j]: wilcoxon_paired(dl[:, j], np.array(rows[other])[:, j]) for j in range(3)}
               for other in ("none", "IY-PVC")} if len(dl) >= 2 else None
    print(json.dumps({"key": args.key, "fwhm_mm": fwhm, "n_cases": len(data["truth"]), "mean": summary,
                      "wilcoxon_p_dl_vs": pvalues}, indent=1))
    return 0
