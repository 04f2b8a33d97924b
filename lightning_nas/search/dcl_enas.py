"""DCL-ENAS search (Algorithm 1 of the paper): predictor-assisted evolution with infill sampling.

1. `initial_size` random architectures get a real evaluation; the predictor is fine-tuned on them.
2. Then, per `ask`: a population evolves for `generations` (t_gap) generations with the predictor as
   fitness: tournament selection of parents, uniform crossover, mutation, environmental selection
   of the best `population_size` by predicted score. The unevaluated candidates the predictor
   likes best (the infill, N_infill = at most `n`) are returned for a real evaluation; with
   `uncertainty_weight` > 0 the infill also favours candidates far (in the hard encoder's Manhattan
   distance) from every evaluated one, the paper's remedy for an evolution that over-exploits.
3. `tell` hands the new labels to `surrogate.update`, which fine-tunes the predictor on all labels.

The population survives between asks and is re-scored after every fine-tune; the best evaluated
architectures are re-injected so the evolution never forgets real results, and `random_candidates`
fresh cells join it, so a predictor that has learnt better can pull it out of a local optimum.
"""
from __future__ import annotations

import itertools
import math
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from lightning_nas.errors import ConfigError
from lightning_nas.clustering import manhattan
from lightning_nas.search.mo_modes import DCLENASMode
from lightning_nas.search.strategy import Strategy
from lightning_nas.search.surrogate import Surrogate, as_numpy
from lightning_nas.spaces.base import Architecture, SearchSpace


