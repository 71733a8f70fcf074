"""FVD and KVD between two sets of video features, and the feature files that cache them.

FVD: Unterthiner et al., "Towards Accurate Generative Models of Video: A New Metric & Challenges",
2018 -- the Fréchet distance between Gaussians fitted to I3D features of real and generated videos.
KVD: the kernel (MMD) analogue, after KID (Bińkowski et al., "Demystifying MMD GANs", ICLR 2018).

Notation (features are rows; ``d`` = feature dimension)::

    a: (m, d), b: (n, d)       real and generated features
    mu_a, S_a                  mean and covariance of a (ddof 1 = "unbiased", ddof 0 = "biased")
    FD   = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2))
    k(x, y) = (x . y / d + 1)^3                                  (KID's polynomial kernel)
    MMD^2_u = sum_{i!=j} k(a_i, a_j) / (m (m-1)) + sum_{i!=j} k(b_i, b_j) / (n (n-1))
              - 2 sum_{i,j} k(a_i, b_j) / (m n)                  (unbiased; can be negative)

Conventions. The covariance uses N-1 by default (TF-GAN, torchmetrics, clean-fid); StyleGAN-V and
cd-fvd use 1/N (``cov="biased"``). ``tr((S_a S_b)^(1/2))`` is the sum of the square roots of the
eigenvalues of the (non-symmetric) product ``S_a S_b``, computed in float64 with
``np.linalg.eigvals`` -- no symmetry is assumed and no ``sqrtm`` iteration can fail to converge.
KVD is the unbiased MMD^2 over the full sets (LVDM) or averaged over random equal-size subsets
(clean-fid's KID), unscaled.

This module is torch-free; ``sned.predictors.fvd.I3DFeatureExtractor`` (torch) is loaded from
``sned.predictors.i3d`` on first access (and is left out of ``__all__`` so that a star import
stays torch-free).
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sned.supernet.errors import UserError

__all__ = [
    "FeatureSet",
    "frechet_distance",
    "frechet_distance_from_stats",
    "gaussian_stats",
    "kernel_distance",
    "load_features",
    "save_features",
]

CovarianceKind = Literal["unbiased", "biased"]
COVARIANCE_KINDS: tuple[str, ...] = ("unbiased", "biased")
FEATURE_FILE_FORMAT = "sned-features/1"


def __getattr__(name: str) -> Any:
    if name == "I3DFeatureExtractor":  # torch only when the extractor is wanted
        from sned.predictors.i3d import I3DFeatureExtractor

        return I3DFeatureExtractor
    raise AttributeError(f"module 'sned.predictors.fvd' has no attribute {name!r}")


# ----------------------------------------------------------------------------- checks


def _check_pair(a: np.ndarray, b: np.ndarray, min_rows: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Both feature sets as float64 (n, d) arrays of the same d, finite, with >= ``min_rows`` rows."""
    out = []
    for name, x in (("first", a), ("second", b)):
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2:
            raise UserError(f"the {name} feature set has shape {x.shape}; expected (num_videos, num_features)")
        if x.shape[0] < min_rows:
            raise UserError(f"the {name} feature set has {x.shape[0]} videos; FVD/KVD need at least {min_rows}")
        if not np.isfinite(x).all():
            raise UserError(f"the {name} feature set holds NaN or inf values")
        out.append(x)
    if out[0].shape[1] != out[1].shape[1]:
        raise UserError(
            f"feature dimensions differ: {out[0].shape[1]} vs {out[1].shape[1]}; "
            "were both sets extracted by the same network?"
        )
    return out[0], out[1]


# ----------------------------------------------------------------------------- FVD


