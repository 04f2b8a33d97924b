"""Delta-NAS: difference encodings, the DoA dataset (Alg. 1), the difference predictor, the
neighbour-stepping search (Alg. 2), resumption and the CLI end to end. Cheap proxies only
(parameter counts of shrunken networks); real benchmark tables for the real-label paths."""
from __future__ import annotations

import json
import math
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from lightning_nas.benchmarks.archive import Benchmark
from lightning_nas.benchmarks.oracle import TabularOracle
from lightning_nas.data.difference import LabelledPairsDataModule, labelled_pairs
from lightning_nas.encodings.difference import ENCODINGS, difference, edit_of, encode, neighbour_pairs
from lightning_nas.predictors.difference import DifferencePredictor
from lightning_nas.predictors.evaluate import pair_taus
from lightning_nas.proxies.difference import DifferenceDataModule
from lightning_nas.proxies.zero_cost import ProxyBatch, score_architecture
from lightning_nas.search.delta_nas import DeltaNAS
from lightning_nas.search.loop import SearchLoop
from lightning_nas.search.surrogate import Surrogate
from lightning_nas.search.surrogates import DifferenceSurrogate, surrogate_for
from lightning_nas.spaces.base import get_space

ROOT = Path(__file__).resolve().parents[1]
TINY_NB201 = {"channels": 4, "cells_per_stage": 1}  # a cheap network for the parameter-count proxy
QUIET = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: more threads only contend on a shared machine
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def nb201(shared):
    return Benchmark.load(shared / "nb201_200ep.csv.gz")


# --- encodings ------------------------------------------------------------------------------------
genotypes = st.lists(st.integers(0, 4), min_size=6, max_size=6)


@settings(max_examples=40, deadline=None)
@given(genotypes, genotypes, st.sampled_from(ENCODINGS))
def test_difference_encoding_is_antisymmetric(g1, g2, kind):
    space = get_space("nb201")
    a, b = space.make(g1), space.make(g2)
    d = difference(space, a, b, kind)
    np.testing.assert_array_equal(d, -difference(space, b, a, kind))
    np.testing.assert_array_equal(difference(space, a, a, kind), 0)
    np.testing.assert_array_equal(d, encode(space, [b], kind)[0] - encode(space, [a], kind)[0])


def test_adjacency_difference_depends_only_on_the_edit():
    """The many-to-one property the DoA space rests on (paper Sec. 3)."""
    space = get_space("nb201")
    a, b = space.make([0, 1, 2, 3, 4, 1]), space.make([3, 1, 2, 3, 4, 1])
    c, d = space.make([0, 4, 4, 2, 0, 0]), space.make([3, 4, 4, 2, 0, 0])
    assert edit_of(a, b) == edit_of(c, d) == ((0, 0, 3),)
    np.testing.assert_array_equal(difference(space, a, b), difference(space, c, d))
    assert not np.array_equal(difference(space, a, b, "path"), difference(space, c, d, "path"))


# --- the DoA dataset (Alg. 1) ---------------------------------------------------------------------
def test_dataset_labels_are_mean_proxy_differences_and_cached(tmp_path):
    kwargs = dict(space="nb201", k=2, num_encodings=6, samples_per_encoding=3, proxy="params",
                  network=TINY_NB201, cache_dir=str(tmp_path), seed=3)
    dm = DifferenceDataModule(**kwargs)
    dm.setup()
    space, batch = get_space("nb201"), ProxyBatch.gaussian((3, 32, 32), 8, 10, 0)
    assert len(dm.groups) == 6 and dm.x.shape == (6, 30)
    for group, label, x in zip(dm.groups, dm.labels, dm.x):
        assert len(group.pairs) == 3
        deltas = []
        for a, b in group.pairs:
            assert edit_of(a, b) == group.edit and space.edit_distance(a, b) == 2
            pa, pb = (score_architecture(arch, "params", batch, 0, 10, TINY_NB201) for arch in (a, b))
            deltas.append(math.log1p(pb) - math.log1p(pa))
        assert label == pytest.approx(np.mean(deltas))
        np.testing.assert_array_equal(x, difference(space, *group.pairs[0]))
    assert len({g.edit for g in dm.groups}) == 6
    computed = dm.proxy_cache.computed
    assert computed > 0 and list(tmp_path.glob("nb201_params_*.json"))
    again = DifferenceDataModule(**kwargs)
    again.setup()  # every value now comes from the cache file
    assert again.proxy_cache.computed == 0
    np.testing.assert_array_equal(again.labels, dm.labels)
    batch = next(iter(dm.train_dataloader()))
    assert batch.x.shape[1] == 30 and torch.allclose(batch.y.pow(2).mean().sqrt(), torch.tensor(1.0), atol=0.6)


