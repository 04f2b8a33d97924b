"""Benchmark archives, their converters and the oracles that answer queries from them."""
from lightning_nas.benchmarks.converters import tables  # noqa: F401  (registers the reader of tables)
