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

Limits. With n <= d videos a covariance has rank <= n - 1 < d: the FD is then mostly estimation
bias, which grows like d/n, so scores of sets of different sizes do not compare and a 400-d I3D
wants thousands of videos per set (the convention is 2048). :func:`frechet_distance` warns
(:class:`RankDeficientCovarianceWarning`) when a set has n <= d. ``pca_dim=k`` computes the FD
in the span of the k principal axes of the *real* (first) set's covariance, a fixed, real-data
subspace shared by every generated set, so that fewer videos suffice; it is a different metric
from the full FD (not comparable with published FVDs) and only compares with itself.
:func:`bootstrap_confidence_intervals` gives percentile bootstrap intervals for FVD and KVD.

Published networks. :data:`PUBLISHED_I3D_WEIGHTS` maps the sha256 of an I3D file whose FVDs are
published to its name; only features of such a file (run with the published BatchNorm epsilon) are
``comparable_to_published`` (:func:`is_comparable_to_published`).

This module is torch-free. The table of published networks lives in
:mod:`sned.predictors.i3d_published` and the feature files in :mod:`sned.predictors.feature_files`;
both are importable from here. The extractors are :mod:`sned.predictors.i3d` (torch) and
:mod:`sned.predictors.features`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np

from sned.predictors.feature_files import FEATURE_FILE_FORMAT, FeatureSet, load_features, save_features
from sned.predictors.i3d_published import (
    PUBLISHED_I3D_WEIGHTS,
    PublishedWeights,
    is_comparable_to_published,
    published_extractor_name,
    register_published_weights,
)
from sned.supernet.base.errors import UserError

__all__ = [
    "FEATURE_FILE_FORMAT",
    "PUBLISHED_I3D_WEIGHTS",
    "BootstrapIntervals",
    "ConfidenceInterval",
    "FeatureSet",
    "PublishedWeights",
    "RankDeficientCovarianceWarning",
    "bootstrap_confidence_intervals",
    "frechet_distance",
    "frechet_distance_from_stats",
    "gaussian_stats",
    "inception_score",
    "is_comparable_to_published",
    "kernel_distance",
    "load_features",
    "published_extractor_name",
    "register_published_weights",
    "save_features",
]

CovarianceKind = Literal["unbiased", "biased"]
COVARIANCE_KINDS: tuple[str, ...] = ("unbiased", "biased")


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


class RankDeficientCovarianceWarning(UserWarning):
    """A feature set has no more videos than dimensions, so its covariance is singular and the FD mostly bias."""


def _warn_if_rank_deficient(m: int, n: int, dim: int, what: str, stacklevel: int = 3) -> None:
    if min(m, n) <= dim:
        warnings.warn(
            f"{what} of {m} real and {n} generated videos in {dim} dimensions: a set with n <= {dim} videos "
            f"has a rank-deficient covariance (rank <= n - 1), so the score is dominated by estimation bias "
            f"(~dim/n) and does not compare across set sizes; use more than {dim} videos per set (2048 is the "
            f"convention) or score in fewer dimensions (pca_dim / sned fvd --pca-dim below {min(m, n)})",
            RankDeficientCovarianceWarning,
            stacklevel=stacklevel,
        )


def _check_pca_dim(pca_dim: int | None, num_features: int) -> None:
    if pca_dim is None:
        return
    if isinstance(pca_dim, bool) or not isinstance(pca_dim, (int, np.integer)) or not 1 <= pca_dim <= num_features:
        raise UserError(f"pca_dim must be None or an integer in 1..{num_features} (the feature dimension); "
                        f"got {pca_dim!r}")