def test_d1_is_exhausted_and_real_labels_are_table_differences(shared, nb201):
    dm = DifferenceDataModule(space="nb201", k=1, num_encodings=500, samples_per_encoding=4,
                              benchmark=str(shared / "nb201_200ep.csv.gz"), target="cifar10_valid_valid_acc")
    dm.setup()
    assert len(dm.groups) == 60  # |D^1| of NB201: 6 edges x C(5, 2) op pairs, a pair and its reverse once
    column = nb201.column("cifar10_valid_valid_acc")
    for group, label in zip(dm.groups[:10], dm.labels[:10]):
        real = [column[nb201.row(b)] - column[nb201.row(a)] for a, b in group.pairs]
        assert label == pytest.approx(np.mean(real), rel=1e-5)


def test_bad_dataset_input_is_explained():
    with pytest.raises(ValueError, match="unknown architecture encoding"):
        DifferenceDataModule(encoding="onehot")
    with pytest.raises(ValueError, match="both `benchmark` and `target`"):
        DifferenceDataModule(target="cifar10_valid_valid_acc")
    with pytest.raises(ValueError, match="unknown zero-cost proxy 'zenn'"):
        DifferenceDataModule(proxy="zenn")
    with pytest.raises(ValueError, match="reads real images: give `images:`"):
        DifferenceDataModule(proxy="snip")
    with pytest.raises(ValueError, match="k \\(edit distance\\) must be in 1..6"):
        DifferenceDataModule(k=7, proxy="params", cache_dir=None, network=TINY_NB201).setup()


# --- the predictor ----------------------------------------------------------------------------------
def test_predictor_is_antisymmetric_and_learns_real_differences(shared):
    dm = DifferenceDataModule(space="nb201", k=2, num_encodings=300, samples_per_encoding=4, val_fraction=0.25,
                              benchmark=str(shared / "nb201_200ep.csv.gz"), target="cifar10_valid_valid_acc")
    model = DifferencePredictor(space="nb201", hidden=64, lr=3e-3)
    trainer = L.Trainer(max_epochs=40, **QUIET)
    trainer.fit(model, dm)
    # 75 held-out encodings: a predictor that learned nothing has tau ~ 0 +- 0.08
    assert trainer.callback_metrics["train_loss"] < 0.3 and trainer.callback_metrics["val_tau"] > 0.3
    space = get_space("nb201")
    rng = np.random.default_rng(0)
    a = space.sample(rng)
    neighbours = space.neighbours(a)
    forward = model.gains(a, neighbours)
    backward = torch.stack([model.gains(b, [a])[0] for b in neighbours])
    torch.testing.assert_close(forward, -backward)
    assert float(model.gains(a, [a])[0]) == 0.0


def test_difference_and_absolute_twins_rank_heldout_architectures(shared):
    common = dict(benchmark=str(shared / "nb201_200ep.csv.gz"), target="cifar10_valid_valid_acc",
                  num_labelled=0.01, max_val=500, encoding="adjacency")
    taus = {}
    for mode in ("difference", "absolute"):
        dm = LabelledPairsDataModule(mode=mode, max_pairs=20_000, **common)
        model = DifferencePredictor(space="nb201", mode=mode, hidden=64, lr=3e-3)
        L.Trainer(max_epochs=8 if mode == "difference" else 150, limit_val_batches=0, **QUIET).fit(model, dm)
        held = dm.archs(dm.val_rows)
        scores = model.rank_scores(held, dm.train_archs, dm.train_labels, num_anchors=64)
        from scipy.stats import kendalltau

        taus[mode] = kendalltau(scores.numpy(), dm.y_all[dm.val_rows]).statistic
    assert taus["difference"] > 0.4 and taus["absolute"] > 0.3, taus


