"""Spaces the package does not ship: the registry (names, class paths, specs, entry points), the
worked example of docs/search_spaces.md through convert and search, and layer-wise networks."""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from lightning_nas.benchmarks.archive import Benchmark
from lightning_nas.benchmarks.convert import convert_main
from lightning_nas.cli import main
from lightning_nas.data.images import DigitsDataModule
from lightning_nas.errors import CapabilityError, ConfigError
from lightning_nas.spaces import ENTRY_POINT_GROUP, InvalidArchitectureError, get_space, space_reference

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "search_spaces.md"
MACRO = {"class_path": "lightning_nas.spaces.LayerwiseSpace",
         "init_args": {"name": "macro_test", "positions": 8, "choices": ["identity", "conv1", "conv3"]}}


# --- the worked example of the documentation ---------------------------------------------------
@pytest.fixture(scope="module")
def example_dir(tmp_path_factory) -> Path:
    """The documentation's example module, written as `residual_chain.py` into a folder on sys.path."""
    text = DOC.read_text()
    match = re.search(r"<!-- example: (\w+\.py) -->\n```python\n(.*?)```", text, re.S)
    assert match, "docs/search_spaces.md lost its example block"
    folder = tmp_path_factory.mktemp("example")
    (folder / match.group(1)).write_text(match.group(2))
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))


@pytest.fixture(scope="module")
def chain(example_dir):
    return get_space("residual_chain.ResidualChainSpace")


def test_the_example_space_registers_by_class_path_and_keeps_the_protocol(chain):
    assert chain.name == "residual_chain" and get_space("residual_chain") is chain
    assert space_reference(chain) == "residual_chain.ResidualChainSpace"
    assert [chain.supports(c) for c in ("network", "enumerate", "path_encoding", "codec")] == [True, True, False, False]
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = chain.sample(rng), chain.sample(rng)
        assert chain.from_string(str(a)) == a
        assert all(chain.edit_distance(a, n) == 1 for n in chain.neighbours(a)) and len(chain.neighbours(a)) == 12
        child = chain.crossover(a, b, rng)
        assert chain.is_valid(child) and chain.edit_distance(a, child) + chain.edit_distance(child, b) == chain.edit_distance(a, b)
    skips = chain.from_string("conv3x3+skip-conv1x1-maxpool+skip-conv3x3")
    graph = chain.to_graph(skips)
    assert graph.x.shape == (6, 5) and graph.edge_index.shape == (2, 5 + 2)
    assert len(list(chain.enumerate())) == 3**4 * 2**4
    net = chain.network(skips, num_classes=4, in_channels=1, channels=8)
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 4) and net.features(torch.randn(2, 1, 8, 8)).shape == (2, 8, 8, 8)
    with pytest.raises(CapabilityError, match="residual_chain search space has no path encoding"):
        chain.path_encoding(skips)
    with pytest.raises(InvalidArchitectureError, match="layer 'conv5x5'"):
        chain.from_string("conv5x5-conv1x1-maxpool-conv3x3")


def write_table(path: Path, space, archs) -> Path:
    """A synthetic table: accuracy grows with conv3x3 layers and skips, plus seeded noise."""
    rng = np.random.default_rng(0)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["arch", "val_acc", "test_acc"])
        for a in archs:
            base = 80 + 2 * sum(a.genotype) + rng.normal()
            writer.writerow([space.to_string(a), f"{base:.3f}", f"{base - 0.5 + rng.normal(scale=0.2):.3f}"])
    return path


def search_config(folder: Path, name: str, benchmark: Path, strategy: dict, space: str | None = None,
                  table_only: bool = False) -> Path:
    data = {"benchmark": str(benchmark), "target": "val_acc", "num_labelled": 0}
    if space is not None:
        data["space"] = space
    config = {"seed_everything": 0, "data": {"class_path": "lightning_nas.data.ArchitectureDataModule", "init_args": data},
              "strategy": strategy, "budget": 20, "report": ["test_acc"], "run_dir": str(folder / name), "progress": False,
              "table_only": table_only}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


RS = {"class_path": "lightning_nas.search.baselines.RandomSearch"}
RE = {"class_path": "lightning_nas.search.baselines.RegularizedEvolution",
      "init_args": {"population_size": 5, "sample_size": 2}}


def best_of(run_dir: Path, space) -> tuple[list, str]:
    results = json.loads((run_dir / "results.json").read_text())
    archs = [space.from_string(q["arch"]) for q in results["queries"]]
    return archs, results["best"]["arch"]


