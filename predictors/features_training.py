"""Training of the domain video classifier (``sned features train``); the network, card and extractor
live in :mod:`sned.predictors.features` (see its docstring for the recipe and the files written).

Every random choice is seeded from the one ``seed``: the split (stratified per class), the initial
weights (a ``torch.Generator``), each epoch's clip order, and each clip's start and mirror flip
(``(seed, video, epoch)``), so a run resumed after its last finished epoch ends with the weights an
uninterrupted run would have (on the same device and torch version).
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sned.predictors.features import DomainClassifier
from sned.predictors.features_card import (
    CARD_FILE,
    CARD_FORMAT,
    DEFAULT_FRAMES,
    DEFAULT_SIZE,
    DEFAULT_WIDTHS,
    GROUPS,
    WEIGHTS_FILE,
    FeatureCard,
    data_folder_hash,
    read_class_folders,
    short_list,
)
from sned.supernet.base.errors import SettingError, UserError
from sned.supernet.base.files import atomic_path, file_sha256, write_json_atomic
from sned.supernet.base.provenance import git_commit, package_version

log = logging.getLogger(__name__)

STATE_WEIGHTS_FILE = "train-state.safetensors"  # a partial run's model + optimizer (resume); removed at the end
STATE_FILE = "train-state.json"
DEFAULT_EPOCHS = 30
DEFAULT_BATCH_SIZE = 16
DEFAULT_LEARNING_RATE = 3e-3
DEFAULT_WEIGHT_DECAY = 0.05
DEFAULT_VAL_FRACTION = 0.2
CACHE_LIMIT_BYTES = 1 << 30  # resized videos are kept in memory when all of them fit in this (float32)
_FLIP_STREAM, _ORDER_STREAM, _SPLIT_STREAM = 1, 2, 3  # independent seeded streams of one seed


def _initialise(model: DomainClassifier, generator: torch.Generator) -> None:
    """He-normal convs (fan-in), a small-normal classifier, identity GroupNorm; drawn from ``generator``."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu", generator=generator)
            elif isinstance(module, nn.GroupNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
        nn.init.normal_(model.head.weight, std=0.01, generator=generator)
        model.head.bias.zero_()


@dataclass(frozen=True)
class FeatureTrainingConfig:
    """Settings of one ``sned features train`` run.

    Args:
        data: a UCF-101-layout video folder (one sub-folder per class).
        out: the features folder to write (resumed when it holds a partial run of these settings).
        frames: clip length ``F`` in frames.
        size: frame size ``S`` in pixels.
        epochs: passes over the training videos (one random clip of each per epoch).
        seed: seeds the split, the initial weights, the clip order, starts and flips.
        val_fraction: share of each class's videos held out for the card's accuracy (0 for none).
        widths: channels of the stem and stages (multiples of 8; the last is the feature dimension).
        batch_size: clips per optimiser step.
        learning_rate: AdamW peak learning rate (linear warm-up over the first epoch, cosine decay).
        weight_decay: AdamW weight decay.
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:1``, ...
        workers: ``DataLoader`` worker processes for reading clips (0: in this process; with
            workers the in-memory cache of resized videos is off).
        progress: show a tqdm progress bar.
    """

    data: str
    out: str
    frames: int = DEFAULT_FRAMES
    size: int = DEFAULT_SIZE
    epochs: int = DEFAULT_EPOCHS
    seed: int = 0
    val_fraction: float = DEFAULT_VAL_FRACTION
    widths: tuple[int, ...] = DEFAULT_WIDTHS
    batch_size: int = DEFAULT_BATCH_SIZE
    learning_rate: float = DEFAULT_LEARNING_RATE
    weight_decay: float = DEFAULT_WEIGHT_DECAY
    device: str = "auto"
    workers: int = 0
    progress: bool = True

    def identity(self, data_hash: str) -> dict[str, Any]:
        """The settings that decide the weights (a resumed or reused run must match them)."""
        return {"data_hash": data_hash, "frames": self.frames, "size": self.size, "epochs": self.epochs,
                "seed": self.seed, "val_fraction": float(self.val_fraction), "widths": list(self.widths),
                "batch_size": self.batch_size, "learning_rate": float(self.learning_rate),
                "weight_decay": float(self.weight_decay)}

    def command(self) -> str:
        """The CLI command that reproduces these settings."""
        import shlex

        parts = ["sned", "features", "train", self.data, "--out", self.out, "--frames", str(self.frames),
                 "--size", str(self.size), "--epochs", str(self.epochs), "--seed", str(self.seed),
                 "--val-fraction", f"{self.val_fraction:g}", "--widths", ",".join(map(str, self.widths)),
                 "--batch-size", str(self.batch_size), "--lr", f"{self.learning_rate:g}",
                 "--weight-decay", f"{self.weight_decay:g}"]
        return shlex.join(parts)


@dataclass
class FeatureTrainingResult:
    """What a run did: the folder, its card, and whether it resumed or found the work already done."""

    out: Path
    card: FeatureCard
    resumed_from_epoch: int = 0
    is_reused: bool = False


def _check_training_config(cfg: FeatureTrainingConfig) -> None:
    for name, low in (("frames", 1), ("size", 8), ("epochs", 1), ("batch_size", 1), ("workers", 0), ("seed", 0)):
        value = getattr(cfg, name)
        if int(value) != value or value < low:
            raise SettingError(name, "{setting} {value!r}: expected an integer >= {low}", value=value, low=low)
    if not 0.0 <= cfg.val_fraction < 1.0:
        raise SettingError("val_fraction", "{val_fraction} {value}: expected 0 <= value < 1", value=cfg.val_fraction)
    if not (cfg.learning_rate > 0 and math.isfinite(cfg.learning_rate)) or not cfg.weight_decay >= 0:
        raise SettingError("learning_rate" if not cfg.learning_rate > 0 else "weight_decay",
                           "{learning_rate} {lr} must be > 0 and {weight_decay} {decay} >= 0", lr=cfg.learning_rate,
                           decay=cfg.weight_decay)
    if not cfg.widths or any(int(w) != w or w < GROUPS or w % GROUPS for w in cfg.widths):
        raise SettingError("widths", "{widths} {value}: expected positive multiples of {groups}",
                           value=",".join(map(str, cfg.widths)), groups=GROUPS)


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError):
        raise SettingError("device", "{device} {value!r}: expected auto, cpu, cuda or cuda:INDEX", value=device) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise SettingError("device", "{device} {value}: CUDA is not available here; use cpu or auto", value=device)
    return resolved


