"""Honest baselines through the same loop: random search and regularized evolution (aging)."""
from __future__ import annotations

from collections import deque
from typing import Any, Callable, Sequence

from lightning_nas.errors import ConfigError
from lightning_nas.search.strategy import Strategy
from lightning_nas.spaces.base import Architecture


class RandomSearch(Strategy):
    """Uniform samples of the space; the oracle answers repeats for free, so every query is new.
    Under `table_only`: uniform samples of the table's architectures not yet evaluated."""

    def __init__(self) -> None:
        self.evaluated: set[str] = set()  # under table_only: keys of every told architecture

    def ask(self, n: int) -> list[Architecture]:
        if self._answerable is not None:
            return self.sample_unseen(n, self.evaluated)
        return [self.space.sample(self.rng) for _ in range(n)]

    def tell(self, archs: Sequence[Architecture], scores: Sequence[float]) -> None:
        if self._answerable is not None:
            self.evaluated.update(self.space.key(a) for a in archs)

    def state_dict(self) -> dict[str, Any]:
        return {"evaluated": sorted(self.evaluated)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.evaluated = set(state.get("evaluated", []))

    def use_objectives(self, objectives) -> None:
        """Uniform samples serve any objectives: the loop keeps their front."""


class RegularizedEvolution(Strategy):
    """Real et al. (2019): a population of the newest `population_size` evaluations; each child is a
    one-edit mutation of the best of `sample_size` members drawn at random; the oldest dies.

    Under `table_only` a child the table lacks or that is already evaluated is edited again, up to
    `max_walk` edits: a table that samples its space (NB101: 30k of 423k cells) holds few of a
    cell's neighbours, and those of the best cells are soon all evaluated, so plain one-edit
    mutation stalls there. On a table that holds its whole space the walk never starts. After
    `WALKS_BEFORE_DRAW` walks in a row found nothing (a table that holds a small part of its space,
    such as a user's 30 cells), the child is an unevaluated cell of the table drawn at random."""

    #: failed walks in a row before a child is drawn from the table (seldom reached on NB101's 30k cells,
    #: so the committed searches are unchanged)
    WALKS_BEFORE_DRAW = 20

    def __init__(self, population_size: int = 10, sample_size: int = 3, max_walk: int = 200):
        if not 1 <= sample_size <= population_size:
            raise ConfigError(f"need 1 <= sample_size <= population_size, got {sample_size} and {population_size}")
        if max_walk < 1:
            raise ConfigError(f"max_walk must be >= 1, got {max_walk}")
        self.population_size, self.sample_size, self.max_walk = population_size, sample_size, max_walk
        self.population: deque[tuple[Architecture, float]] = deque(maxlen=population_size)
        self.evaluated: set[str] = set()  # under table_only: keys of every told architecture
        self.failed_walks = 0  # in a row

    def ask(self, n: int) -> list[Architecture]:
        if len(self.population) < self.population_size:
            return [self._walk(self.space.sample(self.rng), lambda _: self.space.sample(self.rng))
                    for _ in range(min(n, self.population_size - len(self.population)))]
        return [self._walk(self.space.mutate(self._tournament(), self.rng), lambda a: self.space.mutate(a, self.rng))
                for _ in range(n)]

    def _walk(self, a: Architecture, step: Callable[[Architecture], Architecture]) -> Architecture:
        """`a`, or under table_only the first of up to `max_walk` further steps that the table holds
        and that is not yet evaluated; failing that `WALKS_BEFORE_DRAW` times in a row, an
        unevaluated architecture of the table drawn at random."""
        if self._answerable is None:
            return a
        for _ in range(self.max_walk):
            if self._new(a):
                break
            a = step(a)
        self.failed_walks = 0 if self._new(a) else self.failed_walks + 1
        if self.failed_walks < self.WALKS_BEFORE_DRAW:
            return a  # (when it is not new, the loop skips it for free)
        self.failed_walks = 0
        return (self.sample_unseen(1, self.evaluated) or [a])[0]

    def _new(self, a: Architecture) -> bool:
        return self.answerable(a) and self.space.key(a) not in self.evaluated

    def _tournament(self) -> Architecture:
        picks = self.rng.choice(len(self.population), size=self.sample_size, replace=False)
        return max((self.population[i] for i in picks), key=lambda member: member[1])[0]

    def tell(self, archs: Sequence[Architecture], scores: Sequence[float]) -> None:
        self.population.extend(zip(archs, scores))
        if self._answerable is not None:  # only the walk reads them: no keys hashed on a full table
            self.evaluated.update(self.space.key(a) for a in archs)

    def state_dict(self) -> dict[str, Any]:
        return {
            "population": self._pack([a for a, _ in self.population]),
            "scores": [s for _, s in self.population],
            "evaluated": sorted(self.evaluated),
            "failed_walks": self.failed_walks,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.population.clear()
        self.population.extend(zip(self._unpack(state["population"]), state["scores"]))
        self.evaluated = set(state.get("evaluated", []))  # absent in checkpoints written before the walk
        self.failed_walks = int(state.get("failed_walks", 0))