def test_the_example_space_converts_and_searches_by_class_path(chain, tmp_path, capsys):
    table = write_table(tmp_path / "chain.csv", chain, list(chain.enumerate())[::3])
    archive = tmp_path / "chain.npz"
    assert convert_main([str(table), "-o", str(archive), "--space", "residual_chain.ResidualChainSpace"]) == 0
    assert "432 residual_chain architectures" in capsys.readouterr().out
    bench = Benchmark.load(archive)
    assert bench.space_name == "residual_chain.ResidualChainSpace" and bench.space is chain
    # random search on the archive: the archive names the space
    assert main(["search", "--config", str(search_config(tmp_path, "rs", archive, RS))]) == 0
    # regularized evolution on the CSV itself: the keys do not reveal the space, the data names it
    assert main(["search", "--config", str(search_config(tmp_path, "re", table, RE, "residual_chain.ResidualChainSpace"))]) == 0
    for run in ("rs", "re"):
        archs, best = best_of(tmp_path / run, chain)
        assert len(archs) == 20 and all(bench.row(a) is not None for a in archs)
        assert best in {str(a) for a in archs}


def test_a_csv_of_unknown_keys_needs_its_space(chain, tmp_path, capsys):
    table = write_table(tmp_path / "chain.csv", chain, list(chain.enumerate())[:10])
    assert convert_main([str(table), "-o", str(tmp_path / "x.npz")]) == 2
    assert "cannot tell the search space" in capsys.readouterr().err
    assert convert_main([str(table), "-o", str(tmp_path / "x.npz"), "--space", "residual_chain.NoSuchSpace"]) == 2
    assert "module 'residual_chain' has no 'NoSuchSpace'" in capsys.readouterr().err


def test_a_layerwise_space_from_a_yaml_spec_converts_and_the_archive_remembers_it(tmp_path, capsys):
    spec = tmp_path / "macro.yaml"
    spec.write_text(yaml.safe_dump(MACRO))
    macro = get_space(str(spec))
    assert macro is get_space(MACRO) is get_space("macro_test")
    rng = np.random.default_rng(1)
    archs = list({macro.sample(rng) for _ in range(60)})
    table = write_table(tmp_path / "macro.csv", macro, archs)
    assert convert_main([str(table), "-o", str(tmp_path / "macro.npz"), "--space", str(spec)]) == 0
    bench = Benchmark.load(tmp_path / "macro.npz")
    assert json.loads(bench.space_name)["init_args"]["choices"] == ["identity", "conv1", "conv3"]
    assert bench.space is macro and sorted(map(str, bench.archs())) == sorted(map(str, archs))


@pytest.mark.slow
def test_a_fresh_process_rebuilds_the_archived_spaces(chain, example_dir, tmp_path):
    """What `convert` stores must be enough: a new process imports the class path or builds the spec."""
    runs = []
    for name, space, archs in (("chain", "residual_chain.ResidualChainSpace", list(chain.enumerate())),
                               ("macro", json.dumps(MACRO), None)):
        resolved = get_space(space)
        archs = archs or [resolved.make(g) for g in np.random.default_rng(2).integers(3, size=(40, 8))]
        table = write_table(tmp_path / f"{name}.csv", resolved, list(dict.fromkeys(archs)))
        assert convert_main([str(table), "-o", str(tmp_path / f"{name}.npz"), "--space", space]) == 0
        # the macro table holds 40 of 6,561 architectures: the search keeps to them
        config = search_config(tmp_path, f"{name}_re", tmp_path / f"{name}.npz", RE, table_only=name == "macro")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(example_dir), str(ROOT)]), "OMP_NUM_THREADS": "1"}
        done = subprocess.run([sys.executable, "-m", "lightning_nas", "search", "--config", str(config)],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        runs.append(best_of(tmp_path / f"{name}_re", resolved))
    assert all(len(archs) == 20 for archs, _ in runs)


# --- the registry --------------------------------------------------------------------------------
def test_names_class_paths_and_instances_resolve_to_the_registered_space():
    nb201 = get_space("nb201")
    assert get_space("lightning_nas.spaces.NB201") is nb201 and get_space(" nb201 ") is nb201
    assert space_reference(nb201) == "nb201"
    assert get_space(nb201) is nb201


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("no_such_space", "unknown search space 'no_such_space'; known: .*nb201.*class path"),
        ("no_such_package.spaces.Space", "no module named 'no_such_package'"),
        ("lightning_nas.errors.ConfigError", "names the class ConfigError, not a SearchSpace"),
        ("lightning_nas.spaces.LayerwiseSpace", "needs constructor arguments"),
        ({"class_path": "lightning_nas.spaces.LayerwiseSpace", "init_args": {"nme": "x"}}, "does not take these init_args"),
        ({"init_args": {}}, "must be a mapping with a 'class_path'"),
        ('{"class_path": "lightning_nas.spaces.LayerwiseSpace", ', "malformed JSON spec"),
        ({"class_path": "lightning_nas.spaces.LayerwiseSpace", "init_args": {"name": "nb201", "choices": ["a"],
                                                                            "positions": 1}},
         "two different search spaces are named 'nb201'"),
    ],
)
def test_bad_space_references_are_config_errors(ref, message):
    with pytest.raises(ConfigError, match=message):
        get_space(ref)


