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

Training (:func:`~sned.predictors.features_training.train_features`, also importable from here)
lives in :mod:`sned.predictors.features_training`.

CLI::

    sned features train DATA --out DIR [--frames 8] [--size 32] [--epochs E] [--seed 0]
        [--val-fraction 0.2] [--widths 16,32,64,128] [--batch-size 16] [--device auto] [--quiet]
    sned features show DIR [--data DATA] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sned.predictors.i3d import read_videos, video_batches
from sned.supernet.errors import UserError
from sned.supernet.files import file_sha256

NAME_PREFIX = "domain"  # extractor names are "domain:<sha12 of the weights file>"
WEIGHTS_FILE = "features.safetensors"
CARD_FILE = "card.json"
CARD_FORMAT = "sned-domain-features/1"
GROUPS = 8  # GroupNorm groups: every width must be a multiple
DEFAULT_FRAMES = 8  # the tiny experiment's clip length
DEFAULT_SIZE = 32  # the tiny experiment's smallest resolution; larger inputs are area-downsampled to it
# Three down-sampling stages: a 17 px receptive field at 32 px. With two stages (9 px) the bouncing-shapes
# class went unlearned (held-out 0.79 vs 0.92 with three, 120 synthetic videos, 15 epochs). 128-d features:
# well below the few hundred videos per evaluation.
DEFAULT_WIDTHS: tuple[int, ...] = (16, 32, 64, 128)
_TRAINING_NAMES = ("FeatureTrainingConfig", "FeatureTrainingResult", "train_features")


def __getattr__(name: str) -> Any:
    if name in _TRAINING_NAMES:  # the training half lives in features_training (it imports this module)
        from sned.predictors import features_training

        return getattr(features_training, name)
    raise AttributeError(f"module 'sned.predictors.features' has no attribute {name!r}")


# ----------------------------------------------------------------------------- data folders


def read_class_folders(data_dir: str | Path) -> dict[str, list[Path]]:
    """The classes of a UCF-101-layout folder and their videos: ``{class: sorted video paths}``.

    A class is a sub-folder of ``data_dir`` (hidden folders, starting with ``.``, are ignored);
    its videos are every video file below it (:func:`sned.supernet.video_io.list_videos`).

    Raises:
        UserError: ``data_dir`` is not a folder, holds videos outside any class folder, has a class
            folder without videos, or has fewer than 2 classes.
    """
    from sned.supernet.video_io import VIDEO_SUFFIXES, list_videos

    root = Path(data_dir)
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise UserError(f"data folder {root} {what} (expected UCF-101 layout: DATA/<class>/<video>)")
    loose = [p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES]
    if loose:
        raise UserError(f"{root} holds {len(loose)} videos outside any class folder (e.g. {loose[0]}); "
                        "a classifier needs UCF-101 layout: DATA/<class>/<video>")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    classes = {p.name: list_videos(p) for p in folders}
    empty = [name for name, videos in classes.items() if not videos]
    if empty:
        raise UserError(f"class folders without videos ({'/'.join(VIDEO_SUFFIXES)}) under {root}: "
                        f"{_names(empty)}; remove them or add videos")
    if len(classes) < 2:
        found = f"1 class folder ({_names(list(classes))})" if classes else "no class folders"
        raise UserError(f"{root} has {found}; a classifier needs at least 2 class sub-folders "
                        "(UCF-101 layout: DATA/<class>/<video>)")
    return classes


def data_classes(data_dir: str | Path) -> list[str]:
    """The sub-folders of ``data_dir`` that hold videos, sorted; ``[]`` for a flat folder (no check possible)."""
    from sned.supernet.video_io import list_videos

    root = Path(data_dir)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and list_videos(p))


def data_folder_hash(data_dir: str | Path) -> str:
    """sha256 of the folder's sorted relative video paths and byte sizes (one ``path<TAB>size`` line each)."""
    from sned.supernet.video_io import list_videos

    root = Path(data_dir)
    digest = hashlib.sha256()
    for path in list_videos(root):
        digest.update(f"{path.relative_to(root).as_posix()}\t{path.stat().st_size}\n".encode())
    return digest.hexdigest()


def _names(names: Sequence[str], limit: int = 10) -> str:
    """``[a, b, c]``, shortened to ``limit`` names plus a count for long lists."""
    shown = ", ".join(names[:limit])
    return f"[{shown}, ... ({len(names)} in all)]" if len(names) > limit else f"[{shown}]"


# ----------------------------------------------------------------------------- the card


