"""The FVD feature extractor on the I3D video classifier: weights, BatchNorm epsilon, names, the recipe.

I3D: Carreira & Zisserman, "Quo Vadis, Action Recognition? A New Model and the Kinetics Dataset",
CVPR 2017. FVD: Unterthiner et al., "Towards Accurate Generative Models of Video: A New Metric &
Challenges", 2018 (the TF-Hub Kinetics-400 I3D, 400 logits averaged over time).

The network (:mod:`sned.predictors.i3d_net`) is written from the paper's Inception-v1 table; its parameter names follow the
widely used ``pytorch-i3d`` state-dict layout (``Conv3d_1a_7x7.conv3d.weight``,
``Mixed_4b.b1b.bn.running_mean``, ``logits.conv3d.bias``, ...) so that converted TF weights such
as TATS's ``i3d_pretrained_400.pt`` load unchanged. Padding is TensorFlow's ``SAME`` rule (the
weights were trained with it).

BatchNorm epsilon. TATS, VideoGPT, LVDM and cd-fvd run ``i3d_pretrained_400.pt`` in an
InceptionI3d whose BatchNorm has ``eps = 1e-5``, so every FVD they publish comes from 1e-5;
piergiaj's pytorch-i3d and the TF graph use ``eps = 1e-3``. On the same weights the two change the
logits by ~12 % and FVD by ~17 %. A state dict in *TATS layout* (pytorch-i3d keys without
``num_batches_tracked``, as TATS's file is) therefore runs with :data:`BN_EPS_TATS` by default, and
any other state dict (saved by a recent pytorch-i3d, with the counters) with :data:`BN_EPS_TF`.
Files saved by PyTorch < 0.4.1 lack the counters too, so piergiaj's own checkpoints may look like
TATS layout: pass ``bn_eps=1e-3`` (``sned fvd --i3d-bn-eps 1e-3``) for them.

Names. A file's features are only comparable with published FVDs when the file *is* the published
network: its sha256 must be in :data:`sned.predictors.i3d_published.PUBLISHED_I3D_WEIGHTS`. Such an extractor
is named ``<published name>:<sha12>`` (e.g. ``i3d-kinetics400:0123456789ab``); any other file is
``i3d:<sha12>`` ("user-supplied N-class weights"), whatever its class count. A BatchNorm epsilon
other than the file's default is appended (``i3d:0123456789ab-bn-eps-0.001``), so features made with
different epsilons never pass as one extractor's.

Feature recipe (:class:`I3DFeatureExtractor`), as in TATS / StyleGAN-V:

1. videos ``(b, c, f, h, w)`` in ``[-1, 1]`` (uint8 frames are scaled by ``x / 127.5 - 1``);
2. frames resized bilinearly to 224 x 224 (``align_corners=False``, no antialiasing);
3. clips shorter than :data:`MIN_FRAMES` (9; the network's temporal strides leave nothing to pool
   below that) are resampled in time to :data:`SHORT_CLIP_FRAMES` (16) frames by nearest index,
   ``t_src = floor(t * f / 16)``: an 8-frame clip shows each frame twice;
4. the network's logits ``(b, classes, t')`` averaged over ``t'`` -> ``(b, classes)`` features.

Weights are never downloaded. Without a file the extractor is a deterministic random-init I3D
named ``i3d-random`` (BatchNorm eps 1e-3, as it always had), whose scores are only comparable with
other ``i3d-random`` scores.
"""

from __future__ import annotations

import math
import os
import warnings
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from sned.predictors.i3d_net import (
    BN_EPS_TATS,
    BN_EPS_TF,
    MIN_FRAMES,
    RANDOM_SEED,
    InceptionI3d,
    random_state_dict,
    state_dict_sha256,
)
from sned.predictors.i3d_published import PUBLISHED_I3D_WEIGHTS, published_extractor_name
from sned.supernet.base.errors import UserError
from sned.supernet.base.files import file_sha256

