"""What a search optimises beyond the oracle's score: several objectives (a Pareto search), or one
under constraints, each declared in the search config.

    objectives:
      - {name: cifar10_valid_valid_acc, direction: max, ideal: 100, reference: 80}
      - {name: flops_m, direction: min, ideal: 0, reference: 250}
    constraints: ["latency_ms <= 5"]
    costs: {input_shape: [3, 32, 32], num_classes: 10}

A name is the oracle's score (`score`, or the table column it answers with), a column of the
oracle's table, a metric the oracle reports, or a cost computed from the real network
(`lightning_nas.proxies.costs`: params_m, flops_m, latency_ms; a table column of that name wins).
Costs are exact and need no training: they are computed for any candidate, never charged to the
budget. With two or more objectives the search keeps the Pareto front of the feasible queries and
its hypervolume in the normalised space where each objective's `ideal` is 0 and its `reference`
(the reference point) is 1, so a hypervolume is the share of the box [ideal, reference] that the
front dominates. A query that breaks a constraint is charged but is never on the front nor best.

The loop records, per query, every objective and constraint value, whether it is feasible, the best
feasible query by the first objective, and (Pareto) the front as query numbers and its hypervolume.
Strategies with a multi-objective mode read observed values and exact costs here
(`lightning_nas.search.mo_modes`)."""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from lightning_nas.benchmarks.oracle import Evaluation, Oracle
from lightning_nas.errors import CapabilityError, ConfigError
from lightning_nas.proxies.costs import COSTS, NetworkCosts
from lightning_nas.search.pareto import hypervolume, nondominated
from lightning_nas.spaces.base import Architecture

SCORE = "score"
DIRECTIONS = ("max", "min")
#: where a value comes from: the oracle's score, a cost of the network, a table column, the oracle's report
KINDS = ("score", "cost", "column", "report")
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(<=|>=)\s*([-+0-9.eE]+|inf)\s*$")


@dataclass(frozen=True)
class Objective:
    """One objective: its name, whether higher (`max`) or lower (`min`) is better, and the two ends of
    its normalisation: `ideal` (0) and `reference` (1, the hypervolume's reference point)."""

    name: str
    direction: str = "max"
    ideal: float | None = None
    reference: float | None = None

    @classmethod
    def parse(cls, spec: Any, where: str) -> Objective:
        if isinstance(spec, str):
            spec = {"name": spec}
        if not isinstance(spec, Mapping) or "name" not in spec:
            raise ConfigError(f"{where} must be a mapping with a `name:` (e.g. {{name: flops_m, direction: min}}), "
                              f"got {spec!r}")
        unknown = sorted(set(spec) - {"name", "direction", "ideal", "reference"})
        if unknown:
            raise ConfigError(f"{where} has unknown keys {', '.join(unknown)}: an objective takes name, direction, "
                              "ideal and reference")
        objective = cls(str(spec["name"]), str(spec.get("direction", "max")),
                        *(None if spec.get(k) is None else _number(spec[k], f"{where}.{k}") for k in ("ideal", "reference")))
        if objective.direction not in DIRECTIONS:
            raise ConfigError(f"{where}.direction must be max or min, got {objective.direction!r}")
        if objective.normalised and (objective.ideal - objective.reference) * (1 if objective.maximised else -1) <= 0:
            better = "above" if objective.maximised else "below"
            raise ConfigError(f"{where}: the ideal of a {objective.direction} objective must lie {better} its reference, "
                              f"got ideal {objective.ideal} and reference {objective.reference}")
        return objective

    @property
    def maximised(self) -> bool:
        return self.direction == "max"

    @property
    def normalised(self) -> bool:
        return self.ideal is not None and self.reference is not None

    def normalise(self, values: np.ndarray) -> np.ndarray:
        """0 at the ideal, 1 at the reference, lower is better (for either direction)."""
        return (np.asarray(values, dtype=np.float64) - self.ideal) / (self.reference - self.ideal)


