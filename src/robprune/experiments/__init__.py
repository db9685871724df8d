"""Experiments: the cached-unit store, the grid of arms, the digits demo and ``reproduce``."""
