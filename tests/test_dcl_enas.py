"""DCL-ENAS: K-medoids, the two training stages, the search strategy, and the CLI end to end."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from lightning_nas.clustering import kmedoids, manhattan
from lightning_nas.data.pool import ClusteredPoolDataModule, crowding_distances, draw_pool
from lightning_nas.encodings.graph import to_batch
from lightning_nas.predictors.dcl import (
    ContrastivePretrainer,
    RankingFinetuner,
    crowding_temperatures,
    ordered_pairs,
    pairwise_ranking_loss,
)
from lightning_nas.search.dcl_enas import DCLENAS
from lightning_nas.search.surrogate import Surrogate
from lightning_nas.spaces import get_space

@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: extra intra-op threads only contend on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY = dict(hidden=16, embed_dim=16, gin_layers=2, transformer_layers=1, heads=2)


def quiet_trainer(**kwargs) -> L.Trainer:
    return L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                     enable_checkpointing=False, **kwargs)


# --- K-medoids -----------------------------------------------------------------------------
POINTS_1D = np.array([[0], [1], [2], [10], [11], [12], [30], [31]], dtype=np.float32)


def brute_force_inertia(x: np.ndarray, k: int) -> float:
    d = np.abs(x[:, None, :] - x[None, :, :]).sum(-1)
    return min(d[:, list(m)].min(1).sum() for m in itertools.combinations(range(len(x)), k))


@pytest.mark.parametrize("seed", range(5))
def test_kmedoids_finds_the_known_optimum(seed):
    result = kmedoids(POINTS_1D, 3, np.random.default_rng(seed))
    groups = {tuple(np.flatnonzero(result.labels == c)) for c in range(3)}
    assert groups == {(0, 1, 2), (3, 4, 5), (6, 7)}
    assert POINTS_1D[result.medoids[result.labels[0]], 0] == 1
    assert POINTS_1D[result.medoids[result.labels[3]], 0] == 11
    assert result.inertia == pytest.approx(brute_force_inertia(POINTS_1D, 3)) == 5.0
    assert result.converged


def test_kmedoids_matches_brute_force_on_random_binary_rows():
    x = np.random.default_rng(3).integers(0, 2, size=(11, 6)).astype(np.float32)
    result = kmedoids(x, 2, np.random.default_rng(1))
    assert result.inertia <= brute_force_inertia(x, 2) + 1.0  # alternate K-medoids: local optimum, near exact here
    np.testing.assert_allclose(result.distances, np.abs(x - x[result.medoids[result.labels]]).sum(1))


def test_kmedoids_is_deterministic_by_seed_and_independent_of_chunking():
    space = get_space("nb201")
    x = np.stack([space.path_encoding(space.sample(np.random.default_rng(i))) for i in range(600)])
    a = kmedoids(x, 10, np.random.default_rng(7))
    b = kmedoids(x, 10, np.random.default_rng(7), chunk=37)
    np.testing.assert_array_equal(a.medoids, b.medoids)
    np.testing.assert_array_equal(a.labels, b.labels)
    c = kmedoids(x, 10, np.random.default_rng(8))
    assert not np.array_equal(a.medoids, c.medoids)


def test_duplicate_rows_are_weighted_not_lost():
    x = np.array([[0, 0], [0, 0], [0, 0], [0, 1], [5, 5], [5, 6]], dtype=np.float32)
    result = kmedoids(x, 2, np.random.default_rng(0))
    assert len(set(result.labels[:4])) == 1 and result.labels[0] != result.labels[4]
    assert result.sizes.sum() == 6
    assert x[result.medoids[result.labels[0]]].tolist() == [0, 0]  # the heavy duplicate is the medoid


def test_manhattan_binary_shortcut_equals_cdist():
    a = torch.randint(0, 2, (9, 13)).float()
    b = torch.randint(0, 2, (4, 13)).float()
    torch.testing.assert_close(manhattan(a, b), torch.cdist(a, b, p=1.0))
    torch.testing.assert_close(manhattan(a * 0.5, b), torch.cdist(a * 0.5, b, p=1.0))


def test_kmedoids_rejects_bad_input():
    with pytest.raises(ValueError, match="distinct rows"):
        kmedoids(np.zeros((5, 3)), 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="k must be"):
        kmedoids(np.eye(3), 4, np.random.default_rng(0))
    with pytest.raises(ValueError, match="NaN"):
        kmedoids(np.array([[np.nan], [1.0]]), 1, np.random.default_rng(0))


# --- stage 1 --------------------------------------------------------------------------------
def test_pool_is_the_whole_space_when_small_and_distinct_samples_otherwise():
    assert len(draw_pool(get_space("tnb101_micro"), 5000, np.random.default_rng(0))) == 4096
    pool = draw_pool(get_space("nb201"), 300, np.random.default_rng(0))
    assert len({a.genotype for a in pool}) == 300


def test_crowding_temperatures_follow_cluster_spread():
    x = np.array([[0], [1], [2], [100], [130], [160]], dtype=np.float32)
    result = kmedoids(x, 2, np.random.default_rng(0))
    crowding = crowding_distances(result)
    tight, loose = result.labels[0], result.labels[3]
    assert crowding[tight] < crowding[loose]
    tau = crowding_temperatures(torch.tensor(crowding), base=0.1, clamp=(0.01, 100.0))
    assert tau[tight] < tau[loose] and tau.mean() == pytest.approx(0.1)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    """A small stage-1 run; returns its checkpoint."""
    L.seed_everything(0, verbose=False)
    dm = ClusteredPoolDataModule("nb201", pool_size=400, num_clusters=4, seed=0, batch_size=64, val_fraction=0.25)
    model = ContrastivePretrainer("nb201", num_clusters=4, **TINY, lr=3e-3)
    trainer = quiet_trainer(max_epochs=4)
    dm.setup()
    model.set_prototypes(dm.medoids, torch.as_tensor(dm.crowding, dtype=torch.float32))
    before = trainer.validate(model, dm, verbose=False)[0]["val_loss"]
    trainer.fit(model, dm)
    after = trainer.validate(model, dm, verbose=False)[0]["val_loss"]
    assert after < 0.7 * before, (before, after)
    path = tmp_path_factory.mktemp("stage1") / "pretrain.ckpt"
    trainer.save_checkpoint(path)
    return path


def test_contrastive_loss_decreases_and_prototypes_come_from_the_data(pretrained):
    state = torch.load(pretrained, weights_only=True)
    assert state["hyper_parameters"]["num_clusters"] == 4
    assert (state["state_dict"]["temperatures"] > 0).all()


def test_pretrainer_refuses_mismatched_cluster_count():
    dm = ClusteredPoolDataModule("nb201", pool_size=100, num_clusters=3, seed=0)
    model = ContrastivePretrainer("nb201", num_clusters=5, **TINY)
    with pytest.raises(ValueError, match="num_clusters"):
        quiet_trainer(max_epochs=1).fit(model, dm)


# --- stage 2 --------------------------------------------------------------------------------
def test_stage2_starts_from_stage1_weights(pretrained):
    stage1 = torch.load(pretrained, weights_only=True)["state_dict"]
    model = RankingFinetuner("nb201", pretrained=str(pretrained), **TINY)
    for name, value in model.encoder.state_dict().items():
        torch.testing.assert_close(value, stage1[f"encoder.{name}"])
    scratch = RankingFinetuner("nb201", **TINY)
    assert not torch.equal(scratch.encoder.project.weight, model.encoder.project.weight)


def test_stage2_refuses_a_different_encoder_or_a_missing_file(pretrained, tmp_path):
    with pytest.raises(ValueError, match="hidden"):
        RankingFinetuner("nb201", pretrained=str(pretrained), **{**TINY, "hidden": 32})
    with pytest.raises(FileNotFoundError, match="dcl_enas_pretrain"):
        RankingFinetuner("nb201", pretrained=str(tmp_path / "missing.ckpt"), **TINY)


def test_stage2_refuses_other_message_directions_also_from_older_checkpoints(pretrained, tmp_path):
    with pytest.raises(ValueError, match="bidirectional"):
        RankingFinetuner("nb201", pretrained=str(pretrained), **TINY, bidirectional=True)
    # a stage-1 checkpoint written before the option existed was trained with one-way messages
    ckpt = torch.load(pretrained, weights_only=True)
    del ckpt["hyper_parameters"]["bidirectional"]
    older = tmp_path / "older.ckpt"
    torch.save(ckpt, older)
    RankingFinetuner("nb201", pretrained=str(older), **TINY)
    with pytest.raises(ValueError, match="bidirectional: checkpoint False vs model True"):
        RankingFinetuner("nb201", pretrained=str(older), **TINY, bidirectional=True)


def test_stage2_refuses_another_readout_and_reads_an_older_checkpoint_as_attention(pretrained, tmp_path):
    with pytest.raises(ValueError, match="readout: checkpoint 'attention' vs model 'sum'"):
        RankingFinetuner("nb201", pretrained=str(pretrained), **TINY, readout="sum")
    RankingFinetuner("nb201", pretrained=str(pretrained), **TINY, readout="attention")  # None and the paper's agree
    with pytest.raises(ValueError, match="readout must be one of attention, sum"):
        RankingFinetuner("nb201", **TINY, readout="max")


def test_the_sum_readout_is_the_attention_readout_times_the_node_count():
    """The same gate weights; sum keeps how many nodes a graph has (DARTS: 30, NB101: up to 7)."""
    space = get_space("nb101")
    archs = [space.sample(np.random.default_rng(seed)) for seed in range(6)]
    batch = to_batch(space, archs)
    assert len(set(torch.bincount(batch.batch).tolist())) > 1  # graphs of different sizes
    torch.manual_seed(0)
    attention = RankingFinetuner("nb101", **TINY).encoder.node_attention
    torch.manual_seed(0)
    summed = RankingFinetuner("nb101", **TINY, readout="sum").encoder.node_attention
    mean = attention(batch.x, batch.edge_index, batch.batch, batch.num_graphs)
    total = summed(batch.x, batch.edge_index, batch.batch, batch.num_graphs)
    assert torch.allclose(total, mean * torch.bincount(batch.batch).unsqueeze(1), atol=1e-5)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_bidirectional_messages_let_an_op_see_what_follows_it(bidirectional):
    """The first op node (cell edge 0 -> 1) lies upstream of the last op (edge 2 -> 3): only messages
    against the edges carry a change of the last op back to it."""
    space = get_space("nb201")
    torch.manual_seed(0)
    attention = RankingFinetuner("nb201", **TINY, bidirectional=bidirectional).encoder.node_attention
    states = []  # the node states after the last GIN layer, caught inside the encoder's own forward
    attention.norms[-1].register_forward_hook(lambda module, args, out: states.append(out))
    first_op = 1  # node 0 = input, node 1 + e = the op of cell edge e
    for last_op in (2, 3):
        batch = to_batch(space, [space.make((3, 3, 3, 3, 3, last_op))])
        attention(batch.x, batch.edge_index, batch.batch, batch.num_graphs)
    states = [s[first_op] for s in states]
    assert torch.allclose(states[0], states[1]) != bidirectional


def test_ranking_loss_uses_all_ordered_pairs():
    n = 6
    i, j = ordered_pairs(n)
    assert len(i) == n * (n - 1)
    assert len(set(zip(i.tolist(), j.tolist()))) == n * (n - 1) and bool((i != j).all())
    scores = torch.randn(n, requires_grad=True)
    y = torch.tensor([3.0, 1.0, 2.0, 2.0, 5.0, 0.0])
    expected = []
    for a in range(n):
        for b in range(n):
            if a != b:
                target = 0.5 if y[a] == y[b] else float(y[a] > y[b])
                p = torch.sigmoid(scores[a] - scores[b])
                expected.append(-(target * torch.log(p) + (1 - target) * torch.log(1 - p)))
    loss = pairwise_ranking_loss(scores, y)
    torch.testing.assert_close(loss, torch.stack(expected).mean())
    # only the order of the labels matters
    torch.testing.assert_close(pairwise_ranking_loss(scores, y**3 + 7), loss)
    loss.backward()
    assert (scores.grad != 0).all()


def test_ranking_loss_prefers_the_right_order():
    y = torch.arange(5.0)
    assert pairwise_ranking_loss(y * 3, y) < pairwise_ranking_loss(-y * 3, y)
    assert pairwise_ranking_loss(torch.ones(1, requires_grad=True), y[:1]) == 0


def test_finetuner_learns_a_ranking():
    space = get_space("nb201")
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(96)]
    y = torch.tensor([float(sum(op == 3 for op in a.genotype)) + 0.1 * i / 96 for i, a in enumerate(archs)])
    batch = to_batch(space, archs, y.tolist())
    L.seed_everything(0, verbose=False)
    model = RankingFinetuner("nb201", **TINY, lr=3e-3)
    optimizer = model.configure_optimizers()
    first = model.loss(model(batch), batch.y).item()
    for _ in range(60):
        loss = model.loss(model(batch), batch.y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.5 * first
    with pytest.raises(ValueError, match="loss must be"):
        RankingFinetuner("nb201", loss="hinge")


# --- search strategy --------------------------------------------------------------------------
class CountingSurrogate(Surrogate):
    """Predicts the number of conv3x3 ops; records what was scored and what it was told."""

    def __init__(self):
        self.scored: list = []
        self.updates: list = []

    def score(self, archs):
        self.scored.extend(archs)
        return torch.tensor([float(sum(op == 3 for op in a.genotype)) for a in archs])

    def update(self, archs, y):
        self.updates.append((list(archs), list(y)))


def test_strategy_asks_only_top_predicted_infill_and_respects_n():
    space = get_space("nb201")
    surrogate = CountingSurrogate()
    strategy = DCLENAS(initial_size=6, population_size=8, offspring_size=30, generations=3, infill_size=4)
    strategy.setup(space, np.random.default_rng(0), surrogate)
    first = strategy.ask(10)
    assert len(first) == 4  # infill_size caps n; the initial design is random
    strategy.tell(first, [1.0] * 4)
    assert len(strategy.ask(10)) == 2  # only what remains of the initial design
    strategy.tell(strategy.ask(2), [0.5, 0.6])
    assert len(surrogate.updates) == 2 and surrogate.updates[0][1] == [1.0] * 4
    surrogate.scored.clear()
    picked = strategy.ask(3)
    assert len(picked) == 3
    assert len(surrogate.scored) > 10 * len(picked)  # many offspring scored, few asked
    evaluated = set(strategy.evaluated)
    taken = {space.canonical(space.make(g)) for g in evaluated} | {space.canonical(a) for a in picked}
    left_out = [a for a in surrogate.scored if a not in picked and space.canonical(a) not in taken]
    predicted = CountingSurrogate().score
    assert left_out and predicted(picked).min() >= predicted(left_out).max()
    assert not {a.genotype for a in picked} & evaluated
    assert len({space.canonical(a) for a in picked}) == 3


def test_strategy_does_not_propose_again_what_the_oracle_could_not_evaluate():
    space = get_space("nb201")
    strategy = DCLENAS(initial_size=4, population_size=6, offspring_size=20, generations=2, infill_size=4)
    strategy.setup(space, np.random.default_rng(1), CountingSurrogate())
    refused = set()
    for _ in range(6):
        asked = strategy.ask(4)
        assert not {space.canonical(a) for a in asked} & refused
        told = asked[::2]  # pretend the others are missing from the benchmark
        refused |= {space.canonical(a) for a in asked[1::2]}
        strategy.tell(told, [1.0] * len(told))
    assert strategy.stats()["unavailable"] == len(refused)


def test_random_candidates_join_the_predicted_pool():
    space = get_space("nb201")
    no_conv3 = [g for g in (space.sample(np.random.default_rng(s)).genotype for s in range(200)) if 3 not in g][:4]
    best = {}
    for extra in (0, 300):
        strategy = DCLENAS(initial_size=4, population_size=4, offspring_size=4, generations=1, infill_size=2,
                           mutation_prob=0.0, crossover_prob=0.0, random_candidates=extra)
        strategy.setup(space, np.random.default_rng(0), CountingSurrogate())
        strategy.tell([space.make(g) for g in no_conv3], [1.0] * 4)  # a population without any conv3x3
        picked = strategy.ask(2)
        best[extra] = max(sum(op == 3 for op in a.genotype) for a in picked)
    # without fresh samples nothing new is predicted (no mutation, no crossover): the infill is topped
    # up with unscored random cells; with them, the predictor's favourites among 300 are asked
    assert best[300] >= 4 > best[0]
    with pytest.raises(ValueError, match="random_candidates"):
        DCLENAS(random_candidates=-1)


def test_uncertainty_weight_sends_the_infill_away_from_what_is_known():
    space = get_space("nb201")
    rng = np.random.default_rng(0)
    known = space.sample(rng)
    distance = lambda a, b: int(np.abs(space.path_encoding(a) - space.path_encoding(b)).sum())
    near = next(n for n in space.neighbours(known) if distance(n, known) > 0)
    far = sorted((space.sample(rng) for _ in range(300)), key=lambda a: -distance(a, known))[:2]
    assert distance(far[0], known) > distance(near, known)
    candidates = {near.genotype: 1.0, far[0].genotype: 0.9, far[1].genotype: 0.8}

    def infill(weight, want):
        strategy = DCLENAS(initial_size=1, infill_size=3, uncertainty_weight=weight)
        strategy.setup(space, np.random.default_rng(0), CountingSurrogate())
        strategy.tell([known], [1.0])
        return [a.genotype for a in strategy._infill(candidates, want)]

    assert infill(0.0, 3) == [near.genotype, far[0].genotype, far[1].genotype]  # the predicted order
    assert infill(0.0, 1) == [near.genotype]
    assert infill(10.0, 1) == [far[0].genotype]
    assert sorted(infill(10.0, 3)) == sorted(candidates)
    with pytest.raises(ValueError, match="uncertainty_weight"):
        DCLENAS(uncertainty_weight=-1.0)


def test_a_restored_strategy_continues_as_the_original():
    space = get_space("nb201")
    settings = dict(initial_size=2, population_size=4, offspring_size=10, generations=2, infill_size=2,
                    uncertainty_weight=0.5, random_candidates=5)

    def step(strategy):
        archs = strategy.ask(2)
        strategy.tell(archs, [float(sum(a.genotype)) for a in archs])
        return [a.genotype for a in archs]

    a = DCLENAS(**settings)
    a.setup(space, np.random.default_rng(0), CountingSurrogate())
    for _ in range(3):
        step(a)
    rng = np.random.default_rng()
    rng.bit_generator.state = a.rng.bit_generator.state  # the loop restores its RNG itself
    b = DCLENAS(**settings)
    b.setup(space, rng, CountingSurrogate())
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert [step(b) for _ in range(4)] == [step(a) for _ in range(4)]
    assert b.stats() == a.stats()


def test_strategy_needs_a_surrogate_and_valid_settings():
    with pytest.raises(ValueError, match="predictor"):
        DCLENAS().setup(get_space("nb201"), np.random.default_rng(0), None)
    with pytest.raises(ValueError, match="tournament_size"):
        DCLENAS(population_size=2, tournament_size=3)
    with pytest.raises(ValueError, match="crossover_prob"):
        DCLENAS(crossover_prob=1.5)


# --- end to end through the CLI ----------------------------------------------------------------
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_fit_then_search_through_the_cli(shared, tmp_path, monkeypatch):
    from lightning_nas.cli import main

    monkeypatch.chdir(tmp_path)
    tiny = [f"--model.init_args.{k}={v}" for k, v in TINY.items()]
    assert main(["fit", "--config", str(CONFIGS / "fits" / "nb201" / "dcl_enas_pretrain.yaml"), "--trainer.max_epochs=1",
                 "--data.init_args.pool_size=300", "--trainer.enable_progress_bar=false",
                 f"--trainer.callbacks.init_args.dirpath={tmp_path}", *tiny]) == 0
    ckpt = tmp_path / "pretrain.ckpt"
    assert ckpt.is_file()
    search = [str(CONFIGS / "methods" / "dcl_enas.yaml"), str(CONFIGS / "methods" / "nb201" / "dcl_enas.yaml"),
              str(CONFIGS / "protocols" / "nb201-cifar10.yaml")]
    assert main(["search", *[a for c in search for a in ("--config", c)], f"--model.init_args.pretrained={ckpt}",
                 f"--data.init_args.benchmark={shared / 'nb201_200ep.csv.gz'}", "--budget=20", "--ask_batch=5",
                 "--finetune_epochs=2", "--strategy.init_args.initial_size=5", "--strategy.init_args.infill_size=5",
                 f"--run_dir={tmp_path / 'run'}", "--progress=false", *tiny]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert len(results["queries"]) == 20 and results["strategy"] == "DCLENAS"
    assert 0 < results["best"]["report"]["cifar10_test_acc"] <= 94.38