WEIGHTS_ENV = "SNED_I3D_WEIGHTS"
RANDOM_NAME = "i3d-random"
INPUT_SIZE = 224
SHORT_CLIP_FRAMES = 16

# Where a state dict comes from, told apart by its keys (see the module docstring):
# "tats" = pytorch-i3d keys without num_batches_tracked, "pytorch-i3d" = with them.
WeightsLayout = Literal["tats", "pytorch-i3d"]
DEFAULT_BN_EPS: dict[str, float] = {"tats": BN_EPS_TATS, "pytorch-i3d": BN_EPS_TF}

# ----------------------------------------------------------------------------- weights


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive is a zip holding ``<root>/constants.pkl`` (``torch.save`` files do not)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/constants.pkl") or name == "constants.pkl" for name in archive.namelist())
    except zipfile.BadZipFile:
        return False


@dataclass(frozen=True)
class I3DWeights:
    """A checked pytorch-i3d state dict and the layout it was saved in.

    Attributes:
        state: exactly the keys of :class:`InceptionI3d` (``num_batches_tracked`` filled in where
            the file had none).
        layout: ``"tats"`` when the file had no ``num_batches_tracked`` entries (TATS's
            ``i3d_pretrained_400.pt``, or a file saved by PyTorch < 0.4.1), else ``"pytorch-i3d"``.
    """

    state: dict[str, torch.Tensor]
    layout: WeightsLayout

    @property
    def num_classes(self) -> int:
        """The classifier's size (400 for Kinetics-400)."""
        return int(self.state["logits.conv3d.weight"].shape[0])

    @property
    def default_bn_eps(self) -> float:
        """The BatchNorm epsilon this layout runs with unless told otherwise (1e-5 for TATS layout, else 1e-3)."""
        return DEFAULT_BN_EPS[self.layout]


def read_i3d_weights(path: str | Path) -> I3DWeights:
    """Read and check a pytorch-i3d-layout state dict (``torch.load(weights_only=True)``) and its layout.

    A ``module.`` prefix (DataParallel) is stripped; ``num_batches_tracked`` entries are optional,
    and whether the file has them decides :attr:`I3DWeights.layout`.

    Raises:
        FileNotFoundError: no such file.
        UserError: unreadable or truncated file, or keys/shapes that are not an I3D's.
    """
    path = Path(path)
    hint = "expected a pytorch-i3d state dict (e.g. TATS's i3d_pretrained_400.pt) or StyleGAN-V's i3d_torchscript.pt"
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # torch raises RuntimeError / UnpicklingError / EOFError / zip errors
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"cannot read I3D weights {path}: {reason[:200]}; {hint}") from exc
    if isinstance(loaded, dict) and "state_dict" in loaded and isinstance(loaded["state_dict"], dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise UserError(f"I3D weights {path} hold a {type(loaded).__name__}, not a dict of tensors; {hint}")
    state = {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in loaded.items()}
    logits = state.get("logits.conv3d.weight")
    if logits is None or logits.ndim != 5:
        raise UserError(f"I3D weights {path} have no 'logits.conv3d.weight' of 5 dims; {hint}")
    expected = InceptionI3d(int(logits.shape[0])).state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        raise UserError(f"I3D weights {path} do not match the I3D layout: keys {'; '.join(parts)}; {hint}")
    for key, value in expected.items():
        if key in state and tuple(state[key].shape) != tuple(value.shape):
            raise UserError(
                f"I3D weights {path}: {key} has shape {tuple(state[key].shape)}, expected {tuple(value.shape)}"
            )
    has_counters = any(k.endswith("num_batches_tracked") for k in state)
    for key, value in expected.items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)
    layout: WeightsLayout = "pytorch-i3d" if has_counters else "tats"
    return I3DWeights({k: state[k].to(expected[k].dtype) for k in expected}, layout)