@dataclass(frozen=True)
class Constraint:
    """`name <= limit` or `name >= limit`."""

    name: str
    op: str
    limit: float

    @classmethod
    def parse(cls, text: Any, where: str) -> Constraint:
        match = _CONSTRAINT.match(text) if isinstance(text, str) else None
        if match is None:
            raise ConfigError(f"{where} must read `name <= number` or `name >= number` (e.g. \"latency_ms <= 5\"), "
                              f"got {text!r}")
        return cls(match[1], match[2], float(match[3]))

    def violation(self, values: np.ndarray) -> np.ndarray:
        """How far each value lies on the wrong side of the limit (0: satisfied)."""
        excess = np.asarray(values, dtype=np.float64) - self.limit
        return np.maximum(excess if self.op == "<=" else -excess, 0.0)

    def __str__(self) -> str:
        return f"{self.name} {self.op} {self.limit:g}"


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where} must be a finite number, got {value!r}")
    return float(value)


class Objectives:
    """The objectives and constraints of one search, the values recorded of its queries, and the
    Pareto front. Built by the search runner (`build`), filled by the loop (`annotate`, `restore`)
    and read by strategies with a multi-objective mode."""

    def __init__(self, objectives: Sequence[Objective], constraints: Sequence[Constraint], oracle: Oracle,
                 costs: dict[str, Any] | None = None):
        if not objectives:
            raise ConfigError("`objectives:` is empty: name at least one, or leave it out")
        names = [o.name for o in objectives]
        if len(set(names)) < len(names):
            raise ConfigError(f"`objectives:` names an objective twice: {', '.join(names)}")
        self.objectives, self.constraints, self.oracle = list(objectives), list(constraints), oracle
        self.space = oracle.space
        #: every value recorded per query: the objectives, then what only constraints name
        self.names = list(dict.fromkeys([*names, *(c.name for c in constraints)]))
        self.kinds = {name: self._kind(name) for name in self.names}
        if self.pareto:
            unnormalised = [o.name for o in self.objectives if not o.normalised]
            if unnormalised:
                raise ConfigError(
                    f"a search of several objectives needs `ideal:` and `reference:` for each (the hypervolume's "
                    f"normalisation and reference point); missing for {', '.join(unnormalised)}")
        for o in self.objectives:
            if self.kinds[o.name] == "score" and not o.maximised:
                raise ConfigError(f"objective {o.name} is the oracle's score, which is higher-is-better: "
                                  "give it direction: max")
        self.cost_settings = dict(costs or {})
        self._costs = None
        if costs and "cost" not in self.kinds.values():
            raise ConfigError("`costs:` configures the costs computed from the network (params_m, flops_m, "
                              "latency_ms), and no objective or constraint names one: remove `costs:`")
        self._reset()

    @classmethod
    def build(cls, objectives: Sequence[Any] | None, constraints: Sequence[Any] | None, costs: dict | None,
              oracle: Oracle) -> Objectives | None:
        """The search's objectives from the config, or None for a plain single-objective search."""
        if not objectives and not constraints:
            if costs:
                raise ConfigError("`costs:` is given, but neither `objectives:` nor `constraints:`: remove `costs:` "
                                  "or declare what to optimise")
            return None
        parsed = [Objective.parse(o, f"objectives[{i}]") for i, o in enumerate(objectives or [SCORE])]
        return cls(parsed, [Constraint.parse(c, f"constraints[{i}]") for i, c in enumerate(constraints or [])],
                   oracle, costs)

    @property
    def pareto(self) -> bool:
        return len(self.objectives) > 1

    def _kind(self, name: str) -> str:
        if name in (SCORE, getattr(self.oracle, "objective_name", None)):
            return "score"
        benchmark = getattr(self.oracle, "benchmark", None)
        if benchmark is not None and name in benchmark.metrics:
            return "column"
        if name in COSTS:
            return "cost"
        if benchmark is not None:
            raise ConfigError(
                f"unknown objective or constraint {name!r}: name the score ({SCORE}), a cost ({', '.join(COSTS)}) "
                f"or a column of the table ({', '.join(sorted(benchmark.metrics))})")
        return "report"

    @property
    def costs(self):
        """The network costs (`lightning_nas.proxies.costs.NetworkCosts`), built on first use."""
        if self._costs is None:
            try:
                self._costs = NetworkCosts(self.space, **self.cost_settings)
            except TypeError as e:
                raise ConfigError(f"`costs:` has an unknown setting ({e}); see lightning_nas.proxies.costs."
                                  "NetworkCosts for the settings") from None
        return self._costs

    def identity(self) -> dict[str, Any]:
        """What a resumed search must have declared alike."""
        return {"objectives": [asdict(o) for o in self.objectives], "constraints": [str(c) for c in self.constraints],
                "costs": self.cost_settings}

    def check(self, ranks: int) -> None:
        if ranks > 1 and "latency_ms" in self.names:
            raise ConfigError("latency_ms is measured on this machine, and a search on several processes would measure "
                              "it on each: run a latency search on one process")

    # --- values ----------------------------------------------------------------------------
    def measure(self, a: Architecture, evaluation: Evaluation) -> np.ndarray:
        """The value of every name of `names` for a queried architecture."""
        out = []
        for name in self.names:
            kind = self.kinds[name]
            if kind == "score":
                out.append(evaluation.score)
            elif kind == "cost":
                out.append(float(self.costs(name, [a])[0]))
            elif kind == "column":
                out.append(self.oracle.benchmark.query(a, name))
            elif name in evaluation.report:
                out.append(float(evaluation.report[name]))
            else:
                raise ConfigError(f"the oracle ({type(self.oracle).__name__}) answers with no {name!r}: name the score "
                                  f"({SCORE}), a cost, or what it reports ({', '.join(sorted(evaluation.report))})")
        return np.array(out, dtype=np.float64)

    def violation(self, values: np.ndarray) -> np.ndarray:
        """[n] total constraint violation of value rows ([n, len(names)]); 0 = feasible."""
        v = np.atleast_2d(np.asarray(values, dtype=np.float64))
        total = np.zeros(len(v))
        for c in self.constraints:
            total += c.violation(v[:, self.names.index(c.name)])
        return total

    def minimised(self, values: np.ndarray) -> np.ndarray:
        """[n, objectives] of value rows: normalised (0 ideal, 1 reference) where declared, else the
        raw value (negated for max objectives); lower is better in every column."""
        v = np.atleast_2d(np.asarray(values, dtype=np.float64))
        columns = []
        for o in self.objectives:
            raw = v[:, self.names.index(o.name)]
            columns.append(o.normalise(raw) if o.normalised else (-raw if o.maximised else raw))
        return np.stack(columns, axis=1)

    # --- the loop's record -----------------------------------------------------------------------
    def _reset(self) -> None:
        self.archs: list[Architecture] = []  # every query, in order
        self.values: list[np.ndarray] = []
        self.answers: list[tuple[float, dict[str, float]]] = []  # the oracle's score and report of each
        self.row_of: dict[str, int] = {}  # the key of a queried architecture -> its query's row

    def annotate(self, entry: dict[str, Any], a: Architecture, evaluation: Evaluation) -> None:
        """Add to the loop's record of a query (`entry`): its values, feasibility, the best feasible query
        by the first objective (replacing the loop's best by score), and, for several objectives, the
        front after it (query numbers) and the front's hypervolume."""
        values = self.measure(a, evaluation)
        entry["values"] = dict(zip(self.names, values.tolist()))
        self._observe(a, values, entry["score"], entry["report"])
        if self.constraints:
            entry["feasible"] = bool(self.violation(values)[0] <= 0)
        entry["best"] = self._best()
        if self.pareto:
            front = self.front_rows()
            entry["front"] = [int(i) + 1 for i in front]
            entry["hypervolume"] = self.hypervolume(front)

    def _observe(self, a: Architecture, values: np.ndarray, score: float, report: dict[str, float]) -> None:
        self.row_of[self.space.key(a)] = len(self.archs)
        self.archs.append(a)
        self.values.append(values)
        self.answers.append((score, report))

    def _best(self) -> dict[str, Any] | None:
        """The best feasible query by the first objective (the earlier one on ties), in the form of the
        loop's `best`; None while no query is feasible."""
        values = np.stack(self.values)
        column = self.minimised(values)[:, 0]
        column[self.violation(values) > 0] = np.inf
        i = int(np.argmin(column))
        if not np.isfinite(column[i]):
            return None
        score, report = self.answers[i]
        return {"arch": str(self.archs[i]), "score": score, "report": report}

    def restore(self, history: list[dict[str, Any]]) -> None:
        """Rebuild the record from a resumed search's history."""
        self._reset()
        for entry in history:
            values = np.array([entry["values"][n] for n in self.names], dtype=np.float64)
            self._observe(self.space.from_string(entry["arch"]), values, entry["score"], entry["report"])

    def front_rows(self) -> np.ndarray:
        """Rows of the feasible queries on the Pareto front, in query order."""
        if not self.values:
            return np.zeros(0, dtype=np.int64)
        values = np.stack(self.values)
        feasible = np.flatnonzero(self.violation(values) <= 0)
        points = self.minimised(values[feasible])
        return feasible[nondominated(points)]

    def hypervolume(self, rows: np.ndarray) -> float:
        points = self.minimised(np.stack(self.values)[rows]) if len(rows) else np.zeros((0, len(self.objectives)))
        return hypervolume(points, np.ones(len(self.objectives)))

    def summary(self) -> dict[str, Any]:
        """The section `objectives` of results.json: what was declared, and the final front."""
        out: dict[str, Any] = {"objectives": [asdict(o) for o in self.objectives],
                               "constraints": [str(c) for c in self.constraints],
                               "sources": dict(self.kinds)}
        if "cost" in self.kinds.values():
            settings = self.costs.describe()
            out["costs"] = {name: settings[name] for name in self.names if self.kinds[name] == "cost"}
        if self.pareto:
            front = self.front_rows()
            order = front[np.argsort(self.minimised(np.stack(self.values)[front])[:, 0], kind="stable")] if len(front) else front
            out["front"] = [{"query": int(i) + 1, "arch": str(self.archs[i]),
                             "values": dict(zip(self.names, self.values[i].tolist()))} for i in order]
            out["hypervolume"] = self.hypervolume(front)
        return out

    def timing(self) -> dict[str, Any]:
        """Wall-clock figures for timing.json: what this process computed of the costs."""
        return self._costs.work() if self._costs is not None else {}

    # --- what strategies read --------------------------------------------------------------------
    def require_estimates(self, by: str) -> None:
        """A predictor-guided multi-objective mode predicts the score and computes costs: refuse other
        objectives up front."""
        other = [o.name for o in self.objectives if self.kinds[o.name] not in ("score", "cost")]
        if other:
            raise CapabilityError(
                f"{by} estimates a candidate's objectives before querying it: the score by its predictor, costs "
                f"from the network; {', '.join(other)} is neither: use a baseline (RandomSearch, MultiObjectiveRE) "
                "for such objectives")

    def observed(self, archs: Sequence[Architecture]) -> np.ndarray:
        """[n, len(names)] recorded values of queried architectures (NaN rows for others)."""
        out = np.full((len(archs), len(self.names)), np.nan)
        for i, a in enumerate(archs):
            row = self.row_of.get(self.space.key(a))
            if row is not None:
                out[i] = self.values[row]
        return out

    def estimate(self, archs: Sequence[Architecture], score: np.ndarray) -> np.ndarray:
        """[n, len(names)] values of candidates: `score` (a prediction, on the score's scale) where the
        score is named, exact costs, NaN for anything else (see `require_estimates`)."""
        out = np.full((len(archs), len(self.names)), np.nan)
        for j, name in enumerate(self.names):
            if self.kinds[name] == "score":
                out[:, j] = score
            elif self.kinds[name] == "cost" and len(archs):
                out[:, j] = self.costs(name, archs)
        return out
