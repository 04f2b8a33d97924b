"""EDNAG: the schedule, Eq. 8 / Eq. 9, selection, decoding, reproducibility, resumption, the CLI."""
import json
import math

import numpy as np
import pytest
import torch

from lightning_nas.benchmarks.archive import Benchmark
from lightning_nas.benchmarks.oracle import TabularOracle
from lightning_nas.errors import ConfigError
from lightning_nas.search.diffusion import (
    alpha_bar_schedule,
    ddim_sigma,
    ddim_step,
    estimate_x0,
    fitness_density,
    select_survivors,
)
from lightning_nas.search.ednag import EDNAG
from lightning_nas.search.loop import SearchLoop
from lightning_nas.search.matrix_layout import MatrixDecoder, MatrixLayout
from lightning_nas.search.runner import build_surrogate, run_search
from lightning_nas.search.surrogate import Surrogate
from lightning_nas.spaces import get_space

OBJECTIVE, REPORT = "cifar10_valid_valid_acc", "cifar10_test_acc"


@pytest.fixture(scope="module")
def nb201(shared):
    return Benchmark.load(shared / "nb201_200ep.csv.gz")


class TableSurrogate(Surrogate):
    """A predictor that knows the table (plus optional noise): isolates the search from the predictor."""

    def __init__(self, bench, column=OBJECTIVE):
        self.bench, self.column, self.calls, self.updates = bench, bench.column(column), 0, 0

    def score(self, archs):
        self.calls += 1
        return torch.tensor([float(self.column[self.bench.row(a)]) for a in archs])

    def update(self, archs, y):
        self.updates += 1


# --- schedule and update rule ---------------------------------------------------------------
@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_schedule_runs_from_pure_noise_to_clean(kind):
    abar = alpha_bar_schedule(100, kind)
    assert len(abar) == 101
    assert abar[0] == pytest.approx(1 - 1e-4) and abar[-1] == pytest.approx(1e-4)
    assert np.all(np.diff(abar) < 0)
    for k in range(1, 101):  # σ never exceeds what the DDIM direction term can carry
        assert 0 <= ddim_sigma(abar[k], abar[k - 1], 0.8) <= math.sqrt(1 - abar[k - 1]) + 1e-12
    with pytest.raises(ValueError, match="schedule"):
        alpha_bar_schedule(10, "quadratic")


def test_eq8_flat_kernel_weights_by_fitness_and_cold_density_picks_the_fittest():
    rng = np.random.default_rng(0)
    x, f = rng.random((12, 8)), rng.normal(size=12)
    best = int(np.argmax(f))
    x0, w = estimate_x0(x, fitness_density(f, temperature=1e-3), abar_t=1e-20)
    np.testing.assert_allclose(w, np.eye(12)[[best] * 12], atol=1e-9)  # every member -> the fittest
    np.testing.assert_allclose(x0, np.repeat(x[[best]], 12, axis=0), atol=1e-9)
    _, w = estimate_x0(x, fitness_density(f, 1.0), abar_t=1e-20)
    g = np.exp(fitness_density(f, 1.0))
    np.testing.assert_allclose(w, np.repeat((g / g.sum())[None], 12, axis=0), rtol=1e-6)


def test_eq8_sharp_kernel_keeps_each_member_and_eq9_then_returns_it():
    rng = np.random.default_rng(1)
    x, f = rng.random((10, 6)), rng.normal(size=10)
    x0, w = estimate_x0(x, fitness_density(f, 1.0), abar_t=1 - 1e-9)
    np.testing.assert_allclose(w, np.eye(10), atol=1e-9)
    np.testing.assert_allclose(ddim_step(x, x0, 1 - 1e-9, 1 - 1e-10, 0.0, np.zeros_like(x)), x, atol=1e-4)


