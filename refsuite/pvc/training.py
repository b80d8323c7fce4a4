"""DL-PVC training, checkpoints and inference (Leube et al., Materials and Methods).

Normalisation (the paper's best choice): the input SPECT image is divided by its maximum;
the output is rescaled so that its sum equals the input's total activity. The training
target is accordingly the ground truth rescaled to the input's total activity and divided
by the input's maximum, so that the network learns the shape and the conservation step
fixes the scale. The conservation step is part of the whole-FOV training forward pass too
(the loss sees exactly what :func:`correct` returns).

Loss and schedule: the paper's main text names only Adam; its loss is in the supplement we
do not have. The default here is L1 with cosine-annealed learning rate: on the quick study's
data MSE (which weights the few hottest voxels) trained to a lower VAA than L1, and a constant
rate left training on a plateau more often. Whole-FOV mode feeds the entire volume (zero-padded to a size the network
accepts); patch mode trains on random 32^3 patches and infers by Gaussian-weighted sliding
windows (MONAI ``sliding_window_inference``), activity conserved over the reassembled volume.

Reproducibility: weights are initialised from ``torch.manual_seed(seed)``; the shuffling,
patch positions and flips of epoch e come from ``numpy.random.default_rng([seed, e])``, so
training resumed from a checkpoint gives the same weights as an uninterrupted run.
"""

from __future__ import annotations

import enum
import functools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .._checks import check_finite
from ..devices import torch_device
from ..io.atomic import atomic_path
from ..schedules import Schedule, scheduled_learning_rate
from .networks import Architecture, Output, ResidualPVC, build_network

__all__ = ["Loss", "Schedule", "TrainConfig", "TrainResult", "train", "correct", "save_model", "load_model", "normalise_pair"]


class Loss(enum.Enum):
    """Training loss on the max-normalised images.

    MSE; L1 (mean absolute error); L1_SSIM: L1 + (1 - SSIM), the SSIM averaged over the
    target's active voxels (Zhao et al., IEEE Trans. Comput. Imaging 3 (2017) 47, mixed
    L1/SSIM loss), computed as :func:`refsuite.metrics.ssim` scores it (:func:`masked_ssim`).
    """

    MSE = "mse"
    L1 = "l1"
    L1_SSIM = "l1+ssim"


@dataclass(frozen=True)
class TrainConfig:
    """Training options (the paper: R2U-Net, whole FOV, Adam).

    arch, features, output: network and its output form, a :class:`~refsuite.pvc.networks.Output` value
    (see :func:`refsuite.pvc.networks.build_network`).
    inputs: dataset image keys used as inputs, each paired with the same truth.
    patch: None for whole-FOV training, else the patch edge in voxels (32 in the paper).
    loss: a :class:`Loss` value; ssim_weight: w in L1 + w (1 - SSIM) (``loss="l1+ssim"`` only);
    flips: random left-right and head-feet flips of each batch (a scaling of the intensities is
    no augmentation here: the max normalisation undoes it, input and target alike); schedule: a :class:`~refsuite.schedules.Schedule` value (of the
    learning rate; cosine annealing reaches 0 after the last epoch).
    learning_rate: Adam's initial rate (the cosine schedule anneals it to 0 at the last epoch).
    """

    arch: str = "r2unet"
    features: tuple[int, ...] = (16, 32, 64, 128)
    inputs: tuple[str, ...] = ("RR_n", "RR_nf")
    epochs: int = 50
    batch_size: int = 2
    learning_rate: float = 1e-3
    val_fraction: float = 0.1
    patch: int | None = None
    loss: str = "l1"
    schedule: str = "cosine"
    seed: int = 0
    output: str = "log-gain"
    ssim_weight: float = 1.0
    flips: bool = True

    def __post_init__(self):
        Architecture(self.arch)
        Output(self.output)
        Loss(self.loss)
        if not (isinstance(self.ssim_weight, (int, float)) and np.isfinite(self.ssim_weight) and self.ssim_weight >= 0):
            raise ValueError(f"ssim_weight must be a finite number >= 0, got {self.ssim_weight!r}")
        Schedule(self.schedule)
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in [0, 1), got {self.val_fraction!r}")
        if self.patch is not None and self.patch < 8:
            raise ValueError(f"patch must be None or >= 8 voxels, got {self.patch!r}")

    def as_json(self) -> dict:
        d = asdict(self)
        d["features"], d["inputs"] = list(self.features), list(self.inputs)
        return d