def _project_stats(
    mu_a: np.ndarray, sigma_a: np.ndarray, mu_b: np.ndarray, sigma_b: np.ndarray, pca_dim: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Both Gaussians restricted to the span of ``sigma_a``'s top ``pca_dim`` eigenvectors (unchanged for None).

    Projecting the statistics equals projecting the features: mean ``P^T mu``, covariance ``P^T S P``.
    """
    if pca_dim is None:
        return mu_a, sigma_a, mu_b, sigma_b
    _, vectors = np.linalg.eigh(sigma_a)  # ascending eigenvalues
    axes = vectors[:, ::-1][:, :pca_dim]  # (d, k) principal axes of the real set
    return mu_a @ axes, axes.T @ sigma_a @ axes, mu_b @ axes, axes.T @ sigma_b @ axes


def frechet_distance(
    a: np.ndarray, b: np.ndarray, cov: CovarianceKind = "unbiased", pca_dim: int | None = None
) -> float:
    """FVD (the Fréchet distance) between two feature sets.

    Args:
        a: ``(m, d)`` features of the real videos, m >= 2.
        b: ``(n, d)`` features of the generated videos, n >= 2.
        cov: ``"unbiased"`` (N-1; TF-GAN, torchmetrics, clean-fid) or ``"biased"`` (1/N; StyleGAN-V, cd-fvd).
        pca_dim: ``None`` for the full FD; ``k`` (1..d) for the FD of both sets projected on the k
            principal axes of ``a``'s covariance (fitted on the real set only, so every generated set
            is scored in the same subspace). Needs > k rather than > d videos per set for a full-rank
            covariance, but it is another metric: it compares only with FDs of the same ``k`` and
            real set, never with published FVDs. ``k = d`` gives the full FD.

    Returns:
        The distance (>= 0 up to rounding; identical sets give ~0).

    Raises:
        UserError: fewer than 2 rows, different ``d``, non-finite values, an unknown ``cov`` or a
            ``pca_dim`` outside 1..d.

    Warns:
        RankDeficientCovarianceWarning: a set has no more videos than dimensions (d, or ``pca_dim``).
    """
    a, b = _check_pair(a, b)
    _check_pca_dim(pca_dim, a.shape[1])
    _warn_if_rank_deficient(a.shape[0], b.shape[0], pca_dim or a.shape[1], "FVD")
    return frechet_distance_from_stats(*_project_stats(*gaussian_stats(a, cov), *gaussian_stats(b, cov), pca_dim))


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


# ----------------------------------------------------------------------------- inception score


def inception_score(probabilities: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """Inception Score of class probabilities: ``exp(E_x KL(p(y|x) || p(y)))``, mean and std over splits.

    Salimans et al., "Improved Techniques for Training GANs", NeurIPS 2016; for video, TGAN /
    MoCoGAN / TATS apply it to a C3D trained on UCF-101 (here: ``sned features train``). The rows
    are cut into ``splits`` consecutive parts of (nearly) equal size (``np.array_split``); in each,
    ``p(y)`` is the part's mean row and the score ``exp(mean_x sum_y p(y|x) (ln p(y|x) - ln p(y)))``
    (``0 ln 0 = 0``). It ranges from 1 (every video gets the same prediction) to ``k`` (confident,
    classes balanced). Small parts bias it downwards, so scores compare only at equal part sizes.

    Args:
        probabilities: ``(n, k)`` class probabilities (rows sum to 1), e.g.
            ``DomainFeatureExtractor.probabilities``; not logits.
        splits: number of parts, 1 <= splits <= n (the convention is 10).

    Returns:
        ``(mean, std)`` of the per-part scores (std with ddof 0; 0.0 for one part).

    Raises:
        UserError: not a finite, non-negative ``(n, k)`` array with rows summing to 1, or a bad ``splits``.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] < 1 or p.shape[1] < 1:
        raise UserError(f"probabilities must be (num_videos, num_classes); got shape {p.shape}")
    if not np.isfinite(p).all() or (p < 0).any():
        raise UserError("probabilities must be finite and non-negative")
    worst = float(np.abs(p.sum(axis=1) - 1.0).max())
    if worst > 1e-3:
        raise UserError(f"probability rows must sum to 1 (one is off by {worst:.3g}); pass softmax "
                        "probabilities, not logits")
    if int(splits) != splits or not 1 <= splits <= p.shape[0]:
        raise UserError(f"splits must be an integer between 1 and the {p.shape[0]} rows; got {splits!r}")
    scores = []
    for part in np.array_split(p, int(splits)):
        marginal = part.mean(axis=0, keepdims=True)  # p(y) over the part
        kl = np.where(part > 0, part * (np.log(np.maximum(part, 1e-300)) - np.log(np.maximum(marginal, 1e-300))), 0.0)
        scores.append(float(np.exp(kl.sum(axis=1).mean())))
    return float(np.mean(scores)), float(np.std(scores))


