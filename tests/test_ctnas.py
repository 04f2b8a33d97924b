"""CTNAS: the comparator (NAC), the controller, the curriculum baseline and the search strategy."""
from __future__ import annotations

import io
import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch_geometric.loader import DataLoader

from lightning_nas.encodings.graph import to_batch, to_data
from lightning_nas.nn.controller import ArchitectureController, sample_valid, split_valid
from lightning_nas.nn.gcn import GCNEncoder
from lightning_nas.predictors.comparator import NeuralArchitectureComparator
from lightning_nas.search.ctnas import CTNAS, curriculum_baseline
from lightning_nas.search.surrogates import ComparatorSurrogate, PredictorSurrogate
from lightning_nas.spaces import get_space

ROOT = Path(__file__).resolve().parents[1]
NB201 = get_space("nb201")
TINY = dict(hidden=16, num_layers=2, lr=1e-2, weight_decay=0.0, reference_size=16)


def toy_quality(genotype) -> float:
    """A strict order on NB201 cells: a weighted count of 3x3 convolutions and 1x1 convolutions."""
    weights = np.array([1.0, 1.3, 1.7, 2.1, 2.6, 3.2])
    g = np.asarray(genotype)
    return float((weights * (g == 3)).sum() + 0.5 * (weights * (g == 2)).sum())


