"""Arch samplers: seeded by step, cost buckets, the sampling warm-up, the sandwich rule, big-space pools."""

import numpy as np
import pytest

from sned.supernet.sampler import DynamicCostSampler, UniformSampler, make_sampler, resolution_at
from sned.supernet.space import SpaceError, arch_id, load_space


@pytest.fixture(scope="module")
def tiny():
    return load_space("tiny")


def test_same_seed_and_step_same_arch(tiny):
    a, b = make_sampler(tiny, 3, "dynamic"), make_sampler(tiny, 3, "dynamic")
    assert [arch_id(a.sample(s, 64)[0]) for s in range(20)] == [arch_id(b.sample(s, 64)[0]) for s in range(20)]
    assert len({arch_id(a.sample(s, 64)[0]) for s in range(20)}) > 10
    other = make_sampler(tiny, 4, "dynamic")
    assert [arch_id(a.sample(s, 64)[0]) for s in range(20)] != [arch_id(other.sample(s, 64)[0]) for s in range(20)]
    assert [resolution_at(tiny, 0, s) for s in range(30)] == [resolution_at(tiny, 0, s) for s in range(30)]
    assert set(resolution_at(tiny, 0, s) for s in range(60)) == set(tiny.resolutions)


def test_resolution_weights_set_how_often_each_is_drawn(tiny):
    draws = np.array([resolution_at(tiny, 0, s, (0.5, 0.3, 0.2)) for s in range(3000)])
    shares = [(draws == r).mean() for r in tiny.resolutions]
    assert np.allclose(shares, [0.5, 0.3, 0.2], atol=0.03)
    assert set(resolution_at(tiny, 0, s, (0, 1, 0)) for s in range(50)) == {64}
    with pytest.raises(SpaceError, match="expected 3 non-negative numbers"):
        resolution_at(tiny, 0, 0, (1, 1))


def test_buckets_are_equal_cost_quantiles_and_sampled_uniformly(tiny):
    sampler = DynamicCostSampler(tiny, 0, cost="params", buckets=4)
    X, costs, bucket = sampler.candidates(32)
    assert len(X) == tiny.count(32) == 1296
    assert np.bincount(bucket).tolist() == [324] * 4
    for b in range(3):  # buckets are ordered by cost
        assert costs[bucket == b].max() <= costs[bucket == b + 1].min()
    lookup = {arch_id(a): b for a, b in zip(tiny.decode(X), bucket, strict=True)}
    counts = np.bincount([lookup[arch_id(sampler.sample(s, 32)[0])] for s in range(800)], minlength=4)
    assert counts.min() > 150 and counts.max() < 250, counts  # uniform over buckets (expected 200 each)
    uniform = UniformSampler(tiny, 0)  # ... which uniform gene sampling is not: it favours the middle
    ucounts = np.bincount([lookup[arch_id(uniform.sample(s, 32)[0])] for s in range(800)], minlength=4)
    assert not np.array_equal(ucounts, counts)


def test_warmup_widens_from_the_largest_subnets(tiny):
    sampler = DynamicCostSampler(tiny, 0, cost="flops", buckets=8, warmup_steps=100)
    assert [sampler.lowest_bucket(s) for s in (0, 50, 99, 100, 500)] == [7, 4, 1, 0, 0]
    X, costs, bucket = sampler.candidates(64)
    top = costs[bucket == 7].min()
    early = [tiny.flops(sampler.sample(s, 64)[0])[0] for s in range(5)]
    assert all(c >= top for c in early)
    late = [tiny.flops(sampler.sample(s, 64)[0])[0] for s in range(200, 300)]
    assert min(late) < np.quantile(costs, 0.25)


def test_sandwich(tiny):
    sampler = make_sampler(tiny, 0, "dynamic", warmup_steps=10, sandwich=True)
    largest, smallest, sampled = sampler.sample(50, 128)
    assert largest == tiny.largest(128) and smallest == tiny.smallest(128) and sampled["res"] == 128
    _, smallest_early, _ = sampler.sample(0, 128)  # during the warm-up: the cheapest allowed subnet
    assert tiny.flops(smallest_early)[0] > tiny.flops(tiny.smallest(128))[0]
    assert UniformSampler(tiny, 0, sandwich=True).sample(0, 32)[1] == tiny.smallest(32)


def test_big_spaces_use_a_seeded_pool_with_both_extremes():
    space = load_space("pixel-1.6b")
    sampler = DynamicCostSampler(space, 1, pool=500, enumerate_limit=100)
    X, _, bucket = sampler.candidates(128)
    assert 400 < len(X) <= 502 and np.bincount(bucket).min() > 0
    archs = space.decode(X)
    assert space.largest(128) in archs and space.smallest(128) in archs
    space.validate(sampler.sample(3, 128)[0])
    again = DynamicCostSampler(space, 1, pool=500, enumerate_limit=100)
    assert again.state_dict() == sampler.state_dict()
    assert DynamicCostSampler(space, 2, pool=500, enumerate_limit=100).state_dict() != sampler.state_dict()


def test_state_check_and_bad_kinds(tiny):
    sampler = make_sampler(tiny, 0, "dynamic", buckets=8)
    sampler.check_state(sampler.state_dict())
    with pytest.raises(ValueError, match="buckets differs: checkpoint 4, now 8"):
        sampler.check_state(sampler.state_dict() | {"buckets": 4})
    with pytest.raises(SpaceError, match="valid: \\['dynamic', 'fixed', 'uniform'\\]"):
        make_sampler(tiny, 0, "random")


def test_fixed_sampler_trains_one_subnet_at_every_resolution(tiny):
    arch = tiny.largest(64)
    sampler = make_sampler(tiny, 0, "fixed", arch={"stages": arch["stages"]})
    for step in range(5):
        for res in tiny.resolutions:
            assert sampler.sample(step, res) == [tiny.validate({"res": res, "stages": arch["stages"]})]
    other = make_sampler(tiny, 0, "fixed", arch=tiny.smallest(32))  # a res key is ignored
    with pytest.raises(ValueError, match="arch"):
        other.check_state(sampler.state_dict())
    with pytest.raises(SpaceError, match="needs an arch"):
        make_sampler(tiny, 0, "fixed")
    with pytest.raises(SpaceError, match="needs an arch and no sandwich"):
        make_sampler(tiny, 0, "fixed", arch=arch, sandwich=True)
    with pytest.raises(SpaceError, match="width"):
        make_sampler(tiny, 0, "fixed", arch={"stages": [{"width": 7, "depth": 1, "attn": [0]}] * 3})


def test_fixed_sampler_config_needs_an_arch():
    from sned.supernet.base.errors import UserError
    from sned.supernet.config import train_config_from_dict

    cfg = train_config_from_dict({"sampler": "fixed", "arch": '{"stages": []}'})
    assert cfg.sampler == "fixed"
    with pytest.raises(UserError, match="sampler: fixed and arch go together"):
        train_config_from_dict({"sampler": "fixed"})
    with pytest.raises(UserError, match="sampler: fixed and arch go together"):
        train_config_from_dict({"sampler": "dynamic", "arch": '{"stages": []}'})
    with pytest.raises(UserError, match="sandwich"):
        train_config_from_dict({"sampler": "fixed", "arch": '{"stages": []}', "sandwich": True})
