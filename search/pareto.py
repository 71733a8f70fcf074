"""Pareto dominance and hypervolume on objective matrices (all objectives minimised).

numpy only for the common cases, so the exhaustive search path stays light; hypervolume in three
or more dimensions goes to pymoo's ``HV`` indicator (moocore underneath), imported on first use.

Notation: ``F`` is an ``(n, m)`` matrix of ``n`` points and ``m`` objectives, every objective to be
minimised. A point ``a`` *dominates* ``b`` when ``a <= b`` in every objective and ``a < b`` in at
least one.
"""

from __future__ import annotations

import numpy as np

REFERENCE_MARGIN = 1.1  # reference point in normalised space: 10 % beyond the nadir, so extremes count
PAIRWISE_MAX = 4096  # up to this many points, compare all pairs (vectorised); above, scan a sorted list


def non_dominated(F: np.ndarray) -> np.ndarray:
    """Boolean mask of the points of ``F`` that no other point dominates.

    Points with identical objective vectors do not dominate each other, so all of them are kept.

    Args:
        F: ``(n, m)`` objective matrix (minimised).

    Returns:
        ``(n,)`` bool mask, True on the Pareto front.
    """
    F = np.asarray(F, dtype=np.float64)
    n = len(F)
    mask = np.zeros(n, dtype=bool)
    if n == 0:
        return mask
    if n <= PAIRWISE_MAX:
        # Small sets (every NSGA-II generation): all pairs at once, in row blocks to bound memory.
        for start in range(0, n, 256):
            block = F[start:start + 256, None, :]  # (b, 1, m) candidates against (n, m) others
            dominated = np.any(np.all(F <= block, axis=2) & np.any(F < block, axis=2), axis=1)
            mask[start:start + 256] = ~dominated
        return mask
    # Large sets (a whole space): one scan, whose cost grows with n x front size instead of n^2.
    # 1. Sort lexicographically: a point can only be dominated by points before it in this order
    #    (a later point is >= in the first objective, and equal there means >= in the next, ...).
    order = np.lexsort(F.T[::-1])
    front = np.empty((0, F.shape[1]))
    # 2. Scan once, keeping the running front; a candidate joins unless a front member dominates it.
    for i in order:
        p = F[i]
        if len(front) and np.any(np.all(front <= p, axis=1) & np.any(front < p, axis=1)):
            continue
        mask[i] = True
        front = np.vstack([front, p])
    return mask


def normalise(F: np.ndarray, ideal: np.ndarray, nadir: np.ndarray) -> np.ndarray:
    """Map objectives to ``[0, 1]`` per column (``ideal`` -> 0, ``nadir`` -> 1); zero ranges become 1."""
    ideal = np.asarray(ideal, dtype=np.float64)
    span = np.asarray(nadir, dtype=np.float64) - ideal
    span = np.where(span > 0, span, 1.0)
    return (np.asarray(F, dtype=np.float64) - ideal) / span


def hypervolume(F: np.ndarray, ideal: np.ndarray, nadir: np.ndarray) -> float:
    """Hypervolume of ``F`` after normalising by ``ideal``/``nadir``, reference point 1.1 per axis.

    Using one fixed box for every method and generation makes the values comparable (the search
    derives it from the space's smallest and largest subnet, see ``sned.search.engine``). Points
    beyond the reference point add nothing.

    Args:
        F: ``(n, m)`` objective matrix (minimised); dominated points are allowed.
        ideal, nadir: ``(m,)`` the box that maps to ``[0, 1]^m``.

    Returns:
        The dominated volume in normalised units, in ``[0, 1.1^m]``.
    """
    Z = normalise(np.atleast_2d(F), ideal, nadir) if len(F) else np.empty((0, len(ideal)))
    Z = Z[np.all(Z < REFERENCE_MARGIN, axis=1)]
    if len(Z) == 0:
        return 0.0
    Z = Z[non_dominated(Z)]
    m = Z.shape[1]
    if m == 1:
        return float(REFERENCE_MARGIN - Z.min())
    if m == 2:
        # Exact staircase: sorted by the first objective, the second falls; sum the rectangles.
        Z = Z[np.lexsort((Z[:, 1], Z[:, 0]))]
        x_next = np.append(Z[1:, 0], REFERENCE_MARGIN)
        return float(np.sum((x_next - Z[:, 0]) * (REFERENCE_MARGIN - Z[:, 1])))
    from pymoo.indicators.hv import HV  # lazy: ~0.3 s of import, only for 3+ objectives

    return float(HV(ref_point=np.full(m, REFERENCE_MARGIN))(Z))


__all__ = ["REFERENCE_MARGIN", "hypervolume", "non_dominated", "normalise"]
