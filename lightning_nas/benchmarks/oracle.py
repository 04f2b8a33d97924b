"""Oracles answer "how good is this architecture?" and count what that cost."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from lightning_nas.benchmarks.archive import Benchmark
from lightning_nas.errors import ConfigError
from lightning_nas.spaces.base import Architecture, SearchSpace


class BudgetExhausted(RuntimeError):
    pass


class NotInBenchmark(KeyError):
    pass


@dataclass
class Evaluation:
    """What one oracle call returns: `score` drives the search (validation), `report` is for reporting only."""

    score: float
    report: dict[str, float] = field(default_factory=dict)
    cost: float = 0.0


class Oracle:
    """Counts unique queries, answers repeats from memory for free, refuses past the budget."""

    #: costly evaluations (training, proxies) are shared out among the ranks of a distributed search
    shard_evaluations: bool = False

    def __init__(self, space: SearchSpace, budget: int | None = None):
        if budget is not None and budget < 1:
            raise ConfigError(f"budget must be a positive number of queries, got {budget}")
        self.space = space
        self.budget = budget
        self.seen: dict[str, Evaluation] = {}
        self.prefetched: dict[str, Evaluation] = {}  # answers computed on other ranks, not yet counted

    @property
    def used(self) -> int:
        return len(self.seen)

    @property
    def remaining(self) -> float:
        return math.inf if self.budget is None else self.budget - self.used

    def evaluate(self, a: Architecture, key: str | None = None) -> Evaluation:
        """The answer for `a` (whose `space.key` is `key`, when the caller has it)."""
        key = self.space.key(a) if key is None else key
        if key in self.seen:
            return self.seen[key]
        if self.remaining <= 0:
            raise BudgetExhausted(f"the oracle budget of {self.budget} queries is spent")
        result = self.prefetched.pop(key) if key in self.prefetched else self._evaluate(a)
        self.seen[key] = result
        return result

    def contains(self, a: Architecture) -> bool:
        """Whether `a` can be answered (a table holds it, with an objective; other oracles answer every
        architecture)."""
        return True

    def draw(self, rng: np.random.Generator) -> Architecture | None:
        """A uniform draw among the architectures the oracle knows in advance (a table's answered
        rows), or None when it answers any architecture."""
        return None

    def capacity(self, answerable_only: bool = False) -> float:
        """How many architectures can be charged: those it holds (`answerable_only`: those it can
        answer with a score); unbounded for oracles that evaluate any architecture."""
        return math.inf

    def answerable(self) -> list[Architecture] | None:
        """Every architecture `contains` holds, when it is a finite list (a table's), else None."""
        return None

    def answer(self, a: Architecture) -> Evaluation | None:
        """Evaluate `a` without counting it (a rank's share of a distributed round); None if unknown."""
        try:
            return self._evaluate(a)
        except NotInBenchmark:
            return None

    def _evaluate(self, a: Architecture) -> Evaluation:
        raise NotImplementedError


class TabularOracle(Oracle):
    """Answers from a benchmark archive: `objective` is searched on, `report` columns are recorded."""

    def __init__(self, benchmark: Benchmark, objective: str, report: list[str] = (), budget: int | None = None):
        super().__init__(benchmark.space, budget)
        self.benchmark = benchmark
        self.objective = benchmark.column(objective)  # validates the names up front
        self.objective_name = objective
        self.report_columns = {name: benchmark.column(name) for name in report}
        self.scored = np.isfinite(self.objective)  # blank or NaN cells answer with a NaN score
        self._capacity = {False: len(benchmark), True: int(self.scored.sum())}
        self._answered_rows: np.ndarray | None = None

    def contains(self, a: Architecture) -> bool:
        i = self.benchmark.row(a)
        return i is not None and bool(self.scored[i])

    def capacity(self, answerable_only: bool = False) -> float:
        return self._capacity[answerable_only]

    def answerable(self) -> list[Architecture]:
        return [a for a, scored in zip(self.benchmark.archs(), self.scored) if scored]

    def draw(self, rng: np.random.Generator) -> Architecture:
        if self._answered_rows is None:
            self._answered_rows = np.flatnonzero(self.scored)
        i = self._answered_rows[int(rng.integers(len(self._answered_rows)))]
        return self.space.from_key(str(self.benchmark.keys[i]))

    def _evaluate(self, a: Architecture) -> Evaluation:
        i = self.benchmark.row(a)
        if i is None:
            raise NotInBenchmark(f"{a} is not in the benchmark archive")
        return Evaluation(
            score=float(self.objective[i]),
            report={name: float(col[i]) for name, col in self.report_columns.items()},
        )
