"""No search runs with a predictor that was never trained (issue 37): each method either trains it
inside the run, on labels charged to the budget or by a label-free fit made on first use and cached,
or refuses at start (exit 2) with the `lightning-nas fit` command; results.json says which fits the
run used or made, and a run killed anywhere (also inside a fit) resumes to the same results."""
import json
import random
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from lightning_nas.errors import ConfigError
from lightning_nas.search.fits import config_key
from lightning_nas.search.loop import STATE_FILE

ROOT = Path(__file__).resolve().parents[1]
TABLE = ["--config", "configs/protocols/nb201-cifar10.yaml"]
TINY_ENCODER = {"hidden": 16, "embed_dim": 16, "gin_layers": 2, "transformer_layers": 1, "heads": 2}
TINY_DCL = [f"--model.init_args.{k}={v}" for k, v in TINY_ENCODER.items()]
TINY_CRLSO = ["--model.init_args.latent_dim=8", "--model.init_args.hidden=32", "--model.init_args.decoder_hidden=32",
              "--model.init_args.head_hidden=32", "--model.init_args.semi_hidden=16", "--model.init_args.semi_epochs=3"]


def methods(*names: str) -> list[str]:
    return [arg for name in names for arg in ("--config", f"configs/methods/{name}.yaml")]


@pytest.fixture
def search(tmp_path, monkeypatch, capsys):
    """Run `lightning-nas search ARGS` in this process from the project root; returns (exit code,
    stdout, stderr, results.json or None)."""
    from lightning_nas.cli import main

    monkeypatch.chdir(ROOT)

    def run(args: list[str], run_dir: str = "run") -> tuple[int, str, str, dict | None]:
        folder = tmp_path / run_dir
        code = main(["search", *args, "--run_dir", str(folder), "--fit_cache", str(tmp_path / "fits")])
        out, err = capsys.readouterr()
        results = folder / "results.json"
        return code, out, err, json.loads(results.read_text()) if results.is_file() else None

    return run


def stage_one_config(folder: Path, pool_size: int = 64, epochs: int = 1) -> Path:
    """A tiny DCL-ENAS stage-1 fit (the encoder of TINY_DCL, bidirectional and readout as configs/methods)."""
    config = {"seed_everything": 0, "trainer": {"max_epochs": epochs, "accelerator": "cpu", "logger": False},
              "model": {"class_path": "lightning_nas.predictors.dcl.ContrastivePretrainer",
                        "init_args": {"space": "nb201", "num_clusters": 4, "bidirectional": True, "readout": "sum",
                                      **TINY_ENCODER}},
              "data": {"class_path": "lightning_nas.data.pool.ClusteredPoolDataModule",
                       "init_args": {"space": "nb201", "pool_size": pool_size, "num_clusters": 4, "batch_size": 32}}}
    path = folder / "stage1.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def delta_fit_config(folder: Path) -> Path:
    """Delta-NAS's fit config with a cheap proxy (parameter count of a tiny network) and a short fit."""
    config = yaml.safe_load((ROOT / "configs/fits/nb201/delta_nas.yaml").read_text())
    config["trainer"]["max_epochs"] = 10
    config["data"]["init_args"].update(proxy="params", network={"channels": 4, "cells_per_stage": 1},
                                       cache_dir=str(folder / "proxy_cache"), num_encodings=20)
    path = folder / "delta.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