def test_labelled_pairs_respect_max_edit():
    space = get_space("nb201")
    archs = [space.make(g) for g in ([0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0], [1, 2, 0, 0, 0, 0], [4, 4, 4, 4, 4, 4])]
    y = np.array([1.0, 2.0, 4.0, 8.0])
    x, d = labelled_pairs(space, archs, y, max_edit=1)
    assert sorted(d.tolist()) == [-2.0, -1.0, 1.0, 2.0]
    x, d = labelled_pairs(space, archs, y)
    assert len(d) == 12 and x.shape == (12, 30)


def test_neighbour_pairs_are_the_genotypes_one_position_apart():
    space = get_space("nb201")
    rng = np.random.default_rng(1)
    archs = list({a.genotype: a for a in (space.sample(rng) for _ in range(400))}.values())
    archs += [space.make(g) for g in ([0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0], [2, 0, 0, 0, 0, 0], [2, 0, 0, 0, 0, 3])]
    genotypes = np.array([a.genotype for a in archs])
    brute = {(i, j) for i in range(len(archs)) for j in range(i + 1, len(archs))
             if (genotypes[i] != genotypes[j]).sum() == 1}
    found = neighbour_pairs(archs)
    assert {tuple(p) for p in found.tolist()} == brute and len(found) == len(brute) >= 4
    assert neighbour_pairs(archs[:1]).shape == (0, 2)


class KnownDifferences(DifferencePredictor):
    """F(a, b) = g(b) - g(a) (+ a disturbance on one-edit pairs): rankings have a known answer."""

    def __init__(self, noise: float = 0.0):
        super().__init__(space="nb201")
        self.w, self.noise = torch.randn(30, dtype=torch.float64), noise

    def pair_gains(self, bases, others, chunk=4096):
        exact = (others.double() - bases.double()) @ self.w
        return exact + self.noise * ((others - bases).abs().sum(-1) == 2)  # one edit: two one-hot entries change


def test_rank_scores_recover_consistent_differences_with_and_without_neighbours():
    torch.manual_seed(0)
    space, model = get_space("nb201"), KnownDifferences()
    archs = [space.make(g) for g in np.random.default_rng(2).integers(0, 5, size=(300, 6))]
    archs = list({a.genotype: a for a in archs}.values())
    g = model.encode(archs).double() @ model.w
    anchors, others = archs[:40], archs[40:]
    for kwargs in ({"num_anchors": 5}, {"num_anchors": None, "neighbour_weight": 3.0}):
        scores = model.rank_scores(others, anchors, g[:40].numpy(), **kwargs)
        torch.testing.assert_close(scores, g[40:])


def test_neighbour_edges_pull_scores_towards_the_predicted_one_edit_differences():
    """Disturbed one-edit differences: the heavier their edges weigh, the further the least-squares
    scores move from the anchor means, towards differences that honour the disturbance."""
    torch.manual_seed(0)
    space, model = get_space("nb201"), KnownDifferences(noise=1.0)
    archs = [space.make(g) for g in np.random.default_rng(3).integers(0, 5, size=(600, 6))]
    archs = list({a.genotype: a for a in archs}.values())
    g = (model.encode(archs).double() @ model.w).numpy()
    pairs = neighbour_pairs(archs[30:]) + 30
    gaps = []
    for weight in (0.0, 1.0, 100.0):
        s = model.rank_scores(archs[30:], archs[:30], g[:30], num_anchors=30, neighbour_weight=weight).numpy()
        s = np.concatenate([g[:30], s])
        gaps.append(float(np.mean(s[pairs[:, 1]] - s[pairs[:, 0]] - (g[pairs[:, 1]] - g[pairs[:, 0]]))))
    assert len(pairs) > 10 and abs(gaps[0]) < 0.01 and 0.1 < gaps[1] < gaps[2] <= 1.0


