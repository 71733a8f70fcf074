"""Tests of sned.predictors.i3d against an independent reference I3D, and of its BatchNorm-epsilon and naming rules.

The reference below is written from the published network (Carreira & Zisserman 2017, Inception-v1
inflated; the TF graph's ``SAME`` padding) and the pytorch-i3d state-dict layout that TATS's
``i3d_pretrained_400.pt`` uses, with BatchNorm eps 1e-5 as TATS / VideoGPT / LVDM / cd-fvd run it.
It shares no code with ``sned.predictors.i3d``: padding comes from TF's output-size formula and
max-pools pad with -inf (TF ignores padded positions), where sned uses zero padding.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sned.predictors.fvd import PUBLISHED_I3D_WEIGHTS, PublishedWeights, is_comparable_to_published
from sned.predictors.i3d import (
    BN_EPS_TATS,
    BN_EPS_TF,
    I3DFeatureExtractor,
    InceptionI3d,
    random_state_dict,
    read_i3d_weights,
)
from sned.supernet.base.errors import UserError

REFERENCE_BN_EPS = 1e-5


@pytest.fixture(autouse=True)
def _no_weights_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SNED_I3D_WEIGHTS", raising=False)


# ----------------------------------------------------------------------------- the reference network


def tf_same_padding(size: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...]) -> list[int]:
    """TF ``SAME``: output ceil(s / stride); the padding that needs, odd pixel at the end; F.pad order (w, h, t)."""
    pads: list[int] = []
    for s, k, st in zip(size, kernel, stride, strict=True):
        total = max((math.ceil(s / st) - 1) * st + k - s, 0)
        pads = [total // 2, total - total // 2] + pads
    return pads


class ReferenceUnit(nn.Module):
    """``conv3d`` (no bias unless it is the classifier) -> ``bn`` (eps 1e-5) -> ReLU, TF ``SAME`` padding."""

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, int, int] = (1, 1, 1),
                 stride: tuple[int, int, int] = (1, 1, 1), *, classifier: bool = False) -> None:
        super().__init__()
        self.kernel, self.stride, self.classifier = kernel, stride, classifier
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel, stride, bias=classifier)
        if not classifier:
            self.bn = nn.BatchNorm3d(out_channels, eps=REFERENCE_BN_EPS, momentum=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(F.pad(x, tf_same_padding(tuple(x.shape[2:]), self.kernel, self.stride)))
        return x if self.classifier else torch.relu(self.bn(x))


def reference_max_pool(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    """TF ``SAME`` max-pool: padded positions never win (-inf)."""
    x = F.pad(x, tf_same_padding(tuple(x.shape[2:]), kernel, stride), value=float("-inf"))
    return F.max_pool3d(x, kernel, stride)


class ReferenceMixed(nn.Module):
    """Inception module: b0 | b1a -> b1b | b2a -> b2b | 3x3x3 max-pool -> b3b, concatenated."""

    def __init__(self, in_channels: int, b0: int, b1a: int, b1b: int, b2a: int, b2b: int, b3b: int) -> None:
        super().__init__()
        self.b0 = ReferenceUnit(in_channels, b0)
        self.b1a, self.b1b = ReferenceUnit(in_channels, b1a), ReferenceUnit(b1a, b1b, (3, 3, 3))
        self.b2a, self.b2b = ReferenceUnit(in_channels, b2a), ReferenceUnit(b2a, b2b, (3, 3, 3))
        self.b3b = ReferenceUnit(in_channels, b3b)
        self.out_channels = b0 + b1b + b2b + b3b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = reference_max_pool(x, (3, 3, 3), (1, 1, 1))
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(pooled)], dim=1)


# The published Inception-v1 widths per module (b0, b1a, b1b, b2a, b2b, b3b); in_channels follow from them.
REFERENCE_MIXED = [
    ("Mixed_3b", (64, 96, 128, 16, 32, 32)), ("Mixed_3c", (128, 128, 192, 32, 96, 64)), "pool4",
    ("Mixed_4b", (192, 96, 208, 16, 48, 64)), ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", (128, 128, 256, 24, 64, 64)), ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", (256, 160, 320, 32, 128, 128)), "pool5",
    ("Mixed_5b", (256, 160, 320, 32, 128, 128)), ("Mixed_5c", (384, 192, 384, 48, 128, 128)),
]


class ReferenceI3d(nn.Module):
    """InceptionI3d as TATS runs it: ``(b, 3, t, h, w)`` -> logits ``(b, classes, t')`` (not yet averaged)."""

    def __init__(self, num_classes: int = 400) -> None:
        super().__init__()
        self.Conv3d_1a_7x7 = ReferenceUnit(3, 64, (7, 7, 7), (2, 2, 2))
        self.Conv3d_2b_1x1 = ReferenceUnit(64, 64)
        self.Conv3d_2c_3x3 = ReferenceUnit(64, 192, (3, 3, 3))
        in_channels = 192
        self.plan: list[str] = []
        for entry in REFERENCE_MIXED:
            if isinstance(entry, str):
                self.plan.append(entry)
                continue
            name, widths = entry
            module = ReferenceMixed(in_channels, *widths)
            self.add_module(name, module)
            self.plan.append(name)
            in_channels = module.out_channels
        self.logits = ReferenceUnit(in_channels, num_classes, classifier=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = reference_max_pool(self.Conv3d_1a_7x7(x), (1, 3, 3), (1, 2, 2))
        x = reference_max_pool(self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x)), (1, 3, 3), (1, 2, 2))
        for step in self.plan:
            if step == "pool4":
                x = reference_max_pool(x, (3, 3, 3), (2, 2, 2))
            elif step == "pool5":
                x = reference_max_pool(x, (2, 2, 2), (2, 2, 2))
            else:
                x = getattr(self, step)(x)
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)  # valid padding
        return self.logits(x).squeeze(4).squeeze(3)  # (b, classes, t')