def gaussian_stats(features: np.ndarray, cov: CovarianceKind = "unbiased") -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(d,)`` and covariance ``(d, d)`` of ``(n, d)`` features in float64 (ddof 1 or 0)."""
    if cov not in COVARIANCE_KINDS:
        raise UserError(f"cov must be one of {', '.join(COVARIANCE_KINDS)}; got {cov!r}")
    x = np.asarray(features, dtype=np.float64)
    return x.mean(axis=0), np.cov(x, rowvar=False, ddof=1 if cov == "unbiased" else 0).reshape(x.shape[1], x.shape[1])


def frechet_distance_from_stats(
    mu_a: np.ndarray, sigma_a: np.ndarray, mu_b: np.ndarray, sigma_b: np.ndarray
) -> float:
    """Fréchet distance between N(mu_a, sigma_a) and N(mu_b, sigma_b), in float64.

    ``tr((S_a S_b)^(1/2))`` is the sum of square roots of the eigenvalues of ``S_a S_b``: that
    product of two PSD matrices is not symmetric, but its eigenvalues are real and >= 0, so rounding
    (tiny negative or complex values) is removed by taking the real part of the complex root.
    """
    mu_a, mu_b = np.asarray(mu_a, np.float64), np.asarray(mu_b, np.float64)
    sigma_a, sigma_b = np.asarray(sigma_a, np.float64), np.asarray(sigma_b, np.float64)
    if mu_a.shape != mu_b.shape or sigma_a.shape != sigma_b.shape or sigma_a.shape != (mu_a.size, mu_a.size):
        raise UserError(
            f"Gaussian statistics do not match: means {mu_a.shape} and {mu_b.shape}, "
            f"covariances {sigma_a.shape} and {sigma_b.shape}"
        )
    diff = mu_a - mu_b
    eigenvalues = np.linalg.eigvals(sigma_a @ sigma_b).astype(np.complex128)
    trace_sqrt = float(np.sqrt(eigenvalues).real.sum())
    return float(diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * trace_sqrt)


def frechet_distance(a: np.ndarray, b: np.ndarray, cov: CovarianceKind = "unbiased") -> float:
    """FVD (the Fréchet distance) between two feature sets.

    Args:
        a: ``(m, d)`` features, m >= 2.
        b: ``(n, d)`` features, n >= 2.
        cov: ``"unbiased"`` (N-1; TF-GAN, torchmetrics, clean-fid) or ``"biased"`` (1/N; StyleGAN-V, cd-fvd).

    Returns:
        The distance (>= 0 up to rounding; identical sets give ~0).

    Raises:
        UserError: fewer than 2 rows, different ``d``, non-finite values, or an unknown ``cov``.
    """
    a, b = _check_pair(a, b)
    return frechet_distance_from_stats(*gaussian_stats(a, cov), *gaussian_stats(b, cov))


# ----------------------------------------------------------------------------- KVD


def _poly_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def _mmd2_unbiased(a: np.ndarray, b: np.ndarray) -> float:
    m, n = a.shape[0], b.shape[0]
    k_aa, k_bb = _poly_kernel(a, a), _poly_kernel(b, b)
    within_a = (k_aa.sum() - np.trace(k_aa)) / (m * (m - 1))
    within_b = (k_bb.sum() - np.trace(k_bb)) / (n * (n - 1))
    return float(within_a + within_b - 2.0 * _poly_kernel(a, b).mean())


def kernel_distance(
    a: np.ndarray,
    b: np.ndarray,
    subsets: int | None = None,
    subset_size: int = 1000,
    seed: int = 0,
) -> float:
    """KVD: the unbiased squared MMD with the kernel ``k(x, y) = (x . y / d + 1)^3``, unscaled.

    Args:
        a: ``(m, d)`` features, m >= 2.
        b: ``(n, d)`` features, n >= 2.
        subsets: ``None`` for one estimate over the full sets (LVDM); ``K`` to average ``K``
            estimates over random subsets (clean-fid's KID), each drawn without replacement.
        subset_size: subset size, capped at ``min(m, n)``.
        seed: seed of the subset draws (``np.random.default_rng``).

    Returns:
        The estimate; it can be slightly negative when the sets are alike (it is unbiased).

    Raises:
        UserError: fewer than 2 rows, different ``d``, non-finite values, or ``subsets``/``subset_size`` < 1/2.
    """
    a, b = _check_pair(a, b)
    if subsets is None:
        return _mmd2_unbiased(a, b)
    if subsets < 1:
        raise UserError(f"subsets must be >= 1 (or None for the full sets); got {subsets}")
    if subset_size < 2:
        raise UserError(f"subset_size must be >= 2; got {subset_size}")
    size = min(subset_size, a.shape[0], b.shape[0])
    rng = np.random.default_rng(seed)
    estimates = [
        _mmd2_unbiased(a[rng.choice(a.shape[0], size, replace=False)], b[rng.choice(b.shape[0], size, replace=False)])
        for _ in range(subsets)
    ]
    return float(np.mean(estimates))


# ----------------------------------------------------------------------------- feature files


@dataclass(frozen=True)
class FeatureSet:
    """Features of one video set and the network that produced them.

    Attributes:
        features: ``(n, d)`` float32 features.
        extractor: extractor name (``"i3d-kinetics400"``, ``"i3d-random"``, ...).
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
            raise UserError(
                f"{label} were extracted by {self.extractor} (sha256 {self.weights_sha256[:12]}), not by "
                f"{extractor} (sha256 {weights_sha256[:12]}); recompute them or pass the same --i3d weights"
            )


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
    fd, tmp = tempfile.mkstemp(suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:  # a file object: np.savez would append ".npz" to a name
            np.savez(
                f,
                features=features,
                meta=np.array(json.dumps({
                    "format": FEATURE_FILE_FORMAT,
                    "extractor": extractor,
                    "weights_sha256": weights_sha256,
                    "source": source,
                    "num_videos": int(features.shape[0]),
                })),
            )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


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
