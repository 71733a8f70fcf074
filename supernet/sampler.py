"""Arch samplers for supernet training: uniform, dynamic-cost buckets with a sampling warm-up, sandwich.

Torch-free. Every sampler is a pure function of ``(seed, step, res)``: the arch(s) of a step come
from a generator seeded by those three numbers, so all data-parallel ranks pick the same subnet
without talking to each other, and a resumed run picks exactly what an uninterrupted one would.
``state_dict()`` therefore holds settings and a fingerprint of the candidate pools, which a resumed
run compares with its own.

* :class:`UniformSampler`: every gene uniform (``space.sample``).
* :class:`DynamicCostSampler`: per resolution, candidates (every arch when the space is small
  enough to enumerate, else a seeded pool) are split into ``buckets`` cost quantiles (params or
  FLOPs); a step picks a bucket uniformly, then an arch in it uniformly. So small and large
  subnets get equal training however many archs each cost range holds (uniform gene sampling
  concentrates around the median cost). **Warm-up:** over the first ``warmup_steps`` steps the
  lowest allowed bucket goes linearly from the top bucket down to 0: training starts on the largest
  subnets and widens to the whole space.
* :class:`FixedSampler`: one subnet at every step (its stages; the resolution follows the step):
  a static network trained alone in the supernet's weights, the baseline that weight sharing is
  compared against.
* ``sandwich=True`` (on the uniform or dynamic sampler): the largest subnet, the cheapest subnet currently allowed,
  and one sampled subnet, whose gradients the trainer accumulates (the sandwich rule of BigNAS).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sned.supernet.space import Arch, SearchSpace, SpaceError

ENUMERATE_LIMIT = 200_000  # archs per resolution up to which the dynamic sampler enumerates them all


def step_rng(seed: int, step: int, stream: int) -> np.random.Generator:
    """The generator of one purpose (``stream``) at one step: seeded by ``(seed, step, stream)``."""
    return np.random.default_rng([int(seed), int(step), int(stream)])


class UniformSampler:
    """Every gene uniform over its choices.

    Args:
        space: the search space.
        seed: the run seed.
        sandwich: return ``[largest, smallest, sampled]`` instead of ``[sampled]``.
    """

    kind = "uniform"

    def __init__(self, space: SearchSpace, seed: int, sandwich: bool = False):
        self.space, self.seed, self.sandwich = space, int(seed), bool(sandwich)

    def _sampled(self, step: int, res: int) -> Arch:
        return self.space.sample(step_rng(self.seed, step, 1), res=res)

    def _smallest(self, step: int, res: int) -> Arch:
        return self.space.smallest(res)

    def sample(self, step: int, res: int) -> list[Arch]:
        """The arch(s) to train at ``step`` and resolution ``res`` (1, or 3 with the sandwich rule)."""
        arch = self._sampled(step, res)
        if not self.sandwich:
            return [arch]
        return [self.space.largest(res), self._smallest(step, res), arch]

    def state_dict(self) -> dict[str, Any]:
        """Settings (and pool fingerprints): what a resumed run must agree with."""
        return {"kind": self.kind, "seed": self.seed, "sandwich": self.sandwich, "space_hash": self.space.hash}

    def check_state(self, state: dict[str, Any]) -> None:
        """Raise ``ValueError`` naming the first setting that differs from a saved ``state_dict()``."""
        mine = self.state_dict()
        for key in sorted(set(mine) | set(state)):
            if mine.get(key) != state.get(key):
                raise ValueError(f"arch sampler {key} differs: checkpoint {state.get(key)!r}, now {mine.get(key)!r}")


class DynamicCostSampler(UniformSampler):
    """Pick a cost bucket uniformly, then an arch inside it; widen from the top bucket over the warm-up.

    Args:
        space: the search space.
        seed: the run seed (it also seeds the candidate pool of big spaces).
        cost: ``"params"`` or ``"flops"``.
        buckets: number of cost quantile buckets per resolution.
        warmup_steps: steps over which the allowed range widens from the top bucket to all.
        pool: candidates per resolution when the space has more than ``enumerate_limit`` archs there.
        sandwich: see :class:`UniformSampler`.
        enumerate_limit: enumerate every arch of a resolution up to this many.
    """

    kind = "dynamic"

    def __init__(self, space: SearchSpace, seed: int, cost: str = "flops", buckets: int = 8,
                 warmup_steps: int = 0, pool: int = 20000, sandwich: bool = False,
                 enumerate_limit: int = ENUMERATE_LIMIT):
        super().__init__(space, seed, sandwich)
        self.enumerate_limit = int(enumerate_limit)
        if cost not in ("params", "flops"):
            raise SpaceError(f"cost = {cost!r}; valid: ['flops', 'params']")
        if buckets < 1 or pool < 1 or warmup_steps < 0:
            raise ValueError(f"need buckets >= 1, pool >= 1, warmup_steps >= 0; got {buckets}, {pool}, {warmup_steps}")
        self.cost, self.buckets, self.warmup_steps, self.pool = cost, int(buckets), int(warmup_steps), int(pool)
        self._tables: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def candidates(self, res: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Gene rows ``(n, n_genes)``, their costs ``(n,)`` and bucket indices ``(n,)`` at ``res`` (cached)."""
        if res not in self._tables:
            space = self.space
            if space.count(res) <= self.enumerate_limit:
                X = space.enumerate(res)
            else:  # a seeded pool, plus both extremes so the top and bottom buckets reach them
                rng = np.random.default_rng([self.seed, res, 7919])
                extremes = space.encode([space.largest(res), space.smallest(res)])
                X = np.unique(np.concatenate([space.sample_genes(rng, self.pool, res), extremes]), axis=0)
            costs = (space.params(X) if self.cost == "params" else space.flops(X)).astype(np.float64)
            # Quantile edges; ranks break ties so every bucket gets (nearly) equal counts.
            ranks = np.argsort(np.argsort(costs, kind="stable"), kind="stable")
            bucket = np.minimum(ranks * self.buckets // len(X), self.buckets - 1)
            self._tables[res] = (X, costs, bucket)
        return self._tables[res]

    def lowest_bucket(self, step: int) -> int:
        """The cheapest bucket allowed at ``step``: ``buckets - 1`` at step 0, 0 from ``warmup_steps`` on."""
        if self.warmup_steps <= 0 or step >= self.warmup_steps:
            return 0
        return int(np.ceil((self.buckets - 1) * (1.0 - step / self.warmup_steps)))

    def _sampled(self, step: int, res: int) -> Arch:
        X, _, bucket = self.candidates(res)
        rng = step_rng(self.seed, step, 1)
        chosen = int(rng.integers(self.lowest_bucket(step), self.buckets))
        members = np.flatnonzero(bucket == chosen)
        return self.space.decode(X[members[rng.integers(len(members))]])[0]

    def _smallest(self, step: int, res: int) -> Arch:
        X, costs, bucket = self.candidates(res)
        allowed = np.flatnonzero(bucket >= self.lowest_bucket(step))
        return self.space.decode(X[allowed[np.argmin(costs[allowed])]])[0]

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict() | {"cost": self.cost, "buckets": self.buckets,
                                        "warmup_steps": self.warmup_steps, "pool": self.pool}
        digest = hashlib.sha256()
        for res in self.space.resolutions:
            digest.update(np.ascontiguousarray(self.candidates(res)[0]).tobytes())
        state["candidates_sha256"] = digest.hexdigest()[:16]
        return state


class FixedSampler(UniformSampler):
    """The same subnet at every step: ``arch``'s stages at the step's resolution.

    Args:
        space: the search space.
        seed: the run seed (recorded; nothing is drawn).
        arch: the subnet, ``{"stages": [...]}`` (a ``res`` key is ignored: the step sets it).

    Raises:
        SpaceError: ``arch`` is not a subnet of ``space``.
    """

    kind = "fixed"

    def __init__(self, space: SearchSpace, seed: int, arch: Mapping[str, Any]):
        super().__init__(space, seed, sandwich=False)
        if not isinstance(arch, Mapping):
            raise SpaceError(f"train.arch: expected a mapping like {{'stages': [...]}}, got {type(arch).__name__}")
        stages = space.validate({"res": space.resolutions[0], "stages": arch.get("stages")})["stages"]
        self.stages = [dict(stage) for stage in stages]

    def _sampled(self, step: int, res: int) -> Arch:
        return self.space.validate({"res": res, "stages": self.stages})

    def state_dict(self) -> dict[str, Any]:
        return super().state_dict() | {"arch": json.dumps(self.stages, sort_keys=True)}


def make_sampler(space: SearchSpace, seed: int, kind: str = "dynamic", *, cost: str = "flops", buckets: int = 8,
                 warmup_steps: int = 0, pool: int = 20000, sandwich: bool = False,
                 arch: Mapping[str, Any] | None = None) -> UniformSampler:
    """The arch sampler named ``kind`` (``"uniform"``, ``"dynamic"`` or ``"fixed"``, which trains ``arch``)."""
    if kind == "uniform":
        return UniformSampler(space, seed, sandwich)
    if kind == "dynamic":
        return DynamicCostSampler(space, seed, cost, buckets, warmup_steps, pool, sandwich)
    if kind == "fixed":
        if arch is None or sandwich:
            raise SpaceError("sampler = 'fixed' needs an arch and no sandwich rule")
        return FixedSampler(space, seed, arch)
    raise SpaceError(f"sampler = {kind!r}; valid: ['dynamic', 'fixed', 'uniform']")


def resolution_at(space: SearchSpace, seed: int, step: int, weights: Sequence[float] | None = None) -> int:
    """The resolution of a step, seeded by ``(seed, step)``: uniform, or drawn with ``weights``.

    ``weights`` (one per resolution of the space, any positive scale) set how often each resolution
    is trained; an empty sequence or None means uniform.
    """
    rng = step_rng(seed, step, 0)
    if not weights:
        return int(space.resolutions[int(rng.integers(len(space.resolutions)))])
    p = np.asarray(weights, dtype=np.float64)
    if p.shape != (len(space.resolutions),) or (p < 0).any() or p.sum() <= 0:
        raise SpaceError(f"resolution weights {list(weights)}: expected {len(space.resolutions)} non-negative "
                         f"numbers (one per resolution {list(space.resolutions)}) with a positive sum")
    return int(space.resolutions[int(rng.choice(len(p), p=p / p.sum()))])


__all__ = ["DynamicCostSampler", "ENUMERATE_LIMIT", "FixedSampler", "UniformSampler", "make_sampler", "resolution_at", "step_rng"]