def test_a_spec_with_other_arguments_under_a_taken_name_is_refused():
    get_space(MACRO)
    other = {**MACRO, "init_args": {**MACRO["init_args"], "positions": 4}}
    with pytest.raises(ConfigError, match="named 'macro_test' .*with other init_args"):
        get_space(other)


def test_a_package_registers_a_space_through_its_entry_point(tmp_path, monkeypatch):
    (tmp_path / "plugin_spaces.py").write_text(
        "from lightning_nas.spaces import LayerwiseSpace\n"
        "SPACE = LayerwiseSpace(name='plugin_space', positions=3, choices=['a', 'b'])\n"
    )
    info = tmp_path / "plugin_spaces-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: plugin-spaces\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nplugin_space = plugin_spaces:SPACE\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    space = get_space("plugin_space")
    assert space.choices() == [2, 2, 2] and space_reference(space) == "plugin_space"
    assert get_space("plugin_space") is space


# --- layer-wise networks ---------------------------------------------------------------------------
def conv_block(position: int, choice: str, c_in: int, c_out: int, stride: int) -> nn.Module:
    """The block factory the tests name by class path: identity, or conv{k}-BN-ReLU."""
    if choice == "identity" and c_in == c_out and stride == 1:
        return nn.Identity()
    k = 1 if choice in ("identity", "conv1") else 3
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU())


def not_a_block(position, choice, c_in, c_out, stride):
    return "conv"


def test_a_layerwise_space_with_a_block_factory_builds_networks_that_run_on_digits():
    space = get_space({"class_path": "lightning_nas.spaces.LayerwiseSpace", "init_args": {
        "name": "macro_blocks", "positions": 4, "choices": ["identity", "conv1", "conv3"],
        "block": "test_user_spaces.conv_block", "widths": [8, 8, 16, 16], "strides": [1, 2, 1, 1]}})
    assert space.supports("network")
    digits = DigitsDataModule(batch_size=16, seed=0)
    x, y = digits.sample_batch(16, seed=0)
    a = space.from_string("conv3-identity-conv1-conv3")
    torch.manual_seed(0)
    net = space.network(a, num_classes=digits.num_classes, in_channels=digits.input_shape[0])
    assert net(x).shape == (16, 10) and net.features(x).shape == (16, 16, 4, 4)
    assert isinstance(net.body[1], nn.Sequential)  # identity with stride 2 gets a strided 1x1
    loss = nn.functional.cross_entropy(net(x), y)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in net.parameters())
    narrow = space.network(a, num_classes=10, in_channels=1, stem_channels=4, widths=[4, 4, 4, 4])
    assert narrow(x).shape == (16, 10) and sum(p.numel() for p in narrow.parameters()) < sum(p.numel() for p in net.parameters())


def test_a_block_factory_that_returns_no_module_is_named():
    space = get_space({"class_path": "lightning_nas.spaces.LayerwiseSpace", "init_args": {
        "name": "macro_bad_blocks", "positions": 2, "choices": ["a"], "block": "test_user_spaces.not_a_block"}})
    with pytest.raises(ConfigError, match="returned a str for position 0, choice 'a'"):
        space.network(space.make([0, 0]))