def load_i3d_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The checked state dict of :func:`read_i3d_weights`; its class count is ``state["logits.conv3d.weight"].shape[0]``.

    Raises:
        FileNotFoundError: no such file.
        UserError: unreadable or truncated file, or keys/shapes that are not an I3D's.
    """
    return read_i3d_weights(path).state


def _check_bn_eps(bn_eps: float | None) -> float | None:
    """``bn_eps`` as a float, or a UserError naming the value and the usual choices."""
    if bn_eps is None:
        return None
    try:
        value = float(bn_eps)
    except (TypeError, ValueError):
        value = float("nan")
    if not math.isfinite(value) or value <= 0:
        raise UserError(
            f"bn_eps must be a positive number or None (the file's default); got {bn_eps!r}; "
            f"use {BN_EPS_TATS:g} (TATS layout) or {BN_EPS_TF:g} (piergiaj's pytorch-i3d, TF)"
        )
    return value


def _bn_eps_suffix(bn_eps: float, default: float) -> str:
    """Name suffix for an epsilon other than the weights' default (features differ with it)."""
    return "" if bn_eps == default else f"-bn-eps-{bn_eps:g}"


# ----------------------------------------------------------------------------- extractor


def resample_frames(num_frames: int, target: int = SHORT_CLIP_FRAMES) -> list[int]:
    """Nearest-index temporal resampling: source frame ``floor(t * num_frames / target)`` for output t."""
    return [t * num_frames // target for t in range(target)]


def read_videos(paths: Sequence[str | Path]) -> Iterator[np.ndarray]:
    """Decode video files one at a time, in order, as uint8 ``(f, h, w, 3)`` frames.

    Raises:
        UserError: an unreadable video (one line naming the file and the reader's reason).
    """
    from sned.supernet.video_io import read_video

    for path in paths:
        try:
            yield read_video(path)
        except Exception as exc:  # decord raises its own DECORDError / RuntimeError
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            # read_video's own messages name the file already; anything else gets it prepended.
            message = reason if str(path) in reason else f"cannot read video {path}: {reason[:160]}"
            raise UserError(message) from exc


def video_batches(videos: Iterable[np.ndarray], num_frames: int | None, batch_size: int) -> Iterator[list[np.ndarray]]:
    """Group uint8 videos ``(f, h, w, 3)`` into lists of equal shape, at most ``batch_size`` long (lazily).

    Raises:
        UserError: an item that is not uint8 ``(f, h, w, 3)`` frames.
    """
    batch: list[np.ndarray] = []
    for video in videos:
        video = np.asarray(video)
        if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3 or video.shape[0] == 0:
            raise UserError(f"expected uint8 video frames (f, h, w, 3), got {video.dtype} {video.shape}")
        if num_frames is not None:
            video = video[:num_frames]
        if batch and (video.shape != batch[0].shape or len(batch) == batch_size):
            yield batch
            batch = []
        batch.append(video)
    if batch:
        yield batch


class I3DFeatureExtractor:
    """Batched I3D features for FVD/KVD on CPU or CUDA.

    Args:
        weights: a pytorch-i3d state dict (``.pt``) or a StyleGAN-V TorchScript detector; ``None``
            reads ``$SNED_I3D_WEIGHTS``, and without that a random-init I3D (``i3d-random``) is used.
            pytorch-i3d's ``rgb_imagenet.pt`` is *not* the FVD network (another checkpoint, not the
            TF-Hub Kinetics-400 I3D that FVD is defined with); TATS's ``i3d_pretrained_400.pt`` is.
        device: torch device for the network (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
        batch_size: videos per forward pass.
        bn_eps: BatchNorm epsilon; ``None`` takes the weights' default: 1e-5 for a TATS-layout file
            (no ``num_batches_tracked``; what TATS / VideoGPT / LVDM / cd-fvd publish with), 1e-3 for
            other state dicts and for ``i3d-random``. Pass 1e-3 for piergiaj's checkpoints. Not
            accepted for a TorchScript detector (its epsilon is compiled in).

    Attributes:
        name: ``"i3d-random"``; ``"<published name>:<sha12>"`` for a file listed in
            :data:`sned.predictors.fvd.PUBLISHED_I3D_WEIGHTS`; else ``"i3d:<sha12>"``. A non-default
            ``bn_eps`` adds ``"-bn-eps-<eps>"``.
        description: one line on what the weights are (``"user-supplied 400-class weights ..."``).
        weights_sha256: sha256 of the weights file; for ``i3d-random``, of its generated state dict.
        weights_path: the file used, or ``None``.
        layout: ``"random"``, ``"tats"``, ``"pytorch-i3d"`` or ``"torchscript"``.
        bn_eps: the BatchNorm epsilon in use (``None`` for TorchScript).
        is_comparable_to_published: the weights are a known published FVD network, run as published.
        num_features: feature dimension (the class count, 400 for Kinetics).

    Raises:
        FileNotFoundError: no such weights file.
        UserError: unreadable or wrong weights, ``batch_size`` < 1, a bad ``bn_eps``, or ``bn_eps``
            with a TorchScript detector.

    Example:
        >>> ex = I3DFeatureExtractor(weights=None, batch_size=4)   # doctest: +SKIP
        >>> feats = ex.features(torch.rand(2, 3, 16, 64, 64) * 2 - 1)   # (2, 400) float32 numpy
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 8,
        *,
        bn_eps: float | None = None,
    ) -> None:
        if batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {batch_size}")
        bn_eps = _check_bn_eps(bn_eps)
        self.device = torch.device(device)
        self.batch_size = batch_size
        if weights is None and os.environ.get(WEIGHTS_ENV):
            weights = os.environ[WEIGHTS_ENV]
        self.weights_path = Path(weights) if weights is not None else None
        self._torchscript: Any = None
        self._net: InceptionI3d | None = None
        self.is_comparable_to_published = False
        if self.weights_path is None:
            state = random_state_dict()
            self.layout = "random"
            self.bn_eps = BN_EPS_TF if bn_eps is None else bn_eps
            self.name = RANDOM_NAME + _bn_eps_suffix(self.bn_eps, BN_EPS_TF)
            self.description = f"random-init I3D (seed {RANDOM_SEED}); scores only compare with other {self.name} scores"
            self.weights_sha256 = state_dict_sha256(state)
            self._net = self._build(state, self.bn_eps)
        elif _is_torchscript(self.weights_path):
            if bn_eps is not None:
                raise UserError(
                    f"bn_eps={bn_eps:g} applies to pytorch-i3d state dicts; {self.weights_path} is a TorchScript "
                    "detector with its BatchNorm compiled in: drop the option, or pass a state dict"
                )
            with warnings.catch_warnings():  # torch.jit is deprecated, but the detector only exists as TorchScript
                warnings.simplefilter("ignore", DeprecationWarning)
                try:
                    module = torch.jit.load(str(self.weights_path), map_location=self.device)
                except Exception as exc:
                    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
                    raise UserError(f"cannot load TorchScript I3D {self.weights_path}: {reason}") from exc
            self._torchscript = module.eval()
            self.layout, self.bn_eps = "torchscript", None
            self.weights_sha256 = file_sha256(self.weights_path)
            self._name_file_weights("TorchScript detector (StyleGAN-V interface)", "")
        else:
            loaded = read_i3d_weights(self.weights_path)
            self.layout = loaded.layout
            self.weights_sha256 = file_sha256(self.weights_path)
            published = PUBLISHED_I3D_WEIGHTS.get(self.weights_sha256)
            default = loaded.default_bn_eps  # a published file runs as published by default
            if published is not None and published.bn_eps is not None:
                default = published.bn_eps
            self.bn_eps = default if bn_eps is None else bn_eps
            self._name_file_weights(
                f"{loaded.num_classes}-class weights ({loaded.layout} layout, BatchNorm eps {self.bn_eps:g})",
                _bn_eps_suffix(self.bn_eps, default),
            )
            self._net = self._build(loaded.state, self.bn_eps)
        self.num_features = self._net.num_classes if self._net is not None else 400

    def _name_file_weights(self, what: str, suffix: str) -> None:
        """Set ``name``, ``description`` and ``is_comparable_to_published`` from the file's sha256."""
        published = PUBLISHED_I3D_WEIGHTS.get(self.weights_sha256)
        if published is None:
            self.name = f"i3d:{self.weights_sha256[:12]}{suffix}"
            self.description = f"user-supplied {what}; not a known published FVD network"
        else:
            self.name = f"{published_extractor_name(self.weights_sha256)}{suffix}"
            self.description = published.description + (f"; run with BatchNorm eps {self.bn_eps:g}, not as published"
                                                         if suffix else "")
            self.is_comparable_to_published = not suffix

    def _build(self, state: dict[str, torch.Tensor], bn_eps: float) -> InceptionI3d:
        net = InceptionI3d(int(state["logits.conv3d.weight"].shape[0]), bn_eps=bn_eps)
        net.load_state_dict(state)
        net = net.eval().requires_grad_(False).to(self.device)
        if self.device.type == "cpu":
            # oneDNN's 3D convolutions run ~2x faster channels-last on CPU (measured, same outputs to 1e-5).
            net = net.to(memory_format=torch.channels_last_3d)
        return net

    @property
    def is_random(self) -> bool:
        """Whether this is the random-init network (scores not comparable to published FVD)."""
        return self.layout == "random"

    def __repr__(self) -> str:
        return f"I3DFeatureExtractor(name={self.name!r}, sha256={self.weights_sha256[:12]}, device={self.device})"

    # -- tensors -------------------------------------------------------------------------------

    def features(self, videos: torch.Tensor) -> np.ndarray:
        """Features of a batch of videos.

        Args:
            videos: float tensor ``(b, c, f, h, w)`` in ``[-1, 1]``, c = 3, any f >= 1 and size
                (resized to 224 x 224; clips under 9 frames resampled to 16).

        Returns:
            ``(b, num_features)`` float32 array.
        """
        if videos.ndim != 5 or videos.shape[1] != 3:
            raise UserError(f"expected videos of shape (b, 3, f, h, w), got {tuple(videos.shape)}")
        if not videos.is_floating_point():
            raise UserError(f"expected a float tensor in [-1, 1], got {videos.dtype}; use features_from_arrays for uint8")
        out = [self._forward(videos[i : i + self.batch_size]) for i in range(0, videos.shape[0], self.batch_size)]
        return np.concatenate(out, axis=0) if out else np.zeros((0, self.num_features), np.float32)

    @torch.inference_mode()
    def _forward(self, videos: torch.Tensor) -> np.ndarray:
        x = videos.to(self.device, torch.float32)
        b, c, f, h, w = x.shape
        if f < MIN_FRAMES:
            x = x[:, :, resample_frames(f)]
            f = x.shape[2]
        if self._torchscript is not None:
            # StyleGAN-V's detector takes uint8-valued input and scales/resizes it itself.
            x = ((x + 1) * 127.5).round().clamp(0, 255)
            feats = self._torchscript(x, rescale=True, resize=True, return_features=True)
            return feats.float().cpu().numpy()
        if (h, w) != (INPUT_SIZE, INPUT_SIZE):
            frames = x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
            frames = F.interpolate(frames, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
            x = frames.reshape(b, f, c, INPUT_SIZE, INPUT_SIZE).permute(0, 2, 1, 3, 4)
        assert self._net is not None
        fmt = torch.channels_last_3d if self.device.type == "cpu" else torch.contiguous_format
        return self._net(x.contiguous(memory_format=fmt)).mean(dim=2).float().cpu().numpy()  # logits averaged over time

    # -- uint8 arrays and folders --------------------------------------------------------------

    def features_from_arrays(
        self, videos: Iterable[np.ndarray], num_frames: int | None = None, total: int | None = None, progress: bool = False
    ) -> np.ndarray:
        """Features of uint8 videos ``(f, h, w, 3)``, batched (consecutive videos of equal shape share a batch).

        Args:
            videos: an iterable of uint8 arrays (read lazily, so a folder never sits in memory whole).
            num_frames: keep only the first ``num_frames`` frames of each video (``None``: all).
            total: length of ``videos`` for the progress bar.
            progress: show a tqdm progress bar when stderr is a terminal (never in a pipe or log).
        """
        from tqdm import tqdm

        out: list[np.ndarray] = []
        with tqdm(total=total, disable=None if progress else True, unit="video",
                  desc=f"I3D ({self.name})") as bar:
            for batch in self._batches(videos, num_frames):
                x = torch.from_numpy(np.stack(batch)).permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0  # (b, c, f, h, w)
                out.append(self._forward(x))
                bar.update(len(batch))
        return np.concatenate(out, axis=0) if out else np.zeros((0, self.num_features), np.float32)

    def _batches(self, videos: Iterable[np.ndarray], num_frames: int | None) -> Iterator[list[np.ndarray]]:
        return video_batches(videos, num_frames, self.batch_size)

    def features_from_folder(
        self,
        root: str | Path,
        n: int | None = None,
        seed: int = 0,
        num_frames: int | None = None,
        progress: bool = True,
    ) -> np.ndarray:
        """Features of the videos under ``root`` (recursive; see ``sned.supernet.video_io.list_videos``).

        Args:
            root: a folder of videos.
            n: use at most ``n`` videos, a uniform random subset (``seed``) when there are more.
            seed: seed of that subset.
            num_frames: keep only the first ``num_frames`` frames of each video.
            progress: show a tqdm progress bar.

        Raises:
            UserError: no folder, no videos, or an unreadable video.
        """
        return self.features_from_paths(select_videos(root, n, seed), num_frames=num_frames, progress=progress)

    def features_from_paths(
        self, paths: Sequence[str | Path], num_frames: int | None = None, progress: bool = True
    ) -> np.ndarray:
        """Features of the given video files, in order (decoded one at a time with decord).

        Raises:
            UserError: an unreadable video.
        """

        return self.features_from_arrays(read_videos(paths), num_frames=num_frames, total=len(paths),
                                         progress=progress)


def select_videos(root: str | Path, n: int | None = None, seed: int = 0) -> list[Path]:
    """The video files under ``root``; at most ``n`` of them, a sorted uniform random subset under ``seed``."""
    from sned.supernet.video_io import VIDEO_SUFFIXES, list_videos

    root = Path(root)
    if not root.is_dir():
        raise UserError(f"not a folder of videos: {root}")
    paths = list_videos(root)
    if not paths:
        raise UserError(f"no videos under {root} (looked for {', '.join(VIDEO_SUFFIXES)})")
    if n is not None and n < len(paths):
        # A random subset, not the first n: sorted UCF-101 folders would give only the first classes.
        keep = np.sort(np.random.default_rng(seed).choice(len(paths), size=n, replace=False))
        paths = [paths[i] for i in keep]
    return paths


__all__ = ["BN_EPS_TATS", "BN_EPS_TF", "DEFAULT_BN_EPS", "INPUT_SIZE", "MIN_FRAMES", "RANDOM_NAME", "RANDOM_SEED",
           "SHORT_CLIP_FRAMES", "WEIGHTS_ENV", "I3DFeatureExtractor", "I3DWeights", "InceptionI3d", "WeightsLayout",
           "load_i3d_state_dict", "random_state_dict", "read_i3d_weights", "read_videos", "resample_frames",
           "select_videos", "video_batches"]
