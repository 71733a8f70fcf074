import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sned.supernet.space import SpaceError, arch_id, load_space, parse_space_spec

EXPERIMENTS = ["tiny", "pixel-1.6b", "latent"]


@pytest.fixture(scope="module")
def tiny():
    return load_space("tiny")


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_bundled_experiments_load(name):
    space = load_space(name)
    assert space.n_genes == len(space.genes) == len(space.upper)
    assert space.size == sum(space.count(r) for r in space.resolutions)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), which=st.sampled_from(EXPERIMENTS))
def test_encode_decode_round_trip(seed, which):
    space = load_space(which)
    rng = np.random.default_rng(seed)
    archs = [space.sample(rng) for _ in range(5)]
    X = space.encode(archs)
    assert X.shape == (5, space.n_genes)
    assert space.decode(X) == archs
    assert (space.encode(space.decode(X)) == X).all()
    json.dumps(archs)  # plain JSON types, no numpy scalars


def test_decode_canonicalises_irrelevant_genes(tiny):
    X = tiny.upper[None].copy()
    depth_gene = [i for i, g in enumerate(tiny.genes) if g.label == "stage2.depth"][0]
    X[0, depth_gene] = 0  # depth 1: the attn1 gene of stage 2 no longer matters
    arch = tiny.decode(X)[0]
    assert arch["stages"][2] == {"width": 128, "depth": 1, "attn": [1]}
    assert tiny.encode(arch)[0, -1] == 0


def test_enumerate_matches_count_and_is_unique(tiny):
    X = tiny.enumerate(res=128)
    assert len(X) == tiny.count(128) == 1296
    assert len(np.unique(X, axis=0)) == len(X)
    assert (tiny.canonical(X) == X).all()
    assert len({arch_id(a) for a in tiny.decode(X[:300])}) == 300
    assert len(tiny.enumerate()) == tiny.size == 3 * 1296


def test_sampling_is_explicitly_seeded(tiny):
    a = tiny.sample_genes(np.random.default_rng(7), 50, res=64)
    b = tiny.sample_genes(np.random.default_rng(7), 50, res=64)
    assert (a == b).all() and (tiny.values(a)[:, 0] == 64).all()


def test_largest_smallest_bound_the_costs(tiny):
    X = tiny.enumerate(res=64)
    p, f = tiny.params(X), tiny.flops(X)
    assert p.max() == tiny.params(tiny.largest(64))[0] and p.min() == tiny.params(tiny.smallest(64))[0]
    assert f.max() == tiny.flops(tiny.largest(64))[0] and f.min() == tiny.flops(tiny.smallest(64))[0]
    assert (tiny.flops(tiny.enumerate(res=128)) > f).all()  # same archs, bigger input


def test_paper_scale_space_matches_the_paper():
    space = load_space("pixel-1.6b")
    p = space.params([space.smallest(64), space.largest(256)])
    assert 0.60e9 <= p[0] <= 0.70e9 and 1.55e9 <= p[1] <= 1.65e9


def test_nni_declaration_mirrors_the_genes(tiny):
    simplified = tiny.declaration().simplify()
    assert list(simplified) == [g.label for g in tiny.genes]
    assert [tuple(c.values) for c in simplified.values()] == [g.choices for g in tiny.genes]


@pytest.mark.parametrize("mutate, message", [
    (lambda a: a.update(res=96), "arch.res = 96 is not in the space; valid: [32, 64, 128]"),
    (lambda a: a["stages"][1].update(width=80), "arch.stages[1].width = 80 is not a valid choice; valid: [32, 64, 96]"),
    (lambda a: a["stages"][0].update(depth=3), "arch.stages[0].depth = 3 is not a valid choice; valid: [1, 2]"),
    (lambda a: a["stages"][0].update(attn=[1]), "arch.stages[0].attn[0] = 1 is not a valid choice; valid: [0]"),
    (lambda a: a["stages"][2].update(attn=[1, 1, 0]), "arch.stages[2].attn = [1, 1, 0]: expected 1 flags"),
    (lambda a: a.update(extra=1), "arch: unknown key 'extra'; valid keys: res, stages"),
])
def test_invalid_arch_names_field_value_and_choices(tiny, mutate, message):
    arch = tiny.smallest(128)
    mutate(arch)
    with pytest.raises(SpaceError) as err:
        tiny.validate(arch)
    assert message in str(err.value)


@pytest.mark.parametrize("section, message", [
    ({"resolutions": [64], "frames": 8, "stages": [{"widths": [48], "depths": [1]}]}, "48 is not a multiple of 32"),
    ({"resolutions": [64], "frames": 8, "stages": [{"widths": [32], "depths": [1], "heads": 2}]},
     "unknown key 'heads'"),
    ({"resolutions": [66], "frames": 8, "stages": [{"widths": [32], "depths": [1]}] * 3}, "66 is not divisible by 4"),
    ({"frames": 8, "stages": [{"widths": [32], "depths": [1]}]}, "space.resolutions is missing"),
    ({"resolutions": [64], "frames": 8, "stages": [{"widths": [32], "depths": []}]}, "space.stages[0].depths"),
])
def test_invalid_space_definition_is_one_clear_error(section, message):
    with pytest.raises(SpaceError) as err:
        parse_space_spec(section)
    assert message in str(err.value)


def test_invalid_yaml_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("space: [unclosed\n")
    with pytest.raises(SpaceError, match="not valid YAML"):
        load_space(bad)
    with pytest.raises(FileNotFoundError, match="unknown experiment 'nope'"):
        load_space("nope")


def test_space_hash_tracks_the_definition(tiny):
    assert load_space("tiny").hash == tiny.hash != load_space("latent").hash
