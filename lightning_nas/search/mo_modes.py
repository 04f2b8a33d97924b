"""The multi-objective modes of the five methods (our extension; docs/multi_objective.md).

Each method keeps its own way of proposing candidates and its predictor of the score (reached
through the `Surrogate` protocols only); a candidate's other objectives are costs computed exactly
from its network (params, FLOPs, latency: `lightning_nas.search.objectives`), never predicted. The
predicted score is put on the score's scale by matching the predictor's scores of the queried
architectures to their recorded scores in mean and spread (a monotone map), so that it can stand
beside the exact costs in a Pareto front. What changes per method:

- DCL-ENAS: the evolution under the predictor selects by NSGA-II's crowded comparison (tournament and
  environmental selection), the front of the queried cells is re-injected, and the infill is the
  greedy hypervolume-improvement choice among the candidates.
- CTNAS: each round draws random weights over the objectives (ParEGO); the controller's reward and
  the curriculum baseline's comparison score are the weighted probability that a sample beats the
  baseline: the comparator's P for the score, exact comparisons for costs; the queries are the
  greedy hypervolume-improvement choice among the scored samples.
- CR-LSO: each round draws random weights; the seeds of the latent-space ascent are the queried
  cells best by the augmented Tchebycheff scalarisation (ParEGO) of their recorded objectives.
- EDNAG: each generation run draws random weights; the fitness that guides the denoising is minus
  the scalarisation of (predicted score, exact costs); the generated cells are asked in the greedy
  hypervolume-improvement order.
- Delta-NAS: member i of the population keeps its own weights (evenly spread, as in MOEA/D); it steps
  to the neighbour with the best scalarised change (predicted gain and exact cost changes, each in
  units of its spread over the neighbours) and, with accept="improvement", moves only when the
  queried neighbour's recorded objectives scalarise better than its own.

Random weights come from the strategy's generator, so a resumed search draws the same ones.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from lightning_nas.search.objectives import Objectives
from lightning_nas.search.pareto import crowded_order, expected_improvement_order, hvi_order
from lightning_nas.search.surrogate import Surrogate, as_numpy
from lightning_nas.spaces.base import Architecture

RHO = 0.05  # ParEGO's augmentation of the Tchebycheff scalarisation (Knowles, 2006)


def tchebycheff(points: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The augmented Tchebycheff scalarisation of minimised points (lower is better)."""
    weighted = np.asarray(points) * weights
    return weighted.max(1) + RHO * weighted.sum(1)