class _Clips:
    """Labelled clips ``(3, F, S, S)`` of the usable videos; whole videos resized once and kept when they fit.

    Keys are ``(index, epoch)``: ``epoch >= 0`` is a training clip (random start of that epoch,
    mirrored with probability 1/2, both seeded by ``(seed, index, epoch)``); ``epoch = -1`` the
    held-out centre clip. The same key gives the same clip in any process.
    """

    def __init__(self, dataset: Any, labels: Sequence[int], seed: int, use_cache: bool) -> None:
        self.dataset, self.labels, self.seed = dataset, list(labels), int(seed)
        self.cache: dict[int, torch.Tensor] | None = {} if use_cache else None

    def __len__(self) -> int:
        return len(self.labels)

    def _frames(self, index: int, start: int) -> torch.Tensor:
        from sned.supernet.data import resize_clips
        from sned.supernet.video_io import read_frames

        span, path = self.dataset.frames, self.dataset.paths[index]
        if self.cache is not None:
            if index not in self.cache:
                video = read_frames(path, list(range(self.dataset.frame_counts[index])))
                self.cache[index] = self._resize(video, resize_clips)
            return self.cache[index][:, start : start + span]
        return self._resize(read_frames(path, list(range(start, start + span))), resize_clips)

    def _resize(self, video: np.ndarray, resize_clips: Callable) -> torch.Tensor:
        x = torch.from_numpy(video).permute(3, 0, 1, 2).float()[None] / 127.5 - 1.0  # (1, 3, f, h, w)
        return resize_clips(x, self.dataset.size)[0].clamp_(-1.0, 1.0).contiguous()

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, epoch = key
        if epoch < 0:
            start = (self.dataset.frame_counts[index] - self.dataset.frames) // 2
            return self._frames(index, start), self.labels[index]
        clip = self._frames(index, self.dataset.start_frame(index, epoch))
        if np.random.default_rng([self.seed, index, epoch, _FLIP_STREAM]).random() < 0.5:
            clip = clip.flip(-1)
        return clip, self.labels[index]


