"""A benchmark-table oracle that takes its time, as real evaluations do: a kill then lands mid-search.
Imported by the search subprocesses of tests/test_resume.py (tests/ is on their PYTHONPATH)."""
import time

from lightning_nas.benchmarks.archive import Benchmark
from lightning_nas.benchmarks.oracle import TabularOracle


class SlowTabularOracle(TabularOracle):
    def __init__(self, benchmark: str, objective: str, report: list[str] = (), delay: float = 0.02):
        super().__init__(Benchmark.load(benchmark), objective, list(report))
        self.delay = delay

    def _evaluate(self, a):
        time.sleep(self.delay)
        return super()._evaluate(a)
