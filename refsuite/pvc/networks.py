"""Networks for DL-PVC: MONAI's 3-D U-Net and an R2U-Net (Alom et al., arXiv:1802.06955).

Leube et al. compared U-Net, R2U-Net, Attention U-Net, R2AttU-Net and U-Net++ and selected
R2U-Net. MONAI has no R2U-Net, so it is assembled here from MONAI ``Convolution`` blocks:
each level is a recurrent residual unit (RRCNN: 1x1x1 projection, two recurrent
convolution blocks with t = 2 shared-weight recurrences, residual sum), max-pooling down,
up-sampling + convolution up, skip concatenation (Alom et al., Fig. 4).

Both are wrapped in :class:`ResidualPVC`. Its default output form (:data:`Output.LOG_GAIN`): the
network predicts a voxel-wise log-gain r of the max-normalised input, y = x exp(r), so the output is non-negative without a clipping that
stops gradients; an untrained network (its last layer is zero-initialised) is therefore the
identity (no PVC), which training must then improve on. (With the earlier y = max(0, x + r)
the quick study's training stalled for some seeds: a negative bias zeroed ~97 % of the
voxels, whose gradients then vanished.) A voxel with x = 0 stays 0; OSEM images are 0 only
outside the reconstructed support. Activations are leaky ReLUs (slope 0.1) instead of Alom's
ReLU, a precaution for the narrow quick-mode network (4 channels at the top level).
The paper's form (:data:`Output.DIRECT`, a U-Net whose output is the corrected image) is
y = softplus(net(x)) here (non-negative, so that the activity-conserving rescaling is defined),
with the last layer left at PyTorch's default initialisation.
"""

from __future__ import annotations

import enum

import torch
from torch import nn

__all__ = ["Architecture", "Output", "R2UNet", "ResidualPVC", "build_network", "size_multiple"]


class Architecture(enum.Enum):
    """Network families: UNET (MONAI ``BasicUNet``, 4 poolings) and R2UNET (this module)."""

    UNET = "unet"
    R2UNET = "r2unet"


class Output(enum.Enum):
    """How the network's last layer h becomes the image: LOG_GAIN y = x exp(h); DIRECT y = softplus(h)."""

    LOG_GAIN = "log-gain"
    DIRECT = "direct"


def _conv(cin, cout, kernel=3):
    from monai.networks.blocks import Convolution

    return Convolution(3, cin, cout, kernel_size=kernel, act=("LEAKYRELU", {"negative_slope": 0.1}), norm=("INSTANCE", {"affine": True}))


class _Recurrent(nn.Module):
    """x1 = conv(x); repeat t times: x1 = conv(x + x1) (shared weights; Alom et al., eq. 1-2)."""

    def __init__(self, ch: int, t: int = 2):
        super().__init__()
        self.t = t
        self.conv = _conv(ch, ch)

    def forward(self, x):
        x1 = self.conv(x)
        for _ in range(self.t):
            x1 = self.conv(x + x1)
        return x1


class _RRCNN(nn.Module):
    def __init__(self, cin: int, cout: int, t: int = 2):
        super().__init__()
        self.proj = nn.Conv3d(cin, cout, 1)
        self.body = nn.Sequential(_Recurrent(cout, t), _Recurrent(cout, t))

    def forward(self, x):
        x = self.proj(x)
        return x + self.body(x)


class R2UNet(nn.Module):
    """3-D recurrent residual U-Net; input sizes must be multiples of 2**(len(features) - 1)."""

    def __init__(self, in_channels: int = 1, out_channels: int = 1, features=(16, 32, 64, 128), t: int = 2):
        super().__init__()
        f = list(features)
        self.down = nn.ModuleList([_RRCNN(in_channels, f[0], t)] + [_RRCNN(f[i], f[i + 1], t) for i in range(len(f) - 1)])
        self.pool = nn.MaxPool3d(2)
        self.up = nn.ModuleList([nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), _conv(f[i + 1], f[i]))
                                 for i in reversed(range(len(f) - 1))])
        self.dec = nn.ModuleList([_RRCNN(2 * f[i], f[i], t) for i in reversed(range(len(f) - 1))])
        self.head = nn.Conv3d(f[0], out_channels, 1)

    def forward(self, x):
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, dec in zip(self.up, self.dec):
            x = dec(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)


class ResidualPVC(nn.Module):
    """y = x exp(net(x)) (LOG_GAIN) or softplus(net(x)) (DIRECT) on max-normalised (B, 1, D, H, W) images."""

    def __init__(self, net: nn.Module, multiple: int, output: Output = Output.LOG_GAIN):
        super().__init__()
        self.net = net
        self.multiple = multiple
        self.output = Output(output)
        if self.output is Output.DIRECT:
            return
        # Zero-initialised last layer: training starts from the identity (no PVC) and every
        # gradient step moves away from it, instead of first unlearning a random gain.
        last = [m for m in net.modules() if isinstance(m, nn.Conv3d)][-1]
        nn.init.zeros_(last.weight)
        if last.bias is not None:
            nn.init.zeros_(last.bias)

    def forward(self, x):
        # A gain in the log domain, not an additive correction clipped at 0: with
        # relu(x + net(x)) training falls into "subtract a constant" (a negative bias
        # zeroes most voxels, whose gradients then vanish, and the loss stalls), while
        # x * exp(r) is non-negative and differentiable everywhere. The clamp only guards
        # float32 overflow (gain <= e^10).
        if self.output is Output.DIRECT:
            return nn.functional.softplus(self.net(x))
        return x * torch.exp(self.net(x).clamp(max=10.0))


def size_multiple(arch: Architecture, features) -> int:
    """Input sizes must be multiples of this (2 ** number of poolings)."""
    return 16 if arch is Architecture.UNET else 2 ** (len(features) - 1)


def build_network(arch: Architecture = Architecture.R2UNET, *, features=(16, 32, 64, 128),
                  output: Output = Output.LOG_GAIN) -> ResidualPVC:
    """Build a DL-PVC network.

    Parameters
    ----------
    arch : Architecture
    features : sequence of int
        Channels per level. UNET takes 5 (MONAI BasicUNet's 5 encoder levels; a sixth, the
        up-path's last, is set equal to the first); R2UNET takes any length >= 2.
    output : Output
        Output form: LOG_GAIN (default, starts as the identity) or DIRECT (the paper's).
    """
    if not isinstance(arch, Architecture):
        raise TypeError(f"arch must be an Architecture, got {arch!r}")
    if not isinstance(output, Output):
        raise TypeError(f"output must be an Output, got {output!r}")
    features = tuple(int(f) for f in features)
    if arch is Architecture.UNET:
        from monai.networks.nets import BasicUNet

        if len(features) != 5:
            raise ValueError(f"features for UNET must have 5 entries, got {features}")
        net = BasicUNet(spatial_dims=3, in_channels=1, out_channels=1, features=features + (features[0],),
                        act=("LEAKYRELU", {"negative_slope": 0.1}), norm=("INSTANCE", {"affine": True}))
    else:
        if len(features) < 2:
            raise ValueError(f"features for R2UNET must have >= 2 entries, got {features}")
        net = R2UNet(1, 1, features)
    return ResidualPVC(net, size_multiple(arch, features), output)
