"""The NSGA-II problem on sned's integer genes, and the operators that keep every child a valid arch.

pymoo's defaults (float sampling, SBX, polynomial mutation) assume continuous variables. Here a
gene is the index of a choice, so the operators work on integers and return *canonical* rows
(``space.canonical``: attention genes of blocks beyond a stage's depth are 0), which makes equal
archs equal rows and lets duplicate elimination compare rows directly.

The resolution is fixed per run (one front per resolution): the problem's lower and upper bound
of the resolution gene are both its index, and no operator ever moves a gene outside its bounds.

Operators receive pymoo's ``random_state`` (a ``numpy.random.Generator`` seeded from the run's
seed), so the same seed gives the same front.
"""

from __future__ import annotations

import numpy as np
from pymoo.core.crossover import Crossover
from pymoo.core.duplicate import DuplicateElimination
from pymoo.core.mutation import Mutation
from pymoo.core.problem import Problem
from pymoo.core.sampling import Sampling

from sned.search.objectives import OBJECTIVES, Predictors, evaluate
from sned.supernet.space import SearchSpace


class SnedProblem(Problem):
    """Minimise the chosen objectives of subnets at one resolution, under a latency budget.

    ``_evaluate`` scores the whole population at once; every evaluated row is also appended to
    :attr:`archive` (the engine builds the front and the report's cloud of points from it).

    Args:
        space: the search space.
        predictors: scores populations (see :class:`sned.search.objectives.Predictors`).
        res: the resolution this problem is fixed to.
        objectives: names from :data:`sned.search.objectives.OBJECTIVES`.
        budget_ms: latency budget for the whole run (``steps`` forwards), or None for no constraint.
        steps: denoising steps the budget covers; the constraint is ``steps * latency + fixed_ms <= budget``.
        fixed_ms: a latent space's decoder, once per video.
        evaluated: a set that collects the key (``row.tobytes()``) of every evaluated canonical row;
            share it with :class:`CanonicalDuplicateElimination` so no arch is scored twice.
    """

    def __init__(self, space: SearchSpace, predictors: Predictors, res: int, objectives: tuple[str, ...],
                 budget_ms: float | None = None, steps: int = 1, evaluated: set[bytes] | None = None,
                 fixed_ms: float = 0.0):
        xl = np.zeros(space.n_genes, dtype=np.int64)
        xu = space.upper.copy()
        xl[0] = xu[0] = space.resolutions.index(res)
        super().__init__(n_var=space.n_genes, n_obj=len(objectives), n_ieq_constr=0 if budget_ms is None else 1,
                         xl=xl, xu=xu, vtype=int)
        self.space = space
        self.predictors = predictors
        self.res = res
        self.objectives = objectives
        self.budget_ms = budget_ms
        self.steps = steps
        self.fixed_ms = float(fixed_ms)
        self.archive: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []  # (X, columns) per evaluated batch
        self.evaluated = evaluated if evaluated is not None else set()

    def _evaluate(self, x, out, *args, **kwargs):
        X = self.space.canonical(np.rint(x).astype(np.int64))
        cols = evaluate(self.space, self.predictors, X)
        self.archive.append((X, cols))
        self.evaluated.update(row.tobytes() for row in X)
        out["F"] = np.column_stack([cols[OBJECTIVES[name][0]] for name in self.objectives]).astype(np.float64)
        if self.budget_ms is not None:
            out["G"] = (self.steps * cols["latency_ms"] + self.fixed_ms - self.budget_ms)[:, None]


class SpaceSampling(Sampling):
    """Uniform valid archs: each gene uniform over its choices within the problem's bounds, canonical."""

    def __init__(self, space: SearchSpace):
        super().__init__()
        self.space = space

    def _do(self, problem, n_samples, *args, random_state=None, **kwargs):
        X = random_state.integers(problem.xl, problem.xu + 1, size=(n_samples, problem.n_var))
        return self.space.canonical(X)


