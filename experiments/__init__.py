"""Bundled experiments: YAML definitions and their small artifacts (latency tables, predictors)."""