def distinct_archs(n: int, seed: int):
    rng = np.random.default_rng(seed)
    out = {}
    while len(out) < n:
        a = NB201.sample(rng)
        out[a.genotype] = a
    return list(out.values())


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The machine is shared: one intra-op thread is faster here than two contending ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained_nac():
    """A small NAC trained on 96 architectures ordered by `toy_quality`."""
    L.seed_everything(0, verbose=False)
    archs = distinct_archs(96, seed=1)
    data = [to_data(NB201, a, toy_quality(a.genotype)) for a in archs]
    loader = DataLoader(data, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))
    nac = NeuralArchitectureComparator(**TINY)
    trainer = L.Trainer(max_epochs=40, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(nac, loader)
    return nac.eval()


# --- GCN and comparator --------------------------------------------------------------------
def test_gcn_encoder_gives_one_vector_per_graph():
    batch = to_batch(NB201, distinct_archs(5, seed=0))
    encoder = GCNEncoder(batch.x.size(1), hidden=8, num_layers=3)
    assert encoder(batch.x, batch.edge_index, batch.batch).shape == (5, 8)
    with pytest.raises(ValueError, match="num_layers"):
        GCNEncoder(7, num_layers=0)


def test_logit_matrix_is_the_fc_over_the_concatenation():
    torch.manual_seed(0)
    nac = NeuralArchitectureComparator(**TINY)
    za, zb = torch.randn(4, 16), torch.randn(3, 16)
    pairs = torch.stack([nac.pair_logits(za[i : i + 1], zb[j : j + 1])[0] for i in range(4) for j in range(3)])
    assert torch.allclose(nac.logit_matrix(za, zb).flatten(), pairs, atol=1e-6)


def test_bce_covers_every_labelled_pair_in_both_orders_and_skips_ties():
    torch.manual_seed(0)
    nac = NeuralArchitectureComparator(**TINY)
    z = torch.randn(4, 16)
    y = torch.tensor([0.3, -1.0, 0.3, 2.0])  # rows 0 and 2 tie
    terms = []
    for i in range(4):
        for j in range(4):
            if i != j and y[i] != y[j]:
                target = torch.tensor([float(y[i] > y[j])])
                terms.append(torch.nn.functional.binary_cross_entropy_with_logits(nac.pair_logits(z[i : i + 1], z[j : j + 1]), target))
    assert len(terms) == 10  # 12 ordered pairs minus the tie in both orders
    assert torch.allclose(nac.labelled_pair_loss(z, y), torch.stack(terms).mean(), atol=1e-6)


def test_nac_learns_a_toy_order_and_is_nearly_antisymmetric(trained_nac):
    held_out = distinct_archs(160, seed=7)
    a, b = held_out[:80], held_out[80:]
    p_ab, p_ba = trained_nac.compare(a, b), trained_nac.compare(b, a)
    truth = torch.tensor([toy_quality(x.genotype) > toy_quality(y.genotype) for x, y in zip(a, b)])
    differs = torch.tensor([toy_quality(x.genotype) != toy_quality(y.genotype) for x, y in zip(a, b)])
    accuracy = ((p_ab > 0.5) == truth)[differs].float().mean()
    assert accuracy > 0.85
    assert (p_ab + p_ba - 1).abs().mean() < 0.15  # NAC(a, b) ~ 1 - NAC(b, a), learnt from both orders
    scores = trained_nac(to_batch(NB201, held_out))
    quality = torch.tensor([toy_quality(x.genotype) for x in held_out])
    from torchmetrics.functional import kendall_rank_corrcoef

    assert kendall_rank_corrcoef(scores, quality) > 0.7


def test_score_does_not_depend_on_the_rest_of_the_batch(trained_nac):
    archs = distinct_archs(12, seed=3)
    whole = trained_nac(to_batch(NB201, archs))
    parts = torch.cat([trained_nac(to_batch(NB201, archs[:5])), trained_nac(to_batch(NB201, archs[5:]))])
    assert torch.allclose(whole, parts, atol=1e-6)


def test_pseudo_pairs_enter_the_training_loss():
    torch.manual_seed(0)
    nac = NeuralArchitectureComparator(**TINY, pseudo_ratio=1.0)
    archs = distinct_archs(8, seed=0)
    batch = to_batch(NB201, archs, [toy_quality(a.genotype) for a in archs])
    nac.log = lambda *args, **kwargs: None  # outside a Trainer
    plain = nac.training_step(batch, 0)
    nac.set_pseudo_pairs(archs[:4], archs[4:], [1.0, 0.0, 1.0, 0.0])
    assert not torch.isclose(nac.training_step(batch, 0), plain)
    with pytest.raises(ValueError, match="equal lengths"):
        nac.set_pseudo_pairs(archs[:4], archs[4:], [1.0])


# --- curriculum baseline ---------------------------------------------------------------
def test_curriculum_baseline_is_the_argmax_of_mean_comparison():
    p = torch.tensor([[0.5, 0.2, 0.9], [0.8, 0.5, 0.6], [0.1, 0.4, 0.5]])
    # mean over the others: row 0 = 0.55, row 1 = 0.70, row 2 = 0.25 (the diagonal is ignored)
    assert curriculum_baseline(p) == 1
    tie = torch.tensor([[0.0, 0.6], [0.6, 0.0]])
    assert curriculum_baseline(tie) == 1  # Alg. 2's `>=`: the later one wins a tie
    assert curriculum_baseline(torch.tensor([[0.5]])) == 0


# --- controller ------------------------------------------------------------------------
def test_controller_samples_reproducibly_and_evaluates_its_own_samples():
    controller = ArchitectureController(NB201.choices(), hidden_size=16)
    first = controller.sample(6, torch.Generator().manual_seed(3))
    again = controller.sample(6, torch.Generator().manual_seed(3))
    assert torch.equal(first.genotypes, again.genotypes)
    assert split_valid(NB201, first.genotypes)[1].all()
    replay = controller.evaluate(first.genotypes)
    assert torch.allclose(replay.log_prob, first.log_prob) and torch.allclose(replay.entropy, first.entropy)
    with pytest.raises(ValueError, match="outside"):
        controller.evaluate([[0, 0, 0, 0, 0, 9]])


def test_controller_on_nb101_resamples_invalid_cells_and_counts_them():
    space = get_space("nb101")
    controller = ArchitectureController(space.choices(), hidden_size=16)
    archs, invalid = sample_valid(controller, space, 8, torch.Generator().manual_seed(0))
    assert len(archs) == 8 and all(space.is_valid(a) for a in archs)
    assert invalid > 0  # uniform-ish adjacency bits often exceed 9 edges or disconnect the cell


def test_a_controller_short_of_valid_cells_names_max_draws():
    """An untrained controller on DARTS draws a valid cell about 1 time in 25: too few draws is a
    config problem (exit 2, one line naming max_draws), not a bug."""
    from lightning_nas.errors import ConfigError

    space = get_space("darts")
    controller = ArchitectureController(space.choices(), hidden_size=16)
    with pytest.raises(ConfigError, match="raise strategy max_draws"):
        sample_valid(controller, space, 10, torch.Generator().manual_seed(0), max_draws=1)


def test_reinforce_raises_the_log_prob_of_rewarded_samples():
    torch.manual_seed(0)
    controller = ArchitectureController(NB201.choices(), hidden_size=16)
    optimizer = torch.optim.Adam(controller.parameters(), lr=0.02)
    rewarded = torch.tensor([[3, 3, 3, 3, 3, 3]])
    before = controller.evaluate(rewarded).log_prob.item()
    generator = torch.Generator().manual_seed(0)
    for _ in range(30):
        sample = controller.sample(16, generator)
        reward = (sample.genotypes == 3).float().mean(1)
        loss = -(sample.log_prob * (reward - reward.mean())).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert controller.evaluate(rewarded).log_prob.item() > before + 1.0


# --- the strategy ------------------------------------------------------------------------
def make_strategy(seed: int = 0, **kwargs) -> CTNAS:
    torch.manual_seed(seed)
    nac = NeuralArchitectureComparator(**TINY)
    surrogate = ComparatorSurrogate(nac, NB201, finetune_epochs=2, seed=seed)
    options = dict(initial_size=4, controller_steps=4, samples_per_step=4, baseline_every=2, num_derive=3,
                   explore_pairs=10, pseudo_threshold=0.5, candidate_pool=12)
    strategy = CTNAS(**{**options, **kwargs})
    strategy.setup(NB201, np.random.default_rng(seed), surrogate)
    return strategy


def play_round(strategy: CTNAS, n: int = 4):
    archs = strategy.ask(n)
    strategy.tell(archs, [toy_quality(a.genotype) for a in archs])
    return archs


def test_strategy_refuses_bad_settings_and_a_non_comparator():
    with pytest.raises(ValueError, match="invalid_samples"):
        CTNAS(invalid_samples="ignore")
    with pytest.raises(ValueError, match="pseudo_threshold"):
        CTNAS(pseudo_threshold=0.3)
    from lightning_nas.errors import ConfigError
    from lightning_nas.predictors.gin import GINRegressor

    with pytest.raises(ConfigError, match="needs a PairwiseSurrogate, which a PredictorSurrogate is not: .*comparator"):
        CTNAS().setup(NB201, np.random.default_rng(0), PredictorSurrogate(GINRegressor(), NB201))
    with pytest.raises(ConfigError, match="built for space 'nb101' but the search runs on 'nb201'"):
        ComparatorSurrogate(NeuralArchitectureComparator(space="nb101", **TINY), NB201)


def test_baseline_update_takes_the_best_candidate_by_mean_comparison(monkeypatch):
    strategy = make_strategy()
    play_round(strategy)
    strategy.baseline = strategy._sample(1)[0]

    def by_quality(a, b):  # a comparator that knows the toy order exactly
        qa = torch.tensor([toy_quality(x.genotype) for x in a])
        qb = torch.tensor([toy_quality(x.genotype) for x in b])
        return torch.sigmoid(4 * (qa[:, None] - qb[None, :]))

    monkeypatch.setattr(strategy.surrogate, "compare_all", by_quality)
    seen = []
    monkeypatch.setattr(strategy, "_sample", lambda n, original=strategy._sample: seen.extend(original(n)) or seen[-n:])
    old = strategy.baseline
    strategy._update_baseline()
    candidates = [old, *seen]
    assert toy_quality(strategy.baseline.genotype) == max(toy_quality(a.genotype) for a in candidates)
    assert old in strategy.past_baselines


def test_rounds_explore_pseudo_pairs_and_never_repeat_queries():
    strategy = make_strategy()
    queried = []
    for _ in range(4):
        queried += play_round(strategy)
    keys = [NB201.key(a) for a in queried]
    assert len(set(keys)) == len(keys) == 16
    stats = strategy.stats()
    assert stats["policy_steps"] == 12 and stats["baseline_updates"] == 6
    assert stats["pseudo_pairs"] > 0 and len(strategy.surrogate.model.pseudo_first) == stats["pseudo_pairs"]
    assert set(strategy.pseudo[2]) <= {0.0, 1.0}


@pytest.mark.parametrize("random_candidates", [0, 40])
def test_random_candidates_join_the_pool_the_nac_ranks(monkeypatch, random_candidates):
    strategy = make_strategy(random_candidates=random_candidates)
    play_round(strategy)  # the initial uniform queries
    ranked, sampled = [], []
    score, sample = strategy.surrogate.score, strategy._sample
    monkeypatch.setattr(strategy.surrogate, "score", lambda archs: ranked.extend(archs) or score(archs))
    monkeypatch.setattr(strategy, "_sample", lambda n: sampled.extend(sample(n)) or sampled[-n:])
    uniform_rng = np.random.default_rng()
    uniform_rng.bit_generator.state = strategy.rng.bit_generator.state  # the round draws its uniform cells first
    proposed = set(strategy.proposed)
    play_round(strategy)
    uniform = {NB201.key(NB201.sample(uniform_rng)) for _ in range(random_candidates)}
    policy = {NB201.key(a) for a in sampled}  # every policy sample of the round, baselines included
    ranked = {NB201.key(a) for a in ranked}
    assert uniform - proposed <= ranked  # every new uniform cell is ranked ...
    assert ranked <= (policy | uniform) - proposed  # ... beside new policy samples, and nothing else
    assert len(uniform - policy - proposed) >= random_candidates - 4  # the uniform cells are mostly new
    with pytest.raises(ValueError, match="random_candidates"):
        CTNAS(random_candidates=-1)


def test_state_dict_round_trip_resumes_the_same_search():
    strategy = make_strategy()
    for _ in range(2):
        play_round(strategy)
    buffer = io.BytesIO()
    torch.save({"strategy": strategy.state_dict(), "surrogate": strategy.surrogate.state_dict(),
                "torch": torch.get_rng_state()}, buffer)
    expected = [a.genotype for a in play_round(strategy)]

    state = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    resumed = make_strategy()
    resumed.load_state_dict(state["strategy"])
    resumed.surrogate.load_state_dict(state["surrogate"])  # as the loop restores both
    torch.set_rng_state(state["torch"])
    assert [a.genotype for a in resumed.ask(4)] == expected


def test_search_cli_end_to_end(shared, tmp_path, monkeypatch):
    from lightning_nas.cli import main

    monkeypatch.chdir(ROOT)
    run_dir = tmp_path / "run"
    code = main([
        "search", "--config", "configs/methods/ctnas.yaml", "--config", "configs/methods/nb201/ctnas.yaml",
        "--config", "configs/protocols/nb201-cifar10.yaml", "--budget", "24", "--ask_batch", "8",
        "--run_dir", str(run_dir), "--progress", "false", "--finetune_epochs", "2",
        "--data.init_args.benchmark", str(shared / "nb201_200ep.csv.gz"),
        "--model.init_args.hidden", "16", "--model.init_args.num_layers", "2",
        "--strategy.init_args.initial_size", "8", "--strategy.init_args.controller_steps", "4",
        "--strategy.init_args.candidate_pool", "16", "--strategy.init_args.explore_pairs", "8",
    ])
    assert code == 0
    results = json.loads((run_dir / "results.json").read_text())
    assert len(results["queries"]) == 24 and results["strategy"] == "CTNAS"
    assert results["strategy_stats"]["policy_steps"] == 8  # two controller rounds after the uniform start
    assert 0 < results["best"]["report"]["cifar10_test_acc"] <= 100


def test_resample_policy_keeps_only_valid_nb101_cells_and_counts_the_rest():
    space = get_space("nb101")
    torch.manual_seed(0)
    nac = NeuralArchitectureComparator(space="nb101", **TINY)
    strategy = CTNAS(samples_per_step=8, invalid_samples="resample")
    strategy.setup(space, np.random.default_rng(0), ComparatorSurrogate(nac, space, finetune_epochs=0))
    sample = strategy._policy_sample()
    assert len(sample.genotypes) == 8 and split_valid(space, sample.genotypes)[1].all()
    assert strategy.counters["invalid_samples"] > 0
    assert sample.log_prob.requires_grad