class DCLENAS(Strategy):
    surrogate_protocol = Surrogate
    mo: DCLENASMode | None = None  # the multi-objective mode (search/mo_modes.py)

    def __init__(
        self,
        initial_size: int = 10,
        population_size: int = 20,
        offspring_size: int = 50,
        generations: int = 5,
        tournament_size: int = 3,
        crossover_prob: float = 0.5,
        mutation_prob: float = 1.0,
        infill_size: int = 10,
        random_candidates: int = 0,
        uncertainty_weight: float = 0.0,
        table_draws: bool | None = None,
    ):
        """`random_candidates`: fresh random architectures that join the population before each
        round's evolution, so the predictor also weighs regions the population has left.
        `uncertainty_weight`: the infill ranks candidates by predicted score plus this weight times
        their uncertainty, measured as the hard encoder's Manhattan distance to the nearest evaluated
        (or already chosen) architecture; both terms in units of their spread over the candidates.
        0 = the predicted score alone. `table_draws`: under `table_only`, the random cells (initial,
        `random_candidates`, top-ups) are uniform draws of the table's rows (`Strategy.table_draws`)."""
        if random_candidates < 0 or uncertainty_weight < 0:
            raise ConfigError(f"random_candidates and uncertainty_weight must be >= 0, got {random_candidates} "
                             f"and {uncertainty_weight}")
        _check_positive(initial_size=initial_size, population_size=population_size,
                        offspring_size=offspring_size, generations=generations, infill_size=infill_size)
        if not 1 <= tournament_size <= population_size:
            raise ConfigError(f"need 1 <= tournament_size <= population_size, got {tournament_size} and {population_size}")
        for name, p in (("crossover_prob", crossover_prob), ("mutation_prob", mutation_prob)):
            if not 0.0 <= p <= 1.0:
                raise ConfigError(f"{name} must be a probability in [0, 1], got {p}")
        self.initial_size, self.population_size, self.offspring_size = initial_size, population_size, offspring_size
        self.generations, self.tournament_size, self.infill_size = generations, tournament_size, infill_size
        self.crossover_prob, self.mutation_prob = crossover_prob, mutation_prob
        self.random_candidates, self.uncertainty_weight = random_candidates, uncertainty_weight
        self.table_draws = bool(table_draws)
        self.evaluated: dict[tuple[int, ...], float] = {}
        #: asked but never told back (the oracle could not evaluate them): not proposed again
        self.unavailable: set[str] = set()  # canonical keys
        self.pending: list[Architecture] = []
        self.population: list[Architecture] = []
        self.predicted_candidates = 0

    def warm_start_size(self) -> int:
        return self.initial_size  # Alg. 1, step 1: the predictor guides only after these labels

    def setup(self, space: SearchSpace, rng: np.random.Generator, surrogate: Surrogate | None = None) -> None:
        space.require("path_encoding", by="DCL-ENAS (its infill measures distances between path encodings)")
        super().setup(space, rng, surrogate)
        self.evaluated_canonical: set[str] = set()

    def use_objectives(self, objectives) -> None:
        self.mo = DCLENASMode(objectives, self.surrogate, type(self).__name__)

    # --- ask / tell ----------------------------------------------------------------------
    def ask(self, n: int) -> list[Architecture]:
        want = min(n, self.infill_size)
        if len(self.evaluated) < self.initial_size:
            self.pending = self._random_unseen(min(want, self.initial_size - len(self.evaluated)))
        else:
            self.pending = self._infill(self._evolve(), want)
        return self.pending

    def tell(self, archs: Sequence[Architecture], scores: Sequence[float]) -> None:
        told = {a.genotype for a in archs}
        self.unavailable.update(self.space.canonical(a) for a in self.pending if a.genotype not in told)
        self.pending = []
        for a, s in zip(archs, scores):
            self.evaluated[a.genotype] = float(s)
            self.evaluated_canonical.add(self.space.canonical(a))
        if archs:
            self.surrogate.update(list(archs), [float(s) for s in scores])

    # --- evolution under the predictor -----------------------------------------------------
    def _evolve(self) -> dict[tuple[int, ...], float]:
        """Run `generations` generations; return every candidate seen with its predicted score."""
        population = self._unique(self.population + self._best_evaluated(self.population_size)
                                  + self._random_unseen(self.random_candidates))
        fitness = self._predict(population)
        seen = dict(zip((a.genotype for a in population), fitness))
        for _ in range(self.generations):
            parents = self._selection_fitness(population, fitness)
            children = [c for c in self._unique(self._offspring(population, parents)) if c.genotype not in seen]
            child_fitness = self._predict(children)
            seen.update(zip((c.genotype for c in children), child_fitness))
            pool, pool_fitness = population + children, np.concatenate([fitness, child_fitness])
            keep = np.argsort(-self._selection_fitness(pool, pool_fitness), kind="stable")[: self.population_size]
            population, fitness = [pool[i] for i in keep], pool_fitness[keep]
        self.population = population
        return seen

    def _selection_fitness(self, population: list[Architecture], fitness: np.ndarray) -> np.ndarray:
        """What selection maximises: the predicted score, or NSGA-II's crowded comparison (several objectives)."""
        return fitness if self.mo is None else -self.mo.selection_key(population, fitness)

    def _offspring(self, population: list[Architecture], fitness: np.ndarray) -> list[Architecture]:
        children = []
        for _ in range(self.offspring_size):
            child = self._tournament(population, fitness)
            if self.rng.random() < self.crossover_prob:
                child = self.space.crossover(child, self._tournament(population, fitness), self.rng)
            if self.rng.random() < self.mutation_prob:
                child = self.space.mutate(child, self.rng)
            if self.space.is_valid(child):
                children.append(child)
        return children

    def _tournament(self, population: list[Architecture], fitness: np.ndarray) -> Architecture:
        size = min(self.tournament_size, len(population))
        picks = self.rng.choice(len(population), size=size, replace=False)
        return population[int(picks[np.argmax(fitness[picks])])]

    def _infill(self, candidates: dict[tuple[int, ...], float], want: int) -> list[Architecture]:
        """The `want` candidates that compute something not yet evaluated with the best acquisition
        (the predicted score, plus the uncertainty bonus when `uncertainty_weight` > 0)."""
        self.predicted_candidates += len(candidates)
        canon = self.evaluated_canonical | self.unavailable
        options = self._new_candidates(candidates, canon)
        if self.mo is not None:  # greedy hypervolume improvement over the recorded front
            options = list(options)
            chosen = [options[i] for i in self.mo.select(options, np.array([candidates[a.genotype] for a in options]), want)]
        elif self.uncertainty_weight == 0:
            chosen = list(itertools.islice(options, want))  # stops checking once `want` are found
        else:
            chosen = self._most_promising(list(options), candidates, want)
        # an exhausted neighbourhood still has to make progress: top up with random new cells
        return chosen + self._random_unseen(want - len(chosen), exclude=canon)

    def _new_candidates(self, candidates: dict[tuple[int, ...], float], canon: set[str]) -> Iterator[Architecture]:
        """Best predicted first, the candidates whose canonical key is not in `canon`, nor evaluated,
        and that the oracle can answer; each one's key joins `canon` as it is yielded."""
        for genotype in sorted(candidates, key=lambda g: -candidates[g]):
            a = self.space.make(genotype)
            key = self.space.canonical(a)
            if genotype not in self.evaluated and key not in canon and self.answerable(a):
                canon.add(key)
                yield a

    def _most_promising(self, options: list[Architecture], candidates: dict[tuple[int, ...], float],
                        want: int) -> list[Architecture]:
        """Greedy infill by predicted score + weight x distance to the nearest evaluated or chosen cell."""
        if not options:
            return []
        predicted = torch.tensor([candidates[a.genotype] for a in options], dtype=torch.float64)
        encodings = self._path_encodings(options)
        evaluated = self._path_encodings([self.space.make(g) for g in self.evaluated])
        nearest = manhattan(encodings, evaluated).min(1).values
        acquisition = (predicted - predicted.mean()) / predicted.std(correction=0).clamp_min(1e-12)
        scale = self.uncertainty_weight / nearest.std(correction=0).clamp_min(1e-12)
        chosen: list[int] = []
        for _ in range(min(want, len(options))):
            value = acquisition + scale * nearest
            value[chosen] = -math.inf
            pick = int(value.argmax())
            chosen.append(pick)
            nearest = torch.minimum(nearest, manhattan(encodings, encodings[pick : pick + 1]).squeeze(1))
        return [options[i] for i in chosen]

    # --- helpers -------------------------------------------------------------------------
    def _path_encodings(self, archs: list[Architecture]) -> torch.Tensor:
        return torch.from_numpy(np.stack([self.space.path_encoding(a) for a in archs])).double()

    def _predict(self, archs: list[Architecture]) -> np.ndarray:
        if not archs:
            return np.empty(0)
        return as_numpy(self.surrogate.score(archs))

    def _best_evaluated(self, k: int) -> list[Architecture]:
        if self.mo is not None:
            return self.mo.elite(k)
        best = sorted(self.evaluated, key=lambda g: -self.evaluated[g])[:k]
        return [self.space.make(g) for g in best]

    def _unique(self, archs: list[Architecture]) -> list[Architecture]:
        return list({a.genotype: a for a in archs}.values())

    def _random_unseen(self, k: int, exclude: set[str] | None = None) -> list[Architecture]:
        """`k` random cells that compute something new (by canonical key, not in `exclude`, by
        default the evaluated and unavailable ones)."""
        exclude = self.evaluated_canonical | self.unavailable if exclude is None else exclude
        return self.sample_unseen(k, exclude, self.space.canonical)

    # --- resumption and reporting ----------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        genotypes = list(self.evaluated)
        return {
            "evaluated": [list(g) for g in genotypes],
            "scores": [self.evaluated[g] for g in genotypes],
            "population": self._pack(self.population),
            "unavailable": sorted(self.unavailable),
            "predicted_candidates": self.predicted_candidates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.evaluated = {tuple(g): float(s) for g, s in zip(state["evaluated"], state["scores"])}
        self.evaluated_canonical = {self.space.canonical(self.space.make(g)) for g in self.evaluated}
        self.population = self._unpack(state["population"])
        self.unavailable = set(state["unavailable"])
        self.predicted_candidates = int(state["predicted_candidates"])

    def stats(self) -> dict[str, Any]:
        return {
            "evaluated": len(self.evaluated),
            "predicted_candidates": self.predicted_candidates,
            "unavailable": len(self.unavailable),
        }


def _check_positive(**values: int) -> None:
    for name, v in values.items():
        if v < 1:
            raise ConfigError(f"{name} must be >= 1, got {v}")
