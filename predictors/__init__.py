"""Predictors of a subnet's cost and quality: latency tables, FVD/KVD, accuracy predictors.

The prediction side (``latency``, ``accuracy``) is torch-free; measuring and FVD need torch.
"""