def tats_layout_state(seed: int, num_classes: int = 400) -> dict[str, torch.Tensor]:
    """Seeded random weights in TATS's layout: bn.weight all ones, no num_batches_tracked.

    Running variances are log-uniform over [1e-3, 1], so the epsilon matters as on the real file
    (channels with variances near 1e-3). Each conv's output channel c gets He-normal weights scaled
    by sqrt(running_var[c]): its output variance is then about running_var[c], BatchNorm brings it
    back to ~1, and the logits stay O(1) through the 20 layers instead of growing geometrically.
    """
    rng = np.random.default_rng(seed)
    state: dict[str, torch.Tensor] = {}
    for key, value in ReferenceI3d(num_classes).state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        shape = tuple(value.shape)
        if key.endswith("bn.weight"):
            array = np.ones(shape)
        elif key.endswith("bn.running_var"):
            array = np.exp(rng.uniform(math.log(1e-3), 0.0, shape))
        elif key.endswith("conv3d.weight"):
            array = rng.standard_normal(shape) * math.sqrt(2.0 / math.prod(shape[1:]))
        else:  # bn.bias, bn.running_mean, logits.conv3d.bias
            array = 0.1 * rng.standard_normal(shape)
        state[key] = torch.from_numpy(array.astype(np.float32))
    for key in state:
        if key.endswith("bn.running_var"):  # keys of a unit: <unit>.conv3d.weight, <unit>.bn.running_var
            weight = key.replace("bn.running_var", "conv3d.weight")
            state[weight] = state[weight] * state[key].sqrt().reshape(-1, 1, 1, 1, 1)
    return state


@pytest.fixture(scope="module")
def tats_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tats") / "i3d_pretrained_400.pt"
    torch.save(tats_layout_state(seed=11), path)
    return path


# Smallest input the network pools: 9 frames (t' = ceil(9/8) - 1 = 1), 193 pixels (ceil(193/32) = 7).
# 17 frames give t' = 2 time steps, and an odd, non-square frame exercises TF's asymmetric padding.
CLIP_SHAPE = (1, 3, 17, 193, 201)


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    return torch.rand(CLIP_SHAPE, generator=torch.Generator().manual_seed(0)) * 2 - 1


@pytest.fixture(scope="module")
def reference_logits(tats_file: Path, clip: torch.Tensor) -> torch.Tensor:
    reference = ReferenceI3d(400)
    missing, unexpected = reference.load_state_dict(torch.load(tats_file, weights_only=True), strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)
    with torch.inference_mode():
        return reference.eval()(clip)


# ----------------------------------------------------------------------------- sned vs the reference


def test_reference_i3d_has_the_tats_key_layout(tats_file: Path) -> None:
    keys = set(torch.load(tats_file, weights_only=True))
    assert "Mixed_4b.b1b.bn.running_var" in keys and "logits.conv3d.bias" in keys
    assert not any("num_batches_tracked" in k for k in keys)
    assert keys == {k for k in InceptionI3d(400).state_dict() if not k.endswith("num_batches_tracked")}


