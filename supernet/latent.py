"""The latent half of training: a dataset encoded once by a video autoencoder, and latent clips.

A latent experiment (``space.latent``) trains on the scaled latents of a video autoencoder
(:mod:`sned.supernet.vae`, :func:`~sned.supernet.vae_load.load_autoencoder`). Running the encoder
every step would cost more than the UNet step itself, so :func:`build_latent_cache` encodes every
video once per resolution, and :class:`LatentClipDataset` serves clips out of that cache with the
interface of :class:`~sned.supernet.data.VideoClipDataset` (``size``, ``labels``, ``clip``,
``subset``), so the training loop, validation and superposition over resolutions run unchanged.

A cache folder::

    manifest.json                        key, autoencoder, data hash, resolutions, videos, complete
    r<res>/shard-<k>.safetensors         one float16 tensor per video: "v<index>" (C, F', h', w')

Each video is encoded whole (in windows of ``window_frames`` frames for long videos) at each
resolution; a clip is a temporal crop of its video's latent (``frames / temporal_factor`` latent
frames from a start drawn per ``(seed, index, epoch)``), so the encoder sees the same video
context whatever the crop. The key hashes the autoencoder's weights (``sha256``), the data
folder (:func:`~sned.supernet.video_io.data_folder_hash`), the resolutions and the format
version: a cache folder built for another autoencoder or dataset is refused, never mixed. A
build killed part-way resumes: shards are written atomically and finished shards are kept.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sned.supernet.base.errors import UserError
from sned.supernet.base.files import atomic_path, write_json_atomic

logger = logging.getLogger(__name__)

CACHE_VERSION = 1
MANIFEST = "manifest.json"
SHARD_VIDEOS = 32  # videos per shard file
WINDOW_FRAMES = 32  # frames encoded at once (long videos are encoded in windows)


def cache_key(autoencoder_sha256: str, data_hash: str, resolutions: Sequence[int]) -> str:
    """The identity of a latent cache: the autoencoder's weights, the data, the resolutions, the format."""
    payload = {"version": CACHE_VERSION, "autoencoder": autoencoder_sha256, "data": data_hash,
               "resolutions": sorted(int(r) for r in resolutions)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _shard_name(res: int, shard: int) -> str:
    return f"r{int(res)}/shard-{shard:05d}.safetensors"


@dataclass
class LatentCache:
    """A complete cache folder, read lazily: one resolution's shards load on first use and stay in memory."""

    folder: Path
    manifest: dict[str, Any]

    def __post_init__(self) -> None:
        self._videos: dict[int, dict[int, torch.Tensor]] = {}

    @property
    def key(self) -> str:
        return str(self.manifest["key"])

    @property
    def resolutions(self) -> list[int]:
        return [int(r) for r in self.manifest["resolutions"]]

    def latent(self, res: int, index: int) -> torch.Tensor:
        """Video ``index``'s scaled latent at pixel resolution ``res``: float16 ``(C, F', res/s, res/s)``."""
        if res not in self._videos:
            if res not in self.resolutions:
                raise KeyError(f"the latent cache {self.folder} holds resolutions {self.resolutions}, not {res}")
            self._videos[res] = _read_resolution(self.folder, self.manifest, res)
        return self._videos[res][index]


def _read_shard(path: Path) -> dict[str, torch.Tensor] | None:
    """A shard's tensors, or None where the file is missing or unreadable (then it is rebuilt)."""
    from safetensors.torch import load_file

    if not path.is_file():
        return None
    try:
        return load_file(str(path))
    except Exception:  # noqa: BLE001 - a truncated or foreign file: rebuild that shard
        return None


def _complete_shard(path: Path, indices: range) -> dict[str, torch.Tensor] | None:
    """The shard's tensors where it holds exactly the videos ``indices``, else None."""
    tensors = _read_shard(path)
    return tensors if tensors is not None and set(tensors) == {f"v{i}" for i in indices} else None


def _shard_ranges(n: int) -> list[range]:
    return [range(start, min(n, start + SHARD_VIDEOS)) for start in range(0, n, SHARD_VIDEOS)]


def _read_resolution(folder: Path, manifest: dict[str, Any], res: int) -> dict[int, torch.Tensor]:
    videos: dict[int, torch.Tensor] = {}
    for shard, indices in enumerate(_shard_ranges(len(manifest["videos"]))):
        tensors = _complete_shard(folder / _shard_name(res, shard), indices)
        if tensors is None:  # checked again when read: files can change after the build
            raise UserError(f"latent cache {folder}: {_shard_name(res, shard)} is missing or corrupt; rebuild the "
                            f"cache (delete the folder, or run the training again with the same folder)")
        videos.update({i: tensors[f"v{i}"] for i in indices})
    return videos


def open_latent_cache(folder: str | Path, key: str | None = None) -> LatentCache | None:
    """The complete cache in ``folder`` (with ``key``, when given), or None where none is finished there.

    Raises:
        UserError: ``folder`` holds a cache of another autoencoder or dataset, or a corrupt manifest.
    """
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
        stored_key, complete = str(manifest["key"]), bool(manifest["complete"])
    except (ValueError, KeyError, TypeError):
        raise UserError(f"latent cache {manifest_path} is not a sned latent-cache manifest; choose another "
                        f"folder or delete it") from None
    if key is not None and stored_key != key:
        raise UserError(f"latent cache {folder} was built for another autoencoder, dataset or resolutions "
                        f"(key {stored_key[:12]}, wanted {key[:12]}); choose another folder or delete it")
    return LatentCache(folder, manifest) if complete else None


@torch.no_grad()
def encode_video(autoencoder: Any, video: torch.Tensor, window_frames: int = WINDOW_FRAMES) -> torch.Tensor:
    """Scaled latent (posterior mean) of one video ``(c, F, h, w)``, encoded in windows of frames.

    Frames past the last multiple of the temporal factor are dropped.
    """
    factor = int(autoencoder.temporal_factor)
    usable = video.shape[1] - video.shape[1] % factor
    if usable < factor:
        raise ValueError(f"a video of {video.shape[1]} frames is shorter than the temporal factor {factor}")
    window = max(factor, window_frames - window_frames % factor)
    parts = [autoencoder.encode(video[None, :, start: min(usable, start + window)])[0].float().cpu()
             for start in range(0, usable, window)]
    return torch.cat(parts, dim=1)


def build_latent_cache(autoencoder: Any, videos: Any, resolutions: Sequence[int], out: str | Path, *,
                       progress: bool = True) -> LatentCache:
    """Encode every video of ``videos`` (a :class:`~sned.supernet.data.VideoClipDataset`) at each
    resolution into the cache folder ``out``, resuming a build that was stopped, and return the cache.

    Raises:
        UserError: ``out`` holds a cache of another autoencoder, dataset or resolutions, or is not a folder.
    """
    from safetensors.torch import save_file
    from tqdm import tqdm

    from sned.supernet.video_io import data_folder_hash

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"latent cache {out} exists and is not a folder")
    if not autoencoder.sha256:
        raise ValueError("the autoencoder has no sha256 (load it with load_autoencoder): the cache needs its identity")
    resolutions = sorted(int(r) for r in resolutions)
    data_hash = data_folder_hash(videos.root)
    key = cache_key(autoencoder.sha256, data_hash, resolutions)
    done = open_latent_cache(out, key)  # refuses a foreign cache
    if done is not None:
        return done
    manifest = {"key": key, "version": CACHE_VERSION, "complete": False, "autoencoder": autoencoder.describe(),
                "data": str(Path(videos.root).resolve()), "data_hash": data_hash, "resolutions": resolutions,
                "videos": [p.relative_to(videos.root).as_posix() for p in videos.paths],
                "frame_counts": [int(c) for c in videos.frame_counts],
                "shard_videos": SHARD_VIDEOS, "dtype": "float16"}
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / MANIFEST, manifest)
    shards = _shard_ranges(len(videos))
    todo = [(res, k) for res in resolutions for k, indices in enumerate(shards)
            if _complete_shard(out / _shard_name(res, k), indices) is None]
    if len(todo) < len(resolutions) * len(shards):
        logger.info("latent cache %s: %d of %d shards already built", out, len(resolutions) * len(shards) - len(todo),
                    len(resolutions) * len(shards))
    total = sum(len(shards[k]) for _, k in todo)
    with tqdm(total=total, desc="encode latents", unit="video", disable=not progress, dynamic_ncols=True) as bar:
        for res, k in todo:
            view = copy.copy(videos)
            view.size = res
            tensors = {}
            for i in shards[k]:
                tensors[f"v{i}"] = encode_video(autoencoder, view.video(i)).half().contiguous()
                bar.update(1)
            path = out / _shard_name(res, k)
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                save_file(tensors, str(tmp))
    manifest["complete"] = True
    write_json_atomic(out / MANIFEST, manifest)
    return LatentCache(out, manifest)