# --- per method: trained in the run, or refused with the fit command --------------------------------
@pytest.mark.slow
def test_dcl_enas_fits_stage_one_on_first_use_or_refuses(search, tmp_path):
    args = [*methods("dcl_enas"), *TABLE, *TINY_DCL, "--budget", "12", "--ask_batch", "4", "--finetune_epochs", "2",
            "--strategy.init_args.initial_size", "4", "--strategy.init_args.infill_size", "4", "--progress", "false"]
    code, _, err, results = search(args)
    assert code == 2 and results is None
    assert "lightning-nas fit --config configs/fits/nb201/dcl_enas_pretrain.yaml" in err
    assert "auto_fit: configs/fits/nb201/dcl_enas_pretrain.yaml" in err and "from_scratch" in err

    stage_one = str(stage_one_config(tmp_path))
    code, out, err, results = search([*args, "--auto_fit", stage_one, "--progress", "true"])
    assert code == 0, err
    assert f"fitting {stage_one}" in out
    pretrained, predictor = results["fits"]
    assert pretrained["role"] == "pretrained" and Path(pretrained["path"]).is_file()
    assert pretrained["made_by"] == f"lightning-nas fit --config {stage_one}" and pretrained["labels_charged"] == 0
    assert predictor["role"] == "predictor" and predictor["labels_charged"] == 4 and predictor["trainings"] == 3
    encoder = {k: v for k, v in torch.load(pretrained["path"], weights_only=True)["state_dict"].items()}
    assert encoder  # the stage-1 weights the search started from

    code, out, _, again = search([*args, "--auto_fit", stage_one, "--progress", "true"], run_dir="again")
    assert code == 0 and "fitting" not in out  # a second run shares the cached fit
    assert again["fits"] == results["fits"] and again["queries"] == results["queries"]


@pytest.mark.slow
def test_delta_nas_fits_its_predictor_on_first_use_or_refuses(search, tmp_path):
    args = [*methods("delta_nas"), *TABLE, "--model.init_args.space", "nb201", "--budget", "20", "--progress", "false"]
    code, _, err, results = search(args)
    assert code == 2 and results is None
    assert "DeltaNAS would search with a predictor that was never trained" in err
    assert "lightning-nas fit --config configs/fits/nb201/delta_nas.yaml" in err

    fit = str(delta_fit_config(tmp_path))
    code, _, err, results = search([*args, "--auto_fit", fit])
    assert code == 0, err
    (record,) = results["fits"]
    assert record["role"] == "predictor" and record["labels_charged"] == 0 and results["predictor_labels_charged"] == 0
    assert record["path"].startswith(str(tmp_path / "fits")) and record["config_hash"] in record["path"]
    weights = torch.load(record["path"], weights_only=True)["state_dict"]
    assert torch.load(record["path"], weights_only=True)["hyper_parameters"]["mode"] == "difference" and weights


@pytest.mark.slow
def test_ednag_trains_its_predictor_on_its_first_queries_or_refuses(search):
    args = [*methods("ednag"), "--config", "configs/methods/nb201/ednag.yaml", *TABLE, "--budget", "20",
            "--ask_batch", "5", "--finetune_epochs", "2", "--strategy.init_args.steps", "5",
            "--strategy.init_args.population_size", "10", "--progress", "false"]
    code, _, err, results = search([*args, "--strategy.init_args.random_start", "0"])
    assert code == 2 and "EDNAG would search with a predictor that was never trained" in err
    assert "random_start" in err

    code, _, err, results = search(args)  # the shipped config: random_start 10
    assert code == 0, err
    (record,) = results["fits"]
    assert record["role"] == "predictor" and record["labels_charged"] == 10 and record["trainings"] == 4
    assert record["first_trained_on"] == 5  # after the first round of random cells


@pytest.mark.slow
def test_ctnas_trains_its_comparator_on_its_first_queries(search):
    args = [*methods("ctnas"), "--config", "configs/methods/nb201/ctnas.yaml", *TABLE, "--budget", "16",
            "--ask_batch", "8", "--finetune_epochs", "2", "--model.init_args.hidden", "16",
            "--strategy.init_args.initial_size", "8", "--strategy.init_args.controller_steps", "2",
            "--strategy.init_args.candidate_pool", "16", "--strategy.init_args.explore_pairs", "8", "--progress", "false"]
    code, _, err, results = search(args)
    assert code == 0, err
    (record,) = results["fits"]
    assert record["labels_charged"] == 8 and record["first_trained_on"] == 8 and record["trainings"] == 2


