"""The I3D network (Inception-v1 inflated to 3D), written from the paper's table, in pytorch-i3d layout.

Carreira & Zisserman, "Quo Vadis, Action Recognition? A New Model and the Kinetics Dataset", CVPR
2017. Parameter names follow the ``pytorch-i3d`` state-dict layout (``Conv3d_1a_7x7.conv3d.weight``,
``Mixed_4b.b1b.bn.running_mean``, ``logits.conv3d.bias``, ...), so converted TF weights load
unchanged; padding is TensorFlow's ``SAME`` rule. The feature extractor built on it, and the
BatchNorm-epsilon rules, are :mod:`sned.predictors.i3d`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MIN_FRAMES = 9  # the network's temporal strides leave nothing to pool below this
RANDOM_SEED = 0  # the random-init extractor's fixed seed: part of its identity, never change lightly
BN_EPS_TF = 1e-3  # TensorFlow's and piergiaj's pytorch-i3d BatchNorm epsilon
BN_EPS_TATS = 1e-5  # the epsilon TATS / VideoGPT / LVDM / cd-fvd run i3d_pretrained_400.pt with
BN_MOMENTUM = 0.01  # never used: the network only runs in eval mode

# Inception modules: name -> (in_channels, (b0, b1a, b1b, b2a, b2b, b3b) out_channels).
# Branches: b0 = 1x1x1; b1 = 1x1x1 -> 3x3x3; b2 = 1x1x1 -> 3x3x3; b3 = 3x3x3 max-pool -> 1x1x1.
INCEPTION_MODULES: dict[str, tuple[int, tuple[int, int, int, int, int, int]]] = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}

Triple = tuple[int, int, int]




def _same_padding(size: Sequence[int], kernel: Triple, stride: Triple) -> list[int]:
    """TF ``SAME`` padding of a (t, h, w) input as an ``F.pad`` list (w, h, t; front, back)."""
    pads: list[int] = []
    for s, k, st in reversed(list(zip(size, kernel, stride, strict=True))):
        total = max(k - st, 0) if s % st == 0 else max(k - s % st, 0)
        pads += [total // 2, total - total // 2]  # TF puts the odd pixel at the back
    return pads


class Unit3D(nn.Module):
    """Conv3d (TF ``SAME`` padding) -> optional BatchNorm3d -> optional ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Triple = (1, 1, 1),
        stride: Triple = (1, 1, 1),
        *,
        use_batch_norm: bool = True,
        use_activation: bool = True,
        use_bias: bool = False,
        bn_eps: float = BN_EPS_TF,
    ) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.use_activation = kernel_size, stride, use_activation
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel_size, stride, padding=0, bias=use_bias)
        self.bn = nn.BatchNorm3d(out_channels, eps=bn_eps, momentum=BN_MOMENTUM) if use_batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(F.pad(x, _same_padding(x.shape[2:], self.kernel_size, self.stride)))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.use_activation else x


class MaxPool3dSame(nn.Module):
    """Max-pool with TF ``SAME`` padding (zero padding is exact here: inputs are post-ReLU, >= 0)."""

    def __init__(self, kernel_size: Triple, stride: Triple) -> None:
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, _same_padding(x.shape[2:], self.kernel_size, self.stride))
        return F.max_pool3d(x, self.kernel_size, self.stride)


class InceptionModule(nn.Module):
    """Four parallel branches concatenated on channels (Inception-v1, inflated)."""

    def __init__(
        self, in_channels: int, out_channels: tuple[int, int, int, int, int, int], *, bn_eps: float = BN_EPS_TF
    ) -> None:
        super().__init__()
        c0, c1a, c1b, c2a, c2b, c3b = out_channels
        self.b0 = Unit3D(in_channels, c0, bn_eps=bn_eps)
        self.b1a = Unit3D(in_channels, c1a, bn_eps=bn_eps)
        self.b1b = Unit3D(c1a, c1b, (3, 3, 3), bn_eps=bn_eps)
        self.b2a = Unit3D(in_channels, c2a, bn_eps=bn_eps)
        self.b2b = Unit3D(c2a, c2b, (3, 3, 3), bn_eps=bn_eps)
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, c3b, bn_eps=bn_eps)
        self.out_channels = c0 + c1b + c2b + c3b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


