"""The NSGA-II problem and its integer operators (sned/search/problem.py)."""

import numpy as np
import pytest
from pymoo.core.population import Population

from sned.search.objectives import evaluate
from sned.search.problem import (
    CanonicalDuplicateElimination,
    ChoiceMutation,
    SnedProblem,
    SpaceSampling,
    UniformCrossover,
    make_nsga2,
)


@pytest.fixture
def problem(space, analytic):
    return SnedProblem(space, analytic, 128, ("fvd", "latency"), budget_ms=600.0, steps=3)


def _attn_inactive(space, X):
    """Mask of attention genes that belong to blocks beyond their stage's depth (canonically 0)."""
    V = space.values(X)
    mask = np.zeros(X.shape, dtype=bool)
    for g, gene in enumerate(space.genes):
        if gene.field == "attn":
            depth_gene = next(i for i, h in enumerate(space.genes) if h.stage == gene.stage and h.field == "depth")
            mask[:, g] = V[:, depth_gene] <= gene.block
    return mask


def test_sampling_gives_canonical_rows_at_the_fixed_resolution(space, problem):
    X = SpaceSampling(space).do(problem, 200, random_state=np.random.default_rng(0)).get("X")
    assert X.shape == (200, space.n_genes)
    assert (X[:, 0] == space.resolutions.index(128)).all()
    assert (X >= 0).all() and (X <= space.upper).all()
    np.testing.assert_array_equal(X, space.canonical(X))
    assert len({row.tobytes() for row in X}) > 150  # uniform over a 1,296-arch space: few repeats


def test_uniform_crossover_mixes_parents_gene_by_gene(space, problem):
    rng = np.random.default_rng(1)
    parents = np.stack([space.sample_genes(rng, 50, 128), space.sample_genes(rng, 50, 128)])  # (2, matings, genes)
    children = UniformCrossover(space)._do(problem, parents, random_state=rng)
    assert children.shape == parents.shape
    inactive = np.stack([_attn_inactive(space, c) for c in children])
    from_a_parent = (children == parents[0]) | (children == parents[1])
    assert (from_a_parent | (inactive & (children == 0))).all()
    # the second child takes the other parent's gene wherever the first took one parent's
    swapped = (children[0] == parents[1]) & (children[1] == parents[0])
    kept = (children[0] == parents[0]) & (children[1] == parents[1])
    assert (swapped | kept | inactive[0] | inactive[1]).all()
    for c in children:
        np.testing.assert_array_equal(c, space.canonical(c))


def test_choice_mutation_redraws_to_a_different_valid_choice(space, problem):
    rng = np.random.default_rng(2)
    X = space.sample_genes(rng, 300, 128)
    Y = ChoiceMutation(space, prob_var=1.0)._do(problem, X, random_state=rng)
    assert (Y[:, 0] == X[:, 0]).all()  # the fixed resolution never moves
    assert (Y >= 0).all() and (Y <= space.upper).all()
    np.testing.assert_array_equal(Y, space.canonical(Y))
    structural = [g for g, gene in enumerate(space.genes) if gene.field in ("width", "depth")]
    assert (Y[:, structural] != X[:, structural]).all()  # prob_var=1: every free gene takes another value
    # default rate: about one redraw per child
    Z = ChoiceMutation(space)._do(problem, X, random_state=rng)
    changed = (Z[:, structural] != X[:, structural]).sum(axis=1)
    assert 0.2 < changed.mean() < 1.2


def test_duplicate_elimination_compares_canonical_genes(space):
    rng = np.random.default_rng(3)
    X = space.sample_genes(rng, 10, 128)
    noisy = X.copy()
    depth1 = [g for g, gene in enumerate(space.genes) if gene.field == "attn" and gene.block == 1]
    noisy[:, depth1] = 1  # set attention flags of blocks that may not exist
    pop = Population.new("X", np.concatenate([X, noisy[:3]]))
    elim = CanonicalDuplicateElimination(space)
    kept = elim.do(pop)
    canon = {r.tobytes() for r in space.canonical(np.concatenate([X, noisy[:3]]))}
    assert len(kept) == len(canon)
    # with the problem's set of evaluated archs, those are duplicates too
    evaluated = {r.tobytes() for r in X[:5]}
    assert len(CanonicalDuplicateElimination(space, evaluated).do(Population.new("X", X[:8]))) == len(
        {r.tobytes() for r in X[:8]} - evaluated)
    other = Population.new("X", X[:4])
    assert len(elim.do(Population.new("X", X), other)) == len({r.tobytes() for r in X[4:]} - {r.tobytes() for r in X[:4]})


def test_problem_evaluates_whole_populations_with_the_budget_constraint(space, analytic, problem):
    X = space.sample_genes(np.random.default_rng(4), 64, 128)
    out = {}
    problem._evaluate(X, out)
    cols = evaluate(space, analytic, X)
    np.testing.assert_allclose(out["F"], np.column_stack([cols["fvd_pred"], cols["latency_ms"]]))
    np.testing.assert_allclose(out["G"][:, 0], 3 * cols["latency_ms"] - 600.0)
    assert len(problem.archive) == 1 and len(problem.archive[0][0]) == 64


def test_make_nsga2_builds_fresh_operators(space):
    a, b = make_nsga2(space, 16), make_nsga2(space, 16)
    assert isinstance(a.mating.crossover, UniformCrossover) and isinstance(a.mating.mutation, ChoiceMutation)
    assert a.mating.crossover is not b.mating.crossover and a.initialization.sampling is not b.initialization.sampling
