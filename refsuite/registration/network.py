"""Learned registration: a small VoxelMorph-style 3-D U-Net trained weakly supervised.

The network maps the concatenated (fixed, moving) PET pair to a DDF (Balakrishnan et al.
2019, VoxelMorph, IEEE TMI 38(8)). It is trained as the paper's weakly supervised baseline
(Hu et al. 2018, Med Image Anal 49, eq. 1-3) with the regulariser weight either uniform or
the CT map (Wu et al.)::

    L = LNCC(moving o phi, fixed) + alpha * DiceLoss(labels_moving o phi, labels_fixed) + R_w(u)

Labels are only needed for training; inference uses the two PET images. The body is MONAI's
``UNet`` (instance norm, PReLU) returning ``head_features`` channels at full resolution; a
3x3x3 convolution maps them to the three DDF components. Inputs are zero-padded to a multiple
of the total stride and the output cropped back. Training writes an atomic checkpoint (model,
optimiser, step, configuration) every ``checkpoint_every`` steps and resumes from it.

Design choices (why; the pilot runs behind them are in ``docs/studies/registration.md``):

- the DDF head starts at ~0 (weights N(0, 1e-5), VoxelMorph's flow layer): a default-initialised
  last layer gives a random DDF whose regulariser energy dominates the first ~100 Adam steps;
- the output passes through the [1, 2, 1]/4 binomial filter of the instance optimisation: a
  stride-2 transposed convolution produces checkerboard patterns that central-difference
  regularisers cannot see (their null space) and the rigidity metric then reports;
- PET normalisation (99th percentile, clip to [0, 1]) is computed once per pair, not per step;
- the soft Dice uses the squared denominator (``squared_pred=True``; Milletari et al. 2016, V-Net,
  eq. 1), maximal at a = b whatever the blur of trilinearly warped labels; the plain-sum
  denominator scores sharp maps higher and so rewarded the identity over the true DDF.

Limits: a network trained on a few pairs memorises them and does not generalise to held-out pairs;
at the instance optimisation's best weights (30-100) the training loss prefers the identity to the
true DDF, so the study's larger plans train the U-Nets at their own, lower weight.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from monai.networks.nets import UNet
from tqdm.auto import tqdm

from refsuite.io.atomic import atomic_path
from refsuite.schedules import Schedule, scheduled_learning_rate

from .anatomy import BONE_LABELS, SOFT_ORGAN_LABELS
from .optimize import Regularizer, Similarity, normalise_pet, similarity_loss
from .transforms import smooth_ddf as _smooth_ddf
from .regularizers import weighted_bending_energy, weighted_diffusion
from .transforms import as_volume_tensor, integrate_velocity, warp

__all__ = ["NetworkConfig", "RegistrationUNet", "train_network", "training_loss", "predict_ddf", "load_network"]


@dataclass(frozen=True)
class NetworkConfig:
    """Architecture and loss settings (saved in the checkpoint)."""

    channels: tuple = (8, 16, 32)
    strides: tuple = (2, 2)
    dice_weight: float = 1.0
    lncc_kernel: int = 7
    regularizer: str = Regularizer.DIFFUSION.value
    output_scale: float = 1.0  # voxels per unit of network output
    #: feature channels of the U-Net's full-resolution output, fed to the DDF head
    head_features: int = 16
    #: standard deviation of the DDF head's initial weights (VoxelMorph: 1e-5, an identity start)
    head_init_std: float = 1e-5
    #: integrate the output as a stationary velocity field (scaling and squaring, 7 steps)
    diffeomorphic: bool = False


class RegistrationUNet(torch.nn.Module):
    """(fixed, moving) PET (B, 1, D, H, W) each -> DDF (B, 3, D, H, W), voxel units.

    ``forward(fixed, moving, normalised=False)``: PET in kBq/mL, normalised inside (99th
    percentile, clip to [0, 1]) unless ``normalised=True`` says the caller has done it.
    """

    def __init__(self, config: NetworkConfig = NetworkConfig()):
        super().__init__()
        self.config = config
        self.unet = UNet(3, 2, int(config.head_features), channels=tuple(config.channels),
                         strides=tuple(config.strides), num_res_units=0)
        self.act = torch.nn.PReLU()
        self.head = torch.nn.Conv3d(int(config.head_features), 3, 3, padding=1)
        torch.nn.init.normal_(self.head.weight, 0.0, float(config.head_init_std))
        torch.nn.init.zeros_(self.head.bias)
        self._multiple = int(np.prod(config.strides))

    def forward(self, fixed: torch.Tensor, moving: torch.Tensor, *, normalised: bool = False) -> torch.Tensor:
        if not normalised:
            fixed, moving = normalise_pet(fixed), normalise_pet(moving)
        x = torch.cat([fixed, moving], dim=1)
        size = x.shape[2:]
        pad = [(-n) % self._multiple for n in size]
        x = F.pad(x, [0, pad[2], 0, pad[1], 0, pad[0]])
        out = self.head(self.act(self.unet(x)))[:, :, : size[0], : size[1], : size[2]]
        out = _smooth_ddf(out) * self.config.output_scale
        return integrate_velocity(out) if self.config.diffeomorphic else out


def _onehot(labels: torch.Tensor, values: Sequence[int]) -> torch.Tensor:
    return torch.cat([(labels == v).to(torch.float32) for v in values], dim=1)


def train_network(
    pairs: Sequence,
    weights: Sequence,
    *,
    config: NetworkConfig = NetworkConfig(),
    steps: int = 200,
    learning_rate: float = 3e-3,
    schedule: Schedule | str = Schedule.CONSTANT,
    seed: int = 0,
    device="cpu",
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 50,
    progress: bool = False,
) -> tuple[RegistrationUNet, list[float]]:
    """Train a :class:`RegistrationUNet` weakly supervised on synthetic (or real) pairs.

    Parameters
    ----------
    pairs : sequence of objects with ``fixed_pet``, ``moving_pet`` (D, H, W) kBq/mL,
        ``fixed_labels``, ``moving_labels`` (D, H, W) int and ``spacing`` (3,) mm
        (e.g. :class:`~refsuite.registration.SyntheticPair`).
    weights : sequence, one per pair
        Regularisation weight of each pair: a scalar (uniform) or a (D, H, W) map (CT-guided).
    config : NetworkConfig
    steps : int
        Adam steps, one random pair each (batch size 1).
    learning_rate : float
        Adam's initial learning rate (the DDF head's output is in voxels).
    schedule : Schedule
        Learning rate over the steps (:class:`refsuite.schedules.Schedule`): CONSTANT, or
        COSINE annealing to 0 at the last step (a closed form of the step, so resuming is exact).
    seed : int
        Seeds the initial weights and the pair order.
    device : str or torch.device
    checkpoint : path, optional
        Checkpoint file; training resumes from it when it exists and was saved with the same config.
    checkpoint_every : int
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    (model, loss history per step)
    """
    if len(pairs) == 0 or len(pairs) != len(weights):
        raise ValueError(f"pairs and weights must be non-empty and of equal length, got {len(pairs)} and {len(weights)}")
    if int(steps) < 0:
        raise ValueError(f"steps must be >= 0, got {steps!r}")
    schedule = Schedule(schedule)
    torch.manual_seed(int(seed))
    rng = np.random.default_rng(int(seed))
    model = RegistrationUNet(config).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=float(learning_rate))
    history: list[float] = []
    start = 0
    if checkpoint is not None and Path(checkpoint).exists():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        if state["config"] != asdict(config):
            raise ValueError(f"checkpoint {checkpoint} was saved with config {state['config']}, not {asdict(config)}")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, history = int(state["step"]), list(state["history"])
        for _ in range(start):  # replay the pair draws already taken: a resumed run = an uninterrupted one
            rng.integers(len(pairs))
    data = [_prepare(p, w, device) for p, w in zip(pairs, weights)]
    loss_fn = _loss(config)
    model.train()
    for step in tqdm(range(start, int(steps)), disable=not progress, desc="training", unit="step"):
        for group in opt.param_groups:
            group["lr"] = scheduled_learning_rate(schedule, float(learning_rate), step, int(steps))
        f, m, lf, lm, w, sp = _expand(data[int(rng.integers(len(data)))])
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(f, m, normalised=True), f, m, lf, lm, w, sp)
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
        if checkpoint is not None and ((step + 1) % int(checkpoint_every) == 0 or step + 1 == int(steps)):
            _save(checkpoint, model, opt, step + 1, history)
    model.eval()
    return model, history


def _loss(config: NetworkConfig):
    sim = similarity_loss(Similarity.LNCC, lncc_kernel=config.lncc_kernel)
    # squared denominator (Milletari et al. 2016, V-Net, eq. 1): for soft (trilinearly warped)
    # labels the plain-sum Dice 2 sum(ab) / (sum a + sum b) is largest for sharp maps, so it
    # rewarded the identity (integer shifts keep one-hot labels sharp) over the true DDF;
    # 2 sum(ab) / (sum a^2 + sum b^2) is maximal at a = b (Cauchy-Schwarz) whatever the blur
    dice = DiceLoss(include_background=True, squared_pred=True)
    reg = weighted_diffusion if Regularizer(config.regularizer) is Regularizer.DIFFUSION else weighted_bending_energy

    def loss(ddf, f, m, lf, lm, w, sp):
        value = sim(warp(m, ddf), f) + reg(ddf, w, spacing=sp)
        if config.dice_weight > 0:
            value = value + config.dice_weight * dice(warp(lm, ddf), lf)
        return value

    return loss


@torch.no_grad()
def training_loss(model: RegistrationUNet, pairs: Sequence, weights: Sequence, *, device="cpu") -> tuple[float, float]:
    """Mean training loss over ``pairs`` of the identity DDF and of ``model``'s DDFs.

    Deterministic (every pair once, no sampling), unlike the per-step history of
    :func:`train_network`; the difference is what training gained on its own objective.
    Arguments as in :func:`train_network`. Returns ``(loss at identity, loss of the model)``.
    """
    loss_fn = _loss(model.config)
    model = model.to(device).eval()
    ident, fitted = [], []
    for p, w in zip(pairs, weights):
        f, m, lf, lm, w_t, sp = _expand(_prepare(p, w, device))
        ident.append(float(loss_fn(torch.zeros((1, 3) + tuple(f.shape[2:]), device=device), f, m, lf, lm, w_t, sp)))
        fitted.append(float(loss_fn(model(f, m, normalised=True), f, m, lf, lm, w_t, sp)))
    return float(np.mean(ident)), float(np.mean(fitted))


def _prepare(pair, weight, device):
    values = tuple(SOFT_ORGAN_LABELS) + tuple(BONE_LABELS)
    f = as_volume_tensor("fixed_pet", pair.fixed_pet, device=device)
    m = as_volume_tensor("moving_pet", pair.moving_pet, device=device)
    if f.shape != m.shape:
        raise ValueError(f"fixed_pet {tuple(f.shape)} and moving_pet {tuple(m.shape)} must share one grid")
    f, m = normalise_pet(f), normalise_pet(m)
    grid = tuple(f.shape[2:])
    onehot = []
    for name in ("fixed_labels", "moving_labels"):
        lab = np.asarray(getattr(pair, name))
        if lab.shape != grid:
            raise ValueError(f"{name} has shape {lab.shape}, not the PET grid {grid}")
        if not np.isin(lab, values).any():
            # an all-background label map gives a Dice term with no foreground (MONAI's smoothed
            # Dice then rewards nothing): the pair cannot weakly supervise the network
            raise ValueError(f"{name} contains none of the organ or bone labels {values} (empty masks)")
        # kept as integer labels and expanded to one-hot per step: a one-hot pair is 18 float
        # volumes, ~2 GB for 240 pairs of the quick grid, which pools of hundreds of pairs cannot afford
        onehot.append(torch.as_tensor(lab.astype(np.int16), device=device)[None, None])
    w = torch.as_tensor(np.asarray(weight, dtype=np.float32), device=device)
    if w.ndim not in (0, 3) or (w.ndim == 3 and tuple(w.shape) != grid):
        raise ValueError(f"weight must be a scalar or a map on the PET grid {grid}, got shape {tuple(w.shape)}")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise ValueError("weight must be finite and >= 0")
    w = w if w.ndim == 0 else w[None, None]
    return f, m, onehot[0], onehot[1], w, [float(s) for s in pair.spacing]


def _expand(prepared):
    """A :func:`_prepare` tuple with its label maps expanded to one-hot (1, L, D, H, W) float."""
    f, m, lf, lm, w, sp = prepared
    values = tuple(SOFT_ORGAN_LABELS) + tuple(BONE_LABELS)
    return f, m, _onehot(lf, values), _onehot(lm, values), w, sp


def _save(path, model, opt, step, history) -> None:
    state = dict(model=model.state_dict(), optimizer=opt.state_dict(), step=step, history=history,
                 config=asdict(model.config))
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_network(path, *, device="cpu") -> RegistrationUNet:
    """A trained :class:`RegistrationUNet` from a checkpoint written by :func:`train_network`."""
    state = torch.load(path, map_location=device, weights_only=True)
    cfg = state["config"]
    cfg = NetworkConfig(**{**cfg, "channels": tuple(cfg["channels"]), "strides": tuple(cfg["strides"])})
    model = RegistrationUNet(cfg).to(device)
    model.load_state_dict(state["model"])
    model.eval()
    return model


@torch.no_grad()
def predict_ddf(model: RegistrationUNet, fixed_pet, moving_pet, *, device="cpu") -> torch.Tensor:
    """DDF (1, 3, D, H, W), voxel units, on CPU, predicted for one pair (no labels needed)."""
    f = as_volume_tensor("fixed_pet", fixed_pet, device=device)
    m = as_volume_tensor("moving_pet", moving_pet, device=device)
    if f.shape != m.shape:
        raise ValueError(f"fixed_pet {tuple(f.shape)} and moving_pet {tuple(m.shape)} must share one grid")
    return model.to(device)(f, m).cpu()