def test_rank_labels_are_standardised_midranks_of_the_labelled_set(shared):
    dm = LabelledPairsDataModule(str(shared / "nb201_200ep.csv.gz"), "cifar10_valid_valid_acc", num_labelled=200,
                                 labels="rank", max_pairs=1000)
    dm.setup()
    z = dm.train_labels
    assert np.all(np.diff(z[np.argsort(dm.train_y, kind="stable")]) >= 0)  # monotone in the accuracy
    assert abs(z.mean()) < 1e-9 and z.std() == pytest.approx(1.0, rel=0.02) and np.abs(z).max() < math.sqrt(3)
    np.testing.assert_allclose(dm.label(dm.train_y), z)
    assert dm.label(np.array([dm.train_y.max() + 1]))[0] == pytest.approx(math.sqrt(3))  # above every label
    with pytest.raises(ValueError, match="labels must be one of value, rank"):
        LabelledPairsDataModule(str(shared / "nb201_200ep.csv.gz"), "cifar10_valid_valid_acc", labels="ranks")


@settings(max_examples=20, deadline=None)
@given(genotypes, genotypes)
def test_context_inputs_keep_the_predictor_antisymmetric(g1, g2):
    space = get_space("nb201")
    torch.manual_seed(0)
    model = DifferencePredictor(space="nb201", context=True, hidden=16)
    a, b = space.make(g1), space.make(g2)
    assert model.in_features == 60
    forward, backward = model.gains(a, [b])[0], model.gains(b, [a])[0]
    torch.testing.assert_close(forward, -backward)
    x, _ = labelled_pairs(space, [a, b], np.array([0.0, 1.0]), context=True)
    assert x.shape == ((2, 60) if g1 != g2 else (0, 60))


def test_context_is_refused_for_an_absolute_model():
    with pytest.raises(ValueError, match="context is a difference-mode input"):
        DifferencePredictor(mode="absolute", context=True)


def test_pair_taus_are_one_for_exact_differences(nb201):
    space, model = get_space("nb201"), DifferencePredictor(space="nb201", mode="absolute")
    archs = [space.from_key(k) for k in nb201.keys[:3000].tolist()]
    y = nb201.column("cifar10_valid_valid_acc")[:3000]
    lookup = {tuple(x.tolist()): v for x, v in zip(model.encode(archs), y)}
    model.predict_x = lambda x: torch.tensor([lookup[tuple(r.tolist())] for r in x], dtype=torch.float64)
    result = pair_taus(model, archs, y, seed=0, max_pairs=500)
    assert result["pair_tau"] == pytest.approx(1.0) and result["edit_tau"] == pytest.approx(1.0)
    assert result["edits"] > 20


# --- the search (Alg. 2) -----------------------------------------------------------------------------
class LinearGain(Surrogate):
    """A known utility u(a) = w . onehot(a): gains are its differences (a fixed `GainSurrogate`)."""

    def __init__(self, space, seed=0):
        self.space = space
        self.w = np.random.default_rng(seed).normal(size=30)

    def utility(self, a):
        return float(encode(self.space, [a])[0] @ self.w)

    def gains(self, base, candidates):
        return torch.tensor([self.utility(c) - self.utility(base) for c in candidates])

    def fit_gains(self, *args):
        return False

    def score(self, archs):
        return torch.tensor([self.utility(a) for a in archs])

    def update(self, archs, y):
        pass


def test_a_step_moves_every_member_to_its_argmax_gain_neighbour():
    space = get_space("nb201")
    surrogate = LinearGain(space)
    strategy = DeltaNAS(population_size=4, accept="always", min_gain=None, finetune=False)
    strategy.setup(space, np.random.default_rng(0), surrogate)
    start = strategy.ask(4)
    strategy.tell(start, [0.0] * 4)
    assert strategy.members == start
    proposals = strategy.ask(4)
    for member, proposal in zip(start, proposals):
        best = max(space.neighbours(member), key=surrogate.utility)
        assert proposal == best
    strategy.tell(proposals, [-1.0] * 4)  # "always": members move even to worse architectures
    assert strategy.members == proposals