def test_eq9_keeps_the_marginals_of_the_forward_process_for_any_sigma():
    """DDIM's defining property: if x_t ~ N(√ᾱ_t x0, 1-ᾱ_t) then x_{t-1} ~ N(√ᾱ_{t-1} x0, 1-ᾱ_{t-1}),
    whatever σ (σ = 0: deterministic; σ at its cap: all fresh noise)."""
    rng = np.random.default_rng(2)
    x0 = rng.normal(size=(1, 8))
    a_t, a_p = 0.3, 0.6
    x = math.sqrt(a_t) * x0 + math.sqrt(1 - a_t) * rng.standard_normal((200_000, 8))
    for sigma in (0.0, 0.3, math.sqrt(1 - a_p)):
        out = ddim_step(x, x0, a_t, a_p, sigma, rng.standard_normal(x.shape))
        np.testing.assert_allclose(out.mean(0), math.sqrt(a_p) * x0[0], atol=0.01)
        np.testing.assert_allclose(out.std(0), math.sqrt(1 - a_p), atol=0.01)


def test_eq9_without_noise_keeps_the_predicted_noise():
    """σ = 0: x_{t-1} lies on the same deterministic path, so it implies the same ε̂ as x_t."""
    rng = np.random.default_rng(3)
    x, x0 = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    a_t, a_p = 0.3, 0.5
    out = ddim_step(x, x0, a_t, a_p, 0.0, rng.normal(size=(3, 4)))
    implied = lambda xt, a: (xt - math.sqrt(a) * x0) / math.sqrt(1 - a)  # noqa: E731
    np.testing.assert_allclose(implied(out, a_p), implied(x, a_t))
    np.testing.assert_allclose(ddim_step(math.sqrt(a_t) * x0, x0, a_t, a_p, 0.0, x), math.sqrt(a_p) * x0)


# --- selection ---------------------------------------------------------------------------------
def test_selection_shares_elitism_and_diversity():
    rng = np.random.default_rng(3)
    n, x = 30, rng.random((60, 10))
    x[7] += 5.0  # far from everyone: the diversity share must take it
    f = rng.normal(size=60)
    genotypes = [(i,) for i in range(60)]
    keep = select_survivors(x, f, genotypes, n, (0.1, 0.7, 0.2), rng)
    assert len(keep) == n and len(set(keep.tolist())) == n
    assert set(keep[:3].tolist()) == set(np.argsort(-f)[:3].tolist())  # 10 % elitism = the 3 best
    assert 7 in keep[3:9].tolist()  # 20 % = 6 most distant


def test_elitism_skips_duplicate_genotypes_and_keeps_the_best_over_a_run(nb201):
    f = np.array([5.0, 5.0, 4.0, 1.0, 0.0, 0.0])
    keep = select_survivors(np.eye(6), f, [(0,), (0,), (1,), (2,), (3,), (4,)], 3, (0.34, 0.66, 0.0),
                            np.random.default_rng(0))
    assert keep[0] == 0 and 1 not in keep[:1]
    strategy = EDNAG(fitness="predictor", steps=15, population_size=12, finetune=False)
    strategy.setup(nb201.space, np.random.default_rng(0), TableSurrogate(nb201))
    best_so_far = -np.inf
    strategy._start_run()
    run = strategy.run
    run.fitness, _ = strategy._fitness(run.genotypes)
    while run.k > 0:
        best_so_far = max(best_so_far, run.fitness.max())
        run.offspring_x, run.offspring = strategy._offspring(run.x, run.fitness, run.k)
        fo, _ = strategy._fitness(run.offspring)
        best_so_far = max(best_so_far, fo.max())
        strategy._survive(run, fo)
        assert run.fitness.max() == best_so_far  # elitism never loses the best seen


def test_bad_shares_and_settings_are_refused():
    with pytest.raises(ValueError, match="must be 1"):
        EDNAG(elite_share=0.2, roulette_share=0.7, diversity_share=0.2)
    with pytest.raises(ValueError, match="fitness"):
        EDNAG(fitness="test_accuracy")
    with pytest.raises(ValueError, match="needs a trained predictor"):
        EDNAG(fitness="predictor").setup(get_space("nb201"), np.random.default_rng(0), None)


# --- decoding -------------------------------------------------------------------------------------
def test_layout_decodes_argmax_per_row_and_masks_padding():
    layout = MatrixLayout([2, 4, 3])
    assert layout.dim == 9
    x = np.full((1, 9), -5.0)
    x[0, [1, 2 + 3, 6 + 0]] = 1.0
    assert layout.decode(x).tolist() == [[1, 3, 0]]
    g = np.array([[0, 2, 1], [1, 0, 2]])
    assert layout.decode(layout.encode(g)).tolist() == g.tolist()


