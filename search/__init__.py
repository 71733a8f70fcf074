"""NSGA-II search over the elastic space, Pareto fronts per resolution, reports, the CLIs (torch-free).

The public names load on first use, so that ``sned`` subcommands which only need ``sned.search.cli``
do not pay for pandas and pymoo::

    from sned.search import SearchConfig, run_search
    result = run_search(SearchConfig(budget_ms=200, resolutions=(128,)))
    result.fronts[128]
"""

from typing import Any

__all__ = ["SearchConfig", "SearchResult", "run_search"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from sned.search import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'sned.search' has no attribute {name!r}")