def test_improvement_rule_rejects_and_tries_the_next_best_neighbour():
    space = get_space("nb201")
    surrogate = LinearGain(space, seed=1)
    strategy = DeltaNAS(population_size=1, accept="improvement", min_gain=None, patience=2, finetune=False)
    strategy.setup(space, np.random.default_rng(1), surrogate)
    [start] = strategy.ask(1)
    strategy.tell([start], [5.0])
    ranked = sorted(space.neighbours(start), key=surrogate.utility, reverse=True)
    first = strategy.ask(1)
    strategy.tell(first, [4.0])  # worse than the member: rejected
    assert first == ranked[:1] and strategy.members == [start]
    second = strategy.ask(1)
    assert second == ranked[1:2]
    strategy.tell(second, [3.0])  # second rejection in a row: patience 2 re-samples the member
    assert strategy.members == [None]
    [fresh] = strategy.ask(1)
    assert fresh not in (start, *first, *second)


def test_predicted_local_optimum_is_resampled():
    space = get_space("nb201")
    surrogate = LinearGain(space)
    strategy = DeltaNAS(population_size=1, accept="always", min_gain=0.0, finetune=False)
    strategy.setup(space, np.random.default_rng(0), surrogate)
    top = space.make([int(np.argmax(surrogate.w[5 * e : 5 * e + 5])) for e in range(6)])
    strategy.members, strategy.member_scores = [top], [1.0]
    proposal = strategy.ask(1)[0]
    assert space.edit_distance(proposal, top) > 0 and strategy.members == [None]


def search_loop(nb201, run_dir, budget, model):
    oracle = TabularOracle(nb201, "cifar10_valid_valid_acc", ["cifar10_test_acc"], budget)
    surrogate = surrogate_for(model, oracle.space, finetune_epochs=3, seed=0)
    strategy = DeltaNAS(population_size=5, finetune_every=5)
    return SearchLoop(strategy, oracle, run_dir, seed=7, ask_batch=5, surrogate=surrogate, progress=False).run()


def test_resumed_search_equals_uninterrupted(nb201, tmp_path):
    def fresh_model():
        torch.manual_seed(0)
        return DifferencePredictor(space="nb201", hidden=32)

    straight = search_loop(nb201, tmp_path / "a", 30, fresh_model())
    search_loop(nb201, tmp_path / "b", 15, fresh_model())
    resumed = search_loop(nb201, tmp_path / "b", 30, fresh_model())
    assert [q["arch"] for q in resumed["queries"]] == [q["arch"] for q in straight["queries"]]
    assert resumed["strategy_stats"] == straight["strategy_stats"]
    assert straight["strategy_stats"]["finetunes"] >= 4 and straight["strategy_stats"]["steps_accepted"] > 0


def test_search_without_predictor_is_refused():
    with pytest.raises(ValueError, match="needs a trained predictor"):
        DeltaNAS().setup(get_space("nb201"), np.random.default_rng(0), None)


class ScoreOnly:
    """Scores and learns, but misses the rest of the `Surrogate` protocol (state, charged labels)."""

    def score(self, archs):
        return torch.zeros(len(archs))

    def update(self, archs, y):
        pass


def test_a_surrogate_without_the_whole_protocol_is_refused():
    from lightning_nas.errors import ConfigError

    with pytest.raises(ConfigError, match="DeltaNAS needs a Surrogate, which a ScoreOnly is not"):
        DeltaNAS().setup(get_space("nb201"), np.random.default_rng(0), ScoreOnly())


