"""A domain feature extractor's card and the dataset folders it was trained on (torch-free).

``sned features train`` writes ``card.json`` (:class:`FeatureCard`) beside its weights; this module
reads it strictly (:func:`load_card`), lists a UCF-101-layout folder's classes
(:func:`read_class_folders`), fingerprints a folder (:func:`data_folder_hash`) and refuses a video
folder of another dataset (:func:`check_classes`). The network and the extractor are
:mod:`sned.predictors.features`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from sned.supernet.base.errors import UserError
from sned.supernet.base.settings import check_keys
from sned.supernet.video_io import data_folder_hash

NAME_PREFIX = "domain"  # extractor names are "domain:<sha12 of the weights file>"
WEIGHTS_FILE = "features.safetensors"
CARD_FILE = "card.json"
CARD_FORMAT = "sned-domain-features/1"
GROUPS = 8  # GroupNorm groups of the classifier: every width must be a multiple
DEFAULT_FRAMES = 8  # the tiny experiment's clip length
DEFAULT_SIZE = 32  # the tiny experiment's smallest resolution; larger inputs are area-downsampled to it
# Three down-sampling stages: a 17 px receptive field at 32 px. With two stages (9 px) the bouncing-shapes
# class went unlearned (held-out 0.79 vs 0.92 with three, 120 synthetic videos, 15 epochs). 128-d features:
# well below the few hundred videos per evaluation.
DEFAULT_WIDTHS: tuple[int, ...] = (16, 32, 64, 128)


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
                        f"{short_list(empty)}; remove them or add videos")
    if len(classes) < 2:
        found = f"1 class folder ({short_list(list(classes))})" if classes else "no class folders"
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


def short_list(names: Sequence[str], limit: int = 10) -> str:
    """``[a, b, c]``, shortened to ``limit`` names plus a count for long lists."""
    shown = ", ".join(names[:limit])
    return f"[{shown}, ... ({len(names)} in all)]" if len(names) > limit else f"[{shown}]"


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
        names = [f.name for f in fields(cls)]
        if payload.get("format", CARD_FORMAT) != CARD_FORMAT:
            raise UserError(f"{where}: format {payload.get('format')!r}, expected {CARD_FORMAT!r}")
        check_keys(payload, names, where, required=[n for n in names if n != "format"],
                   hint="; was it written by `sned features train`?")
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
        raise UserError(f"{data_dir} has classes {short_list(found)}, but {where} were trained on "
                        f"{short_list(list(card.classes))} (unknown here: {short_list(unknown)}); another dataset's "
                        f"features do not fit: train some with `sned features train {data_dir} --out DIR`")
    return found


__all__ = ["CARD_FILE", "CARD_FORMAT", "DEFAULT_FRAMES", "DEFAULT_SIZE", "DEFAULT_WIDTHS", "GROUPS", "NAME_PREFIX",
           "WEIGHTS_FILE", "FeatureCard", "check_classes", "data_classes", "data_folder_hash", "load_card",
           "read_class_folders", "short_list"]