def test_decode_repairs_or_redraws_invalid_cells_and_counts_them():
    space = get_space("darts")  # a random argmax is valid only ~4 % of the time there
    decoder = MatrixDecoder(space)
    x, genotypes = decoder.decode(np.random.default_rng(1).standard_normal((40, decoder.layout.dim)),
                                  np.random.default_rng(0))
    assert all(space.is_valid(space.make(g)) for g in genotypes)
    assert [tuple(r) for r in decoder.layout.decode(x).tolist()] == genotypes  # x agrees with the decode
    s = decoder.stats
    assert s.decoded == 40 and s.repaired + s.redrawn > 30


# --- the strategy through the loop -------------------------------------------------------------
def run(bench, strategy, run_dir, budget, seed=0, surrogate=None, ask_batch=10):
    oracle = TabularOracle(bench, OBJECTIVE, [REPORT], budget)
    return SearchLoop(strategy, oracle, run_dir, seed=seed, ask_batch=ask_batch, surrogate=surrogate,
                      progress=False).run()


def small(**kw):
    return EDNAG(steps=20, population_size=12, **kw)


def test_predictor_mode_sends_only_generated_top_ranked_to_the_oracle(nb201, tmp_path):
    surrogate = TableSurrogate(nb201)
    strategy = small(fitness="predictor")
    results = run(nb201, strategy, tmp_path, budget=20, surrogate=surrogate)
    archs = [q["arch"] for q in results["queries"]]
    assert len(archs) == 20 and len(set(archs)) == 20
    # the first batch is the generation's best by predicted fitness (canonical forms distinct)
    first = [nb201.query(a, OBJECTIVE) for a in archs[:10]]
    assert first == sorted(first, reverse=True)
    assert surrogate.updates == 2  # fine-tuned on each batch of labels
    assert results["strategy_stats"]["generation_runs"] == 2
    space = nb201.space
    assert len({space.canonical(space.from_string(a)) for a in archs}) == 20


def test_random_start_asks_random_cells_before_the_predictor_ranks(nb201, tmp_path):
    surrogate = TableSurrogate(nb201)
    strategy = small(fitness="predictor", random_start=10)
    results = run(nb201, strategy, tmp_path, budget=20, surrogate=surrogate, ask_batch=5)
    archs = [q["arch"] for q in results["queries"]]
    assert len(set(archs)) == 20
    assert results["strategy_stats"]["generation_runs"] == 2  # one per generated batch of 5, none for the first 10
    assert surrogate.updates == 4  # yet the predictor learnt from every batch, random ones included
    # the random start is no ranking: the generated batch that follows beats it on average
    random, generated = ([nb201.query(a, OBJECTIVE) for a in archs[i:i + 10]] for i in (0, 10))
    assert np.mean(generated) > np.mean(random)
    assert generated[:5] == sorted(generated[:5], reverse=True)
    with pytest.raises(ValueError, match="random_start"):
        small(random_start=-1)


def test_oracle_mode_asks_for_each_generation(nb201, tmp_path):
    strategy = small(fitness="oracle")
    results = run(nb201, strategy, tmp_path, budget=40)
    assert len(results["queries"]) == 40
    assert len(strategy.known) == 40  # every evaluation became fitness
    assert strategy.run is not None and strategy.run.k < 20  # the run advanced on oracle answers


def test_reproducible_by_seed(nb201, tmp_path):
    a = run(nb201, small(fitness="oracle"), tmp_path / "a", budget=25, seed=5)
    b = run(nb201, small(fitness="oracle"), tmp_path / "b", budget=25, seed=5)
    c = run(nb201, small(fitness="oracle"), tmp_path / "c", budget=25, seed=6)
    assert [q["arch"] for q in a["queries"]] == [q["arch"] for q in b["queries"]]
    assert [q["arch"] for q in a["queries"]] != [q["arch"] for q in c["queries"]]


