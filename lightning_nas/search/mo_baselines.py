"""Multi-objective baselines through the same loop: regularized evolution with NSGA-II's selection.
(Random search serves several objectives as it is: `lightning_nas.search.baselines.RandomSearch`.)"""
from __future__ import annotations

import numpy as np

from lightning_nas.errors import ConfigError
from lightning_nas.search.baselines import RegularizedEvolution
from lightning_nas.search.objectives import Objectives
from lightning_nas.search.pareto import crowded_order
from lightning_nas.spaces.base import Architecture


class MultiObjectiveRE(RegularizedEvolution):
    """Regularized evolution (Real et al., 2019) with the parent selection of NSGA-II (Deb et al.,
    2002): the population is the newest `population_size` evaluations (aging: the oldest dies), and
    each child is a one-edit mutation of the best of `sample_size` members drawn at random, best by
    the crowded comparison within the population: feasible before infeasible (less violation
    first), then the lower non-domination front, then the larger crowding distance. With one
    objective and constraints it is constrained regularized evolution."""

    objectives: Objectives | None = None

    def use_objectives(self, objectives: Objectives) -> None:
        self.objectives = objectives

    def ask(self, n: int) -> list[Architecture]:
        if self.objectives is None:
            raise ConfigError("MultiObjectiveRE needs `objectives:` (or `constraints:`) in the search config; "
                              "for one objective use lightning_nas.search.baselines.RegularizedEvolution")
        return super().ask(n)

    def _tournament(self) -> Architecture:
        archs = [a for a, _ in self.population]
        values = self.objectives.observed(archs)
        key = crowded_order(self.objectives.minimised(values), self.objectives.violation(values))
        picks = self.rng.choice(len(archs), size=self.sample_size, replace=False)
        return archs[int(picks[np.argmin(key[picks])])]