@pytest.mark.slow
def test_crlso_fits_its_model_on_its_first_queries(search):
    args = [*methods("crlso"), "--config", "configs/methods/nb201/crlso.yaml", *TABLE, *TINY_CRLSO,
            "--ckpt_path", "null", "--budget", "14", "--ask_batch", "2", "--strategy.init_args.top_k", "2",
            "--strategy.init_args.initial_size", "8", "--strategy.init_args.fit_epochs", "1",
            "--strategy.init_args.fit_pool", "300", "--strategy.init_args.finetune_epochs", "2", "--progress", "false"]
    code, _, err, results = search(args)
    assert code == 0, err
    (record,) = results["fits"]
    assert record["role"] == "predictor" and record["labels_charged"] == 8 and record["trainings"] == 1
    stats = results["strategy_stats"]
    assert stats["random_initial"] == 8 and stats["warm_start_queries"] == 0 and stats["proposed"] + stats["fallback_mutations"] == 6
    assert stats["finetunes"] == 4 and results["predictor_labels_charged"] == 0
    first = {q["arch"] for q in results["queries"][:8]}
    assert len(first) == 8

    code, _, err, _ = search([*args, "--strategy.init_args.initial_size", "1"], run_dir="refused")
    assert code == 2 and "CRLSO would search with a predictor that was never trained" in err
    assert "initial_size >= 2" in err
    code, _, err, _ = search([*args, "--budget", "8"], run_dir="short")
    assert code == 2 and "first 8 queries, and the budget is 8" in err


def test_crlso_strategy_fits_an_unfitted_surrogate_once_with_its_own_seed():
    """The in-run fit reads the strategy's RNG for its seed only; the search's torch RNG is untouched."""
    from lightning_nas.predictors.crlso import CRLSOModel
    from lightning_nas.search.crlso import CRLSO
    from lightning_nas.search.surrogates import CRLSOSurrogate
    from lightning_nas.spaces.base import get_space

    space = get_space("nb201")
    torch.manual_seed(0)
    model = CRLSOModel("nb201", latent_dim=4, hidden=16, decoder_hidden=16, head_hidden=16, semi_hidden=8, semi_epochs=2)
    surrogate = CRLSOSurrogate(model, space, untrained="never trained")
    strategy = CRLSO(top_k=2, initial_size=4, fit_epochs=1, fit_pool=40, finetune_epochs=1)
    strategy.setup(space, np.random.default_rng(0), surrogate)
    archs = strategy.ask(4)
    assert len({space.key(a) for a in archs}) == 4 and not surrogate.fitted
    before = torch.get_rng_state()
    strategy.tell(archs, [1.0, 2.0, 3.0, 4.0])
    assert surrogate.fitted and torch.equal(torch.get_rng_state(), before)
    assert model.labelled_genotypes.shape[0] == 4 and bool(model.semi_trained)
    assert not any(p.requires_grad for p in model.gvae.parameters())
    state = surrogate.state_dict()
    fresh = CRLSOSurrogate(CRLSOModel("nb201", latent_dim=4, hidden=16, decoder_hidden=16, head_hidden=16,
                                      semi_hidden=8, semi_epochs=2), space, untrained="never trained")
    fresh.load_state_dict(state)  # a resumed run reads the fitted model back, it does not fit again
    assert fresh.fitted and fresh.fit_records() == surrogate.fit_records()
    assert torch.equal(fresh.embed(archs), surrogate.embed(archs))


def test_untrained_predictors_without_a_warm_start_are_refused_at_setup():
    from lightning_nas.predictors.gin import GINRegressor
    from lightning_nas.search.dcl_enas import DCLENAS
    from lightning_nas.search.delta_nas import DeltaNAS
    from lightning_nas.search.surrogates import PredictorSurrogate
    from lightning_nas.spaces.base import get_space

    space = get_space("nb201")
    untrained = PredictorSurrogate(GINRegressor(in_channels=7), space, untrained="it was never trained")
    with pytest.raises(ConfigError, match="DeltaNAS would search with a predictor that was never trained: it was never"):
        DeltaNAS().setup(space, np.random.default_rng(0), untrained)
    DCLENAS(initial_size=3).setup(space, np.random.default_rng(0), untrained)  # its warm start trains it
    with pytest.raises(ConfigError, match="finetune_epochs is 0, so the predictor would never learn"):
        PredictorSurrogate(GINRegressor(in_channels=7), space, finetune_epochs=0, untrained="never")