# ----------------------------------------------------------------------------- bootstrap

BootstrapMethod = Literal["percentile", "basic"]
BOOTSTRAP_METHODS: tuple[str, ...] = ("percentile", "basic")


class ConfidenceInterval(NamedTuple):
    """A point estimate on the full sets and a bootstrap interval around it; unpacks as ``(value, low, high)``."""

    value: float
    low: float
    high: float


@dataclass(frozen=True)
class BootstrapIntervals:
    """FVD and KVD with bootstrap confidence intervals (from :func:`bootstrap_confidence_intervals`).

    Attributes:
        fvd: FVD ``(value, low, high)``.
        kvd: KVD ``(value, low, high)`` (full-set unbiased MMD^2, as :func:`kernel_distance` with ``subsets=None``).
        confidence: the intervals' nominal coverage, e.g. 0.95.
        num_resamples: bootstrap replicates drawn.
        method: ``"percentile"`` or ``"basic"``.
    """

    fvd: ConfidenceInterval
    kvd: ConfidenceInterval
    confidence: float
    num_resamples: int
    method: str


def _resample_counts(size: int, rng: np.random.Generator) -> np.ndarray:
    """How often each of ``size`` rows is drawn in one resample with replacement, as float64 ``(size,)``.

    A resample of a single distinct row has no covariance and no distinct pairs; it is drawn again
    (probability ``size^(1 - size)``: 1/2 for 2 rows, < 1e-6 from 8 rows on).
    """
    while True:
        counts = np.bincount(rng.integers(0, size, size=size), minlength=size)
        if np.count_nonzero(counts) >= 2:
            return counts.astype(np.float64)


def _weighted_stats(x: np.ndarray, counts: np.ndarray, cov: CovarianceKind) -> tuple[np.ndarray, np.ndarray]:
    """:func:`gaussian_stats` of the resample that holds row i of ``x`` ``counts[i]`` times."""
    total = counts.sum()
    mu = counts @ x / total
    centred = x - mu
    return mu, (centred * counts[:, None]).T @ centred / (total - (1.0 if cov == "unbiased" else 0.0))


def _weighted_mmd2(
    k_aa: np.ndarray, k_bb: np.ndarray, k_ab: np.ndarray, counts_a: np.ndarray, counts_b: np.ndarray
) -> float:
    """Unbiased MMD^2 of a resample given as row counts, over pairs of *different original rows*.

    A row drawn twice would otherwise pair with itself, and k(x, x) > k(x, y) would lift every
    replicate by ~(k(x, x) - k(x, y)) / n, as much as the estimate's own spread when the sets are alike.
    """

    def within(k: np.ndarray, c: np.ndarray) -> float:
        return float((c @ k @ c - (c * c) @ np.diag(k)) / (c.sum() ** 2 - c @ c))

    cross = float(counts_a @ k_ab @ counts_b / (counts_a.sum() * counts_b.sum()))
    return within(k_aa, counts_a) + within(k_bb, counts_b) - 2.0 * cross