def test_live_training_trains_a_layerwise_network_and_refuses_a_space_without_one(tmp_path):
    from lightning_nas.proxies.live import LiveTrainingOracle
    from lightning_nas.proxies.oracle import ProxyOracle

    spec = {"class_path": "lightning_nas.spaces.LayerwiseSpace", "init_args": {
        "name": "macro_live", "positions": 3, "choices": ["identity", "conv1", "conv3"],
        "block": "test_user_spaces.conv_block", "stem_channels": 8}}
    oracle = LiveTrainingOracle(spec, DigitsDataModule(batch_size=128, seed=0), epochs=1, store=str(tmp_path / "s.sqlite"))
    result = oracle.evaluate(oracle.space.from_string("conv3-conv1-identity"))
    assert 0 <= result.score <= 100 and result.report["params"] > 0
    with pytest.raises(CapabilityError, match="macro_test search space has no network builder .*LiveTrainingOracle"):
        LiveTrainingOracle(MACRO, DigitsDataModule(), store=str(tmp_path / "t.sqlite"))
    with pytest.raises(CapabilityError, match="no network builder .*ProxyOracle"):
        ProxyOracle(MACRO, "params")


# --- every method on a space the package does not know ---------------------------------------------
#: what each space lacks, and so which methods refuse it at start (docs/search_spaces.md, "What each method needs")
REFUSALS = {
    "chain": {"dcl_enas": ("path_encoding", "DCL-ENAS"), "crlso": ("codec", "CR-LSO")},
    "macro": {"dcl_enas": ("path_encoding", "DCL-ENAS"), "delta_nas": ("network", "Delta-NAS")},
}
METHODS = ("rs", "re", "dcl_enas", "ctnas", "crlso", "ednag", "delta_nas")
TINY = {  # the smallest settings that keep each method's logic: warm starts of a few queries, 1-epoch fits
    "rs": [],
    "re": ["--strategy.init_args.population_size", "4", "--strategy.init_args.sample_size", "2"],
    "dcl_enas": ["--model.init_args.hidden=16", "--model.init_args.embed_dim=16", "--model.init_args.gin_layers=1",
                 "--model.init_args.transformer_layers=1", "--model.init_args.heads=2", "--ask_batch", "4",
                 "--finetune_epochs", "1", "--strategy.init_args.initial_size", "4", "--strategy.init_args.infill_size", "4"],
    "ctnas": ["--model.init_args.hidden", "16", "--model.init_args.reference_size", "8", "--ask_batch", "4",
              "--finetune_epochs", "1", "--strategy.init_args.initial_size", "4", "--strategy.init_args.controller_steps", "2",
              "--strategy.init_args.samples_per_step", "4", "--strategy.init_args.num_derive", "2",
              "--strategy.init_args.candidate_pool", "16", "--strategy.init_args.random_candidates", "16",
              "--strategy.init_args.explore_pairs", "8"],
    "crlso": ["--ckpt_path", "null", "--model.init_args.latent_dim=8", "--model.init_args.hidden=16",
              "--model.init_args.decoder_hidden=16", "--model.init_args.head_hidden=16", "--model.init_args.semi_hidden=16",
              "--model.init_args.semi_epochs=1", "--ask_batch", "2", "--strategy.init_args.top_k", "2",
              "--strategy.init_args.initial_size", "4", "--strategy.init_args.fit_epochs", "1",
              "--strategy.init_args.fit_pool", "100", "--strategy.init_args.finetune_epochs", "1"],
    "ednag": ["--ask_batch", "4", "--finetune_epochs", "1", "--strategy.init_args.steps", "5",
              "--strategy.init_args.population_size", "8", "--strategy.init_args.random_start", "4"],
    "delta_nas": [],
}


@pytest.fixture(scope="module")
def tables(chain, tmp_path_factory) -> dict[str, dict]:
    """Per space: the converted table, the reference a `model:` names the space by, its graphs' node
    features and a tiny Delta-NAS fit (parameter-count differences of a narrow network)."""
    folder = tmp_path_factory.mktemp("tables")
    (folder / "macro.yaml").write_text(yaml.safe_dump(MACRO))
    macro = get_space(MACRO)
    rng = np.random.default_rng(1)
    spaces = {"chain": (chain, "residual_chain.ResidualChainSpace", list(chain.enumerate())[::3], {"channels": 4}),
              "macro": (macro, str(folder / "macro.yaml"), list(dict.fromkeys(macro.sample(rng) for _ in range(300))), None)}
    out = {}
    for name, (space, ref, archs, network) in spaces.items():
        archive = folder / f"{name}.npz"
        assert convert_main([str(write_table(folder / f"{name}.csv", space, archs)), "-o", str(archive), "--space", ref]) == 0
        fit = {"seed_everything": 0, "trainer": {"max_epochs": 5, "accelerator": "cpu", "logger": False, "limit_val_batches": 0},
               "model": {"class_path": "lightning_nas.predictors.difference.DifferencePredictor",
                         "init_args": {"space": ref, "encoding": "adjacency", "mode": "difference", "hidden": 128, "num_layers": 3}},
               "data": {"class_path": "lightning_nas.proxies.difference.DifferenceDataModule",
                        "init_args": {"space": ref, "k": 1, "num_encodings": 10, "samples_per_encoding": 2, "proxy": "params",
                                      "input_shape": [1, 8, 8], "network": network, "cache_dir": None, "val_fraction": 0.0}}}
        (folder / f"{name}_delta.yaml").write_text(yaml.safe_dump(fit))
        out[name] = {"archive": archive, "space": space, "ref": ref, "delta_fit": folder / f"{name}_delta.yaml",
                     "node_features": int(space.to_graph(archs[0]).x.shape[1])}
    return out


