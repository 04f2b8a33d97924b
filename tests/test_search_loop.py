import json
import zlib

import numpy as np
import pytest
import torch

from lightning_nas.benchmarks.archive import Benchmark
from lightning_nas.benchmarks.oracle import BudgetExhausted, NotInBenchmark, TabularOracle
from lightning_nas.search.baselines import RandomSearch, RegularizedEvolution
from lightning_nas.search.dcl_enas import DCLENAS
from lightning_nas.search.ednag import EDNAG
from lightning_nas.search.loop import STATE_FILE, SearchLoop
from lightning_nas.search.statistics import best_after
from lightning_nas.search.surrogate import Surrogate


@pytest.fixture(scope="module")
def nb201(shared):
    return Benchmark.load(shared / "nb201_200ep.csv.gz")


def run(bench, strategy, run_dir, budget=40, seed=3):
    oracle = TabularOracle(bench, "cifar10_valid_valid_acc", ["cifar10_test_acc"], budget)
    return SearchLoop(strategy, oracle, run_dir, seed=seed, progress=False).run()


def test_results_record_every_query_and_running_best(nb201, tmp_path):
    results = run(nb201, RegularizedEvolution(), tmp_path)
    queries = results["queries"]
    assert [q["query"] for q in queries] == list(range(1, 41))
    assert len({q["arch"] for q in queries}) == 40  # the budget counts unique architectures
    for q in queries:
        assert q["score"] == pytest.approx(nb201.query(q["arch"], "cifar10_valid_valid_acc"))
        assert q["report"]["cifar10_test_acc"] == pytest.approx(nb201.query(q["arch"], "cifar10_test_acc"))
    running = np.maximum.accumulate([q["score"] for q in queries])
    assert [q["best"]["score"] for q in queries] == pytest.approx(running)
    assert best_after(results, 10) == queries[9]["best"]
    for name in ("results.json", "queries.csv", "trajectory.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert json.loads((tmp_path / "results.json").read_text())["budget"] == 40


def test_same_seed_same_run_other_seed_other_run(nb201, tmp_path):
    a = run(nb201, RegularizedEvolution(), tmp_path / "a")
    b = run(nb201, RegularizedEvolution(), tmp_path / "b")
    c = run(nb201, RegularizedEvolution(), tmp_path / "c", seed=4)
    assert [q["arch"] for q in a["queries"]] == [q["arch"] for q in b["queries"]]
    assert [q["arch"] for q in a["queries"]] != [q["arch"] for q in c["queries"]]


@pytest.mark.parametrize("strategy", [RandomSearch, RegularizedEvolution])
def test_resumed_run_equals_uninterrupted_run(nb201, tmp_path, strategy):
    full = run(nb201, strategy(), tmp_path / "full", budget=30)
    # cut off after 17 queries: the checkpoint of that moment is what a crash leaves behind
    partial = run(nb201, strategy(), tmp_path / "cut", budget=17)
    assert (tmp_path / "cut" / STATE_FILE).is_file()
    resumed = run(nb201, strategy(), tmp_path / "cut", budget=30)
    assert [q["arch"] for q in resumed["queries"][:17]] == [q["arch"] for q in partial["queries"]]
    assert [q["arch"] for q in resumed["queries"]] == [q["arch"] for q in full["queries"]]


def test_oracle_refuses_past_budget(nb201):
    oracle = TabularOracle(nb201, "cifar10_valid_valid_acc", budget=1)
    a, b = nb201.archs()[:2]
    oracle.evaluate(a)
    assert oracle.evaluate(a).score == oracle.evaluate(a).score  # repeats are free
    with pytest.raises(BudgetExhausted):
        oracle.evaluate(b)
    with pytest.raises(ValueError, match="budget"):
        TabularOracle(nb201, "cifar10_valid_valid_acc", budget=0)


def test_regularized_evolution_ages_out_the_oldest(nb201, tmp_path):
    strategy = RegularizedEvolution(population_size=5, sample_size=2)
    run(nb201, strategy, tmp_path, budget=12)
    assert len(strategy.population) == 5
    with pytest.raises(ValueError, match="sample_size"):
        RegularizedEvolution(population_size=3, sample_size=4)


class SampledTable(TabularOracle):
    """A table that holds about a third of the space (as NB101's 30k of 423k cells)."""

    def contains(self, a):
        return zlib.crc32(self.space.key(a).encode()) % 3 == 0

    def _evaluate(self, a):
        if not self.contains(a):
            raise NotInBenchmark(f"{a} is not in the sampled table")
        return super()._evaluate(a)


class TableScore(Surrogate):
    """A predictor that knows the full table: it ranks cells the sampled table lacks near the top too."""

    def __init__(self, bench):
        self.bench, self.column = bench, bench.column("cifar10_valid_valid_acc")

    def score(self, archs):
        return torch.tensor([float(self.column[self.bench.row(a)]) for a in archs])

    def update(self, archs, y):
        pass


@pytest.mark.parametrize("make", [lambda: EDNAG(steps=20, population_size=12),
                                  lambda: DCLENAS(initial_size=5, population_size=8, offspring_size=30, generations=2),
                                  RegularizedEvolution],
                         ids=["EDNAG", "DCL-ENAS", "RE"])
def test_table_only_ranks_only_what_the_table_holds(nb201, tmp_path, make):
    skipped = {}
    for table_only in (False, True):
        oracle = SampledTable(nb201, "cifar10_valid_valid_acc", [], budget=20)
        loop = SearchLoop(make(), oracle, tmp_path / str(table_only), seed=0, ask_batch=5, surrogate=TableScore(nb201),
                          progress=False, table_only=table_only)
        results = loop.run()
        assert len(results["queries"]) == 20
        skipped[table_only] = results["skipped_not_in_benchmark"]
    assert skipped[True] == 0 < skipped[False]  # the predictor's favourites outside the table cost rounds


def sub_table(bench: Benchmark, every: int) -> Benchmark:
    """Every `every`-th row of a table: a table that holds a sample of its space."""
    rows = np.arange(0, len(bench), every)
    return Benchmark(bench.space_name, bench.keys[rows], {k: v[rows] for k, v in bench.metrics.items()})


def test_table_draws_are_uniform_draws_of_the_tables_rows(nb201):
    table = sub_table(nb201, 25)
    oracle = TabularOracle(table, "cifar10_valid_valid_acc", [], budget=50)
    keys = set(table.keys.tolist())

    def strategy(table_draws: bool, draw) -> DCLENAS:
        made = DCLENAS(table_draws=table_draws)
        made.setup(nb201.space, np.random.default_rng(0), TableScore(nb201))
        made.restrict(oracle.contains, draw)
        return made

    plain = strategy(False, None).sample_unseen(20, exclude=set())
    assert [a.genotype for a in strategy(False, oracle.draw).sample_unseen(20, set())] == [a.genotype for a in plain]
    calls = []
    drawn = strategy(True, lambda rng: calls.append(1) or oracle.draw(rng)).sample_unseen(200, set())
    assert len(drawn) == 200 and {nb201.space.key(a) for a in drawn} <= keys
    assert 200 <= len(calls) < 300  # drawn from the table, no rejection (1 in 25 space samples is in it)
    assert len({a.genotype for a in drawn}) == 200  # distinct by key
    no_table = strategy(True, None)  # an oracle that lists nothing: the space's own samples
    assert [a.genotype for a in no_table.sample_unseen(20, set())] == [a.genotype for a in plain]


def test_dcl_enas_with_table_draws_ranks_the_tables_cells(nb201, tmp_path):
    oracle = TabularOracle(sub_table(nb201, 25), "cifar10_valid_valid_acc", [], budget=20)
    loop = SearchLoop(DCLENAS(initial_size=5, population_size=8, offspring_size=30, generations=2,
                              random_candidates=50, table_draws=True),
                      oracle, tmp_path, seed=0, ask_batch=5, surrogate=TableScore(nb201), progress=False,
                      table_only=True)
    results = loop.run()
    assert len(results["queries"]) == 20 and results["skipped_not_in_benchmark"] == 0


class SparseTable(SampledTable):
    """A table that holds 1 cell in 50: most cells have no neighbour in it (NB101's holds 1 in 14)."""

    def contains(self, a):
        return zlib.crc32(self.space.key(a).encode()) % 50 == 0


def test_regularized_evolution_walks_on_to_cells_a_sparse_table_holds(nb201, tmp_path):
    def search(run_dir, budget, table_only):
        oracle = SparseTable(nb201, "cifar10_valid_valid_acc", [], budget=budget)
        return SearchLoop(RegularizedEvolution(), oracle, run_dir, seed=0, progress=False, table_only=table_only).run()

    plain = search(tmp_path / "plain", 40, table_only=False)  # one-edit mutation runs out of table neighbours
    assert len(plain["queries"]) < 40 and "1000 rounds in a row" in plain["stopped_early"]
    assert "set table_only: true" in plain["stopped_early"] and (tmp_path / "plain" / "results.json").is_file()
    full = search(tmp_path / "full", 40, table_only=True)
    assert len(full["queries"]) == 40
    search(tmp_path / "cut", 23, table_only=True)
    resumed = search(tmp_path / "cut", 40, table_only=True)  # the evaluated set is part of the checkpoint
    assert [q["arch"] for q in resumed["queries"]] == [q["arch"] for q in full["queries"]]