@pytest.mark.parametrize("fitness", ["oracle", "predictor"])
def test_state_dict_round_trip_continues_identically(nb201, fitness):
    def fresh(rng):
        s = small(fitness=fitness)
        s.setup(nb201.space, rng, TableSurrogate(nb201))
        return s

    def step(s, n=7):
        archs = s.ask(n)
        s.tell(archs, [nb201.query(a, OBJECTIVE) for a in archs])
        return [a.genotype for a in archs]

    rng = np.random.default_rng(11)
    original = fresh(rng)
    for _ in range(3):
        step(original)
    state = torch.load(_roundtrip(original.state_dict()), weights_only=True)
    rng_copy = np.random.default_rng()
    rng_copy.bit_generator.state = rng.bit_generator.state
    restored = fresh(rng_copy)
    restored.load_state_dict(state)
    assert [step(original) for _ in range(3)] == [step(restored) for _ in range(3)]


def _roundtrip(state):
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return buffer


def test_resumed_loop_equals_uninterrupted_loop(nb201, tmp_path):
    full = run(nb201, small(fitness="oracle"), tmp_path / "full", budget=30, ask_batch=4)
    run(nb201, small(fitness="oracle"), tmp_path / "cut", budget=13, ask_batch=4)
    resumed = run(nb201, small(fitness="oracle"), tmp_path / "cut", budget=30, ask_batch=4)
    assert [q["arch"] for q in resumed["queries"]] == [q["arch"] for q in full["queries"]]


# --- end to end through the CLI -------------------------------------------------------------
@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a small GIN is slower on two contended threads than on one
    yield
    torch.set_num_threads(threads)


def test_cli_search_with_a_predictor_checkpoint(shared, tmp_path, one_thread, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing the CLI writes lands in the working tree
    from lightning_nas.cli import main
    from lightning_nas.predictors.gin import GINRegressor

    ckpt = tmp_path / "gin.ckpt"
    torch.manual_seed(0)
    torch.save({"state_dict": GINRegressor().state_dict()}, ckpt)
    config = tmp_path / "ednag.yaml"
    config.write_text(f"""
seed_everything: 3
model:
  class_path: lightning_nas.predictors.gin.GINRegressor
data:
  class_path: lightning_nas.data.ArchitectureDataModule
  init_args:
    benchmark: {shared / 'nb201_200ep.csv.gz'}
    target: {OBJECTIVE}
    num_labelled: 0
strategy:
  class_path: lightning_nas.search.ednag.EDNAG
  init_args: {{fitness: predictor, steps: 10, population_size: 10}}
ckpt_path: {ckpt}
budget: 12
ask_batch: 6
finetune_epochs: 1
report: [{REPORT}]
run_dir: {tmp_path / 'run'}
progress: false
""")
    assert main(["search", "--config", str(config)]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert len(results["queries"]) == 12
    assert results["strategy"] == "EDNAG"
    assert results["strategy_stats"]["generation_runs"] == 2


def test_proxy_mode_is_training_free_end_to_end(nb201, tmp_path):
    strategy = EDNAG(fitness="proxy", proxy="params", steps=4, population_size=6,
                     proxy_network={"channels": 4, "cells_per_stage": 1})
    oracle = TabularOracle(nb201, OBJECTIVE, [REPORT], None)
    results = run_search(None, strategy, budget=3, run_dir=str(tmp_path), ask_batch=3, progress=False, oracle=oracle)
    assert len(results["queries"]) == 3
    params = [strategy.surrogate.cache[q["arch"]] for q in results["queries"]]  # the runner built the proxy
    assert params == sorted(params, reverse=True)  # the largest generated networks are asked first


def test_the_runner_builds_the_proxy_surrogate_or_refuses_a_model_beside_it(nb201):
    from lightning_nas.predictors.gin import GINRegressor
    from lightning_nas.proxies.oracle import ProxySurrogate

    def build(strategy, model=None, proxy=None):
        return build_surrogate(strategy, model, nb201.space, proxy, finetune_epochs=0, seed=0, canonical_inputs=False)

    assert isinstance(build(EDNAG(fitness="proxy", proxy="params")), ProxySurrogate)
    assert isinstance(build(EDNAG(fitness="predictor"), proxy={"proxy": "params"}), ProxySurrogate)
    assert build(EDNAG(fitness="oracle")) is None
    with pytest.raises(ConfigError, match="zero-cost proxy 'params'.*remove `model:`"):
        build(EDNAG(fitness="proxy", proxy="params"), model=GINRegressor())
    with pytest.raises(ValueError, match="real data"):
        build(EDNAG(fitness="proxy", proxy="snip"))