def test_fit_cache_key_ignores_where_a_fit_writes_but_not_what_it_learns():
    config = yaml.safe_load((ROOT / "configs/fits/nb201/delta_nas.yaml").read_text())
    moved = json.loads(json.dumps(config))
    moved["trainer"].update(default_root_dir="elsewhere", callbacks=[], enable_progress_bar=False)
    assert config_key(config) == config_key(moved)
    longer = json.loads(json.dumps(config))
    longer["trainer"]["max_epochs"] += 1
    other_seed = {**config, "seed_everything": 1}
    assert len({config_key(config), config_key(longer), config_key(other_seed)}) == 3


def test_a_missing_checkpoint_is_refused_with_the_command_that_makes_it(search):
    code, _, err, _ = search([*methods("dcl_enas"), "--config", "configs/methods/nb201/dcl_enas.yaml", *TABLE,
                              "--model.init_args.pretrained", "checkpoints/nb201/dcl_enas/missing.ckpt"])
    assert code == 2 and "model.init_args.pretrained: checkpoint checkpoints/nb201/dcl_enas/missing.ckpt does not exist" in err
    code, _, err, _ = search([*methods("delta_nas"), "--config", "configs/methods/nb201/delta_nas.yaml", *TABLE,
                              "--ckpt_path", "checkpoints/nb201/delta_nas/last.ckpt"])
    assert code == 2 or Path(ROOT / "checkpoints/nb201/delta_nas/last.ckpt").is_file()
    if code == 2:
        assert "make it with `lightning-nas fit --config configs/fits/nb201/delta_nas.yaml`" in err


# --- the shipped configs ------------------------------------------------------------------------------
LIVE_METHODS = ["rs", "re", "dcl_enas", "ctnas", "crlso", "ednag", "delta_nas"]


def live_args(method: str) -> list[str]:
    return [*methods(method), "--config", "configs/live/task.yaml", "--config", f"configs/live/{method}.yaml"]


@pytest.mark.parametrize("method", LIVE_METHODS)
def test_live_configs_never_start_with_an_untrained_predictor(method, monkeypatch):
    """Each configs/live search has what its method needs: no predictor, a fit it makes on first use
    from a config that exists, or a warm start inside its budget that trains its predictor."""
    from lightning_nas.bench import resolved_config
    from lightning_nas.lightning_cli import import_search_plugins

    monkeypatch.chdir(ROOT)
    import_search_plugins()
    config = resolved_config(["search", *live_args(method)])
    assert config["oracle"]["class_path"] == "lightning_nas.proxies.live.LiveTrainingOracle" and not config.get("data")
    assert config["run_dir"] == f"checkpoints/live/{method}" and not config.get("ckpt_path")
    if not config.get("model"):
        assert method in ("rs", "re")
        return
    if config.get("auto_fit"):
        assert (ROOT / config["auto_fit"]).is_file()
        return
    module, name = config["strategy"]["class_path"].rsplit(".", 1)
    strategy = getattr(__import__(module, fromlist=[name]), name)(**config["strategy"].get("init_args", {}))
    assert 2 <= strategy.warm_start_size() < config["budget"]


