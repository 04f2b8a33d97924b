"""CR-LSO: ICNN convexity, the G-VAE round trip, decode verdicts, the ascent direction, the
strategy's counts and resumption, and a short fit + search through the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lightning_nas.nn.gvae import GVAE, kl_divergence, reconstruction_loss
from lightning_nas.spaces.codec import INVALID, REPAIRED, VALID, DecoderOutput
from lightning_nas.nn.icnn import ICNN, MLPHead
from lightning_nas.predictors.crlso import CRLSOModel
from lightning_nas.search.crlso import CRLSO, normal_scores
from lightning_nas.search.surrogates import CRLSOSurrogate
from tiny_crlso import tiny_crlso
from lightning_nas.spaces import get_space

NB201 = get_space("nb201")


@pytest.fixture(autouse=True)
def one_thread():
    # tiny tensors: extra intra-op threads only fight over the shared cores
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def train_on_wavy_target(head: torch.nn.Module, project: bool, steps: int = 150) -> torch.nn.Module:
    torch.manual_seed(0)
    x = torch.randn(512, 4) * 2
    y = torch.sin(3 * x[:, 0]) + x[:, 1].abs() - x[:, 2] ** 2  # far from convex
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = torch.nn.functional.mse_loss(head(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if project:
            head.project_()
    return head


def midpoint_violations(f: torch.nn.Module, pairs: int = 4000) -> int:
    """How often f((a + b) / 2) > (f(a) + f(b)) / 2, beyond float error."""
    torch.manual_seed(1)
    a, b = torch.randn(pairs, 4) * 3, torch.randn(pairs, 4) * 3
    with torch.no_grad():
        gap = f((a + b) / 2) - (f(a) + f(b)) / 2
    return int((gap > 1e-4).sum())


def test_icnn_stays_convex_and_non_negative_through_training():
    icnn = train_on_wavy_target(ICNN(4, hidden=32, num_layers=3), project=True)
    assert icnn.is_convex_by_construction()
    assert all(bool((w >= 0).all()) for w in icnn.constrained_weights())
    assert midpoint_violations(icnn) == 0


def test_midpoint_check_catches_non_convex_networks():
    # the same training without the projection, and a free MLP: both break convexity
    assert midpoint_violations(train_on_wavy_target(MLPHead(4, hidden=32, num_layers=3), project=False)) > 0
    unprojected = train_on_wavy_target(ICNN(4, hidden=32, num_layers=3), project=False)
    assert not unprojected.is_convex_by_construction()


def test_icnn_refuses_non_convex_activation():
    with pytest.raises(ValueError, match="convex"):
        ICNN(4, activation="tanh")


def test_gvae_round_trip_after_brief_training():
    torch.manual_seed(0)
    codec = NB201.codec()
    rng = np.random.default_rng(0)
    archs = [NB201.sample(rng) for _ in range(48)]
    batch = codec.batch(archs)
    gvae = GVAE(codec, latent_dim=8, hidden=64, decoder_hidden=64)
    optimizer = torch.optim.Adam(gvae.parameters(), lr=3e-3)
    for _ in range(200):
        mu, logvar = gvae.encode(batch)
        loss = reconstruction_loss(gvae.decoder(gvae.sample_posterior(mu, logvar)), batch) + 0.005 * kl_divergence(mu, logvar)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    gvae.eval()
    decoded = gvae.decode(gvae.embed(archs))
    assert [d.arch for d in decoded] == archs
    assert all(d.status == VALID for d in decoded)


def logits_for(codec, archs, wrong_node: bool = False) -> DecoderOutput:
    """Decoder outputs that say exactly `archs` (one-hot logits)."""
    batch = codec.batch(archs)
    b, n, s = len(archs), codec.num_nodes, len(codec.slots)
    nodes = torch.nn.functional.one_hot(batch.node_target, codec.num_node_types).float() * 10
    if wrong_node:
        nodes[:, 0] = torch.roll(nodes[:, 0], 1, dims=-1)
    edges = (batch.edge_target * 2 - 1) * 10
    if codec.num_edge_types:
        types = torch.nn.functional.one_hot(batch.type_target.clamp_min(0), codec.num_edge_types).float() * 10
    else:  # ops on nodes: no edge types
        types = torch.zeros(b, s, 0)
    return DecoderOutput(nodes.reshape(b, n, -1), edges, types)


def test_nb201_decode_verdicts():
    codec = NB201.codec()
    archs = [NB201.sample(np.random.default_rng(i)) for i in range(5)]
    assert [(d.arch, d.status) for d in codec.decode(logits_for(codec, archs))] == [(a, VALID) for a in archs]
    # a wrong node order is repaired (the wiring is fixed), the ops are kept
    assert [(d.arch, d.status) for d in codec.decode(logits_for(codec, archs, wrong_node=True))] == [(a, REPAIRED) for a in archs]


def test_darts_decode_keeps_two_inputs_per_node():
    space = get_space("darts")
    codec = space.codec()
    archs = [space.sample(np.random.default_rng(i)) for i in range(4)]
    exact = codec.decode(logits_for(codec, archs))
    assert [d.status for d in exact] == [VALID] * 4
    assert [space.canonical(d.arch) for d in exact] == [space.canonical(a) for a in archs]
    torch.manual_seed(0)
    noisy = codec.decode(DecoderOutput(torch.randn(8, codec.num_nodes, codec.num_node_types),
                                       torch.randn(8, len(codec.slots)), torch.randn(8, len(codec.slots), codec.num_edge_types)))
    assert all(d.status in (REPAIRED, INVALID) for d in noisy)  # random edges almost never give in-degree 2 everywhere
    assert all(space.is_valid(d.arch) for d in noisy if d.arch is not None)


def test_nb101_decode_repairs_or_rejects():
    space = get_space("nb101")
    codec = space.codec()
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(6)]
    assert [(d.arch, d.status) for d in codec.decode(logits_for(codec, archs))] == [(a, VALID) for a in archs]
    torch.manual_seed(0)
    noisy = codec.decode(DecoderOutput(torch.randn(40, 7, codec.num_node_types), torch.randn(40, 21), torch.zeros(40, 21, 0)))
    assert {d.status for d in noisy} <= {VALID, REPAIRED, INVALID}
    assert sum(d.status == REPAIRED for d in noisy) > 0  # random logits need repairs (ends, paths, edge count)
    assert all(space.is_valid(d.arch) for d in noisy if d.arch is not None)
    assert all(d.arch is None for d in noisy if d.status == INVALID)


def small_model(labelled: int = 12) -> CRLSOModel:
    torch.manual_seed(0)
    model = CRLSOModel("nb201", latent_dim=8, hidden=32, decoder_hidden=32, head_hidden=32, semi_hidden=16)
    rng = np.random.default_rng(0)
    archs = [NB201.sample(rng) for _ in range(labelled)]
    model.labelled_genotypes = torch.tensor([a.genotype for a in archs])
    model.labelled_y = torch.linspace(80, 90, labelled)
    model.y_stats = torch.tensor([85.0, 3.0])
    return model.eval()


def small_surrogate(labelled: int = 12) -> CRLSOSurrogate:
    return CRLSOSurrogate(small_model(labelled), NB201)


def test_ascent_step_raises_predicted_accuracy():
    model = small_model()
    strategy = CRLSO()
    strategy.setup(NB201, np.random.default_rng(0), CRLSOSurrogate(model, NB201))
    torch.manual_seed(3)
    for z in torch.randn(20, 8):
        d = strategy.ascent_direction(z)
        with torch.no_grad():
            before, after = model.predicted(z[None]), model.predicted((z + 0.01 * d)[None])
            icnn_before, icnn_after = model.head(z[None]), model.head((z + 0.01 * d)[None])
        assert after > before  # toward higher predicted accuracy ...
        assert icnn_after < icnn_before  # ... which is down the convex ICNN (predicted accuracy = -ICNN)


def fake_accuracy(a) -> float:
    return float(sum(a.genotype)) + 0.1 * a.genotype[0]


def drive(strategy: CRLSO, rounds: int, n: int = 4) -> list:
    asked = []
    for _ in range(rounds):
        archs = strategy.ask(n)
        asked.append([a.genotype for a in archs])
        strategy.tell(archs, [fake_accuracy(a) for a in archs])
    return asked


@pytest.mark.parametrize("options", [dict(seed_latent="encoded"), dict(seed_latent="proposed"),
                                     dict(finetune_target="rank", finetune_from="fit")])
def test_strategy_counts_every_decode_and_resumes_exactly(options):
    settings = dict(top_k=4, finetune_epochs=2, max_step_size=1.0, **options)
    strategy = CRLSO(**settings)
    strategy.setup(NB201, np.random.default_rng(0), small_surrogate())
    drive(strategy, 3 + 2)  # 12 warm-start labels in 3 asks of 4, then 2 search rounds
    stats = strategy.stats()
    assert stats["warm_start_queries"] == 12 and stats["labelled"] == 20
    assert stats["proposed"] + stats["fallback_mutations"] == 8
    assert stats["decodes"] == stats["decoded_valid"] + stats["decoded_repaired"] + stats["decoded_invalid"]
    assert stats["decodes"] == stats["proposed"] + stats["decoded_known"] + stats["decoded_invalid"]
    assert stats["finetunes"] == 3

    state = {"strategy": strategy.state_dict(), "surrogate": strategy.surrogate.state_dict()}
    resumed = CRLSO(**settings)
    resumed.setup(NB201, np.random.default_rng(99), small_surrogate())
    state = torch.load(_roundtrip(state), weights_only=True)
    resumed.load_state_dict(state["strategy"])
    resumed.surrogate.load_state_dict(state["surrogate"])  # the fine-tuned head lives in the surrogate
    resumed.rng.bit_generator.state = strategy.rng.bit_generator.state  # the loop restores its RNG itself
    assert drive(resumed, 2) == drive(strategy, 2)
    assert resumed.stats() == strategy.stats()


def test_table_only_steps_on_past_cells_the_oracle_cannot_answer():
    def in_table(a) -> bool:  # a third of the space, as NB101's 30k-row table holds a sample of it
        return sum(a.genotype) % 3 == 0

    strategy = CRLSO(top_k=4, finetune_epochs=2, max_step_size=1.0)
    strategy.setup(NB201, np.random.default_rng(0), small_surrogate())
    strategy.restrict(in_table)
    asked = drive(strategy, 3 + 3)
    assert all(in_table(NB201.make(g)) for round_ in asked[3:] for g in round_)  # after the warm start
    stats = strategy.stats()
    assert stats["decoded_unanswerable"] > 0
    assert stats["decodes"] == (stats["proposed"] + stats["decoded_known"] + stats["decoded_unanswerable"]
                                + stats["decoded_invalid"])


def test_nb101_codec_batch_equals_the_collated_graphs():
    from lightning_nas.spaces.codec import GraphCodec

    space = get_space("nb101")
    codec = space.codec()
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(300)]
    archs.append(space.make([1] + [0] * 20 + [0] * 5))  # a single edge, input to vertex 1
    fast, collated = codec.batch(archs), GraphCodec.batch(codec, archs)
    assert sorted(fast.keys()) == sorted(collated.keys()) and fast.num_graphs == collated.num_graphs
    for key in collated.keys():
        assert fast[key].dtype == collated[key].dtype and torch.equal(fast[key], collated[key]), key
    for table in ("_slice_dict", "_inc_dict"):
        for key, value in getattr(collated, table).items():
            assert torch.equal(getattr(fast, table)[key], value), (table, key)
    assert all(torch.equal(a.edge_index, b.edge_index) for a, b in zip(fast.to_data_list(), collated.to_data_list()))


def test_gvae_pool_batches_are_the_pool_graphs_with_their_ids(shared):
    from lightning_nas.data.gvae import GVAEDataModule

    dm = GVAEDataModule(str(shared / "nb201_200ep.csv.gz"), "cifar10_valid_valid_acc", num_labelled=10,
                        pool_size=200, batch_size=64)
    dm.setup()
    batches = list(dm.train_dataloader())
    ids = torch.cat([b.pool_id for b in batches])
    assert sorted(ids.tolist()) == list(range(len(dm.pool_archs))) and ids.tolist() != sorted(ids.tolist())
    first = batches[0]
    graphs = dm.codec.batch([dm.pool_archs[i] for i in first.pool_id.tolist()])
    assert torch.equal(first.x, graphs.x) and torch.equal(first.edge_index, graphs.edge_index)
    assert torch.equal(torch.cat([b.pool_id for b in dm.train_dataloader()]), ids)  # seeded shuffle


def test_proposed_seed_latent_continues_from_the_point_decoded():
    model = small_model()
    strategy = CRLSO(top_k=4, finetune_epochs=2, max_step_size=1.0, seed_latent="proposed")
    strategy.setup(NB201, np.random.default_rng(0), CRLSOSurrogate(model, NB201))
    drive(strategy, 3 + 2)
    proposed = [a for a, _ in strategy.labelled.values() if a.genotype in strategy.proposed_at]
    assert len(proposed) == strategy.stats()["proposed"] > 0
    points = strategy.latents(proposed)
    assert [d.arch.genotype for d in model.gvae.decode(points)] == [a.genotype for a in proposed]
    encodings = model.embed(proposed)
    assert not torch.allclose(points, encodings)  # a step away from the cell's own encoding
    warm = model.labelled_archs()
    assert torch.equal(strategy.latents(warm), model.embed(warm))  # never proposed: encoded
    encoded = CRLSO(top_k=4, finetune_epochs=2, max_step_size=1.0)
    encoded.setup(NB201, np.random.default_rng(0), CRLSOSurrogate(model, NB201))
    assert torch.equal(encoded.latents(proposed), encodings)
    with pytest.raises(ValueError, match="seed_latent"):
        CRLSO(seed_latent="decoded")


def test_normal_scores_keep_the_order_and_spread_the_best():
    y = torch.tensor([91.5, 10.0, 91.6, 85.0, 91.4])
    scores = normal_scores(y)
    assert torch.equal(torch.argsort(scores), torch.argsort(y))
    assert torch.allclose(scores.sum(), torch.tensor(0.0), atol=1e-6)  # symmetric about zero
    assert torch.allclose(scores[[1, 2]], torch.tensor([-1.2816, 1.2816]), atol=1e-4)  # quantiles 0.1, 0.9
    z = (y - y.mean()) / y.std()
    assert scores[2] - scores[0] > 10 * (z[2] - z[0])  # the collapsed cell no longer squeezes the best together


@pytest.mark.parametrize("start", ["fit", "last"])
def test_finetune_from_fit_does_not_depend_on_earlier_rounds(start):
    settings = dict(top_k=4, finetune_epochs=2, max_step_size=1.0, finetune_target="rank", finetune_from=start)
    searched = CRLSO(**settings)
    searched.setup(NB201, np.random.default_rng(0), small_surrogate())
    drive(searched, 3 + 2)  # three fine-tunes so far
    fresh = CRLSO(**settings)
    fresh.setup(NB201, np.random.default_rng(0), small_surrogate())
    fresh.labelled = dict(searched.labelled)
    fresh.generator.set_state(searched.generator.get_state())
    searched.finetune()
    fresh.finetune()
    same = all(torch.equal(a, b) for a, b in zip(searched.surrogate.state_dict()["head"].values(),
                                                  fresh.surrogate.state_dict()["head"].values()))
    assert same == (start == "fit")  # "last" continues the head the earlier rounds tuned
    with pytest.raises(ValueError, match="finetune_from"):
        CRLSO(finetune_from="scratch")
    with pytest.raises(ValueError, match="finetune_target"):
        CRLSO(finetune_target="raw")


def _roundtrip(state):
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return buffer


def test_strategy_needs_a_latent_surrogate_of_the_search_space():
    from lightning_nas.errors import ConfigError
    from lightning_nas.predictors.gin import GINRegressor
    from lightning_nas.search.surrogates import surrogate_for

    with pytest.raises(ConfigError, match="needs a LatentSurrogate, which a PredictorSurrogate is not: .*CRLSOModel"):
        CRLSO().setup(NB201, np.random.default_rng(0), surrogate_for(GINRegressor(), NB201))
    with pytest.raises(ConfigError, match="needs a trained predictor"):
        CRLSO().setup(NB201, np.random.default_rng(0), None)
    assert isinstance(surrogate_for(small_model(), NB201), CRLSOSurrogate)
    with pytest.raises(ConfigError, match="built for space 'nb201' but the search runs on 'nb101'"):
        surrogate_for(small_model(), get_space("nb101"))


@pytest.mark.slow
def test_fit_then_search_through_the_cli(shared, tmp_path):
    from lightning_nas.cli import main

    search = tiny_crlso(shared, tmp_path, num_labelled=20, max_epochs=2, top_k=5)
    state = torch.load(tmp_path / "crlso.ckpt", weights_only=True)["state_dict"]
    assert state["labelled_genotypes"].shape == (20, 6) and bool(state["semi_trained"])
    assert not torch.allclose(state["latent_std"], torch.ones(8))  # measured on the pool at the end of the fit
    assert main(["search", "--config", str(search), "--run_dir", str(tmp_path / "run"), "--progress", "false"]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert len(results["queries"]) == 30
    stats = results["strategy_stats"]
    assert stats["warm_start_queries"] == 20 and stats["proposed"] + stats["fallback_mutations"] == 10
    assert stats["decodes"] == stats["decoded_valid"] + stats["decoded_repaired"] + stats["decoded_invalid"]