class LatentClipDataset:
    """Latent clips out of a :class:`LatentCache`, with :class:`~sned.supernet.data.VideoClipDataset`'s interface.

    Item ``i`` is a crop of ``latent_frames`` latent frames of video ``i``'s latent at pixel
    resolution :attr:`size` (set ``size`` on a ``copy.copy`` view for another resolution, as the
    training loop does), float32 ``(C, latent_frames, size/s, size/s)``; the crop starts at a frame
    drawn from a generator seeded by ``(seed, i, epoch)``.

    Args:
        videos: the dataset the cache was built from (its paths, labels and class names).
        cache: the complete cache.
        latent_frames: latent frames per clip (the space's ``unet_frames``).
        spatial_factor: the autoencoder's spatial factor (``size`` is in pixels).
    """

    def __init__(self, videos: Any, cache: LatentCache, latent_frames: int, spatial_factor: int):
        if [p.relative_to(videos.root).as_posix() for p in videos.paths] != cache.manifest["videos"]:
            raise UserError(f"latent cache {cache.folder} lists other videos than {videos.root}; rebuild it")
        self.root, self.paths = videos.root, list(videos.paths)
        self.labels, self.class_names = list(videos.labels), tuple(videos.class_names)
        self.size, self.seed, self.epoch = int(videos.size), int(videos.seed), 0
        self.cache, self.latent_frames, self.spatial_factor = cache, int(latent_frames), int(spatial_factor)
        self.indices = list(range(len(self.paths)))  # positions in the cache (a subset keeps its own)

    def __len__(self) -> int:
        return len(self.indices)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, key: int | tuple[int, int]) -> torch.Tensor:
        if isinstance(key, tuple):
            return self.clip(*key)
        return self.clip(key, self.epoch)

    def start_frame(self, index: int, epoch: int, length: int) -> int:
        """The first latent frame of clip ``index`` in ``epoch`` (seeded by (seed, index, epoch))."""
        rng = np.random.default_rng([self.seed, index, epoch])
        return int(rng.integers(0, length - self.latent_frames + 1))

    def clip(self, index: int, epoch: int = 0) -> torch.Tensor:
        """Clip ``index`` of ``epoch``: float32 ``(C, latent_frames, size/s, size/s)``."""
        index = operator.index(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"clip index {index} out of range for {len(self)} videos")
        index %= len(self)
        latent = self.cache.latent(self.size, self.indices[index])
        if latent.shape[1] < self.latent_frames:
            raise UserError(f"{self.paths[index]} has {latent.shape[1]} latent frames, fewer than a clip's "
                            f"{self.latent_frames}")
        start = self.start_frame(index, epoch, latent.shape[1])
        return latent[:, start: start + self.latent_frames].float()

    def subset(self, indices: Sequence[int]) -> LatentClipDataset:
        """A view of the videos at ``indices`` (in that order)."""
        view = copy.copy(self)
        view.paths = [self.paths[i] for i in indices]
        view.labels = [self.labels[i] for i in indices] if self.labels else []
        view.indices = [self.indices[i] for i in indices]
        return view

    def __repr__(self) -> str:
        return (f"LatentClipDataset({self.cache.folder}, {len(self)} videos, size={self.size}, "
                f"latent_frames={self.latent_frames})")