# --- resumption ---------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("case", ["CR-LSO fitted in the run", "DCL-ENAS stage 1 made on first use"])
def test_sigkill_inside_a_warm_start_or_fit_then_resume_gives_identical_results(case, shared, tmp_path, monkeypatch):
    from test_resume import run_to_end, search_command, start_and_wait_for_rounds, uninterrupted

    if case.startswith("CR-LSO"):
        args = [*methods("crlso"), "--config", "configs/methods/nb201/crlso.yaml", *TABLE, *TINY_CRLSO,
                "--ckpt_path", "null", "--budget", "16", "--ask_batch", "2", "--strategy.init_args.top_k", "2",
                "--strategy.init_args.initial_size", "6", "--strategy.init_args.fit_epochs", "2",
                "--strategy.init_args.fit_pool", "600", "--strategy.init_args.finetune_epochs", "2"]
    else:
        args = [*methods("dcl_enas"), *TABLE, *TINY_DCL, "--budget", "20", "--ask_batch", "4", "--finetune_epochs", "2",
                "--strategy.init_args.initial_size", "4", "--strategy.init_args.infill_size", "4",
                "--auto_fit", str(stage_one_config(tmp_path, pool_size=3000, epochs=3))]
    run_dir, cache = tmp_path / "run", tmp_path / "fits"
    command = [*search_command(args, run_dir, shared), "--fit_cache", str(cache)]
    expected = uninterrupted(command, monkeypatch)
    shutil.rmtree(cache, ignore_errors=True)  # the killed run makes its fits again
    rng = random.Random(f"kill {case}")
    if case.startswith("CR-LSO"):  # in round 3, whose tell fits the model on the 6 labels
        process, _ = start_and_wait_for_rounds(command, run_dir, rounds=2)
        time.sleep(rng.uniform(0.2, 0.6))
    else:  # inside the stage-1 fit, before the search's first checkpoint
        process = start_process(command)
        deadline = time.monotonic() + 300
        while not list(cache.glob("*.lock")) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.5, 1.5))
        assert not (run_dir / STATE_FILE).exists() and not list(cache.glob("*/fit.ckpt"))
    process.kill()
    process.wait()
    assert process.returncode == -signal.SIGKILL and not (run_dir / "results.json").exists()
    run_to_end(command)
    assert (run_dir / "results.json").read_bytes() == expected


def start_process(command: list[str]):
    import subprocess

    from test_resume import search_env

    return subprocess.Popen(command, cwd=ROOT, env=search_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


# --- the user's own images ------------------------------------------------------------------------------
def image_folder(root: Path, per_class: int = 12) -> Path:
    """Two classes of 10x10 PNGs told apart by brightness, some RGB and some grayscale."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, (name, level) in enumerate((("dark", 40), ("light", 210))):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(rng.normal(level, 20, (10, 10, 3)), 0, 255).astype(np.uint8)
            image = Image.fromarray(pixels) if i % 2 else Image.fromarray(pixels[..., 0], mode="L")
            image.save(root / name / f"{i}.png")
    return root


def test_image_folder_datamodule_reads_splits_and_classes(tmp_path):
    from lightning_nas.data.images import ImageFolderDataModule

    data = ImageFolderDataModule(str(image_folder(tmp_path / "images")), image_size=8, channels=3, seed=1)
    assert data.classes == ["dark", "light"] and data.num_classes == 2 and data.name == "images"
    assert data.input_shape == (3, 8, 8)
    assert sum(data.split_size(s) for s in ("train", "val", "test")) == 24
    x, y = next(iter(data.train_dataloader()))
    assert x.shape[1:] == (3, 8, 8) and set(y.tolist()) <= {0, 1}
    assert ImageFolderDataModule(str(tmp_path / "images"), image_size=8, channels=1).input_shape == (1, 8, 8)
    with pytest.raises(ConfigError, match="at least 2"):
        ImageFolderDataModule(str(tmp_path / "images" / "dark"))


@pytest.mark.slow
def test_a_live_search_on_an_image_folder_as_the_readme_shows(search, tmp_path):
    images = image_folder(tmp_path / "my_images")
    args = [*live_args("re"), "--oracle.init_args.datamodule", "lightning_nas.data.images.ImageFolderDataModule",
            "--oracle.init_args.datamodule.root", str(images), "--oracle.init_args.datamodule.image_size", "8",
            "--oracle.init_args.store", str(tmp_path / "evaluations.sqlite"), "--oracle.init_args.epochs", "1",
            "--budget", "3", "--progress", "false"]
    code, _, err, results = search(args)
    assert code == 0, err
    assert len(results["queries"]) == 3 and results["fits"] == []
    assert all(0 <= q["score"] <= 100 and "test_acc" in q["report"] for q in results["queries"])