def bootstrap_confidence_intervals(
    real: np.ndarray,
    generated: np.ndarray,
    rng: np.random.Generator,
    *,
    num_resamples: int = 200,
    confidence: float = 0.95,
    cov: CovarianceKind = "unbiased",
    pca_dim: int | None = None,
    method: BootstrapMethod = "percentile",
) -> BootstrapIntervals:
    """FVD and KVD with bootstrap confidence intervals over the choice of videos.

    Each replicate resamples the real and the generated set independently, with replacement and at
    their own sizes, and recomputes both scores (the ``pca_dim`` axes are refitted on each resampled
    real set: the whole estimator is resampled). KVD replicates leave out pairs of the same original
    video, so they centre on the full-set estimate.

    Intervals. ``"percentile"``: the ``(1 -/+ confidence) / 2`` quantiles of the replicates.
    ``"basic"``: those quantiles reflected about the estimate (``2 value - q_high``,
    ``2 value - q_low``); the FD's upward small-sample bias (~d/n) shifts the replicates above the
    estimate about as far as the estimate lies above the truth, and the reflection cancels that
    to first order, so prefer it when n is not much larger than d (a basic FVD interval can reach
    below 0). Both treat the videos as independent draws; the interval covers sampling noise, not
    the generator's seed or the choice of network.

    Cost: three kernel matrices (``(m, m)``, ``(n, n)``, ``(m, n)`` float64: 100 MB at 2048 + 2048)
    plus, per replicate, a weighted covariance and one ``d x d`` eigenvalue problem (~0.1 s at d = 400).

    Args:
        real: ``(m, d)`` features of real videos, m >= 2.
        generated: ``(n, d)`` features of generated videos, n >= 2.
        rng: the generator of every resample (``np.random.default_rng(seed)``); required, so runs repeat.
        num_resamples: bootstrap replicates, >= 2 (a few hundred to a few thousand).
        confidence: nominal coverage in (0, 1).
        cov: covariance convention of the FVD, as in :func:`frechet_distance`.
        pca_dim: FVD in the real set's top ``pca_dim`` principal axes, as in :func:`frechet_distance`.
        method: ``"percentile"`` or ``"basic"`` (see above).

    Returns:
        The full-set FVD and KVD, each with its interval.

    Raises:
        TypeError: ``rng`` is not a ``numpy.random.Generator``.
        UserError: bad feature sets (see :func:`frechet_distance`), ``num_resamples`` < 2,
            ``confidence`` outside (0, 1), or an unknown ``cov``, ``method`` or ``pca_dim``.

    Warns:
        RankDeficientCovarianceWarning: a set has no more videos than dimensions (once, not per replicate).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> a, b = rng.standard_normal((500, 4)), rng.standard_normal((500, 4)) + 1.0
        >>> result = bootstrap_confidence_intervals(a, b, np.random.default_rng(1))
        >>> value, low, high = result.fvd   # FD about 4 (= |mu_a - mu_b|^2), interval about +-0.5
        >>> bool(low < 4.0 < high)
        True
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)); got {type(rng).__name__}")
    if isinstance(num_resamples, bool) or not isinstance(num_resamples, (int, np.integer)) or num_resamples < 2:
        raise UserError(f"num_resamples must be an integer >= 2; got {num_resamples!r}")
    if not 0.0 < confidence < 1.0:
        raise UserError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence!r}")
    if method not in BOOTSTRAP_METHODS:
        raise UserError(f"method must be one of {', '.join(BOOTSTRAP_METHODS)}; got {method!r}")
    if cov not in COVARIANCE_KINDS:
        raise UserError(f"cov must be one of {', '.join(COVARIANCE_KINDS)}; got {cov!r}")
    a, b = _check_pair(real, generated)
    _check_pca_dim(pca_dim, a.shape[1])
    _warn_if_rank_deficient(a.shape[0], b.shape[0], pca_dim or a.shape[1], "FVD bootstrap")
    m, n = a.shape[0], b.shape[0]

    # 1. Point estimates on the full sets.
    fvd = frechet_distance_from_stats(*_project_stats(*gaussian_stats(a, cov), *gaussian_stats(b, cov), pca_dim))
    k_aa, k_bb, k_ab = _poly_kernel(a, a), _poly_kernel(b, b), _poly_kernel(a, b)
    kvd = _weighted_mmd2(k_aa, k_bb, k_ab, np.ones(m), np.ones(n))

    # 2. Replicates: row counts of each resample, in a fixed order (real, then generated) per replicate.
    replicates = np.empty((num_resamples, 2))
    for r in range(num_resamples):
        counts_a, counts_b = _resample_counts(m, rng), _resample_counts(n, rng)
        stats = _project_stats(*_weighted_stats(a, counts_a, cov), *_weighted_stats(b, counts_b, cov), pca_dim)
        replicates[r] = frechet_distance_from_stats(*stats), _weighted_mmd2(k_aa, k_bb, k_ab, counts_a, counts_b)

    # 3. Intervals.
    low_q, high_q = np.quantile(replicates, [(1 - confidence) / 2, (1 + confidence) / 2], axis=0)
    intervals = []
    for i, value in enumerate((fvd, kvd)):
        low, high = float(low_q[i]), float(high_q[i])
        if method == "basic":
            low, high = 2 * value - high, 2 * value - low
        intervals.append(ConfidenceInterval(float(value), low, high))
    return BootstrapIntervals(intervals[0], intervals[1], float(confidence), int(num_resamples), method)