def _split(labels: Sequence[int], num_classes: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Stratified (train, held-out) indices: ``round(val_fraction * n_c)`` of each class, at least 1 and
    at most ``n_c - 1`` when ``val_fraction > 0``; seeded."""
    rng = np.random.default_rng([seed, _SPLIT_STREAM])
    train, heldout = [], []
    labels = np.asarray(labels)
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        members = members[rng.permutation(len(members))]
        count = 0 if val_fraction == 0 else min(max(1, round(val_fraction * len(members))), len(members) - 1)
        heldout += members[:count].tolist()
        train += members[count:].tolist()
    return sorted(train), sorted(heldout)


def _learning_rate(step: int, total: int, warmup: int, peak: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _loader(clips: _Clips, keys: list[tuple[int, int]], batch_size: int, workers: int) -> Iterable:
    from torch.utils.data import DataLoader

    batches = [keys[i : i + batch_size] for i in range(0, len(keys), batch_size)]
    return DataLoader(clips, batch_sampler=batches, num_workers=workers)  # type: ignore[arg-type]


@torch.inference_mode()
def _heldout_accuracy(model: DomainClassifier, clips: _Clips, indices: list[int], cfg: FeatureTrainingConfig,
                      device: torch.device, classes: Sequence[str]) -> tuple[float | None, dict[str, float]]:
    if not indices:
        return None, {}
    model.eval()
    correct, count = np.zeros(len(classes)), np.zeros(len(classes))
    for x, y in _loader(clips, [(i, -1) for i in indices], cfg.batch_size, cfg.workers):
        predicted = model(x.to(device))[1].argmax(dim=1).cpu().numpy()
        np.add.at(correct, y.numpy(), predicted == y.numpy())
        np.add.at(count, y.numpy(), 1)
    per_class = {classes[c]: float(correct[c] / count[c]) for c in range(len(classes)) if count[c]}
    return float(correct.sum() / count.sum()), per_class


def _save_training_state(out: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                         state: dict[str, Any]) -> None:
    """Model and AdamW state as safetensors, progress as JSON, each written atomically."""
    from safetensors.torch import save_file

    from sned.supernet.checkpoint import optimizer_tensors

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors |= optimizer_tensors(optimizer, prefix="optimizer")[0]
    with atomic_path(out / STATE_WEIGHTS_FILE) as tmp:
        save_file(tensors, tmp)
    write_json_atomic(out / STATE_FILE, state)


def _load_training_state(out: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    from safetensors.torch import load_file

    from sned.supernet.checkpoint import optimizer_from_tensors, split_prefix

    tensors = load_file(str(out / STATE_WEIGHTS_FILE))
    model.load_state_dict(split_prefix(tensors, "model"))
    saved = {k: v for k, v in tensors.items() if k.startswith("optimizer.")}
    optimizer.load_state_dict(optimizer_from_tensors(saved, optimizer.state_dict()["param_groups"]))


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        payload = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return payload if isinstance(payload, dict) else None


def train_features(cfg: FeatureTrainingConfig, *,
                   on_epoch_end: Callable[[int, Mapping[str, Any]], None] | None = None) -> FeatureTrainingResult:
    """Train a domain classifier on ``cfg.data``'s class folders and write ``cfg.out`` (see the module docstring).

    1. Classes from the sub-folders (:func:`read_class_folders`); usable videos (readable, at least
       ``F`` frames) through :class:`~sned.supernet.data.VideoClipDataset`; a stratified held-out split.
    2. ``cfg.out`` already holding a card of the same settings and data: nothing to do
       (``is_reused``). A partial run of the same settings: resume after its last finished epoch.
    3. AdamW over ``epochs`` epochs of one random clip per training video (warm-up, cosine decay),
       the state saved after every epoch.
    4. Held-out accuracy, then the weights and the card, atomically; the partial state is removed.

    Args:
        cfg: the settings.
        on_epoch_end: called as ``on_epoch_end(epoch, metrics)`` after each epoch's state is saved
            (``metrics``: ``loss``, ``train_accuracy``, ``heldout_accuracy``); tests stop runs with it.

    Returns:
        The folder, its card, and where it resumed.

    Raises:
        UserError: bad settings, a data folder that is not UCF-101 layout with >= 2 non-empty
            classes, a class without a usable video, or ``cfg.out`` holding features of other settings.
    """
    from tqdm import tqdm

    from sned.supernet.data import VideoClipDataset

    began = time.perf_counter()
    _check_training_config(cfg)
    device = _resolve_device(cfg.device)
    data = Path(cfg.data).resolve()
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise SettingError("out", "{out} {path} is a file; expected a folder (new, or one to resume)", path=out)

    # 1. Classes, usable videos, split.
    class_videos = read_class_folders(data)
    classes = sorted(class_videos)
    data_hash = data_folder_hash(data)
    identity = cfg.identity(data_hash)
    existing = _read_json(out / CARD_FILE)
    if existing is not None:
        card = FeatureCard.from_dict(existing, str(out / CARD_FILE))
        old = {"data_hash": card.data_hash, "frames": card.frames, "size": card.size, "epochs": card.epochs,
               "seed": card.seed, "val_fraction": card.val_fraction, "widths": list(card.widths),
               "batch_size": card.batch_size, "learning_rate": card.learning_rate, "weight_decay": card.weight_decay}
        differ = [k for k in identity if old[k] != identity[k]]
        if differ:
            raise SettingError("out", "{path} already holds features made with {was}, not {now}; choose another "
                               "{out} or delete it", path=out, was=", ".join(f"{k}={old[k]!r}" for k in differ),
                               now=", ".join(f"{k}={identity[k]!r}" for k in differ))
        return FeatureTrainingResult(out, card, resumed_from_epoch=card.epochs, is_reused=True)
    dataset = VideoClipDataset(data, frames=cfg.frames, size=cfg.size, seed=cfg.seed)
    tops = [p.relative_to(data).parts[0] for p in dataset.paths]
    dataset = dataset.subset([i for i, top in enumerate(tops) if top in class_videos])  # not hidden folders
    labels = [classes.index(p.relative_to(data).parts[0]) for p in dataset.paths]
    lost = [name for c, name in enumerate(classes) if c not in labels]
    if lost:
        raise UserError(f"classes without a usable video (readable, >= {cfg.frames} frames) under {data}: "
                        f"{short_list(lost)}")
    train, heldout = _split(labels, len(classes), cfg.val_fraction, cfg.seed)
    cache_bytes = sum(dataset.frame_counts) * 3 * cfg.size * cfg.size * 4
    clips = _Clips(dataset, labels, cfg.seed, use_cache=cfg.workers == 0 and cache_bytes <= CACHE_LIMIT_BYTES)

    # 2. The model, its optimiser, and a partial run to resume.
    generator = torch.Generator().manual_seed(cfg.seed)
    model = DomainClassifier(num_classes=len(classes), widths=cfg.widths)
    _initialise(model, generator)
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    out.mkdir(parents=True, exist_ok=True)
    start_epoch, elapsed = 0, 0.0
    state = _read_json(out / STATE_FILE)
    if state is not None and (out / STATE_WEIGHTS_FILE).is_file():
        if state.get("identity") == identity:
            _load_training_state(out, model, optimizer)
            start_epoch, elapsed = int(state["epoch"]), float(state["seconds"])
            log.info("resuming %s after epoch %d", out, start_epoch)
        else:
            log.warning("%s holds a partial run of other settings; starting over", out)

    # 3. Training.
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    metrics: dict[str, Any] = dict(state.get("metrics", {})) if start_epoch else {}
    with tqdm(total=cfg.epochs, initial=start_epoch, desc=f"features {out.name}", unit="epoch",
              disable=not cfg.progress, file=sys.stderr) as bar:
        for epoch in range(start_epoch, cfg.epochs):
            model.train()
            order = np.random.default_rng([cfg.seed, epoch, _ORDER_STREAM]).permutation(train)
            loss_sum = hits = seen = 0.0
            for step, (x, y) in enumerate(_loader(clips, [(int(i), epoch) for i in order], cfg.batch_size,
                                                  cfg.workers)):
                for group in optimizer.param_groups:
                    group["lr"] = _learning_rate(epoch * steps_per_epoch + step, total_steps, steps_per_epoch,
                                                 cfg.learning_rate)
                x, y = x.to(device), y.to(device)
                logits = model(x)[1]
                loss = F.cross_entropy(logits, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.item() * len(y)
                hits += float((logits.argmax(dim=1) == y).sum())
                seen += len(y)
            accuracy, per_class = _heldout_accuracy(model, clips, heldout, cfg, device, classes)
            metrics = {"loss": loss_sum / seen, "train_accuracy": hits / seen, "heldout_accuracy": accuracy,
                       "heldout_per_class": per_class}
            now = elapsed + time.perf_counter() - began
            _save_training_state(out, model, optimizer, {"identity": identity, "epoch": epoch + 1, "seconds": now,
                                                         "metrics": metrics})
            bar.set_postfix(loss=f"{metrics['loss']:.3f}", train=f"{metrics['train_accuracy']:.2f}",
                            heldout="-" if accuracy is None else f"{accuracy:.2f}", refresh=False)
            bar.update(1)
            if on_epoch_end is not None:
                on_epoch_end(epoch, metrics)

    # 4. Weights, card, clean-up.
    from safetensors.torch import save_file

    with atomic_path(out / WEIGHTS_FILE) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, tmp,
                  metadata={"format": CARD_FORMAT})
    card = FeatureCard(
        classes=tuple(classes), frames=cfg.frames, size=cfg.size, widths=tuple(cfg.widths),
        feature_dim=model.feature_dim, heldout_accuracy=metrics["heldout_accuracy"],
        heldout_per_class=metrics["heldout_per_class"], heldout_videos=len(heldout), train_videos=len(train),
        train_accuracy=metrics["train_accuracy"], data=str(data), data_hash=data_hash, seed=cfg.seed,
        epochs=cfg.epochs, batch_size=cfg.batch_size, learning_rate=float(cfg.learning_rate),
        weight_decay=float(cfg.weight_decay), val_fraction=float(cfg.val_fraction),
        seconds=round(elapsed + time.perf_counter() - began, 3), command=cfg.command(), commit=git_commit(),
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        weights_sha256=file_sha256(out / WEIGHTS_FILE), sned_version=package_version("sned"),
        torch_version=torch.__version__)
    write_json_atomic(out / CARD_FILE, card.to_dict())
    for name in (STATE_WEIGHTS_FILE, STATE_FILE):
        (out / name).unlink(missing_ok=True)
    return FeatureTrainingResult(out, card, resumed_from_epoch=start_epoch)


__all__ = ["DEFAULT_EPOCHS", "FeatureTrainingConfig", "FeatureTrainingResult", "train_features"]
