"""NSGA-II search over the elastic space, Pareto fronts per resolution, reports, the CLIs (torch-free)."""