class UniformCrossover(Crossover):
    """Two parents -> two children; each gene comes from either parent with probability 1/2.

    The second child takes the other parent's gene everywhere, so no gene value is lost.
    """

    def __init__(self, space: SearchSpace, prob: float = 0.9):
        super().__init__(n_parents=2, n_offsprings=2, prob=prob)
        self.space = space

    def _do(self, problem, X, *args, random_state=None, **kwargs):
        _, n_matings, n_var = X.shape  # (parents, matings, genes)
        take_first = random_state.random((n_matings, n_var)) < 0.5
        first = np.where(take_first, X[0], X[1])
        second = np.where(take_first, X[1], X[0])
        children = np.stack([first, second]).astype(np.int64)
        return self.space.canonical(children.reshape(-1, n_var)).reshape(children.shape)


class ChoiceMutation(Mutation):
    """Redraw genes: each free gene, with probability ``prob_var``, takes a *different* choice.

    Genes whose bounds allow one value (the fixed resolution) never change. ``prob_var`` defaults
    to ``1 / number of free genes``, one redraw per child on average.
    """

    def __init__(self, space: SearchSpace, prob: float = 1.0, prob_var: float | None = None):
        super().__init__(prob=prob)
        self.space = space
        self.gene_prob = prob_var

    def _do(self, problem, X, *args, random_state=None, **kwargs):
        X = np.rint(X).astype(np.int64)
        xl, xu = problem.xl.astype(np.int64), problem.xu.astype(np.int64)
        n_choices = xu - xl + 1
        free = n_choices > 1
        prob_var = self.gene_prob if self.gene_prob is not None else 1.0 / max(int(free.sum()), 1)
        redraw = (random_state.random(X.shape) < prob_var) & free
        # A different choice, uniform over the others: shift by 1..(k-1) modulo k.
        shift = 1 + np.floor(random_state.random(X.shape) * np.maximum(n_choices - 1, 1)).astype(np.int64)
        moved = xl + (X - xl + shift) % n_choices
        return self.space.canonical(np.where(redraw, moved, X))


class CanonicalDuplicateElimination(DuplicateElimination):
    """Drop rows whose canonical genes equal an earlier row, a row of ``other``, or an evaluated arch.

    Rows are compared by hashing (exact for integer genes, cheaper than pymoo's default pairwise
    distances). With ``evaluated`` (the set :class:`SnedProblem` fills), offspring that were
    already scored in an earlier generation are dropped too, so every evaluation is a new arch.
    """

    def __init__(self, space: SearchSpace, evaluated: set[bytes] | None = None):
        super().__init__(func=lambda pop: space.canonical(np.rint(pop.get("X")).astype(np.int64)))
        self.evaluated = evaluated if evaluated is not None else set()

    def _do(self, pop, other, is_duplicate):
        seen = set() if other is None else {row.tobytes() for row in self.func(other)}
        for i, row in enumerate(self.func(pop)):
            key = row.tobytes()
            if key in seen or key in self.evaluated:
                is_duplicate[i] = True
            else:
                seen.add(key)
        return is_duplicate


def make_nsga2(space: SearchSpace, pop_size: int, evaluated: set[bytes] | None = None):
    """An ``NSGA2`` with sned's operators, every one a fresh instance (never shared defaults).

    Pass the problem's ``evaluated`` set to never score an arch twice.
    """
    from pymoo.algorithms.moo.nsga2 import NSGA2, RankAndCrowding, binary_tournament
    from pymoo.operators.selection.tournament import TournamentSelection

    return NSGA2(pop_size=pop_size,
                 sampling=SpaceSampling(space),
                 selection=TournamentSelection(func_comp=binary_tournament),
                 crossover=UniformCrossover(space),
                 mutation=ChoiceMutation(space),
                 survival=RankAndCrowding(),
                 eliminate_duplicates=CanonicalDuplicateElimination(space, evaluated))


def archive_arrays(problem: SnedProblem) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Everything the problem evaluated: ``(X, columns, batch index)`` concatenated over batches."""
    if not problem.archive:
        return np.empty((0, problem.n_var), dtype=np.int64), {}, np.empty(0, dtype=np.int64)
    X = np.concatenate([x for x, _ in problem.archive])
    cols = {k: np.concatenate([c[k] for _, c in problem.archive]) for k in problem.archive[0][1]}
    batch = np.concatenate([np.full(len(x), i, dtype=np.int64) for i, (x, _) in enumerate(problem.archive)])
    return X, cols, batch


__all__ = ["CanonicalDuplicateElimination", "ChoiceMutation", "SnedProblem", "SpaceSampling", "UniformCrossover",
           "archive_arrays", "make_nsga2"]
