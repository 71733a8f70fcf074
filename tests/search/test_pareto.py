"""Dominance and hypervolume (sned/search/pareto.py) against brute force and pymoo."""

import numpy as np
import pytest

from sned.search.pareto import REFERENCE_MARGIN, hypervolume, non_dominated


def _brute_force_front(F):
    """The definition, over all ordered pairs: i is dominated if some j is <= everywhere and < somewhere."""
    le = np.all(F[None, :, :] <= F[:, None, :], axis=2)  # le[i, j]: F[j] <= F[i]
    lt = np.any(F[None, :, :] < F[:, None, :], axis=2)
    return ~np.any(le & lt, axis=1)


@pytest.mark.parametrize("m", [2, 3])
def test_non_dominated_matches_brute_force(m):
    rng = np.random.default_rng(m)
    F = rng.integers(0, 12, size=(300, m)).astype(float)  # small integers: many ties and duplicates
    np.testing.assert_array_equal(non_dominated(F), _brute_force_front(F))


def test_non_dominated_keeps_identical_points_and_handles_empty():
    F = np.array([[1.0, 2.0], [1.0, 2.0], [2.0, 3.0]])
    assert non_dominated(F).tolist() == [True, True, False]
    assert non_dominated(np.empty((0, 2))).shape == (0,)


def test_hypervolume_2d_known_value():
    F = np.array([[0.0, 0.5], [0.5, 0.0], [0.6, 0.6]])  # the last point is dominated
    ideal, nadir = np.zeros(2), np.ones(2)
    r = REFERENCE_MARGIN
    expected = 0.5 * (r - 0.5) + (r - 0.5) * r
    assert hypervolume(F, ideal, nadir) == pytest.approx(expected)


def test_hypervolume_normalises_and_ignores_points_beyond_the_reference():
    F = np.array([[10.0, 200.0], [50.0, 100.0]])
    ideal, nadir = np.array([10.0, 100.0]), np.array([50.0, 200.0])  # both map to corners of [0, 1]^2
    r = REFERENCE_MARGIN
    assert hypervolume(F, ideal, nadir) == pytest.approx(1.0 * (r - 1.0) + (r - 1.0) * r)
    assert hypervolume(np.array([[60.0, 50.0]]), ideal, nadir) == 0.0  # x beyond 1.1
    assert hypervolume(np.empty((0, 2)), ideal, nadir) == 0.0


@pytest.mark.parametrize("m", [2, 3])
def test_hypervolume_matches_pymoo(m):
    from pymoo.indicators.hv import HV

    rng = np.random.default_rng(7 + m)
    F = rng.random((60, m)) * 4 + 1
    ideal, nadir = np.ones(m), np.full(m, 5.0)
    Z = (F - ideal) / (nadir - ideal)
    expected = HV(ref_point=np.full(m, REFERENCE_MARGIN))(Z)
    assert hypervolume(F, ideal, nadir) == pytest.approx(expected, rel=1e-9)


def test_large_sets_use_the_scan_and_satisfy_the_definition():
    from sned.search import pareto

    rng = np.random.default_rng(11)
    F = rng.integers(0, 40, size=(pareto.PAIRWISE_MAX + 500, 3)).astype(float)
    scanned = non_dominated(F)
    # the definition: no front member dominates another, and every other point is dominated by one
    front = F[scanned]
    assert not any(np.any(np.all(front <= f, axis=1) & np.any(front < f, axis=1)) for f in front)
    dominated = F[~scanned]
    assert all(np.any(np.all(front <= f, axis=1) & np.any(front < f, axis=1)) for f in dominated)
