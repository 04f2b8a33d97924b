"""Honest baselines through the same loop: random search and regularized evolution (aging)."""
from __future__ import annotations

from collections import deque
from typing import Any, Sequence

from lightning_nas.search.strategy import Strategy
from lightning_nas.spaces.base import Architecture


class RandomSearch(Strategy):
    """Uniform samples of the space; the oracle answers repeats for free, so every query is new."""

    def ask(self, n: int) -> list[Architecture]:
        return [self.space.sample(self.rng) for _ in range(n)]

    def tell(self, archs: Sequence[Architecture], scores: Sequence[float]) -> None:
        pass


class RegularizedEvolution(Strategy):
    """Real et al. (2019): a population of the newest `population_size` evaluations; each child is a
    one-edit mutation of the best of `sample_size` members drawn at random; the oldest dies."""

    def __init__(self, population_size: int = 10, sample_size: int = 3):
        if not 1 <= sample_size <= population_size:
            raise ValueError(f"need 1 <= sample_size <= population_size, got {sample_size} and {population_size}")
        self.population_size, self.sample_size = population_size, sample_size
        self.population: deque[tuple[Architecture, float]] = deque(maxlen=population_size)

    def ask(self, n: int) -> list[Architecture]:
        if len(self.population) < self.population_size:
            return [self.space.sample(self.rng) for _ in range(min(n, self.population_size - len(self.population)))]
        return [self.space.mutate(self._tournament(), self.rng) for _ in range(n)]

    def _tournament(self) -> Architecture:
        picks = self.rng.choice(len(self.population), size=self.sample_size, replace=False)
        return max((self.population[i] for i in picks), key=lambda member: member[1])[0]

    def tell(self, archs: Sequence[Architecture], scores: Sequence[float]) -> None:
        self.population.extend(zip(archs, scores))

    def state_dict(self) -> dict[str, Any]:
        return {
            "population": self._pack([a for a, _ in self.population]),
            "scores": [s for _, s in self.population],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.population.clear()
        self.population.extend(zip(self._unpack(state["population"]), state["scores"]))