def check_autoencoder(autoencoder: Any, space: Any, where: str) -> None:
    """Refuse an autoencoder whose latent does not match ``space.latent`` (one line)."""
    latent = space.spec.latent
    got = (int(autoencoder.latent_channels), int(autoencoder.spatial_factor), int(autoencoder.temporal_factor))
    want = (latent.channels, latent.spatial_factor, latent.temporal_factor)
    if got != want:
        raise UserError(f"{where}: the autoencoder's latent (channels, spatial, temporal factor) = {got}, but "
                        f"experiment {space.name!r} expects {want} (space.latent)")


def bundled_autoencoder(experiment: str) -> Path | None:
    """The folder of a bundled experiment's autoencoder (``experiments/<name>/vae``), if any."""
    from importlib import resources

    if not experiment.replace("-", "").replace("_", "").isalnum():
        return None
    folder = Path(str(resources.files("sned.experiments"))) / experiment / "vae"
    return folder if folder.is_dir() else None


def autoencoder_for(info: dict[str, Any], override: str | Path | None = None, device: str | torch.device = "cpu"
                    ) -> Any:
    """The autoencoder that decodes a latent checkpoint's samples (None for a pixel checkpoint).

    ``info`` is :func:`~sned.supernet.checkpoint.load_supernet`'s; its ``vae`` entry names the
    folder and the sha256 it was trained with. ``override`` replaces the folder (the weights must
    still match), e.g. when a run moved to another machine.

    Raises:
        UserError: no autoencoder recorded or found, or one with other weights than training used.
    """
    from sned.supernet.vae_load import load_autoencoder

    recorded = info.get("vae")
    if not recorded:
        return None
    candidates = [Path(override)] if override else [Path(recorded["path"])]
    if not override and not candidates[0].is_dir():
        bundled = bundled_autoencoder(str(info.get("experiment", "")))
        candidates += [bundled] if bundled else []
    folder = next((c for c in candidates if c.is_dir()), None)
    if folder is None:
        raise UserError(f"this latent checkpoint decodes with the autoencoder {recorded['path']}, which does not exist "
                        f"here; pass --vae DIR")
    autoencoder = load_autoencoder(folder, device=device)
    if autoencoder.sha256 != recorded["sha256"]:
        raise UserError(f"--vae {folder}: its weights (sha256 {autoencoder.sha256[:12]}) are not the ones this "
                        f"checkpoint was trained with ({str(recorded['sha256'])[:12]})")
    return autoencoder


__all__ = ["LatentCache", "LatentClipDataset", "autoencoder_for", "build_latent_cache", "bundled_autoencoder",
           "cache_key", "check_autoencoder", "encode_video", "open_latent_cache"]