@dataclass(frozen=True)
class FeatureCard:
    """What a features folder holds and how it was made (``card.json``).

    Attributes:
        classes: class names in logit order (the data folder's sub-folders, sorted).
        frames: clip length ``F`` the network was trained on.
        size: frame height and width ``S`` in pixels it was trained on.
        widths: channel widths of the stem and each stage.
        feature_dim: dimension of the features (the last width).
        heldout_accuracy: top-1 accuracy on the held-out videos' centre clips after the last epoch
            (``None`` without held-out videos).
        heldout_per_class: held-out accuracy per class (classes without held-out videos left out).
        heldout_videos, train_videos: videos in each split.
        train_accuracy: top-1 accuracy on the augmented training clips of the last epoch.
        data: the data folder (absolute path) and ``data_hash`` its :func:`data_folder_hash`.
        seed, epochs, batch_size, learning_rate, weight_decay, val_fraction: the training settings.
        seconds: training time (summed over resumed runs).
        command: the ``sned features train`` command that reproduces it.
        commit: the sned git commit (``git rev-parse --short HEAD``) or ``None``.
        date: when training ended (UTC, ISO 8601).
        weights_sha256: sha256 of ``features.safetensors``.
        sned_version, torch_version: package versions.
    """

    classes: tuple[str, ...]
    frames: int
    size: int
    widths: tuple[int, ...]
    feature_dim: int
    heldout_accuracy: float | None
    heldout_per_class: dict[str, float]
    heldout_videos: int
    train_videos: int
    train_accuracy: float
    data: str
    data_hash: str
    seed: int
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    val_fraction: float
    seconds: float
    command: str
    commit: str | None
    date: str
    weights_sha256: str
    sned_version: str
    torch_version: str
    format: str = CARD_FORMAT

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples as lists)."""
        out = asdict(self)
        out["classes"], out["widths"] = list(self.classes), list(self.widths)
        return out

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any], where: str = "card") -> FeatureCard:
        """Read a card dict strictly: a missing or unknown key, or another format, is a ``UserError``."""
        names = {f.name for f in fields(cls)}
        missing = sorted(names - set(payload) - {"format"})
        unknown = sorted(set(payload) - names)
        if payload.get("format", CARD_FORMAT) != CARD_FORMAT:
            raise UserError(f"{where}: format {payload.get('format')!r}, expected {CARD_FORMAT!r}")
        if missing or unknown:
            raise UserError(f"{where}: missing keys {missing}, unknown keys {unknown}; was it written by "
                            "`sned features train`?")
        values = dict(payload)
        values["classes"], values["widths"] = tuple(values["classes"]), tuple(int(w) for w in values["widths"])
        return cls(**values)

    @property
    def num_classes(self) -> int:
        """Number of classes (logits)."""
        return len(self.classes)


def load_card(features_dir: str | Path) -> FeatureCard:
    """Read ``DIR/card.json``.

    Raises:
        UserError: no such folder or card, unreadable JSON, or a card of another format.
    """
    root = Path(features_dir)
    path = root / CARD_FILE
    if not path.is_file():
        what = "is not a features folder" if root.is_dir() else "does not exist"
        raise UserError(f"features folder {root} {what} (no {CARD_FILE}; make one with "
                        "`sned features train DATA --out DIR`)")
    try:
        payload = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise UserError(f"{path}: expected a JSON object")
    return FeatureCard.from_dict(payload, str(path))


def check_classes(card: FeatureCard, data_dir: str | Path, where: str = "the features") -> list[str]:
    """Refuse a video folder of another dataset: one whose class folders are not among the card's classes.

    A flat folder (no class sub-folders, e.g. generated videos) cannot be checked and passes; a
    folder with a subset of the card's classes (a split) passes.

    Args:
        card: the features' card.
        data_dir: a video folder.
        where: how to name the features in the message (their folder).

    Returns:
        The folder's class names (``[]`` for a flat folder).

    Raises:
        UserError: naming both class lists and the unknown classes.
    """
    found = data_classes(data_dir)
    unknown = [name for name in found if name not in card.classes]
    if unknown:
        raise UserError(f"{data_dir} has classes {_names(found)}, but {where} were trained on "
                        f"{_names(list(card.classes))} (unknown here: {_names(unknown)}); another dataset's "
                        f"features do not fit: train some with `sned features train {data_dir} --out DIR`")
    return found


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


# ----------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``sned features {train,show}`` options."""
    from sned.predictors.features_training import (
        DEFAULT_BATCH_SIZE,
        DEFAULT_EPOCHS,
        DEFAULT_LEARNING_RATE,
        DEFAULT_VAL_FRACTION,
        DEFAULT_WEIGHT_DECAY,
    )

    sub = parser.add_subparsers(dest="action", required=True, metavar="{train,show}")
    t = sub.add_parser("train", help="train a domain classifier on a folder of class sub-folders (resumable)")
    t.add_argument("data", help="video folder in UCF-101 layout: DATA/<class>/<video>")
    t.add_argument("--out", required=True, metavar="DIR", help="features folder to write (resumed if partial)")
    t.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help=f"clip length (default {DEFAULT_FRAMES})")
    t.add_argument("--size", type=int, default=DEFAULT_SIZE,
                   help=f"frame size the network sees; inputs are resized to it (default {DEFAULT_SIZE})")
    t.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help=f"epochs (default {DEFAULT_EPOCHS})")
    t.add_argument("--seed", type=int, default=0, help="split, weights and augmentation seed (default 0)")
    t.add_argument("--val-fraction", type=float, default=DEFAULT_VAL_FRACTION,
                   help=f"share of each class held out for the accuracy (default {DEFAULT_VAL_FRACTION})")
    t.add_argument("--widths", default=",".join(map(str, DEFAULT_WIDTHS)),
                   help=f"stem and stage channels, multiples of {GROUPS}; the last is the feature dimension "
                        f"(default {','.join(map(str, DEFAULT_WIDTHS))})")
    t.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                   help=f"clips per step (default {DEFAULT_BATCH_SIZE})")
    t.add_argument("--lr", type=float, default=DEFAULT_LEARNING_RATE,
                   help=f"AdamW peak learning rate (default {DEFAULT_LEARNING_RATE:g})")
    t.add_argument("--weight-decay", type=float, default=DEFAULT_WEIGHT_DECAY,
                   help=f"AdamW weight decay (default {DEFAULT_WEIGHT_DECAY:g})")
    t.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda, cuda:1, ...")
    t.add_argument("--workers", type=int, default=0, help="DataLoader workers reading clips (default 0)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    s = sub.add_parser("show", help="print a features folder's card and check its weights")
    s.add_argument("dir", metavar="DIR", help="a folder written by `sned features train`")
    s.add_argument("--data", help="also check that this video folder's classes are the card's")
    s.add_argument("--json", action="store_true", help="print the card as JSON")


def _parse_widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        widths = ()
    if not widths:
        raise UserError(f"--widths {text!r}: expected comma-separated integers like 16,32,64,128")
    return widths


def _summary(card: FeatureCard, name: str) -> str:
    accuracy = "no held-out videos" if card.heldout_accuracy is None else \
        f"held-out accuracy {card.heldout_accuracy:.3f} ({card.heldout_videos} videos)"
    return (f"{name}: {card.num_classes} classes, {card.feature_dim}-d features, {card.frames} frames at "
            f"{card.size} px; {accuracy}, train accuracy {card.train_accuracy:.3f}; {card.epochs} epochs in "
            f"{card.seconds:.1f} s")


def run(args: argparse.Namespace) -> int:
    """Run ``sned features train`` or ``sned features show``."""
    if args.action == "show":
        extractor = DomainFeatureExtractor(args.dir)  # checks the weights against the card
        if args.data:
            check_classes(extractor.card, args.data, where=f"the features in {args.dir}")
        if args.json:
            print(json.dumps({"name": extractor.name, **extractor.card.to_dict()}, indent=2))
        else:
            print(_summary(extractor.card, f"{args.dir} ({extractor.name})"))
            print(f"classes: {', '.join(extractor.classes)}")
            print(f"data {extractor.card.data} (hash {extractor.card.data_hash[:12]}); made by: {extractor.card.command}")
        return 0
    from sned.predictors.features_training import FeatureTrainingConfig, train_features

    cfg = FeatureTrainingConfig(
        data=args.data, out=args.out, frames=args.frames, size=args.size, epochs=args.epochs, seed=args.seed,
        val_fraction=args.val_fraction, widths=_parse_widths(args.widths), batch_size=args.batch_size,
        learning_rate=args.lr, weight_decay=args.weight_decay, device=args.device, workers=args.workers,
        progress=not args.quiet and os.environ.get("TQDM_DISABLE") not in ("1", "true"))
    result = train_features(cfg)
    name = f"{NAME_PREFIX}:{result.card.weights_sha256[:12]}"
    how = " (already trained with these settings)" if result.is_reused else \
        f" (resumed after epoch {result.resumed_from_epoch})" if result.resumed_from_epoch else ""
    print(_summary(result.card, f"{result.out} ({name})") + how)
    return 0


__all__ = ["CARD_FILE", "WEIGHTS_FILE", "DomainClassifier", "DomainFeatureExtractor", "FeatureCard",
           "add_arguments", "check_classes", "data_classes", "data_folder_hash", "load_card", "prepare_clips",
           "read_class_folders", "run"]  # plus FeatureTrainingConfig, FeatureTrainingResult, train_features (lazy)
