"""Benchmarks (`make bench`): each figure beside its baseline and target, measured in one run."""
