"""Tests for sned.predictors.evaluate_select: which subnets ``sned evaluate`` measures, and which real clips."""

from __future__ import annotations

import numpy as np
import pytest

from sned.predictors.evaluate_select import clip_subset, noise_floor_subset, parse_noise_floor, select_subnets
from sned.supernet.base.errors import UserError
from sned.supernet.space import arch_id, load_space


@pytest.fixture(scope="module")
def tiny():
    return load_space("tiny")


# ----------------------------------------------------------------------------- subnet selection


@pytest.mark.parametrize("res", [32, 128])
def test_selection_includes_extremes_and_is_sorted_distinct(tiny, res):
    archs = select_subnets(tiny, res, 8, np.random.default_rng(0))
    ids = [arch_id(a) for a in archs]
    assert len(archs) == 8 and len(set(ids)) == 8
    assert archs[0] == tiny.smallest(res) and archs[-1] == tiny.largest(res)
    assert all(a["res"] == res for a in archs)
    flops = tiny.flops(archs)
    assert np.all(np.diff(flops) >= 0)


def test_selection_is_stratified_over_the_flops_quantiles(tiny):
    """Each of the n-2 inner picks lies in its own FLOPs-quantile stratum of the other archs."""
    n = 10
    X = tiny.enumerate(32)
    flops = np.sort(tiny.flops(X))[1:-1]  # without the extremes
    edges = [chunk[[0, -1]] for chunk in np.array_split(flops, n - 2)]
    for seed in range(5):
        inner = tiny.flops(select_subnets(tiny, 32, n, np.random.default_rng(seed))[1:-1])
        for value, (low, high) in zip(inner, edges, strict=True):
            assert low <= value <= high


def test_selection_is_seeded(tiny):
    first = select_subnets(tiny, 64, 6, np.random.default_rng([3, 64]))
    again = select_subnets(tiny, 64, 6, np.random.default_rng([3, 64]))
    other = [select_subnets(tiny, 64, 6, np.random.default_rng([s, 64])) for s in range(4, 8)]
    assert first == again
    assert any(o != first for o in other)


def test_selection_edge_cases(tiny):
    assert select_subnets(tiny, 32, 2, np.random.default_rng(0)) == [tiny.smallest(32), tiny.largest(32)]
    everything = select_subnets(tiny, 32, 10**6, np.random.default_rng(0))
    assert len(everything) == tiny.count(32)
    with pytest.raises(UserError, match="at least 2"):
        select_subnets(tiny, 32, 1, np.random.default_rng(0))


def test_selection_of_a_big_space_uses_a_pool_with_both_extremes():
    big = load_space("pixel-1.6b")
    res = big.resolutions[0]
    archs = select_subnets(big, res, 7, np.random.default_rng(0), pool=500)
    assert archs[0] == big.smallest(res) and archs[-1] == big.largest(res) and len({arch_id(a) for a in archs}) == 7


def test_noise_floor_subset_spreads_over_the_list():
    items = [{"i": i} for i in range(8)]
    assert noise_floor_subset(items, 3) == [items[0], items[4], items[7]]  # round(linspace(0, 7, 3))
    assert noise_floor_subset(items, 0) == [] and noise_floor_subset(items, 20) == items
    assert noise_floor_subset(items, "all") == items


def test_parse_noise_floor_takes_all_or_a_count():
    assert parse_noise_floor("all") == "all" and parse_noise_floor(" ALL ") == "all"
    assert parse_noise_floor("3") == 3 and parse_noise_floor(0) == 0
    for bad in ("-1", "some", "2.5", True):
        with pytest.raises(UserError, match="expected 'all' or an integer >= 0"):
            parse_noise_floor(bad)


def test_clip_subset_second_pass_is_disjoint_when_the_folder_allows_else_reseeded():
    labels = [i % 3 for i in range(20)]
    first, disjoint_first = clip_subset(20, 6, seed=0, labels=labels)
    second, disjoint = clip_subset(20, 6, seed=0, second=True, labels=labels)
    assert disjoint_first and disjoint
    assert len({v for v, _ in first}) == 6 and {e for _, e in first + second} == {0}
    assert not {v for v, _ in first} & {v for v, _ in second}  # independent real subsets: no video shared
    assert sorted(labels[v] for v, _ in first) == [0, 0, 1, 1, 2, 2]  # spread over the classes
    assert sorted(labels[v] for v, _ in second) == [0, 0, 1, 1, 2, 2]
    assert clip_subset(20, 6, seed=0, labels=labels) == (first, True)  # seeded
    assert clip_subset(20, 6, seed=1, labels=labels)[0] != first
    # no labels: the first pass is the seeded permutation's prefix (the real set tables were made with)
    assert [v for v, _ in clip_subset(20, 6, seed=4)[0]] == list(np.random.default_rng(4).permutation(20)[:6])
    # too few videos for two disjoint sets: an independently seeded draw, clips at other frames (epoch 1)
    small_first, _ = clip_subset(8, 6, seed=0)
    small_second, small_disjoint = clip_subset(8, 6, seed=0, second=True)
    assert not small_disjoint and {e for _, e in small_second} == {1} and small_second != small_first
    assert len({v for v, _ in small_second}) == 6
    with pytest.raises(UserError, match="7 real clips requested but the data folder holds 6 usable videos"):
        clip_subset(6, 7, seed=0)