def test_tats_layout_file_runs_with_eps_1e5_and_matches_the_reference(
    tats_file: Path, clip: torch.Tensor, reference_logits: torch.Tensor
) -> None:
    weights = read_i3d_weights(tats_file)
    assert weights.layout == "tats" and weights.default_bn_eps == BN_EPS_TATS == 1e-5
    net = InceptionI3d(400, bn_eps=weights.default_bn_eps)
    net.load_state_dict(weights.state)
    with torch.inference_mode():
        logits = net.eval()(clip)
    assert logits.shape == reference_logits.shape == (1, 400, 2)
    scale = reference_logits.abs().max().item()
    assert 1e-2 < scale < 1e4  # the seeded weights give finite, non-vanishing logits
    torch.testing.assert_close(logits, reference_logits, rtol=1e-4, atol=1e-4 * scale)
    # The extractor builds the same network from the file by default (channels-last on CPU).
    extractor = I3DFeatureExtractor(tats_file)
    assert extractor.bn_eps == BN_EPS_TATS and extractor.layout == "tats"
    with torch.inference_mode():
        direct = extractor._net(clip.contiguous(memory_format=torch.channels_last_3d))  # noqa: SLF001
    torch.testing.assert_close(direct, reference_logits, rtol=1e-4, atol=1e-4 * scale)


def test_bn_eps_1e3_option_changes_the_logits(
    tats_file: Path, clip: torch.Tensor, reference_logits: torch.Tensor
) -> None:
    extractor = I3DFeatureExtractor(tats_file, bn_eps=1e-3)
    assert extractor.bn_eps == BN_EPS_TF
    assert all(m.eps == 1e-3 for m in extractor._net.modules() if isinstance(m, nn.BatchNorm3d))  # noqa: SLF001
    with torch.inference_mode():
        logits = extractor._net(clip.contiguous(memory_format=torch.channels_last_3d))  # noqa: SLF001
    relative = ((logits - reference_logits).norm() / reference_logits.norm()).item()
    assert relative > 0.01  # far beyond float error (~1e-6): the epsilon is a real choice


# ----------------------------------------------------------------------------- layouts, epsilon and names


def test_layout_decides_the_default_epsilon(tats_file: Path, tmp_path: Path) -> None:
    torch.save(random_state_dict(400, seed=3), tmp_path / "with_counters.pt")  # a recent pytorch-i3d save
    counters = I3DFeatureExtractor(tmp_path / "with_counters.pt")
    assert (counters.layout, counters.bn_eps) == ("pytorch-i3d", BN_EPS_TF)
    assert I3DFeatureExtractor(tmp_path / "with_counters.pt", bn_eps=1e-5).bn_eps == 1e-5
    random = I3DFeatureExtractor()
    assert (random.layout, random.bn_eps, random.name) == ("random", BN_EPS_TF, "i3d-random")


def test_user_supplied_weights_are_named_by_sha_and_never_comparable(tats_file: Path) -> None:
    extractor = I3DFeatureExtractor(tats_file)
    sha12 = extractor.weights_sha256[:12]
    assert extractor.name == f"i3d:{sha12}" and not extractor.is_comparable_to_published
    assert extractor.description.startswith("user-supplied 400-class weights")
    assert not is_comparable_to_published(extractor.name, extractor.weights_sha256)
    # Another epsilon is another feature space: the name says so.
    forced = I3DFeatureExtractor(tats_file, bn_eps=1e-3)
    assert forced.name == f"i3d:{sha12}-bn-eps-0.001" and forced.weights_sha256 == extractor.weights_sha256
    assert I3DFeatureExtractor(tats_file, bn_eps=1e-5).name == extractor.name  # the default, spelt out


def test_known_published_sha_is_comparable_only_as_published(
    tats_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = I3DFeatureExtractor(tats_file).weights_sha256
    monkeypatch.setitem(PUBLISHED_I3D_WEIGHTS, sha, PublishedWeights("i3d-kinetics400", "TATS i3d_pretrained_400.pt", 1e-5))
    extractor = I3DFeatureExtractor(tats_file)
    assert extractor.name == f"i3d-kinetics400:{sha[:12]}" and extractor.is_comparable_to_published
    assert extractor.description == "TATS i3d_pretrained_400.pt"
    assert is_comparable_to_published(extractor.name, sha)
    assert not is_comparable_to_published("i3d-kinetics400", sha)  # an old label is not enough
    forced = I3DFeatureExtractor(tats_file, bn_eps=1e-3)
    assert forced.name == f"i3d-kinetics400:{sha[:12]}-bn-eps-0.001" and not forced.is_comparable_to_published
    assert not is_comparable_to_published(forced.name, sha)


@pytest.mark.parametrize("bn_eps", [0.0, -1e-3, float("nan"), "small"])
def test_bad_epsilon_is_a_user_error(bn_eps: object) -> None:
    with pytest.raises(UserError, match="bn_eps must be a positive number"):
        I3DFeatureExtractor(bn_eps=bn_eps)  # type: ignore[arg-type]
