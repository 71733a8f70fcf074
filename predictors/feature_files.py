"""Feature files: one video set's features with the name and weights of the network that made them (torch-free).

``.npz`` files holding ``features`` ``(n, d)`` float32 and a JSON ``meta`` entry (no pickle), written
atomically; ``sned fvd --save-features`` and ``sned evaluate``'s real-feature cache use them, and
:meth:`FeatureSet.check_extractor` refuses to compare features of different networks.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sned.supernet.base.errors import SettingError, UserError
from sned.supernet.base.files import write_atomic

FEATURE_FILE_FORMAT = "sned-features/1"


@dataclass(frozen=True)
class FeatureSet:
    """Features of one video set and the network that produced them.

    Attributes:
        features: ``(n, d)`` float32 features.
        extractor: extractor name (``"i3d:0123456789ab"``, ``"i3d-random"``, ...; see
            ``sned.predictors.i3d.I3DFeatureExtractor.name``).
        weights_sha256: sha256 of the extractor's weights.
        source: where the videos came from (a folder path, or a free-form note).
    """

    features: np.ndarray
    extractor: str
    weights_sha256: str
    source: str = ""

    def check_extractor(self, extractor: str, weights_sha256: str, label: str = "features") -> None:
        """Raise ``UserError`` unless these features come from ``extractor`` with these weights.

        Features of different networks (or the same network with other weights) are not comparable.
        """
        if (self.extractor, self.weights_sha256) != (extractor, weights_sha256):
            raise SettingError(
                "i3d", "{label} were extracted by {found} (sha256 {found_sha}), not by {wanted} (sha256 {wanted_sha}); "
                "recompute them or pass the same {i3d} weights or {features} folder", label=label, found=self.extractor,
                found_sha=self.weights_sha256[:12], wanted=extractor, wanted_sha=weights_sha256[:12])


def save_features(
    path: str | Path, features: np.ndarray, extractor: str, weights_sha256: str, source: str = ""
) -> Path:
    """Write features with their extractor's name and weights sha256 to an ``.npz`` file, atomically.

    Returns:
        The path written.
    """
    path = Path(path)
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2:
        raise UserError(f"features must be (num_videos, num_features); got shape {features.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, features=features, meta=np.array(json.dumps({
        "format": FEATURE_FILE_FORMAT, "extractor": extractor, "weights_sha256": weights_sha256, "source": source,
        "num_videos": int(features.shape[0])})))
    return write_atomic(path, buffer.getvalue())


def load_features(path: str | Path) -> FeatureSet:
    """Read a feature file written by :func:`save_features` (no pickle).

    Raises:
        FileNotFoundError: no such file.
        UserError: not a sned feature file, or a corrupt one.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such feature file: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            features = np.asarray(data["features"], dtype=np.float32)
            meta = json.loads(str(data["meta"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise UserError(f"{path} is not a readable sned feature file (.npz from `sned fvd --save-features`): {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FEATURE_FILE_FORMAT:
        raise UserError(f"{path} is not a sned feature file (format {FEATURE_FILE_FORMAT!r} expected)")
    if features.ndim != 2:
        raise UserError(f"{path} holds features of shape {features.shape}; expected (num_videos, num_features)")
    return FeatureSet(features, str(meta["extractor"]), str(meta["weights_sha256"]), str(meta.get("source", "")))


__all__ = ["FEATURE_FILE_FORMAT", "FeatureSet", "load_features", "save_features"]