def method_args(method: str, table: dict, run_dir: Path) -> list[str]:
    """`lightning-nas search` of configs/methods/<method>.yaml on `table` with a budget of 12."""
    args = ["--config", str(ROOT / "configs" / "methods" / f"{method}.yaml"), "--data.init_args.benchmark", str(table["archive"]),
            "--data.init_args.target", "val_acc", "--report", "[test_acc]", "--budget", "12", "--table_only", "true",
            "--progress", "false", "--run_dir", str(run_dir), "--fit_cache", str(run_dir.parent / "fits"), *TINY[method]]
    if method not in ("rs", "re", "ednag"):
        args += ["--model.init_args.space", table["ref"]]
    if method == "ednag":
        args += ["--model.init_args.in_channels", str(table["node_features"])]
    if method == "delta_nas":
        args += ["--auto_fit", str(table["delta_fit"])]
    return args


@pytest.mark.parametrize("space", ["chain", "macro"])
@pytest.mark.parametrize("method", METHODS)
def test_every_method_searches_a_space_of_its_own_or_refuses_it_up_front(method, space, tables, tmp_path, capsys):
    """The example space (network, enumeration; no path encoding, no codec) and a layer-wise table (codec,
    enumeration; no network): each of the seven searches finishes, or exits 2 before its first query
    with one line naming the capability the space lacks."""
    table = tables[space]
    run_dir = tmp_path / method
    code = main(["search", *method_args(method, table, run_dir)])
    err = capsys.readouterr().err
    refused = REFUSALS[space].get(method)
    if refused is None:
        assert code == 0, err
        archs, best = best_of(run_dir, table["space"])
        bench = Benchmark.load(table["archive"])
        assert len(archs) == 12 and all(bench.row(a) is not None for a in archs) and best in {str(a) for a in archs}
        return
    capability, by = refused
    assert code == 2 and err.count("\n") == 1, err
    assert re.search(rf"the {table['space'].name} search space has no .*\(`{capability}`\); {by}", err), err
    assert not (run_dir / "results.json").exists() and not (run_dir / "search_state.pt").exists()  # no query spent


def test_a_predictor_that_reads_other_graphs_is_refused_before_any_query(tables, tmp_path, capsys):
    """EDNAG's GIN reads `in_channels` node features: a width other than the space's is named with the value to set."""
    args = method_args("ednag", tables["chain"], tmp_path / "run") + ["--model.init_args.in_channels", "7"]
    assert main(["search", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "in_channels is 7, but the graphs of the residual_chain space have 5 node features" in err
    assert "set model.init_args.in_channels: 5" in err and not (tmp_path / "run" / "search_state.pt").exists()


def test_delta_nas_settings_the_space_cannot_serve_are_refused_up_front(chain):
    """Network options its builder does not take, a proxy fit without a builder, a path encoding it lacks."""
    from lightning_nas.predictors.difference import DifferencePredictor
    from lightning_nas.proxies.difference import DifferenceDataModule

    with pytest.raises(ConfigError, match="residual_chain network builder takes no option 'width' .*it takes: channels"):
        DifferenceDataModule("residual_chain", proxy="params", network={"width": 4})
    with pytest.raises(CapabilityError, match="macro_test search space has no network builder .*Delta-NAS"):
        DifferenceDataModule(json.dumps(MACRO), proxy="params")
    with pytest.raises(CapabilityError, match=r"no path encoding \(`path_encoding`\); Delta-NAS's difference predictor"):
        DifferencePredictor("residual_chain", encoding="path")