class MultiObjectiveMode:
    """What the five modes share: candidates' estimated objectives, the recorded front, scalarisation
    and the hypervolume-improvement choice."""

    def __init__(self, objectives: Objectives, surrogate: Surrogate | None, by: str):
        objectives.require_estimates(by)
        self.objectives, self.surrogate = objectives, surrogate
        self.dims = len(objectives.objectives)
        self.score_column = next((j for j, o in enumerate(objectives.objectives)
                                  if objectives.kinds[o.name] == "score"), None)
        self.weights = np.full(self.dims, 1.0 / self.dims)
        self._calibration: tuple[int, float, float, float] | None = None

    # --- estimates -------------------------------------------------------------------------------
    def calibrate(self, predicted: np.ndarray) -> np.ndarray:
        """Predicted scores on the score's scale: the least-squares line from the predictor's scores of
        the queried architectures to their recorded scores (refreshed when new labels arrive; flat, at
        the mean, when the predictor's scores do not rise with the recorded ones)."""
        offset, slope, _ = self._fit()
        return offset + slope * np.asarray(predicted, dtype=np.float64)

    @property
    def spread(self) -> float:
        """The calibrated prediction's residual standard deviation on the queried architectures."""
        return self._fit()[2]

    def _fit(self) -> tuple[float, float, float]:
        queried = self.objectives.archs
        if self._calibration is None or self._calibration[0] != len(queried):
            fit = (0.0, 1.0, 0.0)
            if len(queried) >= 2 and self.surrogate is not None:
                own = as_numpy(self.surrogate.score(queried))
                recorded = np.array([score for score, _ in self.objectives.answers])
                covariance = float(np.mean((own - own.mean()) * (recorded - recorded.mean())))
                slope = max(covariance, 0.0) / max(float(own.var()), 1e-12)
                offset = float(recorded.mean() - slope * own.mean())
                fit = (offset, slope, float(np.std(recorded - offset - slope * own)))
            self._calibration = (len(queried), *fit)
        return self._calibration[1:]

    def points(self, archs: Sequence[Architecture], predicted: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Minimised objectives ([n, dims]) and constraint violation ([n], unknown parts 0) of candidates
        with these predicted scores (the predictor's own scale)."""
        score = self.calibrate(predicted) if predicted is not None else np.full(len(archs), np.nan)
        values = self.objectives.estimate(archs, score)
        return self.objectives.minimised(values), np.nan_to_num(self.objectives.violation(values))

    def recorded(self, archs: Sequence[Architecture]) -> tuple[np.ndarray, np.ndarray]:
        values = self.objectives.observed(archs)
        return self.objectives.minimised(values), self.objectives.violation(values)

    def front(self) -> np.ndarray:
        """Minimised objectives of the recorded front."""
        rows = self.objectives.front_rows()
        if not len(rows):
            return np.zeros((0, self.dims))
        return self.objectives.minimised(np.stack(self.objectives.values)[rows])

    # --- choices -----------------------------------------------------------------------------------
    def select(self, archs: Sequence[Architecture], predicted: np.ndarray, k: int | None = None) -> list[int]:
        """Up to `k` candidates, in order: the feasible ones by greedy expected hypervolume improvement
        over the recorded front (two objectives, the score and a cost: the score Gaussian around its
        calibrated prediction with the calibration's residual spread; otherwise the improvement at the
        estimate; one objective: best estimate first), then infeasible ones by violation."""
        points, violation = self.points(archs, predicted)
        feasible = np.flatnonzero(violation <= 0)
        reference = np.ones(self.dims)
        if self.dims == 1:
            chosen = np.argsort(points[feasible, 0], kind="stable").tolist()
        elif self.dims == 2 and self.score_column is not None:
            s, c = self.score_column, 1 - self.score_column
            sigma = self.spread / abs(self.objectives.objectives[s].reference - self.objectives.objectives[s].ideal)
            chosen = expected_improvement_order(points[feasible, s], sigma, points[feasible, c],
                                                self.front()[:, [s, c]], reference, k)
        else:
            chosen = hvi_order(points[feasible], self.front(), reference, k)
        order = [int(feasible[i]) for i in chosen]
        infeasible = np.flatnonzero(violation > 0)
        order += infeasible[np.argsort(violation[infeasible], kind="stable")].tolist()
        return order[:k] if k is not None else order

    def draw_weights(self, rng: np.random.Generator) -> None:
        """New random weights over the objectives (uniform on the simplex: ParEGO's per round)."""
        self.weights = rng.dirichlet(np.ones(self.dims)) if self.dims > 1 else np.ones(1)

    def scalarised(self, points: np.ndarray, violation: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Tchebycheff values under `weights` (the current ones by default), every infeasible point
        after every feasible one."""
        values = tchebycheff(points, self.weights if weights is None else weights)
        if (violation > 0).any():
            values = np.where(violation > 0, np.nanmax(values) + 1 + violation, values)
        return values


class DCLENASMode(MultiObjectiveMode):
    def selection_key(self, archs: Sequence[Architecture], predicted: np.ndarray) -> np.ndarray:
        """NSGA-II's crowded comparison as a key to sort ascending."""
        return crowded_order(*self.points(archs, predicted))

    def elite(self, k: int) -> list[Architecture]:
        """The `k` best queried cells by crowded comparison of their recorded objectives."""
        archs = self.objectives.archs
        if not archs:
            return []
        order = np.argsort(crowded_order(*self.recorded(archs)), kind="stable")[:k]
        return [archs[i] for i in order]


class CTNASMode(MultiObjectiveMode):
    def _cost_wins(self, first: Sequence[Architecture], second: Sequence[Architecture],
                   outer: bool) -> list[torch.Tensor]:
        """Per objective but the score: 1 where the first is better, 0.5 on ties, 0 where worse
        (exact costs), for aligned lists or, with `outer`, every row against every column."""
        a, _ = self.points(first, None)
        b, _ = self.points(second, None)
        out = []
        for j in range(self.dims):
            if j == self.score_column:
                continue
            x, y = (a[:, j, None], b[None, :, j]) if outer else (a[:, j], b[:, j])
            out.append(torch.from_numpy(0.5 * (np.sign(y - x) + 1)))
        return out

    def comparison(self, p_score: torch.Tensor, first: Sequence[Architecture], second: Sequence[Architecture],
                   outer: bool = False) -> torch.Tensor:
        """The weighted probability that `first` beats `second`: the comparator's `p_score` for the
        score, exact comparisons for costs, mixed by this round's weights."""
        wins = self._cost_wins(first, second, outer)
        total = torch.zeros_like(p_score, dtype=torch.float64)
        costs = iter(wins)
        for j, w in enumerate(self.weights):
            total = total + float(w) * (p_score.double() if j == self.score_column else next(costs))
        return total.to(p_score.dtype)


class CRLSOMode(MultiObjectiveMode):
    def seeds(self, archs: Sequence[Architecture], k: int) -> list[int]:
        """The `k` queried cells best by this round's scalarisation of their recorded objectives."""
        return np.argsort(self.scalarised(*self.recorded(archs)), kind="stable")[:k].tolist()


class EDNAGMode(MultiObjectiveMode):
    def fitness(self, archs: Sequence[Architecture], predicted: np.ndarray) -> np.ndarray:
        """Minus this run's scalarisation of (calibrated predicted score, exact costs): higher is better."""
        return -self.scalarised(*self.points(archs, predicted))


class DeltaNASMode(MultiObjectiveMode):
    def __init__(self, objectives: Objectives, surrogate: Surrogate | None, by: str, members: int):
        super().__init__(objectives, surrogate, by)
        if self.dims == 2:
            w = np.linspace(0.0, 1.0, members) if members > 1 else np.full(1, 0.5)
            self.member_weights = np.stack([w, 1 - w], axis=1)
        else:  # fixed by the member's index, drawn once from a generator of their own
            self.member_weights = np.random.default_rng(members).dirichlet(np.ones(self.dims), size=members)

    def utility(self, member: int, base: Architecture, candidates: Sequence[Architecture],
                gains: torch.Tensor) -> torch.Tensor:
        """The member's scalarised change for each neighbour: predicted gain and exact changes of the
        minimised costs, each in units of its root mean square over the neighbours; infeasible
        neighbours -inf."""
        weights = self.member_weights[member]
        points, violation = self.points(candidates, None)
        here, _ = self.points([base], None)
        change = np.zeros(len(candidates))
        g = gains.detach().cpu().double().numpy()
        for j in range(self.dims):
            delta = g if j == self.score_column else -(points[:, j] - here[0, j])
            rms = np.sqrt(np.mean(delta**2))
            change += weights[j] * (delta / rms if rms > 0 else 0.0)
        change[violation > 0] = -np.inf
        return torch.from_numpy(change)

    def improves(self, member: int, proposal: Architecture, current: Architecture) -> bool:
        """Whether the queried proposal's recorded objectives scalarise better than the member's."""
        points, violation = self.recorded([proposal, current])
        values = self.scalarised(points, violation, self.member_weights[member])
        return bool(values[0] < values[1])
