"""Which subnets ``sned evaluate`` measures, and which real clips each pass uses (torch-free).

* :func:`select_subnets`: per resolution, stratified over the FLOPs range, always with the largest
  and the smallest subnet (:func:`candidate_pool` for spaces too big to enumerate);
* the noise floor: :func:`parse_noise_floor` and :func:`noise_floor_subset` (the subnets measured
  a second time, independently);
* :func:`clip_subset`: the real videos (and clip epochs) of the first and the second pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sned.supernet.base.errors import SettingError
from sned.supernet.space import Arch, SearchSpace

ENUMERATE_LIMIT = 200_000  # archs per resolution up to which selection enumerates them all
DEFAULT_POOL = 20_000  # candidates per resolution drawn when the space is too big to enumerate
DEFAULT_SUBNETS = 8
NOISE_SEED_OFFSET = 1  # the noise-floor pass generates with seed + 1 (against another real subset)
NoiseFloor = int | str  # subnets per resolution measured twice, or "all"


def candidate_pool(space: SearchSpace, res: int, rng: np.random.Generator, pool: int = DEFAULT_POOL) -> np.ndarray:
    """The gene rows to select from at ``res``: every arch when at most :data:`ENUMERATE_LIMIT`, else a pool.

    The pool is ``pool`` uniform samples (deduplicated) plus the largest and the smallest arch.
    """
    if space.count(res) <= ENUMERATE_LIMIT:  # count() also refuses a resolution outside the space
        return space.enumerate(res)
    extremes = space.encode([space.largest(res), space.smallest(res)])
    return np.unique(np.concatenate([space.sample_genes(rng, pool, res), extremes]), axis=0)


def select_subnets(space: SearchSpace, res: int, n: int, rng: np.random.Generator,
                   pool: int = DEFAULT_POOL) -> list[Arch]:
    """``n`` subnets at ``res``, stratified over the FLOPs range, always with the largest and the smallest.

    1. Candidates: every arch at ``res`` (or a seeded pool, see :func:`candidate_pool`), by FLOPs.
    2. The largest and the smallest arch are always chosen.
    3. The other candidates, sorted by FLOPs, are cut into ``n - 2`` strata of equal count (FLOPs
       quantiles) and one arch is drawn uniformly from each: cheap, middle and expensive subnets
       are all represented, however the space's archs are distributed over cost.

    Args:
        space: the search space.
        res: the resolution.
        n: number of subnets (>= 2); all candidates when ``n`` exceeds their number.
        rng: the selection's generator (``np.random.default_rng([seed, res])`` in ``sned evaluate``).
        pool: pool size for spaces too big to enumerate.

    Returns:
        Canonical archs sorted by FLOPs (smallest first), all distinct.

    Raises:
        UserError: ``n < 2``. SpaceError: ``res`` not in the space.
    """
    if n < 2:
        raise SettingError("n_subnets", "{n_subnets} {value}: need at least 2 (the largest and the smallest subnet)",
                           value=n)
    X = candidate_pool(space, res, rng, pool)
    costs = space.flops(X)
    order = np.lexsort((*X.T[::-1], costs))  # by FLOPs, ties by genes: deterministic
    X, costs = X[order], costs[order]
    if n >= len(X):
        return space.decode(X)
    extremes = space.encode([space.smallest(res), space.largest(res)])
    matches = (X[:, None, :] == extremes[None]).all(axis=2)  # (len(X), 2): row is the smallest / largest
    chosen = [int(np.flatnonzero(matches[:, 0])[0]), int(np.flatnonzero(matches[:, 1])[0])]
    rest = np.flatnonzero(~matches.any(axis=1))
    for stratum in np.array_split(rest, n - 2) if n > 2 else []:
        chosen.append(int(stratum[rng.integers(len(stratum))]))
    return space.decode(X[np.sort(np.unique(chosen))])


def parse_noise_floor(value: Any) -> NoiseFloor:
    """``--noise-floor``: ``"all"`` or an integer >= 0 (subnets per resolution measured twice).

    Raises:
        UserError: anything else.
    """
    text = str(value).strip().lower()
    if text == "all":
        return "all"
    if isinstance(value, bool) or not text.isdigit():
        raise SettingError("noise_floor", "{noise_floor} {value!r}: expected 'all' or an integer >= 0 (subnets per "
                           "resolution measured twice)", value=value)
    return int(text)


def noise_floor_subset(archs: Sequence[Arch], m: NoiseFloor) -> list[Arch]:
    """``m`` of ``archs`` (sorted by cost) evenly spread over the list, both ends included; ``"all"``: every one."""
    if m == "all":
        return list(archs)
    if m <= 0 or not archs:
        return []
    if m >= len(archs):
        return list(archs)
    index = np.unique(np.round(np.linspace(0, len(archs) - 1, m)).astype(int))
    return [archs[i] for i in index]


def clip_subset(length: int, n: int, seed: int, second: bool = False, labels: Sequence[int] = ()
                ) -> tuple[list[tuple[int, int]], bool]:
    """Which real videos (and clip epochs) a pass uses: ``n`` of ``length``, as ``(video, epoch)`` pairs.

    1. The videos in an order seeded by ``seed`` (with ``labels``, reordered so that classes take
       turns: any prefix is spread over the classes).
    2. The first pass takes the first ``n`` of that order (epoch 0).
    3. The second pass takes the next ``n``, disjoint from the first, when ``length >= 2 n``; else
       the first ``n`` of an order seeded independently (``(seed, 1)``) at epoch 1, so that its clips
       start at other frames.

    Returns:
        ``(items, disjoint)``: the pairs, and whether they share no video with the first pass.

    Raises:
        UserError: ``n > length`` (a real set must not repeat videos).
    """
    if n > length:
        raise SettingError("real_videos", "{n} real clips requested but the data folder holds {length} usable videos; "
                           "lower {real_videos} (or {videos}) to at most {length}, or add videos", n=n, length=length)

    def order(rng: np.random.Generator) -> np.ndarray:
        perm = rng.permutation(length)
        if not len(labels):
            return perm
        classes = np.asarray(labels)[perm]
        turn = np.zeros(length, dtype=np.int64)  # how many of its class came before it in perm
        for c in np.unique(classes):
            turn[classes == c] = np.arange(int((classes == c).sum()))
        return perm[np.lexsort((np.arange(length), turn))]  # by turn, then by position in perm

    first = order(np.random.default_rng(seed))
    if not second:
        return [(int(i), 0) for i in first[:n]], True
    if 2 * n <= length:
        return [(int(i), 0) for i in first[n:2 * n]], True
    return [(int(i), 1) for i in order(np.random.default_rng([seed, 1]))[:n]], False


__all__ = ["DEFAULT_POOL", "DEFAULT_SUBNETS", "ENUMERATE_LIMIT", "NOISE_SEED_OFFSET", "NoiseFloor", "candidate_pool",
           "clip_subset", "noise_floor_subset", "parse_noise_floor", "select_subnets"]