@dataclass
class TrainResult:
    """A trained network, its configuration and what it was trained on.

    ``voxel_mm`` (mm) and ``image_unit`` (e.g. ``"kBq/mL"``) come from the training data
    (``data["voxel_mm"]``, ``data["image_unit"]``; None when the data lack them) and are stored
    in the model file, so that images of another voxel size can be refused.
    """

    model: ResidualPVC
    config: TrainConfig
    history: list[dict] = field(default_factory=list)  # per epoch: train_loss, val_loss
    voxel_mm: float | None = None
    image_unit: str | None = None


def normalise_pair(image: np.ndarray, truth: np.ndarray | None = None):
    """Input / max(input), and the truth rescaled to the input's total, / max(input)."""
    m = float(image.max())
    if not m > 0:
        raise ValueError("image must have a positive maximum (an empty image cannot be corrected)")
    x = image / m
    if truth is None:
        return x, None
    t_sum = float(truth.sum())
    return x, truth * (float(image.sum()) / t_sum) / m if t_sum > 0 else truth / m


def _pad_to(x: torch.Tensor, multiple: int, minimum: int = 0):
    """Zero-pad the last three axes up to a multiple of ``multiple`` (and >= minimum)."""
    sizes = x.shape[-3:]
    target = [max(minimum, -(-s // multiple) * multiple) for s in sizes]
    pads = []
    for s, t in zip(reversed(sizes), reversed(target)):
        pads += [0, t - s]
    return torch.nn.functional.pad(x, pads), sizes


def _crop(x: torch.Tensor, sizes):
    return x[..., :sizes[0], :sizes[1], :sizes[2]]


def _device(device):
    return torch_device(device, purpose="training or inference on device='cuda'")


def _pairs(data: dict, config: TrainConfig, indices) -> tuple[np.ndarray, np.ndarray]:
    xs, ts = [], []
    for key in config.inputs:
        if key not in data:
            raise KeyError(f"data has no image {key!r}; available: {sorted(k for k in data if k[:2] in ('RR', 'no'))}")
        for i in indices:
            x, t = normalise_pair(np.asarray(data[key][i], np.float64), np.asarray(data["truth"][i], np.float64))
            xs.append(x)
            ts.append(t)
    return np.array(xs, np.float32), np.array(ts, np.float32)


def _batches(x, t, config: TrainConfig, rng: np.random.Generator, multiple: int):
    order = rng.permutation(len(x))
    for s in range(0, len(order), config.batch_size):
        idx = order[s:s + config.batch_size]
        xb, tb = x[idx], t[idx]
        flips = [ax for ax in (1, 3) if rng.random() < 0.5]  # head-feet and left-right
        if flips and config.flips:
            xb, tb = np.flip(xb, flips), np.flip(tb, flips)
        if config.patch is not None:
            xb, tb = _random_patches(xb, tb, config.patch, rng)
        xb = torch.from_numpy(np.ascontiguousarray(xb))[:, None]
        tb = torch.from_numpy(np.ascontiguousarray(tb))[:, None]
        yield xb, tb


def _random_patches(xb, tb, p, rng):
    out_x, out_t = [], []
    for x, t in zip(xb, tb):
        pad = [(0, max(0, p - s)) for s in x.shape]
        x, t = np.pad(x, pad), np.pad(t, pad)
        start = [rng.integers(0, s - p + 1) for s in x.shape]
        sl = tuple(slice(a, a + p) for a in start)
        out_x.append(x[sl])
        out_t.append(t[sl])
    return np.array(out_x), np.array(out_t)


def _loss_fn(config: TrainConfig):
    loss = Loss(config.loss)
    if loss is Loss.MSE:
        return torch.nn.MSELoss()
    if loss is Loss.L1:
        return torch.nn.L1Loss()
    return functools.partial(_l1_plus_masked_ssim, weight=float(config.ssim_weight))


def masked_ssim(image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Differentiable mean SSIM over each target's active voxels (target > 0), shape (B,).

    ``image``, ``target``: (B, 1, D, H, W). The SSIM map of Wang et al. (2004, eq. 13) with
    Gaussian-weighted local moments (sigma 1.5 voxels, truncated at 3.5 sigma: scikit-image's
    ``gaussian_weights=True``), population covariances, K1 = 0.01, K2 = 0.03 and each target's
    max - min as data range, averaged over the mask like :func:`refsuite.metrics.ssim`. The
    moments use MONAI's separable filtering with mirrored edges: MONAI's own SSIM convolves
    with the full 11^3 kernel (40x the work) and crops the edges the mask needs.
    """
    from monai.networks.layers.convutils import gaussian_1d
    from monai.networks.layers.simplelayers import separable_filtering

    kernel = gaussian_1d(torch.tensor(1.5), truncated=3.5, approx="sampled", normalize=True).to(target)
    blur = lambda v: separable_filtering(v, [kernel] * (v.ndim - 2), mode="reflect")  # noqa: E731
    dims = tuple(range(1, target.ndim))
    ranges = target.amax(dim=dims) - target.amin(dim=dims)
    scale = torch.where(ranges > 0, ranges, torch.ones_like(ranges)).view(-1, *([1] * (target.ndim - 1)))
    x, y = image / scale, target / scale  # unit data range per sample: C1 = K1^2, C2 = K2^2
    c1, c2 = 0.01**2, 0.03**2
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    smap = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    mask = (target > 0).to(smap.dtype)
    return (smap * mask).sum(dim=dims) / mask.sum(dim=dims).clamp_min(1.0)


def _l1_plus_masked_ssim(image: torch.Tensor, target: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    return torch.nn.functional.l1_loss(image, target) + weight * (1.0 - masked_ssim(image, target)).mean()


def _output(model: ResidualPVC, xb: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    """The network output as :func:`correct` returns it: whole-FOV outputs are rescaled to the
    input's total (the activity-conserving output layer), so the loss sees what inference gives;
    a patch's total is not conserved (activity flows across its faces), so patches are not."""
    y = _forward(model, xb)
    if config.patch is None:
        y = y * (xb.sum(dim=(1, 2, 3, 4), keepdim=True) / y.sum(dim=(1, 2, 3, 4), keepdim=True).clamp_min(1e-12))
    return y


def _learning_rate(config: TrainConfig, epoch: int) -> float:
    return scheduled_learning_rate(config.schedule, config.learning_rate, epoch, config.epochs)


def _forward(model: ResidualPVC, xb: torch.Tensor) -> torch.Tensor:
    xp, sizes = _pad_to(xb, model.multiple)
    return _crop(model(xp), sizes)


def train(data: dict, *, config: TrainConfig = TrainConfig(), checkpoint_dir=None, device="cpu",
          progress: bool = True, resume: bool = True) -> TrainResult:
    """Train a DL-PVC network on ``data`` (arrays as from :func:`refsuite.pvc.load_dataset`).

    Parameters
    ----------
    data : dict
        ``truth`` (N, nz, ny, nx) kBq/mL and the input images named in ``config.inputs``.
    config : TrainConfig
    checkpoint_dir : path, optional
        After every epoch ``last.pt`` (model, optimiser, history) is written atomically and
        ``best.pt`` when the validation loss improves. With ``resume`` an existing
        ``last.pt`` of the same configuration is continued.
    device : str
        ``"cpu"`` or ``"cuda"`` (CUDA is required then).
    progress : bool
        tqdm bar over epochs.
    """
    dev = _device(device)
    n = len(data["truth"])
    n_val = int(round(config.val_fraction * n)) if config.val_fraction > 0 else 0
    if n - n_val < 1:
        raise ValueError(f"need at least one training case, got {n} cases with val_fraction {config.val_fraction}")
    split = np.random.default_rng([config.seed, 7919]).permutation(n)
    x_tr, t_tr = _pairs(data, config, split[n_val:])
    x_va, t_va = _pairs(data, config, split[:n_val]) if n_val else (None, None)
    torch.manual_seed(config.seed)
    model = build_network(Architecture(config.arch), features=config.features, output=Output(config.output)).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    loss_fn = _loss_fn(config)
    history: list[dict] = []
    start_epoch = 0
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckpt is not None and resume and (ckpt / "last.pt").exists():
        state = torch.load(ckpt / "last.pt", map_location=dev, weights_only=True)
        if state["config"] != config.as_json():
            raise ValueError(f"checkpoint {ckpt / 'last.pt'} was trained with another configuration; "
                             "use resume=False or another checkpoint_dir")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        history = state["history"]
        start_epoch = len(history)
    best = min((h["val_loss"] for h in history if h["val_loss"] is not None), default=np.inf)
    bar = tqdm(range(start_epoch, config.epochs), desc="DL-PVC training", unit="epoch", disable=not progress,
               initial=start_epoch, total=config.epochs)
    for epoch in bar:
        rng = np.random.default_rng([config.seed, epoch])
        for group in opt.param_groups:
            group["lr"] = _learning_rate(config, epoch)
        model.train()
        total, count = 0.0, 0
        for xb, tb in _batches(x_tr, t_tr, config, rng, model.multiple):
            xb, tb = xb.to(dev), tb.to(dev)
            opt.zero_grad()
            loss = loss_fn(_output(model, xb, config), tb)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(xb)
            count += len(xb)
        val = _evaluate(model, x_va, t_va, loss_fn, dev, config) if n_val else None
        history.append({"epoch": epoch, "train_loss": total / count, "val_loss": val})
        bar.set_postfix(train=f"{total / count:.3g}", val="-" if val is None else f"{val:.3g}")
        if ckpt is not None:
            state = {"config": config.as_json(), "model": model.state_dict(), "optimizer": opt.state_dict(),
                     "history": history}
            _save(ckpt / "last.pt", state)
            if val is not None and val < best:
                best = val
                _save(ckpt / "best.pt", state)
    model.eval()
    voxel = data.get("voxel_mm")
    unit = data.get("image_unit")
    return TrainResult(model=model, config=config, history=history,
                       voxel_mm=None if voxel is None else float(voxel), image_unit=None if unit is None else str(unit))


@torch.no_grad()
def _evaluate(model, x, t, loss_fn, dev, config) -> float:
    model.eval()
    losses = []
    for i in range(len(x)):
        xb = torch.from_numpy(x[i:i + 1, None]).to(dev)
        losses.append(float(loss_fn(_output(model, xb, config), torch.from_numpy(t[i:i + 1, None]).to(dev))))
    return float(np.mean(losses))


def _save(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def save_model(path, result: TrainResult) -> None:
    """Write the trained network, its configuration, voxel size (mm) and image unit (atomic).

    Everything is tensors or plain dicts/lists/numbers/strings, so the file loads with
    ``torch.load(weights_only=True)`` (no pickled code runs on load).
    """
    _save(Path(path), {"config": result.config.as_json(), "model": result.model.state_dict(),
                       "history": result.history, "voxel_mm": result.voxel_mm, "image_unit": result.image_unit})


def load_model(path, *, device="cpu") -> ResidualPVC:
    """Load a network written by :func:`save_model` (or a training checkpoint).

    The returned module carries ``train_config`` (JSON), ``voxel_mm`` (mm, None if the file
    does not record it) and ``image_unit`` (None likewise). Loaded with ``weights_only=True``.
    """
    state = torch.load(Path(path), map_location=_device(device), weights_only=True)
    if not isinstance(state, dict) or "config" not in state or "model" not in state:
        raise ValueError(f"{str(path)!r} is not a DL-PVC model file (expected keys 'config' and 'model')")
    cfg = state["config"]
    model = build_network(Architecture(cfg["arch"]), features=cfg["features"],
                          output=Output(cfg.get("output", Output.LOG_GAIN.value))).to(_device(device))
    model.load_state_dict(state["model"])
    model.eval()
    model.train_config = json.dumps(cfg)
    model.voxel_mm = None if state.get("voxel_mm") is None else float(state["voxel_mm"])
    model.image_unit = state.get("image_unit")
    return model


@torch.no_grad()
def correct(image, model: ResidualPVC, *, patch: int | None = None, overlap: float = 0.5, device="cpu") -> np.ndarray:
    """DL-PVC of one SPECT image with activity conservation (Leube et al.).

    Parameters
    ----------
    image : (nz, ny, nx) array
        Reconstructed activity concentration (any unit, >= 0 in total); finite.
    model : ResidualPVC
        A trained network (:func:`train` or :func:`load_model`).
    patch : int, optional
        None: whole field of view. Otherwise sliding windows of ``patch``^3 voxels with
        ``overlap``, Gaussian-blended (MONAI), then conservation over the whole volume.
    device : str

    Returns
    -------
    (nz, ny, nx) ndarray in the unit of ``image``; its sum equals ``image.sum()``.
    """
    img = check_finite("image", image)
    if img.ndim != 3:
        raise ValueError(f"image must be 3-D (nz, ny, nx), got shape {img.shape}")
    total = float(img.sum())
    if not total > 0:
        raise ValueError(f"image must have a positive total activity, got sum {total!r}")
    dev = _device(device)
    x, _ = normalise_pair(img)
    xt = torch.from_numpy(x.astype(np.float32))[None, None].to(dev)
    model = model.to(dev).eval()
    if patch is None:
        y = _forward(model, xt)
    else:
        from monai.inferers import sliding_window_inference

        if int(patch) % model.multiple:
            raise ValueError(f"patch must be a multiple of {model.multiple}, got {patch!r}")
        xp, sizes = _pad_to(xt, model.multiple, minimum=int(patch))
        y = _crop(sliding_window_inference(xp, (int(patch),) * 3, 4, model, overlap=overlap, mode="gaussian"), sizes)
    out = y[0, 0].double().cpu().numpy()
    s = out.sum()
    if not s > 0:
        raise ValueError("the network returned an all-zero image; activity cannot be conserved")
    return out * (total / s)