def test_difference_predictor_gives_gains_and_scores_only_in_absolute_mode():
    from lightning_nas.errors import CapabilityError
    from lightning_nas.search.surrogate import GainSurrogate

    space = get_space("nb201")
    archs = [space.sample(np.random.default_rng(s)) for s in range(3)]
    difference = surrogate_for(DifferencePredictor(space="nb201", hidden=16), space)
    assert isinstance(difference, DifferenceSurrogate) and isinstance(difference, GainSurrogate)
    gains = difference.gains(archs[0], archs[1:])
    assert torch.allclose(-difference.gains(archs[1], archs[:1]), gains[:1])  # F(a, b) = -F(b, a)
    with pytest.raises(CapabilityError, match="predicts gains between architectures, not scores"):
        difference.score(archs)
    absolute = surrogate_for(DifferencePredictor(space="nb201", hidden=16, mode="absolute"), space)
    scores = absolute.score(archs)
    assert torch.allclose(absolute.gains(archs[0], archs[1:]), scores[1:] - scores[0], atol=1e-6)


# --- the command line, end to end -----------------------------------------------------------------------
DELTA_NAS_NB201 = ["--config", "configs/methods/delta_nas.yaml", "--config", "configs/methods/nb201/delta_nas.yaml",
                   "--config", "configs/protocols/nb201-cifar10.yaml"]


def test_fit_then_search_through_the_cli(tmp_path, monkeypatch):
    from lightning_nas.cli import main

    monkeypatch.chdir(ROOT)  # configs name ../shared relative to the project root
    fit = yaml.safe_load((ROOT / "configs/fits/nb201/delta_nas.yaml").read_text())
    fit["trainer"].update(max_epochs=20, default_root_dir=str(tmp_path / "fit"))
    fit["trainer"]["callbacks"][0]["init_args"]["dirpath"] = str(tmp_path / "fit")
    fit["data"]["init_args"].update(proxy="params", network=TINY_NB201, cache_dir=str(tmp_path / "cache"), num_encodings=20)
    (tmp_path / "fit.yaml").write_text(yaml.safe_dump(fit))
    assert main(["fit", "--config", str(tmp_path / "fit.yaml")]) == 0
    ckpt = tmp_path / "fit" / "last.ckpt"
    assert ckpt.is_file()
    run = tmp_path / "search"
    args = ["search", *DELTA_NAS_NB201, "--ckpt_path", str(ckpt),
            "--run_dir", str(run), "--budget", "30", "--finetune_epochs", "3", "--progress", "false",
            "--strategy.init_args.finetune", "true"]
    assert main(args) == 0
    results = json.loads((run / "results.json").read_text())
    assert len(results["queries"]) == 30 and results["strategy"] == "DeltaNAS"
    assert results["strategy_stats"]["finetunes"] >= 2
    assert results["best"]["score"] == max(q["score"] for q in results["queries"])
    assert "cifar10_test_acc" in results["best"]["report"]


def test_search_with_a_mismatched_predictor_is_one_line(tmp_path, capsys, monkeypatch):
    from lightning_nas.cli import main

    monkeypatch.chdir(ROOT)
    model = DifferencePredictor(space="nb201", hidden=32)
    ckpt = tmp_path / "small.ckpt"
    torch.save({"state_dict": model.state_dict()}, ckpt)
    args = ["search", *DELTA_NAS_NB201, "--ckpt_path", str(ckpt),
            "--run_dir", str(tmp_path / "run"), "--progress", "false"]
    assert main(args) == 2
    assert "does not fit the configured `model:`" in capsys.readouterr().err


def test_the_tau_study_refits_delta_nas_when_difference_tau_changes(monkeypatch):
    """Delta-NAS has no fit config: the report's recipe of its tau fits holds difference_tau's settings."""
    from benchmarks.report.tau import tau_recipe
    from lightning_nas.predictors import evaluate

    before = tau_recipe("Delta-NAS", 1500, {})
    monkeypatch.setitem(evaluate.DIFFERENCE_DATA, "labels", "value")
    assert tau_recipe("Delta-NAS", 1500, {}) != before
    monkeypatch.setitem(evaluate.DIFFERENCE_DATA, "labels", "rank")
    assert tau_recipe("Delta-NAS", 1500, {}) == before