class InceptionI3d(nn.Module):
    """I3D: ``(b, 3, t, 224, 224)`` in ``[-1, 1]`` -> logits ``(b, num_classes, t')``, t' = ceil(t/8) - 1.

    Args:
        num_classes: size of the classifier (400 for Kinetics-400, 157 for Charades).
        bn_eps: BatchNorm epsilon: :data:`BN_EPS_TF` (1e-3, TF and piergiaj) or :data:`BN_EPS_TATS`
            (1e-5, what TATS / VideoGPT / LVDM / cd-fvd run ``i3d_pretrained_400.pt`` with).
    """

    def __init__(self, num_classes: int = 400, *, bn_eps: float = BN_EPS_TF) -> None:
        super().__init__()
        self.num_classes, self.bn_eps = num_classes, bn_eps
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2), bn_eps=bn_eps)
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64, bn_eps=bn_eps)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3), bn_eps=bn_eps)
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        for name in ("Mixed_3b", "Mixed_3c"):
            self.add_module(name, InceptionModule(*INCEPTION_MODULES[name], bn_eps=bn_eps))
        self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            self.add_module(name, InceptionModule(*INCEPTION_MODULES[name], bn_eps=bn_eps))
        self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
        for name in ("Mixed_5b", "Mixed_5c"):
            self.add_module(name, InceptionModule(*INCEPTION_MODULES[name], bn_eps=bn_eps))
        # Average over the last 2 x 7 x 7 positions (no padding), as the TF graph does; dropout is
        # omitted: the network only ever runs in inference here.
        self.logits = Unit3D(1024, num_classes, use_batch_norm=False, use_activation=False, use_bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Three temporal and five spatial stride-2 stages leave (ceil(t/8), ceil(h/32), ceil(w/32)),
        # and the final average pool needs (2, 7, 7) of it: t >= 9, h, w >= 193.
        if x.ndim != 5 or x.shape[1] != 3 or x.shape[2] < MIN_FRAMES or min(x.shape[3:]) < 193:
            raise ValueError(f"I3D needs (b, 3, t >= {MIN_FRAMES}, 224, 224) input; got {tuple(x.shape)}")
        for module in self.children():  # registration order is the network's order
            if module is self.logits:
                break
            x = module(x)  # ends at (b, 1024, ceil(t/8), 7, 7) for 224 x 224 input
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)
        return self.logits(x).flatten(3).mean(dim=3)  # (b, classes, t'); spatial map is 1x1 at 224


def random_state_dict(num_classes: int = 400, seed: int = RANDOM_SEED) -> dict[str, torch.Tensor]:
    """A deterministic random-init I3D state dict (He-normal convs, identity BatchNorm).

    Drawn with numpy's ``default_rng(seed)`` in parameter order, so it does not depend on torch's
    RNG or on the device.
    """
    rng = np.random.default_rng(seed)
    state = InceptionI3d(num_classes).state_dict()
    for key, value in state.items():
        if key.endswith("conv3d.weight"):
            fan_in = math.prod(value.shape[1:])
            std = math.sqrt(2.0 / fan_in)
            if key.startswith("logits."):
                std = math.sqrt(1.0 / fan_in)  # no ReLU after the classifier
            state[key] = torch.from_numpy(rng.standard_normal(value.shape, dtype=np.float32) * np.float32(std))
        elif key.endswith(("bn.weight", "bn.running_var")):
            state[key] = torch.ones_like(value)
        elif key.endswith("num_batches_tracked"):
            state[key] = torch.zeros_like(value)
        else:  # conv bias, bn bias, running_mean
            state[key] = torch.zeros_like(value)
    return state


def state_dict_sha256(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


__all__ = ["BN_EPS_TATS", "BN_EPS_TF", "BN_MOMENTUM", "INCEPTION_MODULES", "MIN_FRAMES", "RANDOM_SEED", "InceptionI3d",
           "InceptionModule", "MaxPool3dSame", "Triple", "Unit3D", "random_state_dict", "state_dict_sha256"]
