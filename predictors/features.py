"""Domain features for FVD, KVD and IS: a small 3D-conv video classifier trained on a dataset's own classes.

Why. FVD's Kinetics-400 I3D is the right network for Kinetics-like videos and when its published
weights are at hand. For other data (the procedural set of ``sned data synth``, sky time-lapses,
medical video) its features fit poorly, and offline there are no weights at all: the fallback
``i3d-random`` is degenerate (any two videos have cosine similarity >= 0.98). The established
practice for such data is a classifier trained on the dataset's own classes: TGAN (Saito et al.,
ICCV 2017), MoCoGAN (Tulyakov et al., CVPR 2018) and TATS (Ge et al., ECCV 2022) report the
Inception Score of a C3D (Tran et al., ICCV 2015) trained on UCF-101's 101 classes. ``sned features
train`` trains such a classifier from scratch; its penultimate activations are the FVD/KVD features
and its class probabilities give the Inception Score (:func:`sned.predictors.fvd.inception_score`).
Its scores compare only with scores of the same weights (``domain:<sha12>``), never with published
FVDs.

Data. UCF-101 layout: one sub-folder per class under the data folder, videos anywhere below it
(:func:`read_class_folders`). Training clips: ``F`` consecutive frames from a random start (new
every epoch), resized to ``S`` x ``S`` (area average for integer factors, see
:func:`sned.supernet.data.resize_clips`), mirrored left-right with probability 1/2. A stratified
``val_fraction`` of each class's videos is held out; the card records the accuracy on their centre
clips after the last epoch (no model selection on it, so it is an honest held-out estimate).

Network (:class:`DomainClassifier`, widths ``w_0 .. w_n``, ``GroupNorm(8)`` and SiLU after every conv)::

    input                      (b, 3, F, S, S)          values in [-1, 1]
    stem   3x3x3 conv          (b, w_0, F, S, S)
    stage  1x3x3 conv, stride (1, 2, 2), then 3x1x1 conv, stride (2, 1, 1)      per width w_1 .. w_n:
                               (b, w_i, ceil(F / 2^i), ceil(S / 2^i), ceil(S / 2^i))
    global average pool        (b, w_n)                 the features (d = w_n; default widths 16, 32, 64, 128)
    linear                     (b, classes)             the logits

The extractor (:class:`DomainFeatureExtractor`) has the interface of
:class:`sned.predictors.i3d.I3DFeatureExtractor` (``name``, ``weights_sha256``, ``description``,
``is_comparable_to_published``, ``num_features``, ``features``, ``features_from_paths``, ...) plus
class probabilities (``probabilities``, ``features_and_probabilities``). Any input is brought to the
training geometry: frames resized to ``S`` (so 32, 64 and 128 px videos all work), clips shorter
than ``F`` frames resampled to ``F`` by nearest index (as I3D does below 9 frames), longer ones cut
into consecutive ``F``-frame windows whose outputs are averaged (as I3D averages its logits over
time; leftover frames are dropped). Compare sets of equal length (``sned fvd --frames``).

Files written to ``--out`` (atomically: temp file + ``os.replace``): ``features.safetensors``
(weights) and ``card.json`` (:class:`FeatureCard`: classes, geometry, feature dimension, held-out
accuracy, the data folder's hash, settings, time, command, commit, date, weights sha256). A killed
run resumes from its last finished epoch (``train-state.safetensors`` + ``train-state.json``, removed
when training ends).

Training (:func:`~sned.predictors.features_training.train_features`) lives in
:mod:`sned.predictors.features_training`, the card and the data folders in
:mod:`sned.predictors.features_card`, the command
(``sned features train|show``) in :mod:`sned.predictors.features_cli`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sned.predictors.features_card import (
    CARD_FILE,
    DEFAULT_WIDTHS,
    GROUPS,
    NAME_PREFIX,
    WEIGHTS_FILE,
    load_card,
)
from sned.predictors.i3d import read_videos, video_batches
from sned.supernet.base.errors import UserError
from sned.supernet.base.files import file_sha256

# ----------------------------------------------------------------------------- network


class ConvNormActivation(nn.Module):
    """Conv3d -> GroupNorm(8) -> SiLU on ``(b, c, f, h, w)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int, int],
                 stride: tuple[int, int, int] = (1, 1, 1)) -> None:
        super().__init__()
        padding = tuple(k // 2 for k in kernel_size)
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.norm = nn.GroupNorm(GROUPS, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(self.norm(self.conv(x)))


class DomainClassifier(nn.Module):
    """The domain video classifier: factorised 3D convs, global average pool, linear logits.

    Args:
        num_classes: number of classes (>= 2).
        widths: channels of the stem and of each down-sampling stage, each a multiple of 8; the
            last one is the feature dimension.

    Raises:
        UserError: fewer than 2 classes, no widths, or a width that is not a positive multiple of 8.
    """

    def __init__(self, *, num_classes: int, widths: Sequence[int] = DEFAULT_WIDTHS) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if num_classes < 2:
            raise UserError(f"num_classes must be >= 2, got {num_classes}")
        if not widths or any(w < GROUPS or w % GROUPS for w in widths):
            raise UserError(f"widths must be positive multiples of {GROUPS} (GroupNorm groups), got {list(widths)}")
        self.num_classes, self.widths = int(num_classes), widths
        self.stem = ConvNormActivation(3, widths[0], (3, 3, 3))
        self.stages = nn.ModuleList(
            nn.Sequential(ConvNormActivation(c_in, c_out, (1, 3, 3), (1, 2, 2)),   # space / 2
                          ConvNormActivation(c_out, c_out, (3, 1, 1), (2, 1, 1)))  # time / 2
            for c_in, c_out in zip(widths[:-1], widths[1:], strict=True))
        self.head = nn.Linear(widths[-1], num_classes)

    @property
    def feature_dim(self) -> int:
        """Dimension of :meth:`features` (the last width)."""
        return self.widths[-1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features: ``(b, 3, f, h, w)`` in ``[-1, 1]`` -> ``(b, feature_dim)``."""
        x = self.stem(x)  # (b, w_0, f, h, w)
        for stage in self.stages:
            x = stage(x)  # (b, w_i, ceil(f / 2^i), h / 2^i, w / 2^i)
        return x.mean(dim=(2, 3, 4))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features (b, feature_dim), logits (b, num_classes))``."""
        features = self.features(x)
        return features, self.head(features)


# ----------------------------------------------------------------------------- clip geometry


def prepare_clips(videos: torch.Tensor, frames: int, size: int) -> torch.Tensor:
    """Bring videos to a classifier's training geometry, as windows of ``frames`` frames.

    Args:
        videos: ``(b, 3, f, h, w)`` float in ``[-1, 1]``, any ``f >= 1`` and frame size.
        frames: the classifier's clip length ``F``.
        size: its frame size ``S``.

    Returns:
        ``(b, n, 3, F, S, S)``: frames resized to ``S`` (area average for integer factors, short side
        and centre crop otherwise); ``n = f // F`` consecutive windows when ``f >= F``, else one
        window resampled by nearest index (source frame ``floor(t f / F)`` for output ``t``).
    """
    from sned.supernet.data import resize_clips

    if videos.ndim != 5 or videos.shape[1] != 3 or videos.shape[2] < 1:
        raise UserError(f"expected videos of shape (b, 3, f >= 1, h, w), got {tuple(videos.shape)}")
    x = resize_clips(videos, size)
    b, f = x.shape[0], x.shape[2]
    if f < frames:
        x = x[:, :, [t * f // frames for t in range(frames)]]
        f = frames
    count = f // frames
    x = x[:, :, : count * frames].reshape(b, 3, count, frames, size, size)
    return x.permute(0, 2, 1, 3, 4, 5)


# ----------------------------------------------------------------------------- extractor


class DomainFeatureExtractor:
    """Batched domain-classifier features (for FVD/KVD) and class probabilities (for IS), on CPU or CUDA.

    The same interface as :class:`sned.predictors.i3d.I3DFeatureExtractor`, so ``sned fvd`` and
    ``sned evaluate`` use either; on top of it :meth:`probabilities` and
    :meth:`features_and_probabilities` give class probabilities for the Inception Score.

    Args:
        features_dir: a folder written by ``sned features train`` (``card.json`` + ``features.safetensors``).
        device: torch device (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
        batch_size: clips (windows) per forward pass.

    Attributes:
        name: ``"domain:<sha12>"``, the first 12 hex digits of the weights file's sha256.
        description: one line on what the network is and what its scores compare with.
        weights_sha256: sha256 of ``features.safetensors``.
        weights_path: that file.
        card: the folder's :class:`FeatureCard`.
        classes: class names in logit order.
        frames, size: the training geometry every input is brought to (see :func:`prepare_clips`).
        layout: ``"domain"``; ``bn_eps``: ``None`` (GroupNorm, no BatchNorm).
        is_comparable_to_published: always ``False``: a network trained here, not a published one.
        num_features: feature dimension (the card's ``feature_dim``).

    Raises:
        UserError: no card, a weights file that does not match the card's sha256 or does not load,
            or ``batch_size`` < 1.

    Example:
        >>> ex = DomainFeatureExtractor("runs/features", batch_size=8)   # doctest: +SKIP
        >>> feats, probs = ex.features_and_probabilities(torch.rand(4, 3, 8, 64, 64) * 2 - 1)
        >>> feats.shape, probs.shape   # ((4, 128), (4, 6)), float32 numpy
    """

    layout = "domain"
    bn_eps = None
    is_comparable_to_published = False
    is_random = False

    def __init__(self, features_dir: str | Path, device: str | torch.device = "cpu", batch_size: int = 8) -> None:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        if batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {batch_size}")
        self.features_dir = Path(features_dir)
        self.card = load_card(self.features_dir)
        self.weights_path = self.features_dir / WEIGHTS_FILE
        if not self.weights_path.is_file():
            raise UserError(f"{self.features_dir}: no {WEIGHTS_FILE} beside its {CARD_FILE}")
        self.weights_sha256 = file_sha256(self.weights_path)
        if self.weights_sha256 != self.card.weights_sha256:
            raise UserError(f"{self.weights_path} has sha256 {self.weights_sha256[:12]}, but its card says "
                            f"{self.card.weights_sha256[:12]}: the weights changed after training; retrain")
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.classes = self.card.classes
        self.frames, self.size = self.card.frames, self.card.size
        self.num_features = self.card.feature_dim
        self.name = f"{NAME_PREFIX}:{self.weights_sha256[:12]}"
        accuracy = "no held-out videos" if self.card.heldout_accuracy is None else \
            f"held-out accuracy {self.card.heldout_accuracy:.3f} on {self.card.heldout_videos} videos"
        self.description = (f"domain classifier from `sned features train` on {self.card.num_classes} classes of "
                            f"{self.card.data} ({self.frames} frames at {self.size} px, {accuracy}); scores compare "
                            f"only with other {self.name} scores")
        net = DomainClassifier(num_classes=self.card.num_classes, widths=self.card.widths)
        try:
            net.load_state_dict(load_file(str(self.weights_path)))
        except (SafetensorError, RuntimeError, OSError) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise UserError(f"cannot load {self.weights_path}: {reason}") from None
        self._net = net.eval().requires_grad_(False).to(self.device)

    def __repr__(self) -> str:
        return f"DomainFeatureExtractor(name={self.name!r}, classes={len(self.classes)}, device={self.device})"

    # -- tensors -------------------------------------------------------------------------------

    @torch.inference_mode()
    def _forward(self, videos: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """``(features (b, d), probabilities (b, k))`` of ``(b, 3, f, h, w)`` in ``[-1, 1]``, averaged over windows."""
        windows = prepare_clips(videos.to(self.device, torch.float32), self.frames, self.size)  # (b, n, 3, F, S, S)
        b, n = windows.shape[:2]
        flat = windows.reshape(b * n, *windows.shape[2:])
        features, probabilities = [], []
        for i in range(0, b * n, self.batch_size):
            feats, logits = self._net(flat[i : i + self.batch_size])
            features.append(feats.float())
            probabilities.append(logits.float().softmax(dim=1))
        feats = torch.cat(features).reshape(b, n, -1).mean(dim=1)
        probs = torch.cat(probabilities).reshape(b, n, -1).mean(dim=1)
        return feats.cpu().numpy(), probs.cpu().numpy()

    def _check(self, videos: torch.Tensor) -> None:
        if videos.ndim != 5 or videos.shape[1] != 3:
            raise UserError(f"expected videos of shape (b, 3, f, h, w), got {tuple(videos.shape)}")
        if not videos.is_floating_point():
            raise UserError(f"expected a float tensor in [-1, 1], got {videos.dtype}; use features_from_arrays for uint8")

    def features_and_probabilities(self, videos: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Features and class probabilities of a batch of videos.

        Args:
            videos: float tensor ``(b, 3, f, h, w)`` in ``[-1, 1]``, any ``f >= 1`` and frame size.

        Returns:
            ``(b, num_features)`` float32 features and ``(b, len(classes))`` float32 probabilities
            (rows sum to 1), each the mean over the video's windows.
        """
        self._check(videos)
        out = [self._forward(videos[i : i + self.batch_size]) for i in range(0, videos.shape[0], self.batch_size)]
        if not out:
            return np.zeros((0, self.num_features), np.float32), np.zeros((0, len(self.classes)), np.float32)
        return np.concatenate([o[0] for o in out]), np.concatenate([o[1] for o in out])

    def features(self, videos: torch.Tensor) -> np.ndarray:
        """Features ``(b, num_features)`` float32 of float videos ``(b, 3, f, h, w)`` in ``[-1, 1]``."""
        return self.features_and_probabilities(videos)[0]

    def probabilities(self, videos: torch.Tensor) -> np.ndarray:
        """Class probabilities ``(b, len(classes))`` float32 of float videos ``(b, 3, f, h, w)`` in ``[-1, 1]``."""
        return self.features_and_probabilities(videos)[1]

    # -- uint8 arrays and folders --------------------------------------------------------------

    def features_and_probabilities_from_arrays(
        self, videos: Iterable[np.ndarray], num_frames: int | None = None, total: int | None = None,
        progress: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Features and probabilities of uint8 videos ``(f, h, w, 3)``; consecutive videos of equal shape share a batch.

        Args:
            videos: an iterable of uint8 arrays (read lazily).
            num_frames: keep only the first ``num_frames`` frames of each video (``None``: all).
            total: length of ``videos`` for the progress bar.
            progress: show a tqdm progress bar when stderr is a terminal (never in a pipe or log).
        """
        from tqdm import tqdm

        features, probabilities = [], []
        with tqdm(total=total, disable=None if progress else True, unit="video",
                  desc=f"features ({self.name})") as bar:
            for batch in self._batches(videos, num_frames):
                x = torch.from_numpy(np.stack(batch)).permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0  # (b, c, f, h, w)
                feats, probs = self._forward(x)
                features.append(feats)
                probabilities.append(probs)
                bar.update(len(batch))
        if not features:
            return np.zeros((0, self.num_features), np.float32), np.zeros((0, len(self.classes)), np.float32)
        return np.concatenate(features), np.concatenate(probabilities)

    def features_from_arrays(self, videos: Iterable[np.ndarray], num_frames: int | None = None,
                             total: int | None = None, progress: bool = False) -> np.ndarray:
        """Features ``(n, num_features)`` of uint8 videos ``(f, h, w, 3)`` (see :meth:`features_and_probabilities_from_arrays`)."""
        return self.features_and_probabilities_from_arrays(videos, num_frames, total, progress)[0]

    def _batches(self, videos: Iterable[np.ndarray], num_frames: int | None) -> Iterator[list[np.ndarray]]:
        return video_batches(videos, num_frames, self.batch_size)

    def features_and_probabilities_from_paths(self, paths: Sequence[str | Path], num_frames: int | None = None,
                                              progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Features and probabilities of the given video files, in order (decoded one at a time).

        Raises:
            UserError: an unreadable video.
        """

        return self.features_and_probabilities_from_arrays(read_videos(paths), num_frames=num_frames, total=len(paths),
                                                           progress=progress)

    def features_from_paths(self, paths: Sequence[str | Path], num_frames: int | None = None,
                            progress: bool = True) -> np.ndarray:
        """Features ``(n, num_features)`` of the given video files, in order.

        Raises:
            UserError: an unreadable video.
        """
        return self.features_and_probabilities_from_paths(paths, num_frames, progress)[0]

    def features_from_folder(self, root: str | Path, n: int | None = None, seed: int = 0,
                             num_frames: int | None = None, progress: bool = True) -> np.ndarray:
        """Features of the videos under ``root`` (at most ``n``, a seeded random subset; see
        :func:`sned.predictors.i3d.select_videos`).

        Raises:
            UserError: no folder, no videos, or an unreadable video.
        """
        from sned.predictors.i3d import select_videos

        return self.features_from_paths(select_videos(root, n, seed), num_frames=num_frames, progress=progress)


__all__ = ["ConvNormActivation", "DomainClassifier", "DomainFeatureExtractor", "prepare_clips"]
