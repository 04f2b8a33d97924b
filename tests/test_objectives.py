"""Objectives beyond the score: costs counted on the network and kept in the store, the Pareto front and
its hypervolume after every query, constraints, multi-objective RE and the methods' multi-objective modes."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_nas.benchmarks.archive import Benchmark
from lightning_nas.benchmarks.oracle import TabularOracle
from lightning_nas.cli import main
from lightning_nas.data.datamodule import ArchitectureDataModule
from lightning_nas.errors import ConfigError
from lightning_nas.proxies.costs import NetworkCosts
from lightning_nas.search.baselines import RandomSearch, RegularizedEvolution
from lightning_nas.search.mo_baselines import MultiObjectiveRE
from lightning_nas.search.ednag import EDNAG
from lightning_nas.predictors.gin import GINRegressor
from lightning_nas.search.mo_modes import CTNASMode, DeltaNASMode, EDNAGMode
from lightning_nas.search.objectives import Objectives
from lightning_nas.search.pareto import hypervolume, nondominated
from lightning_nas.search.runner import run_search
from lightning_nas.spaces import get_space
from lightning_nas.spaces.flops import count_flops
from lightning_nas.spaces.layers import count_parameters

ROOT = Path(__file__).resolve().parents[1]
TARGET = "cifar10_valid_valid_acc"
SMALL = {"input_shape": [3, 8, 8], "network": {"channels": 4, "cells_per_stage": 1}}  # cheap networks to count
PARETO = [{"name": TARGET, "direction": "max", "ideal": 100, "reference": 80},
          {"name": "flops_m", "direction": "min", "ideal": 0, "reference": 0.15}]


@pytest.fixture(scope="module")
def table(shared):
    return Benchmark.load(shared / "nb201_200ep.csv.gz")


def search(shared, tmp_path, strategy, budget=25, **kwargs):
    data = ArchitectureDataModule([str(shared / "nb201_200ep.csv.gz")], TARGET, num_labelled=0)
    kwargs.setdefault("costs", {**SMALL, "store": str(tmp_path / "costs.sqlite")})
    return run_search(data, strategy, budget=budget, run_dir=str(tmp_path / "run"), progress=False, seed=3, **kwargs)


def test_costs_are_counted_on_the_network_and_read_back_from_the_store(tmp_path):
    space = get_space("nb201")
    archs = [space.sample(np.random.default_rng(i)) for i in range(4)]
    costs = NetworkCosts(space, **SMALL, store=str(tmp_path / "costs.sqlite"))
    flops = costs("flops_m", archs)
    params = costs("params_m", archs)  # counted together with the FLOPs: nothing new to count
    for a, f, p in zip(archs, flops, params):
        network = space.network(a, 10, 3, channels=4, cells_per_stage=1)
        assert f == pytest.approx(count_flops(network, (3, 8, 8))) and p == pytest.approx(count_parameters(network) / 1e6)
    assert costs.computed == {"params_m": 0, "flops_m": 4, "latency_ms": 0}
    again = NetworkCosts(space, **SMALL, store=str(tmp_path / "costs.sqlite"))
    assert again("flops_m", archs).tolist() == flops.tolist() and again.computed["flops_m"] == 0
    other = NetworkCosts(space, input_shape=[3, 8, 8], network={"channels": 8, "cells_per_stage": 1},
                         store=str(tmp_path / "costs.sqlite"))  # another setting is another row
    assert (other("flops_m", archs) > flops).all()


def test_latency_is_measured_once_and_then_read_back(tmp_path):
    space = get_space("nb201")
    a = space.sample(np.random.default_rng(0))
    costs = NetworkCosts(space, **SMALL, store=str(tmp_path / "costs.sqlite"), warmup=1, repeats=3)
    latency = costs("latency_ms", [a])[0]
    assert latency > 0 and costs.computed["latency_ms"] == 1
    again = NetworkCosts(space, **SMALL, store=str(tmp_path / "costs.sqlite"), warmup=1, repeats=3)
    assert again("latency_ms", [a])[0] == latency and again.computed["latency_ms"] == 0
    assert json.loads(again.settings["latency_ms"])["device_name"]


def test_a_pareto_search_records_the_front_and_its_hypervolume_after_every_query(shared, tmp_path, table):
    results = search(shared, tmp_path, RandomSearch(), objectives=PARETO)
    queries = results["queries"]
    points = np.array([[(100 - q["values"][TARGET]) / 20, q["values"]["flops_m"] / 0.15] for q in queries])
    for i, q in enumerate(queries):
        assert q["values"][TARGET] == q["score"] == pytest.approx(table.query(q["arch"], TARGET))
        front = [j + 1 for j in np.flatnonzero(nondominated(points[: i + 1]))]
        assert q["front"] == front
        assert q["hypervolume"] == pytest.approx(hypervolume(points[np.array(front) - 1], np.ones(2)))
    assert all(a["hypervolume"] <= b["hypervolume"] for a, b in zip(queries, queries[1:]))
    summary = results["objectives"]
    assert [p["query"] for p in summary["front"]] == sorted(queries[-1]["front"], key=lambda i: -queries[i - 1]["score"])
    assert summary["hypervolume"] == queries[-1]["hypervolume"] and summary["sources"] == {TARGET: "score", "flops_m": "cost"}
    written = json.loads((tmp_path / "run" / "results.json").read_text())
    assert written["objectives"]["front"] == summary["front"]
    assert "flops_m" in (tmp_path / "run" / "queries.csv").read_text().splitlines()[0]


def test_a_constrained_search_charges_infeasible_queries_but_never_makes_them_best(shared, tmp_path):
    results = search(shared, tmp_path, RandomSearch(), budget=30, constraints=["flops_m <= 0.08"])
    queries = results["queries"]
    feasible = [q for q in queries if q["values"]["flops_m"] <= 0.08]
    assert 0 < len(feasible) < len(queries) == 30
    for i, q in enumerate(queries):
        assert q["feasible"] == (q["values"]["flops_m"] <= 0.08)
        so_far = [p for p in queries[: i + 1] if p["feasible"]]
        best = max(so_far, key=lambda p: p["score"], default=None)  # max keeps the earlier one on ties
        assert (q["best"] and q["best"]["arch"]) == (best and best["arch"])
    assert "front" not in results["objectives"]


@pytest.mark.parametrize("objectives, constraints, message", [
    ([{"name": "nope", "direction": "max"}], None, "unknown objective or constraint 'nope'"),
    ([{"name": TARGET, "direction": "max"}, {"name": "flops_m", "direction": "min"}], None, "needs `ideal:` and `reference:`"),
    ([{"name": TARGET, "direction": "up"}], None, "direction must be max or min"),
    ([{"name": TARGET, "direction": "max", "ideal": 50, "reference": 80}], None, "must lie above its reference"),
    ([{"name": TARGET, "direction": "min"}], None, "higher-is-better"),
    ([{"name": TARGET, "weight": 2}], None, "unknown keys weight"),
    (None, ["flops_m < 5"], "must read `name <= number`"),
])
def test_objectives_a_search_cannot_use_are_refused(shared, tmp_path, objectives, constraints, message):
    with pytest.raises(ConfigError, match=message):
        search(shared, tmp_path, RandomSearch(), objectives=objectives, constraints=constraints)


def test_a_strategy_without_a_multi_objective_mode_refuses_objectives(shared, tmp_path):
    with pytest.raises(ConfigError, match="RegularizedEvolution searches one objective.*MultiObjectiveRE"):
        search(shared, tmp_path, RegularizedEvolution(), objectives=PARETO)
    with pytest.raises(ConfigError, match="MultiObjectiveRE needs `objectives:`"):
        search(shared, tmp_path, MultiObjectiveRE(), costs=None)


def test_multi_objective_re_picks_parents_by_the_crowded_comparison(shared, tmp_path, monkeypatch):
    """With a tournament of the whole population the parent is always an extreme of its first front."""
    parents = []
    tournament = MultiObjectiveRE._tournament

    def spy(self):
        parent = tournament(self)
        members = [a for a, _ in self.population]
        points = self.objectives.minimised(self.objectives.observed(members))
        front = points[nondominated(points)]
        mine = points[members.index(parent)]
        parents.append(any((mine == front[front[:, j].argmin()]).all() for j in range(2)))
        return parent

    monkeypatch.setattr(MultiObjectiveRE, "_tournament", spy)
    results = search(shared, tmp_path, MultiObjectiveRE(population_size=6, sample_size=6), budget=20, objectives=PARETO)
    assert len(parents) == 14 and all(parents)
    assert results["queries"][-1]["hypervolume"] > 0


def test_the_cli_runs_a_composed_multi_objective_search(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    run_dir = tmp_path / "run"
    costs = json.dumps({**SMALL, "store": str(tmp_path / "costs.sqlite")})
    assert main(["search", "--config", "configs/methods/mo_re.yaml", "--config", "configs/protocols/nb201-cifar10-moo.yaml",
                 "--budget", "15", "--run_dir", str(run_dir), "--progress", "false", "--costs", costs]) == 0
    results = json.loads((run_dir / "results.json").read_text())
    assert results["objectives"]["objectives"][1] == {"name": "flops_m", "direction": "min", "ideal": 0.0, "reference": 225.0}
    assert len(results["queries"]) == 15 and (run_dir / "trajectory.png").stat().st_size > 0


def test_ctnas_mode_mixes_the_comparator_with_exact_cost_comparisons(shared, tmp_path, table):
    oracle = TabularOracle(table, TARGET)
    objectives = Objectives.build(PARETO, None, {**SMALL, "store": str(tmp_path / "c.sqlite")}, oracle)
    mode = CTNASMode(objectives, None, "CTNAS")
    space = get_space("nb201")
    first = [space.from_string("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")] * 2
    second = [space.from_string("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"), first[0]]
    p = torch.tensor([0.2, 0.7])
    mode.weights = np.array([1.0, 0.0])
    assert mode.comparison(p, first, second).tolist() == pytest.approx([0.2, 0.7])
    mode.weights = np.array([0.0, 1.0])  # fewer FLOPs wins; equal FLOPs is a tie
    assert mode.comparison(p, first, second).tolist() == pytest.approx([1.0, 0.5])
    mode.weights = np.array([0.5, 0.5])
    mixed = mode.comparison(torch.full((2, 2), 0.4), first, second, outer=True)
    assert torch.allclose(mixed, torch.tensor([[0.7, 0.45], [0.7, 0.45]]))


def test_delta_nas_mode_spreads_its_members_and_steps_by_scalarised_change(shared, tmp_path, table):
    oracle = TabularOracle(table, TARGET)
    objectives = Objectives.build(PARETO, None, {**SMALL, "store": str(tmp_path / "c.sqlite")}, oracle)
    mode = DeltaNASMode(objectives, None, "DeltaNAS", members=5)
    assert mode.member_weights[:, 0].tolist() == pytest.approx([0, 0.25, 0.5, 0.75, 1])
    space = get_space("nb201")
    base = space.from_string("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    cheaper = space.from_string("|skip_connect~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    dearer = space.from_string("|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|none~0|none~1|none~2|")
    gains = torch.tensor([-1.0, 1.0])  # the dearer one is predicted better
    assert mode.utility(4, base, [cheaper, dearer], gains).argmax() == 1  # accuracy only
    assert mode.utility(0, base, [cheaper, dearer], gains).argmax() == 0  # FLOPs only


def test_ednag_mode_queries_its_first_population_by_hypervolume_improvement(shared, tmp_path, monkeypatch):
    """A generation run scores thousands of cells; ordering all of them greedily took minutes per run.
    The greedy order covers the first population_size, the rest follow by predicted score."""
    calls, select = [], EDNAGMode.select

    def spy(self, archs, predicted, k=None):
        order = select(self, archs, predicted, k)
        calls.append((len(archs), k, [archs[i].genotype for i in order]))
        return order

    monkeypatch.setattr(EDNAGMode, "select", spy)
    strategy = EDNAG(fitness="predictor", steps=6, population_size=8, random_start=6)
    out = search(shared, tmp_path, strategy, budget=14, model=GINRegressor(in_channels=7, hidden=8), ask_batch=4,
                 finetune_epochs=1, objectives=PARETO)
    assert len(out["queries"]) == 14 and calls
    assert all(k == 8 and len(order) == 8 < n for n, k, order in calls)
    asked = set(strategy.asked)
    generated = strategy.generate()
    n, _, chosen = calls[-1]
    new = [g for g in chosen if strategy._identity(strategy.space.make(g)) not in asked]
    assert new and generated[0] == new[0] and len(set(generated)) == len(generated) <= n
